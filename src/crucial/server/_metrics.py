"""A node's metrics: Prometheus ``/metrics`` and ``/healthz`` over HTTP (``--metrics-port``).

::

    event loop (per call, only when metrics are on)           HTTP thread (per scrape)
    Node.handle_call ──► NodeMetrics.call: start time,        GET /metrics ──► collect(): plain counters
                         hot-key sample, fold                                   read and turned into
    _Metered.send (the reply) ──► latency (pending),                            metric families; the
                                   result, bytes out                            object table copied
    _Metered.data_received ──► bytes in                        GET /healthz ──► 200 / 503 + one line

Per call the node only bumps plain Python counters (no prometheus-client
objects, no lock): the counters become metric families when a scrape asks
(a custom collector).  An OK reply -- nearly every call -- only appends its
latency to its series' ``pending`` list; a list is folded into the buckets
in a batch (sorted in C, then one bisection per bound: a third of the cost
of bucketing each reply) once a hot-key sample finds it long, and a scrape
counts in what is still pending.  With metrics off the node has no
:class:`NodeMetrics`, uses the plain connection class, and its call path
does one ``is None`` test.  Reads from the HTTP thread see each counter
whole (the GIL), and copy the node's dicts before walking them; a fold and
a scrape's copy of the series take one lock (a fold comes every
:data:`FOLD` replies), so no scrape sees a latency both pending and folded,
or neither.

Object keys never become labels (unbounded cardinality); the hottest keys
are in ``crucial status`` (:mod:`._hotkeys`), through the node's INFO.
"""

from __future__ import annotations

import bisect
import collections
import math
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from .. import protocol as P
from ..exceptions import ConfigError
from ._hotkeys import HotKeys

if TYPE_CHECKING:
    from ._node import Node

__all__ = ["BUCKETS", "NodeMetrics", "health"]

#: latency histogram bounds, seconds: a loopback call takes ~30 us; a barrier may wait minutes
BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0)
#: reply kinds, in the order of ``P.Kind`` from OK: index = kind - OK
RESULTS = ("ok", "error", "failed", "redirect", "unavailable")
#: an OK reply's latency waits in its series' ``pending`` list until the list is about this long (then it is folded)
FOLD = 256
_OK = P.Kind.OK
_ERROR = P.Kind.ERROR
_OUTPUT = P.Kind.OUTPUT
_HSIZE = P.HEADER.size
_perf_counter = time.perf_counter


class _Series:
    """Counters of one (type, method): latency buckets (OK and ERROR replies), their sum, and replies by result.

    The latencies of OK replies not yet folded are in ``pending`` (each is
    also one "ok" result): a scrape counts them in (:func:`_counted`).
    """

    __slots__ = ("buckets", "pending", "results", "sum")

    def __init__(self) -> None:
        self.buckets = [0] * (len(BUCKETS) + 1)
        self.sum = 0.0
        self.results = [0] * len(RESULTS)
        self.pending: list[float] = []

    def fold(self) -> None:
        """Move the pending latencies into the buckets, the sum and the "ok" count (hold the metrics' lock)."""
        pending = self.pending
        if pending:
            _add(self.buckets, pending)
            self.sum += sum(pending)
            self.results[0] += len(pending)
            pending.clear()

    def copy(self) -> tuple[list[int], float, list[int], list[float]]:
        """(buckets, sum, results, pending), copied (hold the metrics' lock): see :func:`_counted`."""
        return list(self.buckets), self.sum, list(self.results), list(self.pending)


def _counted(copy: tuple[list[int], float, list[int], list[float]]) -> tuple[list[int], float, list[int]]:
    """(buckets, sum, results) of a :meth:`_Series.copy`, its pending latencies counted in (no lock needed)."""
    buckets, total, results, pending = copy
    _add(buckets, pending)
    results[0] += len(pending)
    return buckets, total + sum(pending), results


