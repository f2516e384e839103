"""Views and membership agreed in etcd: a DSO node's blocking client of etcd's /v3 JSON gateway.

crucial implements no consensus of its own.  etcd (one member for tests,
three in production) holds, under ``/crucial/<cluster>/``::

    view                 JSON view; changed only by compare-and-swap on its mod_revision
    members/<node_id>    JSON info, attached to the node's lease: etcd deletes it ttl s after
                         the node stops refreshing (the failure detector)
    <name>               other small metadata (get / put / cas / delete)

Inside a node::

    worker threads ── read_view, propose_view, members, get, put, cas ──► etcd  (each bounded by timeout)
    keep-alive thread ── lease keepalive every ttl/3 ──────────────────► etcd
                         lease_valid_until = send time of the last good refresh + ttl
    watch thread     ◄── events on the prefix, resumed from the last revision ── etcd

A node must not call these from its event loop: every call blocks (at most
``timeout`` seconds).  Every etcd failure is a :class:`CoordinatorError`
naming the endpoints and what was attempted.

The HTTP side is etcd3gw's (``Etcd3Client`` for URLs, ``post`` with its
error mapping, ``transaction``, ``put``, ``delete``, ``Lease``).  Two
things go through its session directly because etcd3gw lacks them: ranges
that return the store revision (``/kv/range`` through ``post``), and the
watch stream -- etcd3gw's ``Watcher`` swallows errors, ignores compaction
and cannot time out, which a failure detector cannot accept.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, TypeVar
from urllib.parse import urlsplit

from ..exceptions import ConfigError, CoordinatorError
from ._watch import PrefixWatch, WatchCallback, b64, prefix_end

try:
    import requests
    import requests.adapters
    import urllib3.exceptions
    from etcd3gw.client import Etcd3Client
    from etcd3gw.exceptions import ConnectionFailedError, ConnectionTimeoutError, Etcd3Exception, InternalServerError
    from etcd3gw.lease import Lease
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ConfigError(f"replicated clusters need etcd3gw: pip install 'crucial[cluster]' ({exc})") from exc

__all__ = ["Coordinator", "Endpoint", "parse_endpoints"]

log = logging.getLogger(__name__)
T = TypeVar("T")

_TRANSIENT = (ConnectionFailedError, ConnectionTimeoutError, InternalServerError)


class Endpoint(NamedTuple):
    url: str
    protocol: str
    host: str
    port: int


def parse_endpoints(endpoints: str | Sequence[str]) -> list[Endpoint]:
    """``"http://h:2379,h2:2379"`` or a list of URLs; a URL without a scheme is http."""
    items = endpoints.split(",") if isinstance(endpoints, str) else list(endpoints)
    out = []
    for item in (i.strip() for i in items):
        url = item if "://" in item else "http://" + item
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise ConfigError(f"bad etcd endpoint {item!r}: {exc}") from exc
        if parts.scheme not in ("http", "https") or not parts.hostname or port is None or parts.path not in ("", "/"):
            raise ConfigError(f"bad etcd endpoint {item!r}: expected http://HOST:PORT")
        out.append(Endpoint(f"{parts.scheme}://{parts.netloc}", parts.scheme, parts.hostname, port))
    if not out:
        raise ConfigError("no etcd endpoint given")
    return out


def _not_sent(exc: BaseException) -> bool:
    """True when the request never reached etcd (connection refused / connect timeout): safe to send elsewhere."""
    cause = exc.__context__
    if isinstance(cause, requests.exceptions.ConnectTimeout):
        return True
    if isinstance(cause, requests.exceptions.ConnectionError) and cause.args:
        reason = getattr(cause.args[0], "reason", cause.args[0])
        return isinstance(reason, urllib3.exceptions.ConnectTimeoutError)  # NewConnectionError is one
    return False


def _describe(exc: BaseException) -> str:
    """etcd's error text, or the transport's innermost reason without urllib3's object reprs."""
    cause = exc.__context__
    if isinstance(cause, requests.RequestException) and cause.args:
        detail = str(getattr(cause.args[0], "reason", cause.args[0]))
    else:
        detail = getattr(exc, "detail_text", None) or str(exc) or type(exc).__name__
    return re.sub(r"<[^>]*>: ", "", " ".join(str(detail).split()))[:300]


