"""The DSOCluster operator's handlers, against a fake Kubernetes API.

No API server runs on this machine, so the Kubernetes side is a fake of the
two small interfaces the operator uses (``Api``: get/apply/scale; ``Drainer``:
``crucial cluster remove`` in a pod), recording every call in one log so the
order — drain, then scale — is what the tests assert.  Everything the fake is
asked to apply is also validated against the Kubernetes schemas.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import pytest

kopf = pytest.importorskip("kopf", reason="the operator needs crucial[k8s]")
kv = pytest.importorskip("kubernetes_validate")

from crucial.k8s import manifests as M  # noqa: E402
from crucial.k8s import operator as op  # noqa: E402

NS = "team"


class FakeApi:
    def __init__(self, log: list[tuple[Any, ...]]) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.log = log

    def get(self, api_version: str, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        obj = self.objects.get((kind, name, namespace))
        return copy.deepcopy(obj) if obj is not None else None

    def apply(self, obj: dict[str, Any]) -> None:
        kv.validate(obj, "1.30", strict=True)
        meta = obj["metadata"]
        self.objects[(obj["kind"], meta["name"], meta["namespace"])] = copy.deepcopy(obj)
        self.log.append(("apply", obj["kind"], meta["name"], obj.get("spec", {}).get("replicas")))

    def scale(self, name: str, namespace: str, replicas: int) -> None:
        self.objects[("StatefulSet", name, namespace)]["spec"]["replicas"] = replicas
        self.log.append(("scale", name, replicas))


class FakeDrainer:
    def __init__(self, log: list[tuple[Any, ...]], fail_on: str | None = None) -> None:
        self.log = log
        self.fail_on = fail_on

    def remove(self, namespace: str, pod: str, node: str, etcd: str) -> None:
        self.log.append(("drain", pod, node, etcd))
        if self.fail_on and node.startswith(self.fail_on):
            raise kopf.TemporaryError(f"{node} could not hand its data over", delay=15)


@pytest.fixture
def log() -> list[tuple[Any, ...]]:
    return []


@pytest.fixture
def api(log) -> FakeApi:
    return FakeApi(log)


def reconcile(api: FakeApi, log: list[tuple[Any, ...]], spec: dict[str, Any], drainer: Any = None) -> dict[str, Any]:
    return op.Reconciler(api, drainer or FakeDrainer(log)).reconcile("dso", NS, spec)


def node(ordinal: int) -> str:
    return f"dso-{ordinal}.dso.{NS}.svc.cluster.local:7000"


def test_create_applies_every_object_and_a_fresh_token(api, log):
    status = reconcile(api, log, {"replicas": 3})
    kinds = [(e[1], e[2]) for e in log if e[0] == "apply"]
    assert kinds == [
        ("Secret", "dso-token"),
        ("Service", "etcd-dso"),
        ("StatefulSet", "etcd-dso"),
        ("Service", "dso"),
        ("PodDisruptionBudget", "dso"),
        ("StatefulSet", "dso"),
    ]
    token = api.objects[("Secret", "dso-token", NS)]["stringData"]["token"]
    assert len(token) == 64 and int(token, 16) >= 0
    assert api.objects[("StatefulSet", "dso", NS)]["spec"]["replicas"] == 3
    assert status == {"replicas": 3, "phase": "Scaling"}
    assert not [e for e in log if e[0] in ("drain", "scale")]


def test_an_existing_token_is_never_rotated(api, log):
    reconcile(api, log, {"replicas": 3})
    token = api.objects[("Secret", "dso-token", NS)]["stringData"]["token"]
    log.clear()
    assert reconcile(api, log, {"replicas": 3}) == {"replicas": 3, "phase": "Running"}
    assert ("apply", "Secret", "dso-token", None) not in log
    assert api.objects[("Secret", "dso-token", NS)]["stringData"]["token"] == token


def test_a_token_secret_of_the_users_is_used_and_not_made(api, log):
    reconcile(api, log, {"replicas": 2, "tokenSecret": "vault-synced"})
    assert not [e for e in log if e[1] == "Secret"]
    env = api.objects[("StatefulSet", "dso", NS)]["spec"]["template"]["spec"]["containers"][0]["env"]
    ref = next(e for e in env if e["name"] == "CRUCIAL_TOKEN")["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "vault-synced", "key": "token"}


def test_scale_up_adds_pods_without_draining(api, log):
    reconcile(api, log, {"replicas": 3})
    log.clear()
    reconcile(api, log, {"replicas": 5})
    assert not [e for e in log if e[0] in ("drain", "scale")]
    assert log[-1] == ("apply", "StatefulSet", "dso", 5)


def test_scale_down_drains_the_highest_ordinal_first_and_before_its_pod_goes(api, log):
    reconcile(api, log, {"replicas": 5})
    log.clear()
    status = reconcile(api, log, {"replicas": 2})
    steps = [e for e in log if e[0] in ("drain", "scale")]
    etcd = f"http://etcd-dso.{NS}.svc.cluster.local:2379"
    assert steps == [
        ("drain", "dso-0", node(4), etcd),
        ("scale", "dso", 4),
        ("drain", "dso-0", node(3), etcd),
        ("scale", "dso", 3),
        ("drain", "dso-0", node(2), etcd),
        ("scale", "dso", 2),
    ]
    assert log[-1] == ("apply", "StatefulSet", "dso", 2)  # the full StatefulSet only after every drain
    assert api.objects[("StatefulSet", "dso", NS)]["spec"]["replicas"] == 2
    assert status["replicas"] == 2


def test_a_failed_drain_keeps_the_pod_and_everything_below_it(api, log):
    reconcile(api, log, {"replicas": 5})
    log.clear()
    with pytest.raises(kopf.TemporaryError, match="dso-3"):
        reconcile(api, log, {"replicas": 2}, drainer=FakeDrainer(log, fail_on="dso-3."))
    steps = [e[:2] if e[0] == "scale" else (e[0], e[2]) for e in log if e[0] in ("drain", "scale")]
    assert steps == [("drain", node(4)), ("scale", "dso"), ("drain", node(3))]
    assert api.objects[("StatefulSet", "dso", NS)]["spec"]["replicas"] == 4  # dso-4 drained and gone, dso-3 kept
    # kopf retries later: the drain of dso-3 is attempted again, and the cluster reaches 2
    log.clear()
    reconcile(api, log, {"replicas": 2})
    assert [e[2] for e in log if e[0] == "drain"] == [node(3), node(2)]
    assert api.objects[("StatefulSet", "dso", NS)]["spec"]["replicas"] == 2


def test_an_external_etcd_is_used_and_none_is_made(api, log):
    reconcile(api, log, {"replicas": 3, "etcd": {"url": "https://etcd.infra:2379"}})
    assert not [e for e in log if e[0] == "apply" and e[2] == "etcd-dso"]
    env = api.objects[("StatefulSet", "dso", NS)]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "ETCD_URL", "value": "https://etcd.infra:2379"} in env


class Patch:
    def __init__(self) -> None:
        self.status: dict[str, Any] = {}


BODY = {
    "apiVersion": f"{M.GROUP}/{M.VERSION}",
    "kind": M.KIND,
    "metadata": {"name": "dso", "namespace": NS, "uid": "1234-abcd"},
    "spec": {"replicas": 3},
}


def test_the_kopf_handler_adopts_the_objects_and_sets_the_status(api, log, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(op, "make_api", lambda: api)
    monkeypatch.setattr(op, "make_drainer", lambda: FakeDrainer(log))
    patch = Patch()
    op.reconcile_handler(spec=BODY["spec"], name="dso", namespace=NS, body=BODY, patch=patch, logger=logging.getLogger("t"))
    assert patch.status == {"replicas": 3, "phase": "Scaling"}
    for obj in api.objects.values():
        (owner,) = obj["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["name"], owner["uid"]) == (M.KIND, "dso", "1234-abcd")


def test_the_kopf_handler_refuses_a_bad_spec_for_good(api, log, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(op, "make_api", lambda: api)
    monkeypatch.setattr(op, "make_drainer", lambda: FakeDrainer(log))
    with pytest.raises(kopf.PermanentError, match=r"spec\.rf"):
        op.reconcile_handler(
            spec={"replicas": 1, "rf": 2}, name="dso", namespace=NS, body=BODY, patch=Patch(), logger=logging.getLogger("t")
        )
    assert log == []  # nothing applied


def test_the_status_timer_copies_ready_pods(api, log, monkeypatch: pytest.MonkeyPatch):
    reconcile(api, log, {"replicas": 3})
    api.objects[("StatefulSet", "dso", NS)]["status"] = {"readyReplicas": 2}
    monkeypatch.setattr(op, "make_api", lambda: api)
    patch = Patch()
    op.status_timer(name="dso", namespace=NS, patch=patch)
    assert patch.status == {"readyReplicas": 2}


def test_the_handlers_are_registered_with_kopf():
    registry = kopf.get_default_registry()
    handlers = registry._changing.get_all_handlers() if hasattr(registry, "_changing") else []
    names = {getattr(h, "id", "") for h in handlers}
    assert any("reconcile_handler" in n for n in names), names


class FakeExec:
    """What kubernetes.stream.stream returns with _preload_content=False."""

    def __init__(self, code: int, out: str) -> None:
        self.returncode = code
        self.out = out
        self.ran = False

    def run_forever(self, timeout: float) -> None:
        self.ran = True

    def read_stdout(self) -> str:
        return self.out

    def read_stderr(self) -> str:
        return ""

    def close(self) -> None:
        pass


@pytest.mark.parametrize("code", [0, 1])
def test_the_exec_drainer_runs_crucial_cluster_remove_in_the_pod(monkeypatch: pytest.MonkeyPatch, code):
    import kubernetes.stream

    calls: list[dict[str, Any]] = []
    resp = FakeExec(code, "moved 12 objects" if code == 0 else "etcd unreachable")

    def fake_stream(fn: Any, pod: str, namespace: str, **kwargs: Any) -> FakeExec:
        calls.append({"pod": pod, "namespace": namespace, **kwargs})
        return resp

    monkeypatch.setattr(kubernetes.stream, "stream", fake_stream)
    drainer = op.ExecDrainer(timeout=5)
    if code == 0:
        drainer.remove(NS, "dso-0", node(4), "http://etcd:2379")
    else:
        with pytest.raises(kopf.TemporaryError, match="etcd unreachable"):
            drainer.remove(NS, "dso-0", node(4), "http://etcd:2379")
    (call,) = calls
    assert call["pod"] == "dso-0" and call["namespace"] == NS and call["container"] == "node"
    assert call["command"] == ["crucial", "cluster", "remove", "--dso", node(4), node(4)]
    assert resp.ran
