"""Logistic regression on Lithops + Redis: the peer of crucial's shared model (benchmarks/logreg.py).

The seed's PyWren comparison, as ``kmeans.py`` has it: 2 Lithops functions
(localhost backend, 2 worker processes) run crucial's own NumPy gradient
(``crucial.examples.logreg.gradient``) on their partition; the model is in
Redis.  Per iteration each function hands in its sums with **one Lua script**
call (msgpack arrays; the last share of an iteration adds the shares up in
partition order, steps the weights, records loss and accuracy and moves the
iteration counter, inside Redis -- what ``Model.contribute`` does on the
node), meets the others at the INCR + BLPOP barrier, and reads the iteration
and the weights back with one ``MGET``.  A barrier before the first iteration
keeps function start-up out.  The weights must equal crucial's (checked by
``logreg.py``).
"""

from __future__ import annotations

import contextlib
import sys
import uuid
from typing import Any

from _common import RedisBarrier, access_times

__all__ = ["lithops_run"]

PARTIES = 2

# KEYS: iteration, weights, shares (hash part -> msgpack gradient), meta (hash part -> msgpack [loss, correct, count]),
# losses, accuracies.  ARGV: iteration, part, gradient, loss, correct, count, parties, step.  A share for another
# iteration is ignored (0); the last share of an iteration steps the weights (2).
LUA_CONTRIBUTE = """
if tonumber(redis.call('GET', KEYS[1])) ~= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[3], ARGV[2], ARGV[3])
redis.call('HSET', KEYS[4], ARGV[2], cmsgpack.pack({tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])}))
local parties = tonumber(ARGV[7])
if redis.call('HLEN', KEYS[3]) < parties then return 1 end
local total = nil
local loss, correct, count = 0, 0, 0
for p = 0, parties - 1 do
  local g = cmsgpack.unpack(redis.call('HGET', KEYS[3], tostring(p)))
  local m = cmsgpack.unpack(redis.call('HGET', KEYS[4], tostring(p)))
  if total == nil then total = g else for i = 1, #g do total[i] = total[i] + g[i] end end
  loss, correct, count = loss + m[1], correct + m[2], count + m[3]
end
local w = cmsgpack.unpack(redis.call('GET', KEYS[2]))
local rate = tonumber(ARGV[8]) / count
for i = 1, #w do w[i] = w[i] - rate * total[i] end
redis.call('SET', KEYS[2], cmsgpack.pack(w))
redis.call('RPUSH', KEYS[5], loss / count)
redis.call('RPUSH', KEYS[6], correct / count)
redis.call('DEL', KEYS[3], KEYS[4])
redis.call('INCR', KEYS[1])
return 2
"""

STATE_KEYS = ("iteration", "weights", "shares", "meta", "losses", "accuracies")


def state(r: Any, keys: list[str]) -> tuple[int, Any]:
    """(iteration, weights) with one MGET."""
    import msgpack
    import numpy as np

    iteration, weights = r.mget(keys[:2])
    return int(iteration), np.array(msgpack.unpackb(weights), dtype=float)


def set_up(r: Any, prefix: str, features: int) -> list[str]:
    """The state keys of one run: iteration 0 and zero weights (with the intercept), as ``Model`` starts."""
    import msgpack

    keys = [f"{prefix}:{name}" for name in STATE_KEYS]
    r.delete(*keys)
    r.mset({keys[0]: 0, keys[1]: msgpack.packb([0.0] * (features + 1))})
    return keys


def train(part: int, directory: str, port: int, prefix: str, keys: list[str], iterations: int, step: float) -> Any:
    """One Lithops function: crucial's thread body (``examples.logreg.train``) with the model in Redis."""
    import msgpack
    import redis

    from crucial.examples import _logreg_data as data
    from crucial.examples._blas import one_blas_thread
    from crucial.examples._timing import Stopwatch
    from crucial.examples.logreg import gradient

    r = redis.Redis(host="127.0.0.1", port=port)
    contribute = r.register_script(LUA_CONTRIBUTE)
    barrier = RedisBarrier(r, f"{prefix}:barrier", PARTIES)
    x, y = data.load_partition(directory, part)
    contribute(keys=keys, args=[-1, part, b"", 0, 0, 0, PARTIES, step])  # loads the script (a no-op call): not timed
    barrier.wait()  # every partition is loaded: the iterations start together
    watch = Stopwatch()
    with one_blas_thread():
        iteration, weights = state(r, keys)
        while iteration < iterations:
            with watch.phase("compute"):
                grad, loss, correct = gradient(x, y, weights)
            with watch.phase("shared state"):
                contribute(keys=keys, args=[iteration, part, msgpack.packb(grad.tolist()), loss, correct, len(y), PARTIES, step])
            with watch.phase("sync"):
                barrier.wait()
            with watch.phase("shared state"):
                iteration, weights = state(r, keys)
            watch.lap()
    return watch


def lithops_run(r: Any, port: int, directory: str, features: int, iterations: int, step: float) -> dict[str, Any]:
    """One run: a Lithops executor made and stopped around it (as ``invoke.py``), its weights and access times."""
    from lithops import FunctionExecutor

    config = {
        "lithops": {"backend": "localhost", "storage": "localhost", "data_cleaner": False},
        "localhost": {"runtime": sys.executable, "worker_processes": PARTIES},
    }
    prefix = f"bench-logreg-{uuid.uuid4().hex[:8]}"
    keys = set_up(r, prefix, features)
    with contextlib.redirect_stdout(sys.stderr):  # Lithops prints; stdout's last line is ours
        fexec = FunctionExecutor(config=config, log_level="WARNING")
        try:
            futures = fexec.map(train, [(part, directory, port, prefix, keys, iterations, step) for part in range(PARTIES)])
            watches = fexec.get_result(futures)
        finally:
            fexec.__exit__(None, None, None)
    done, weights = state(r, keys)
    r.delete(*keys, *r.keys(f"{prefix}:barrier:*"))
    times = access_times(watches)
    return {**times, "wall": times["iterating"], "weights": weights, "iterations": done}