class Coordinator:
    """``Coordinator(["http://127.0.0.1:2379"], "mycluster", ttl=3.0, timeout=5.0)`` -- thread-safe, blocking.

    ``ttl`` is the failure timeout: a node that stops refreshing (crashed,
    paused, cut off) disappears from :meth:`members` about ``ttl`` seconds
    later.  etcd counts lease TTLs in whole seconds (rounded up here) and
    grants no less than its own minimum (1 s with :class:`EtcdProcess`'s
    defaults, 2 s with etcd's).

    Callbacks, run on this object's threads (never while a lock is held):
    ``on_lease_lost()`` when a refresh finds the lease gone (it is re-granted
    and the member key put back right after); ``on_unavailable(error)`` when
    the keep-alive or the watch starts failing to reach etcd, and
    ``on_available()`` when both work again.
    """

    def __init__(
        self,
        endpoints: str | Sequence[str],
        cluster: str = "default",
        *,
        ttl: float = 3.0,
        timeout: float = 5.0,
        on_lease_lost: Callable[[], object] | None = None,
        on_unavailable: Callable[[CoordinatorError], object] | None = None,
        on_available: Callable[[], object] | None = None,
    ) -> None:
        self.endpoints = parse_endpoints(endpoints)
        if not cluster or not all(c.isalnum() or c in "._-" for c in cluster) or not cluster.isascii():
            raise ConfigError(f"bad cluster name {cluster!r}: use letters, digits, '.', '_' and '-'")
        if not ttl >= 1:
            raise ConfigError(f"ttl must be at least 1 second (etcd leases count whole seconds), not {ttl}")
        if not timeout > 0:
            raise ConfigError(f"timeout must be a positive number of seconds, not {timeout}")
        self.cluster = cluster
        self.ttl = float(ttl)
        self.timeout = float(timeout)
        self.prefix = f"/crucial/{cluster}/".encode()
        self.on_lease_lost = on_lease_lost
        self.on_unavailable = on_unavailable
        self.on_available = on_available
        self._session = requests.Session()
        self._session.trust_env = False  # etcd traffic never goes through the user's HTTP proxy
        for scheme in ("http://", "https://"):  # room for many worker threads at once, plus the watch streams
            self._session.mount(scheme, requests.adapters.HTTPAdapter(pool_maxsize=32))
        self._current = 0  # index of the endpoint that answered last
        # a hung member must not eat the whole budget: each attempt gets a share (at least 0.5 s)
        self._attempt_timeout = max(0.5, self.timeout / len(self.endpoints))
        self._lock = threading.Lock()
        self._closed = False
        self._outages: dict[str, CoordinatorError] = {}
        # membership (guarded by _lock)
        self._node_id: str | None = None
        self._info: bytes = b""
        self._lease_id = 0
        self._valid_until = float("-inf")
        self._keepalive: threading.Thread | None = None
        self._keepalive_stop = threading.Event()
        self._watches: list[PrefixWatch] = []

    # ------------------------------------------------------------------ requests

    def _where(self) -> str:
        return ", ".join(e.url for e in self.endpoints)

    def _call(self, what: str, op: Callable[[Etcd3Client], T], *, idempotent: bool, deadline: float | None = None) -> T:
        """Run ``op`` against the endpoints in turn until it succeeds or the deadline passes.

        Reads and idempotent requests are retried after any transport
        error; a write only when it was never sent (connection refused),
        since etcd may have applied one whose answer was lost.
        """
        if self._closed:
            raise CoordinatorError(f"cannot {what}: the coordinator is closed")
        deadline = time.monotonic() + self.timeout if deadline is None else deadline
        errors: dict[str, str] = {}
        pause = 0.02
        while True:
            first = self._current
            for i in range(len(self.endpoints)):
                index = (first + i) % len(self.endpoints)
                ep = self.endpoints[index]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise CoordinatorError(
                        f"cannot {what}: no answer from etcd at {self._where()} in time ({self._errors(errors)})"
                    )
                attempt = min(remaining, self._attempt_timeout)
                client = Etcd3Client(ep.host, ep.port, ep.protocol, timeout=attempt, api_path="/v3/", session=self._session)
                try:
                    result = op(client)
                except _TRANSIENT as exc:
                    errors[ep.url] = _describe(exc)
                    if self._current == index:  # the next call starts with another member
                        self._current = (index + 1) % len(self.endpoints)
                    if not (idempotent or _not_sent(exc)):
                        raise CoordinatorError(
                            f"cannot {what}: etcd at {ep.url} failed, the request may or may not have been applied: "
                            + errors[ep.url]
                        ) from exc
                    continue
                except Etcd3Exception as exc:  # etcd refused the request itself: the same everywhere
                    raise CoordinatorError(f"cannot {what}: etcd at {ep.url} refused it: {_describe(exc)}") from exc
                except (requests.RequestException, ValueError) as exc:  # not etcd's gateway, or a broken answer
                    raise CoordinatorError(f"cannot {what}: bad answer from {ep.url} (is it etcd?): {exc}") from exc
                self._current = index
                return result
            time.sleep(max(0.0, min(pause, deadline - time.monotonic())))
            pause = min(pause * 2, 0.5)

    @staticmethod
    def _errors(errors: dict[str, str]) -> str:
        return "; ".join(f"{url}: {text}" for url, text in errors.items()) or "no attempt"

    def _key(self, name: str) -> bytes:
        if not isinstance(name, str) or not name:
            raise ValueError(f"a key name must be a non-empty str, not {name!r}")
        return self.prefix + name.encode()

    def _range(self, key: bytes, end: bytes | None, what: str, **options: Any) -> tuple[dict[str, tuple[bytes, int]], int]:
        """{name: (value, mod_revision)} and the store revision of the read (linearizable)."""
        payload: dict[str, Any] = {"key": b64(key), **options}
        if end is not None:
            payload["range_end"] = b64(end)
        result = self._call(what, lambda c: c.post(c.get_url("/kv/range"), json=payload), idempotent=True)
        items = {}
        for kv in result.get("kvs", ()):
            name = base64.b64decode(kv["key"])[len(self.prefix) :].decode(errors="replace")
            items[name] = (base64.b64decode(kv.get("value", "")), int(kv.get("mod_revision", 0)))
        return items, int(result["header"]["revision"])

    # ------------------------------------------------------------------ key-value

    def read(self, name: str) -> tuple[bytes | None, int]:
        """The value of ``name`` and its mod_revision (``(None, 0)`` if absent): what :meth:`cas` compares."""
        items, _ = self._range(self._key(name), None, f"read {name!r}")
        value, rev = items.get(name, (None, 0))
        return value, rev

    def get(self, name: str) -> bytes | None:
        return self.read(name)[0]

    def get_prefix(self, prefix: str) -> dict[str, bytes]:
        """Every key whose name starts with ``prefix`` (e.g. ``"anchors/"``): name -> value."""
        key = self._key(prefix)
        items, _ = self._range(key, prefix_end(key), f"list {prefix!r}")
        return {name: value for name, (value, _) in items.items()}

    def put(self, name: str, value: bytes) -> None:
        key = self._key(name)
        self._call(f"put {name!r}", lambda c: c.put(key, bytes(value)), idempotent=False)

    def delete(self, name: str) -> bool:
        """Delete ``name``; False if it did not exist."""
        key = self._key(name)
        return self._call(f"delete {name!r}", lambda c: c.delete(key), idempotent=False)

    def cas(self, name: str, value: bytes, expected_revision: int, absent: Sequence[str] = ()) -> bool:
        """Put ``value`` only if ``name``'s mod_revision is still ``expected_revision`` (0: only if absent),
        and every key named in ``absent`` does not exist.

        One etcd transaction; False when another writer changed the key
        first.  A ``CoordinatorError`` whose message says "may or may not
        have been applied" means exactly that: :meth:`read` tells.
        """
        if not isinstance(expected_revision, int) or expected_revision < 0:
            raise ValueError(f"expected_revision must be an int >= 0, not {expected_revision!r}")
        key = b64(self._key(name))
        gone = [{"key": b64(self._key(a)), "result": "EQUAL", "target": "CREATE", "create_revision": 0} for a in absent]
        txn = {
            "compare": [{"key": key, "result": "EQUAL", "target": "MOD", "mod_revision": expected_revision}, *gone],
            "success": [{"request_put": {"key": key, "value": b64(bytes(value))}}],
            "failure": [],
        }
        result = self._call(
            f"compare-and-swap {name!r} at revision {expected_revision}", lambda c: c.transaction(txn), idempotent=False
        )
        return bool(result.get("succeeded", False))

    # ------------------------------------------------------------------ views and members

    def read_view(self) -> tuple[dict[str, Any] | None, int]:
        """The current view and its mod_revision (``(None, 0)`` before the first view)."""
        value, rev = self.read("view")
        if value is None:
            return None, 0
        try:
            view = json.loads(value)
        except ValueError as exc:
            raise CoordinatorError(f"the view in etcd at {self._where()} is not JSON: {value[:100]!r}") from exc
        return view, rev

    def propose_view(self, view: dict[str, Any], expected_revision: int, absent: Sequence[str] = ()) -> bool:
        """Install ``view`` if the view's mod_revision is still ``expected_revision`` (0: no view yet)
        and none of the member keys of the nodes in ``absent`` exists.

        False when another proposer won the race, or a node assumed gone
        came back: re-read with :meth:`read_view` and decide again.  Checking
        the member keys in the same transaction is what lets a node whose
        lease ran out trust a view it reads after re-joining: no view that
        leaves it out can be installed once its key is back.
        """
        value = json.dumps(view, sort_keys=True, separators=(",", ":")).encode()
        return self.cas("view", value, expected_revision, [f"members/{a}" for a in absent])

    def members(self) -> dict[str, dict[str, Any]]:
        """The live members: node_id -> the info it joined with."""
        key = self._key("members/")
        items, _ = self._range(key, prefix_end(key), "list the members")
        out = {}
        for name, (value, _) in items.items():
            try:
                out[name[len("members/") :]] = json.loads(value)
            except ValueError:
                log.warning("member key %r in etcd holds no JSON: %r", name, value[:100])
        return out

    @property
    def node_id(self) -> str | None:
        return self._node_id

    @property
    def lease_valid_until(self) -> float:
        """A ``time.monotonic()`` value before which this node is provably still a member.

        The send time of the last successful refresh plus ``ttl``: etcd
        received that refresh later and keeps the lease at least ``ttl`` from
        then, so no other node can see this one gone before this instant.
        ``-inf`` when not joined.  A node serves only while ``monotonic() <
        lease_valid_until`` (fencing: a paused or cut-off node stops by itself).
        """
        return self._valid_until

    @property
    def available(self) -> bool:
        """False while the keep-alive or the watch cannot reach etcd."""
        return not self._outages

    def join(self, node_id: str, info: dict[str, Any], *, on_lease_lost: Callable[[], object] | None = None) -> None:
        """Become a member: grant a lease, put ``members/<node_id>`` on it, keep it alive from a thread.

        Joining again with the same ``node_id`` updates ``info``.
        """
        if not node_id or "/" in node_id:
            raise ValueError(f"node_id must be a non-empty str without '/', not {node_id!r}")
        value = json.dumps(info, sort_keys=True, separators=(",", ":")).encode()
        with self._lock:
            if self._node_id not in (None, node_id):
                raise ValueError(f"this coordinator has joined as {self._node_id!r}; leave() before joining as {node_id!r}")
            if on_lease_lost is not None:
                self.on_lease_lost = on_lease_lost
            self._node_id, self._info = node_id, value
            lease_id = self._lease_id
        if lease_id and self._put_member(lease_id, node_id, value, time.monotonic() + self.timeout):
            return
        try:
            self._grant_and_put(time.monotonic() + self.timeout)
        except CoordinatorError:
            with self._lock:
                if not self._lease_id:
                    self._node_id = None
            raise
        with self._lock:
            if self._keepalive is None:
                self._keepalive_stop.clear()
                self._keepalive = threading.Thread(
                    target=self._keepalive_loop, name=f"crucial-etcd-keepalive-{node_id}", daemon=True
                )
                self._keepalive.start()

    def _grant_and_put(self, deadline: float) -> None:
        with self._lock:
            node_id, value = self._node_id, self._info
        if node_id is None:
            return
        sent = time.monotonic()
        grant = self._call(
            f"grant a {self.ttl:g} s lease",
            lambda c: c.post(c.get_url("/lease/grant"), json={"TTL": math.ceil(self.ttl), "ID": 0}),
            idempotent=True,
            deadline=deadline,
        )
        lease_id, granted = int(grant["ID"]), int(grant.get("TTL", 0))
        if not self._put_member(lease_id, node_id, value, deadline):
            raise CoordinatorError(f"cannot join as {node_id!r}: etcd at {self._where()} dropped the new lease at once")
        with self._lock:
            left = self._node_id != node_id  # leave() ran meanwhile: this lease must not keep the key
            if not left:
                self._lease_id = lease_id
                self._valid_until = sent + min(self.ttl, granted)
        if left:
            self._call("revoke the lease", lambda c: Lease(lease_id, c).revoke(), idempotent=True, deadline=deadline)

    def _put_member(self, lease_id: int, node_id: str, value: bytes, deadline: float) -> bool:
        """Put the member key on the lease; False if etcd no longer knows the lease."""
        key = self._key("members/" + node_id)

        def put(c: Etcd3Client) -> bool:
            try:
                return c.put(key, value, lease=Lease(lease_id, c))
            except Etcd3Exception as exc:
                if "lease not found" in _describe(exc):
                    return False
                raise

        return self._call(f"put member {node_id!r}", put, idempotent=True, deadline=deadline)

    def _keepalive_loop(self) -> None:
        """Refresh every ttl/3; on failure retry with backoff; on a lost lease tell the node and rejoin."""
        period = self.ttl / 3
        delay = period
        failures = 0
        while not self._keepalive_stop.wait(delay):
            sent = time.monotonic()
            try:
                self._refresh(sent, period)
            except CoordinatorError as exc:
                if self._keepalive_stop.is_set() or self._closed:
                    return
                self._outage("keep-alive", exc)
                failures += 1
                delay = min(0.05 * 2 ** min(failures - 1, 10), period)
                continue
            failures = 0
            self._outage("keep-alive", None)
            delay = max(0.0, sent + period - time.monotonic())

    def _refresh(self, sent: float, period: float) -> None:
        """One refresh (or a rejoin).  It may take until the lease can no longer be proven valid, at most ``timeout``."""
        with self._lock:
            lease_id, valid_until = self._lease_id, self._valid_until
        deadline = min(max(valid_until, sent + period), sent + self.timeout)
        if lease_id:
            remaining = self._call(
                "refresh the lease", lambda c: Lease(lease_id, c).refresh(), idempotent=True, deadline=deadline
            )
            if remaining > 0:
                with self._lock:
                    if self._lease_id == lease_id and self._node_id is not None:
                        self._valid_until = max(self._valid_until, sent + min(self.ttl, remaining))
                return
            self._lease_lost(sent)
        self._grant_and_put(time.monotonic() + self.timeout)

    def _lease_lost(self, sent: float) -> None:
        with self._lock:
            self._lease_id = 0
            self._valid_until = min(self._valid_until, sent)
        log.warning("the etcd lease of node %r expired (paused or cut off past ttl=%g s): rejoining", self._node_id, self.ttl)
        self._notify(self.on_lease_lost)

    def leave(self) -> None:
        """Stop refreshing, delete the member key and revoke the lease: others see this node gone at once."""
        deadline = time.monotonic() + self.timeout
        with self._lock:
            node_id, self._node_id, self._valid_until = self._node_id, None, float("-inf")
        self._stop_keepalive(deadline)
        with self._lock:
            lease_id, self._lease_id, self._valid_until = self._lease_id, 0, float("-inf")
        if node_id is None:
            return
        key = self._key("members/" + node_id)
        self._call(f"delete member {node_id!r}", lambda c: c.delete(key), idempotent=False, deadline=deadline)
        if lease_id:
            self._call("revoke the lease", lambda c: Lease(lease_id, c).revoke(), idempotent=True, deadline=deadline)

    def _stop_keepalive(self, deadline: float) -> None:
        """Stop the keep-alive thread; wait for it (an in-flight refresh ends by its own deadline) until ``deadline``."""
        with self._lock:
            thread, self._keepalive = self._keepalive, None
        self._keepalive_stop.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))

    # ------------------------------------------------------------------ watch

    def watch(self, callback: WatchCallback) -> None:
        """Deliver every key under the prefix now, then every change: ``callback(name, value, revision)``.

        Runs on a thread of its own, in revision order (``value`` is None
        for a delete).  After a dropped stream it resumes from the last
        revision delivered; if etcd compacted that history meanwhile it
        re-lists and delivers the difference (deleted keys at the listing's
        revision).  While etcd cannot be reached, ``on_unavailable`` is
        called.  The first listing happens here: an unreachable etcd raises.
        """
        w = PrefixWatch(self, callback)
        with self._lock:
            if self._closed:
                raise CoordinatorError("cannot watch: the coordinator is closed")
            self._watches.append(w)
        w.start()

    def _outage(self, source: str, error: CoordinatorError | None) -> None:
        with self._lock:
            was = bool(self._outages)
            if error is None:
                self._outages.pop(source, None)
            else:
                self._outages.setdefault(source, error)
            now = bool(self._outages)
        if error is not None and not was:
            log.warning("etcd unavailable (%s): %s", source, error)
            self._notify(self.on_unavailable, error)
        elif was and not now:
            log.info("etcd available again")
            self._notify(self.on_available)

    @staticmethod
    def _notify(callback: Callable[..., object] | None, *args: Any) -> None:
        if callback is None:
            return
        try:
            callback(*args)
        except Exception:
            log.exception("coordinator callback %r failed", callback)

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Stop the threads; idempotent.  The member key stays until its lease expires (use leave() first to go at once)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            watches, self._watches = self._watches, []
        deadline = time.monotonic() + self.timeout  # the threads are daemons: never wait for them longer
        self._stop_keepalive(deadline)
        for w in watches:
            w.stop(deadline)
        self._session.close()

    def __enter__(self) -> Coordinator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Coordinator {self.cluster!r} at {self._where()} node={self._node_id!r}>"