def _add(buckets: list[int], latencies: list[float]) -> None:
    """Count ``latencies`` into the non-cumulative ``buckets``: sorted once (in C), then one bisection per bound."""
    ordered = sorted(latencies)
    below = 0
    for index, bound in enumerate(BUCKETS):
        upto = bisect.bisect_right(ordered, bound)  # those <= bound: Prometheus' "le"
        buckets[index] += upto - below
        below = upto
    buckets[-1] += len(ordered) - below


def health(node: Node) -> tuple[bool, str]:
    """Whether ``node`` serves under the current view, and why not (what ``/healthz`` answers)."""
    view = node.view
    if view is None or node.table is None:
        return False, "starting"
    if node.membership is None:
        return True, f"serving: a lone node (view {view.epoch})"
    if time.monotonic() >= node.lease_valid_until:
        return False, "cannot prove its membership lease (joining, or etcd unreachable)"
    if node.node_id not in view:
        return False, f"not a member of view {view.epoch} (joining, or removed)"
    if node.node_id in view.leaving:
        return False, f"leaving the cluster (view {view.epoch}): handing its objects over"
    if node.newest_epoch > view.epoch:
        return False, f"catching up: view {node.newest_epoch} exists, this node holds {view.epoch}"
    if not node.handoff.complete:
        return False, f"receiving the objects handed over for view {node.handoff.epoch}"
    return True, f"serving view {view.epoch} ({len(view.ids)} nodes)"


class NodeMetrics:
    """What one node counts when ``--metrics-port`` is given, and the HTTP server that shows it."""

    def __init__(self, node: Node, hot: HotKeys | None = None) -> None:
        self.node = node
        self.series: dict[tuple[str, str], _Series] = {}
        self.received = [0, 0]  # bytes in: [clients, peers]
        self.sent = [0, 0]  # bytes out: [clients, peers]
        self.hot = hot or HotKeys()
        self._skip = self.hot.skip
        self.lock = threading.Lock()  # a fold, or a scrape's copy of the series: never per call
        self.address = ""
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    # -- the per-call hooks (event-loop thread) ---------------------------------------------

    def call(self, conn: Any, req_id: int, call: P.CallRequest) -> None:
        """A call arrived on ``conn`` (a metered connection): its reply will close the measurement."""
        series = self.series.get((call.type_name, call.method))
        if series is None:
            series = self.series[(call.type_name, call.method)] = _Series()
        conn.started[req_id] = (_perf_counter(), series)
        self._skip -= 1  # HotKeys.tick, inlined: most calls are not sampled
        if self._skip <= 0:
            self.hot.take((call.type_name, call.key), _perf_counter())
            self._skip = self.hot.skip
            # the sample's turn also bounds the pending latencies: a series grows only by its own calls,
            # and about one in hot.sample of them gets here (cheaper than a length test per reply)
            if len(series.pending) >= FOLD:
                with self.lock:
                    series.fold()

    def connection_class(self, base: Any) -> type:
        """``base`` (the node's connection protocol) counting bytes and timing replies."""
        received, sent = self.received, self.sent
        base_init, base_received, base_send = base.__init__, base.data_received, base.send

        class _Metered(base):  # type: ignore[misc, valid-type]
            def __init__(self, node: Node) -> None:
                base_init(self, node)
                self.started: dict[int, tuple[float, _Series]] = {}

            def data_received(self, data: bytes) -> None:
                received[self.peer is not None] += len(data)
                base_received(self, data)

            def send(self, kind: int, req_id: int, body: bytes) -> None:
                if not self.closed:
                    sent[self.peer is not None] += _HSIZE + len(body)
                started = self.started.pop(req_id, None)
                if started is not None:
                    if kind == _OK:  # the common case: one append (folded later)
                        started[1].pending.append(_perf_counter() - started[0])
                    elif kind == _OUTPUT:  # what the call printed goes ahead of its reply: the reply ends it
                        self.started[req_id] = started
                    else:
                        _replied(started, kind)
                base_send(self, kind, req_id, body)

        return _Metered

    # -- what INFO and `crucial status` show --------------------------------------------------

    def info(self, hot_keys: int = 10) -> dict[str, Any]:
        top = self.hot.top(hot_keys, time.perf_counter())
        return {
            "address": self.address,
            "hot_keys": [{"type": h.item[0], "key": h.item[1], "calls": h.estimate, "error": h.error} for h in top],  # type: ignore[index]
            "hot_sample": self.hot.sample,
            "hot_seconds": self.hot.seconds,
        }

    # -- the HTTP server -----------------------------------------------------------------------

    def serve(self, host: str, port: int) -> str:
        """Start serving /metrics and /healthz on ``host:port`` (0: a free port); returns HOST:PORT."""
        from prometheus_client import CollectorRegistry, ProcessCollector, make_wsgi_app

        registry = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=registry)
        registry.register(_Collector(self))
        metrics_app = make_wsgi_app(registry)

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            path = environ.get("PATH_INFO", "")
            if path == "/metrics":
                return metrics_app(environ, start_response)  # type: ignore[no-any-return]
            if path == "/healthz":
                ok, reason = health(self.node)
                start_response("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "text/plain; charset=utf-8")])
                return [(reason + "\n").encode()]
            start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"not found: try /metrics or /healthz\n"]

        server_class = _Server6 if ":" in host else _Server
        try:
            self._server = make_server(host, port, app, server_class=server_class, handler_class=_QuietHandler)
        except OSError as exc:
            raise ConfigError(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}") from None
        bound = self._server.socket.getsockname()
        name = self.node.advertise or (socket.getfqdn() if host in ("0.0.0.0", "::", "") else host)
        self.address = f"{name}:{bound[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="crucial-metrics", daemon=True)
        self._thread.start()
        return self.address

    def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()


