"""The named merge functions (``Dict.merge(k, v, "sum")``, ``map merge-all -2 sum``) and the verbs' local pre-merge.

Apart from the object library so that the shell's one-call client
(:mod:`crucial.shell._thin`) can merge a verb's pairs the way the verbs do,
with nothing but ``operator`` imported.
"""

from __future__ import annotations

import operator

TYPE_CHECKING = False  # typing and collections.abc stay unloaded on the shell's quick paths
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

__all__ = ["ASSOCIATIVE", "MERGE_FUNCTIONS", "merge_rounds"]

#: named merge functions, usable where a function is expected (``"sum"`` …)
MERGE_FUNCTIONS: dict[str, Callable[[Any, Any], Any]] = {
    "sum": operator.add,
    "add": operator.add,
    "sub": operator.sub,
    "mul": operator.mul,
    "min": min,
    "max": max,
    "replace": lambda old, new: new,
    "keep": lambda old, new: old,
    "concat": operator.add,
    "union": lambda old, new: old | new,
}

#: the ones whose repeated keys may be combined before the merge
ASSOCIATIVE = frozenset(MERGE_FUNCTIONS) - {"sub"}


def merge_rounds(items: Sequence[tuple[str, Any]], fn: str) -> list[dict[str, Any]]:
    """The mappings to ``merge_all`` in order, so the result is that of merging item by item.

    With an associative function, repeated keys are combined locally first:
    one call.  With ``sub``, the n-th occurrences of the keys go in round n.
    """
    if fn in ASSOCIATIVE:
        f = MERGE_FUNCTIONS[fn]
        local: dict[str, Any] = {}
        for k, v in items:
            local[k] = f(local[k], v) if k in local else v
        return [local]
    rounds: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for k, v in items:
        n = seen.get(k, 0)
        seen[k] = n + 1
        if n == len(rounds):
            rounds.append({})
        rounds[n][k] = v
    return rounds or [{}]
