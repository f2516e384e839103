"""The ``DSOCluster`` operator (kopf): keeps a DSO cluster's Kubernetes objects as its resource says.

Run it with ``kopf run -m crucial.k8s.operator --all-namespaces`` (the image of
``deploy/k8s/operator.yaml`` does).  On every create/update/resume of a
``DSOCluster`` it applies the Secret, etcd, Service, PodDisruptionBudget and
StatefulSet built by :mod:`crucial.k8s.manifests`, owned by the resource
(deleting the resource deletes them; the data volumes stay).

Scaling drives membership, never just the pod count::

    replicas 3 -> 5   StatefulSet 5: pods dso-3, dso-4 start with --join, one at a time
    replicas 5 -> 3   crucial cluster remove dso-4...  (exec in dso-0; returns once its data moved)
                      StatefulSet 4
                      crucial cluster remove dso-3...
                      StatefulSet 3                    (a pod goes only after its drain)

A drain that fails leaves the StatefulSet as it is and retries later
(``kopf.TemporaryError``): a node is never deleted with data only it holds.

The Kubernetes calls go through two small interfaces, :class:`Api` and
:class:`Drainer`, so the handlers are tested against fakes (no API server
runs in the tests); :class:`KubeApi` and :class:`ExecDrainer` are the real ones.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from typing import Any, Protocol

import kopf

from . import manifests as M

__all__ = [
    "Api",
    "Drainer",
    "ExecDrainer",
    "KubeApi",
    "Reconciler",
    "make_api",
    "make_drainer",
    "reconcile_handler",
    "status_timer",
]

log = logging.getLogger(__name__)


class Api(Protocol):
    """What the operator needs of the Kubernetes API."""

    def get(self, api_version: str, kind: str, name: str, namespace: str) -> dict[str, Any] | None: ...

    def apply(self, obj: dict[str, Any]) -> None:
        """Create the object, or bring the existing one to this state (server-side apply)."""

    def scale(self, name: str, namespace: str, replicas: int) -> None:
        """Set a StatefulSet's replicas."""


class Drainer(Protocol):
    def remove(self, namespace: str, pod: str, node: str, etcd: str) -> None:
        """Run ``crucial cluster remove NODE`` in ``pod``; return once the node left the view (raise if not)."""