def _replied(started: tuple[float, _Series], kind: int) -> None:
    """A reply other than OK closed a measurement: ERROR counts in the latencies too, every kind in the results."""
    series = started[1]
    if kind == _ERROR:
        elapsed = _perf_counter() - started[0]
        _add(series.buckets, [elapsed])
        series.sum += elapsed
    index = kind - _OK
    if 0 <= index < len(RESULTS):
        series.results[index] += 1


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # scrapes every few seconds would flood the node's log


class _Collector:
    """Turns the node's counters into metric families when a scrape asks (HTTP thread)."""

    def __init__(self, metrics: NodeMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        m, node = self.metrics, self.metrics.node
        calls = CounterMetricFamily(
            "crucial_calls", "Calls answered, by object type, method and result", labels=["type", "method", "result"]
        )
        latency = HistogramMetricFamily(
            "crucial_call_duration_seconds",
            "Seconds from a call's arrival to its reply (OK or ERROR; waits and replication included)",
            labels=["type", "method"],
        )
        with m.lock:  # a fold between two copies would count its latencies twice, or not at all
            copies = [(name, s.copy()) for name, s in list(m.series.items())]
        for (type_name, method), copy in copies:
            counts, total, results = _counted(copy)
            for result, n in zip(RESULTS, results, strict=True):
                if n:
                    calls.add_metric([type_name, method, result], n)
            cumulative, buckets = 0, []
            for bound, n in zip((*BUCKETS, math.inf), counts, strict=True):
                cumulative += n
                buckets.append(("+Inf" if bound == math.inf else repr(bound), cumulative))
            latency.add_metric([type_name, method], buckets, total)
        yield calls
        yield latency

        role = ("client", "peer")
        received = CounterMetricFamily("crucial_received_bytes", "Bytes read from connections to this node", labels=["role"])
        sent = CounterMetricFamily("crucial_sent_bytes", "Bytes written to connections to this node", labels=["role"])
        for i in (0, 1):
            received.add_metric([role[i]], m.received[i])
            sent.add_metric([role[i]], m.sent[i])
        yield received
        yield sent

        stats = dict(node.stats)
        for name, help_ in (
            ("calls", "Calls received (refused ones included)"),
            ("errors", "Requests answered with an error"),
            ("protocol_errors", "Connections closed for breaking the protocol"),
            ("connections", "Connections accepted"),
            ("refused", "Calls refused: not served here now (view change, lease, replicas syncing)"),
        ):
            yield CounterMetricFamily(f"crucial_node_{name}", help_, value=stats.get(name, 0))

        conns = list(node.connections)
        open_ = GaugeMetricFamily("crucial_connections", "Open connections", labels=["role"])
        peers = sum(1 for c in conns if c.peer is not None)
        open_.add_metric(["client"], len(conns) - peers)
        open_.add_metric(["peer"], peers)
        yield open_
        yield GaugeMetricFamily("crucial_clients", "Distinct clients connected", value=len(node._clients))

        yield from self._objects(node)
        yield from self._cluster(node)

    def _objects(self, node: Node) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        table = node.table
        cells = list(table.cells.items()) if table is not None else []
        by_type: collections.Counter[tuple[str, str]] = collections.Counter()
        queued = waiting = pending = 0
        for (type_name, _), cell in cells:
            repl = cell.repl
            by_type[(type_name, "true" if repl is not None else "false")] += 1
            queued += len(cell.queue)
            waiting += len(cell.waiters)
            if repl is not None:
                pending += len(repl.pending)
        objects = GaugeMetricFamily("crucial_objects", "Objects held, by type and persistence", labels=["type", "persistent"])
        for (type_name, persistent), n in sorted(by_type.items()):
            objects.add_metric([type_name, persistent], n)
        yield objects
        yield GaugeMetricFamily("crucial_queued_calls", "Calls waiting for their object (another call holds it)", value=queued)
        yield GaugeMetricFamily("crucial_parked_waiters", "Calls parked in a wait (barrier, lock, condition...)", value=waiting)
        yield GaugeMetricFamily(
            "crucial_replication_pending_calls",
            "Calls run here whose replies wait for their backups' acknowledgements",
            value=pending,
        )

    def _cluster(self, node: Node) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        backlog = GaugeMetricFamily(
            "crucial_replication_peer_backlog", "Requests sent to a peer node and not yet answered", labels=["peer"]
        )
        for peer_id, link in list(node.repl.links.items()):
            backlog.add_metric([peer_id], link.backlog)
        yield backlog
        for name, n in list(node.repl.stats.items()):
            yield CounterMetricFamily(f"crucial_replication_{name}", f"Replication: {name.replace('_', ' ')}", value=n)
        for name, n in list(node.handoff.stats.items()):
            yield CounterMetricFamily(f"crucial_handoff_{name}", f"Hand-over: objects {name.replace('_', ' ')}", value=n)
        view = node.view
        yield GaugeMetricFamily("crucial_view_epoch", "Epoch of the view this node holds", value=view.epoch if view else 0)
        yield GaugeMetricFamily("crucial_view_members", "Members of that view", value=len(view.ids) if view else 0)
        yield GaugeMetricFamily("crucial_newest_epoch", "The highest epoch this node heard of", value=node.newest_epoch)
        yield GaugeMetricFamily(
            "crucial_handoff_complete", "1 when the hand-over of the current view is done here", value=int(node.handoff.complete)
        )
        yield GaugeMetricFamily(
            "crucial_retired_objects", "Copies kept until their new primary is ready", value=len(node.handoff.retired)
        )
        remaining = node.lease_valid_until - time.monotonic()
        yield GaugeMetricFamily(
            "crucial_lease_remaining_seconds",
            "Seconds this node can still prove its membership (+Inf: a lone node)",
            value=remaining,
        )
        ok, _ = health(node)
        yield GaugeMetricFamily("crucial_serving", "1 when /healthz answers 200", value=int(ok))
        info = GaugeMetricFamily("crucial_node", "This node (value 1)", labels=["node_id", "address"])
        info.add_metric([node.node_id, node.address], 1)
        yield info