class Reconciler:
    """One pass of bringing the cluster to its spec: pure control flow over :class:`Api` and :class:`Drainer`."""

    def __init__(self, api: Api, drainer: Drainer, adopt: Callable[[dict[str, Any]], Any] = lambda obj: None) -> None:
        self.api = api
        self.drainer = drainer
        self.adopt = adopt

    def reconcile(self, name: str, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
        s = M.resolve(spec)  # ValueError: the handler makes it a permanent error
        token = None
        if not s.get("tokenSecret") and self.api.get("v1", "Secret", M.token_secret_name(name, s), namespace) is None:
            token = secrets.token_hex(32)  # made once; an existing token is never rotated behind the users' back
        wanted = M.all_manifests(name, namespace, s, token)
        current = self.api.get("apps/v1", "StatefulSet", name, namespace)
        have = int(current["spec"]["replicas"]) if current else 0
        want = s["replicas"]
        for obj in wanted:
            if obj["kind"] == "StatefulSet" and obj["metadata"]["name"] == name:
                continue  # after the drains
            self.adopt(obj)
            self.api.apply(obj)
        etcd = M.etcd_url(name, namespace, s)
        for ordinal in range(have - 1, want - 1, -1):  # scale-down: highest ordinal first, each drained before it goes
            node = M.node_address(name, namespace, ordinal, s["port"])
            log.info("draining %s before its pod goes", node)
            self.drainer.remove(namespace, M.pod_name(name, 0), node, etcd)
            self.api.scale(name, namespace, ordinal)
        sts = next(o for o in wanted if o["kind"] == "StatefulSet" and o["metadata"]["name"] == name)
        self.adopt(sts)
        self.api.apply(sts)  # scale-up, or any other change (image, resources, probes)
        return {"replicas": want, "phase": "Scaling" if want != have else "Running"}


# -- the real API -------------------------------------------------------------------


class KubeApi:
    """:class:`Api` on the ``kubernetes`` client (dynamic client, server-side apply)."""

    FIELD_MANAGER = "crucial-operator"

    def __init__(self) -> None:
        import kubernetes

        try:
            kubernetes.config.load_incluster_config()
        except kubernetes.config.ConfigException:
            kubernetes.config.load_kube_config()
        self._client = kubernetes.client.ApiClient()
        self._dynamic = kubernetes.dynamic.DynamicClient(self._client)
        self._errors = kubernetes.client.exceptions.ApiException

    def get(self, api_version: str, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        resource = self._dynamic.resources.get(api_version=api_version, kind=kind)
        try:
            return dict(resource.get(name=name, namespace=namespace).to_dict())
        except self._errors as exc:
            if exc.status == 404:
                return None
            raise

    def apply(self, obj: dict[str, Any]) -> None:
        resource = self._dynamic.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
        meta = obj["metadata"]
        resource.server_side_apply(
            body=obj, name=meta["name"], namespace=meta["namespace"], field_manager=self.FIELD_MANAGER, force_conflicts=True
        )

    def scale(self, name: str, namespace: str, replicas: int) -> None:
        import kubernetes

        kubernetes.client.AppsV1Api(self._client).patch_namespaced_stateful_set_scale(
            name, namespace, {"spec": {"replicas": replicas}}
        )


class ExecDrainer:
    """:class:`Drainer` by ``kubectl exec``: the pod has crucial, the token and the etcd address already."""

    def __init__(self, timeout: float = 600.0) -> None:
        self.timeout = timeout

    def remove(self, namespace: str, pod: str, node: str, etcd: str) -> None:
        import kubernetes
        from kubernetes.stream import stream

        core = kubernetes.client.CoreV1Api()
        command = ["crucial", "cluster", "remove", "--dso", node, node]  # the node itself answers; the pod has the token
        resp = stream(
            core.connect_get_namespaced_pod_exec,
            pod,
            namespace,
            container="node",
            command=command,
            stderr=True,
            stdin=False,
            stdout=True,
            tty=False,
            _preload_content=False,
        )
        resp.run_forever(timeout=self.timeout)
        code = resp.returncode
        output = (resp.read_stdout() or "") + (resp.read_stderr() or "")
        resp.close()
        if code != 0:
            raise kopf.TemporaryError(f"`{' '.join(command)}` in {pod} failed (exit {code}): {output[-500:]}", delay=15)


def make_api() -> Api:
    return KubeApi()


def make_drainer() -> Drainer:
    return ExecDrainer()


# -- the handlers ---------------------------------------------------------------------


# (kopf's typing wants every keyword in the signature; the handlers name only those they use)
@kopf.on.resume(M.GROUP, M.VERSION, M.PLURAL)  # type: ignore[arg-type]
@kopf.on.create(M.GROUP, M.VERSION, M.PLURAL)  # type: ignore[arg-type]
@kopf.on.update(M.GROUP, M.VERSION, M.PLURAL)  # type: ignore[arg-type]
def reconcile_handler(
    spec: dict[str, Any], name: str, namespace: str, body: Any, patch: Any, logger: logging.Logger, **_: Any
) -> None:
    """Create, update or resume a DSOCluster: apply its objects, drain before scaling down."""
    reconciler = Reconciler(make_api(), make_drainer(), adopt=lambda obj: kopf.adopt(obj, owner=body))
    try:
        status = reconciler.reconcile(name, namespace, dict(spec))
    except ValueError as exc:  # a bad spec does not get better by retrying
        raise kopf.PermanentError(str(exc)) from exc
    for key, value in status.items():
        patch.status[key] = value
    logger.info("DSOCluster %s/%s: %s", namespace, name, status)


@kopf.timer(M.GROUP, M.VERSION, M.PLURAL, interval=30, idle=10)  # type: ignore[arg-type]
def status_timer(name: str, namespace: str, patch: Any, **_: Any) -> None:
    """Copy the StatefulSet's ready pods to the resource's status (``kubectl get dso`` shows them)."""
    sts = make_api().get("apps/v1", "StatefulSet", name, namespace)
    if sts is not None:
        patch.status["readyReplicas"] = int((sts.get("status") or {}).get("readyReplicas") or 0)
