"""The Kubernetes objects of a DSO cluster, built from a ``DSOCluster`` spec.

Pure functions from a spec (a dict, as the custom resource holds it) to
manifests (dicts, as the Kubernetes API takes them).  The operator applies
them; ``python -m crucial.k8s render`` writes them as the plain manifests in
``deploy/k8s/``; the tests validate them against the Kubernetes schemas.
One source for the three, so they cannot drift apart.

::

    DSOCluster "dso" ──► Secret dso-token          (CRUCIAL_TOKEN, unless spec.tokenSecret names one)
                     ──► Service dso               (headless: dso-0.dso.<ns>.svc, dso-1.dso...)
                     ──► StatefulSet dso           (pods dso-0..N-1, a PVC each for --data-dir)
                     ──► PodDisruptionBudget dso   (maxUnavailable 1)
                     ──► etcd-dso Service + StatefulSet  (the views, unless spec.etcd.url names one)
"""

from __future__ import annotations

import copy
from typing import Any

__all__ = [
    "DEFAULTS",
    "GROUP",
    "KIND",
    "PLURAL",
    "VERSION",
    "all_manifests",
    "etcd_manifests",
    "etcd_url",
    "node_address",
    "pod_name",
    "resolve",
    "service",
    "statefulset",
    "token_secret",
    "token_secret_name",
    "disruption_budget",
]

GROUP = "crucial.dev"
VERSION = "v1alpha1"
KIND = "DSOCluster"
PLURAL = "dsoclusters"

#: what a spec that says nothing gets (every field is documented in the CRD and docs/kubernetes.md)
DEFAULTS: dict[str, Any] = {
    "replicas": 3,
    "image": "ghcr.io/crucial-py/crucial-node:0.1.0",
    "imagePullPolicy": "IfNotPresent",
    "rf": 2,
    "port": 7000,
    "metricsPort": 9100,
    "tokenSecret": None,
    "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
    "storage": {"size": "1Gi", "storageClassName": None},
    "etcd": {"url": None, "image": "quay.io/coreos/etcd:v3.5.17", "storage": "1Gi"},
    "probes": {
        # ready: the node serves under the current view (/healthz answers 200, 503 otherwise)
        "readiness": {"httpGet": {"path": "/healthz", "port": "metrics"}, "periodSeconds": 5, "failureThreshold": 2},
        # alive: the process answers at all.  Not /healthz: a node being drained or joining is out
        # of the view (503) on purpose, and a liveness restart would undo a drain.
        "liveness": {"tcpSocket": {"port": "dso"}, "periodSeconds": 10, "failureThreshold": 6},
        # a join copies the node's share of the data before it serves: give it time
        "startup": {"httpGet": {"path": "/healthz", "port": "metrics"}, "periodSeconds": 5, "failureThreshold": 120},
    },
}


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        elif v is not None:
            out[k] = copy.deepcopy(v)
    return out


def resolve(spec: dict[str, Any] | None) -> dict[str, Any]:
    """The spec with every default filled in; a bad value is a ``ValueError`` naming the field."""
    s = _merge(DEFAULTS, dict(spec or {}))
    for field in ("replicas", "rf", "port", "metricsPort"):
        if not isinstance(s[field], int) or isinstance(s[field], bool) or s[field] < 1:
            raise ValueError(f"DSOCluster spec.{field} must be a positive integer, not {s[field]!r}")
    if s["rf"] > s["replicas"]:
        raise ValueError(f"DSOCluster spec.rf ({s['rf']}) cannot exceed spec.replicas ({s['replicas']})")
    if s["port"] == s["metricsPort"]:
        raise ValueError("DSOCluster spec.port and spec.metricsPort must differ")
    return s


def _labels(name: str, component: str = "node") -> dict[str, str]:
    return {"app.kubernetes.io/name": "crucial", "app.kubernetes.io/instance": name, "app.kubernetes.io/component": component}


def _meta(name: str, namespace: str) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "labels": _labels(name)}


def token_secret_name(name: str, spec: dict[str, Any]) -> str:
    return str(spec.get("tokenSecret") or f"{name}-token")


def pod_name(name: str, ordinal: int) -> str:
    return f"{name}-{ordinal}"


def node_address(name: str, namespace: str, ordinal: int, port: int) -> str:
    """The address a node advertises (and that ``crucial cluster remove`` names): its stable DNS name."""
    return f"{pod_name(name, ordinal)}.{name}.{namespace}.svc.cluster.local:{port}"


def etcd_url(name: str, namespace: str, spec: dict[str, Any]) -> str:
    return str(spec["etcd"].get("url") or f"http://etcd-{name}.{namespace}.svc.cluster.local:2379")


def token_secret(name: str, namespace: str, token: str) -> dict[str, Any]:
    """The Secret holding the nodes' token (``stringData``: the API server encodes it)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(f"{name}-token", namespace),
        "type": "Opaque",
        "stringData": {"token": token},
    }


def service(name: str, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Headless: one stable DNS name per pod, which is what clients and functions connect to."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(name, namespace),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,  # joining nodes must resolve each other before they are ready
            "selector": _labels(name),
            "ports": [
                {"name": "dso", "port": spec["port"], "targetPort": "dso"},
                {"name": "metrics", "port": spec["metricsPort"], "targetPort": "metrics"},
            ],
        },
    }


#: the container's command: pod 0 of a new cluster starts the view, the others join through it.
#: --insecure-no-tls: the token and calls cross the pod network in clear text (docs/security.md); admit
#: only the clients with a NetworkPolicy, or mount a TLS Secret and pass --tls-cert/--tls-key instead
_START = """\
ordinal="${POD_NAME##*-}"
set -- crucial server --host "$POD_IP" --port "$DSO_PORT" \\
  --advertise "$POD_NAME.$SERVICE.$NAMESPACE.svc.cluster.local:$DSO_PORT" \\
  --etcd "$ETCD_URL" --rf "$RF" --data-dir /data --metrics-port "$METRICS_PORT" --insecure-no-tls
if [ "$ordinal" != 0 ]; then
  set -- "$@" --join "$SERVICE-0.$SERVICE.$NAMESPACE.svc.cluster.local:$DSO_PORT"
fi
exec "$@"
"""


def statefulset(name: str, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    field = {"fieldRef": {"fieldPath": ""}}

    def downward(path: str) -> dict[str, Any]:
        f = copy.deepcopy(field)
        f["fieldRef"]["fieldPath"] = path
        return f

    env = [
        {"name": "POD_NAME", "valueFrom": downward("metadata.name")},
        {"name": "NAMESPACE", "valueFrom": downward("metadata.namespace")},
        {"name": "POD_IP", "valueFrom": downward("status.podIP")},
        {"name": "SERVICE", "value": name},
        {"name": "DSO_PORT", "value": str(spec["port"])},
        {"name": "METRICS_PORT", "value": str(spec["metricsPort"])},
        {"name": "RF", "value": str(spec["rf"])},
        {"name": "ETCD_URL", "value": etcd_url(name, namespace, spec)},
        {"name": "CRUCIAL_TOKEN", "valueFrom": {"secretKeyRef": {"name": token_secret_name(name, spec), "key": "token"}}},
    ]
    probes = spec["probes"]
    container = {
        "name": "node",
        "image": spec["image"],
        "imagePullPolicy": spec["imagePullPolicy"],
        "command": ["/bin/sh", "-c", _START],
        "env": env,
        "ports": [
            {"name": "dso", "containerPort": spec["port"], "protocol": "TCP"},
            {"name": "metrics", "containerPort": spec["metricsPort"], "protocol": "TCP"},
        ],
        "resources": copy.deepcopy(spec["resources"]),
        "volumeMounts": [{"name": "data", "mountPath": "/data"}, {"name": "tmp", "mountPath": "/tmp"}],
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}},
    }
    for kind, key in (("readiness", "readinessProbe"), ("liveness", "livenessProbe"), ("startup", "startupProbe")):
        if probes.get(kind):
            container[key] = copy.deepcopy(probes[kind])
    claim: dict[str, Any] = {
        "metadata": {"name": "data", "labels": _labels(name)},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": spec["storage"]["size"]}}},
    }
    if spec["storage"].get("storageClassName"):
        claim["spec"]["storageClassName"] = spec["storage"]["storageClassName"]
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _meta(name, namespace),
        "spec": {
            "serviceName": name,
            "replicas": spec["replicas"],
            "podManagementPolicy": "OrderedReady",  # one join at a time
            "updateStrategy": {"type": "RollingUpdate"},
            # a drained node's data has moved: its volume goes with it; deleting the cluster keeps them all
            "persistentVolumeClaimRetentionPolicy": {"whenScaled": "Delete", "whenDeleted": "Retain"},
            "selector": {"matchLabels": _labels(name)},
            "template": {
                "metadata": {"labels": _labels(name)},
                "spec": {
                    "terminationGracePeriodSeconds": 30,  # SIGTERM: the node stops cleanly
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "fsGroup": 10001},
                    "containers": [container],
                    "volumes": [{"name": "tmp", "emptyDir": {}}],  # the root filesystem is read-only
                },
            },
            "volumeClaimTemplates": [claim],
        },
    }


def disruption_budget(name: str, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    """At most one node down by choice (a drain, an upgrade): with rf >= 2 every object keeps a replica."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(name, namespace),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": _labels(name)}},
    }


def etcd_manifests(name: str, namespace: str, spec: dict[str, Any]) -> list[dict[str, Any]]:
    """A one-member etcd for the cluster's views (use spec.etcd.url for a replicated one you run)."""
    if spec["etcd"].get("url"):
        return []
    ename = f"etcd-{name}"
    labels = _labels(name, "etcd")
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": ename, "namespace": namespace, "labels": labels},
        "spec": {"selector": labels, "ports": [{"name": "client", "port": 2379, "targetPort": "client"}]},
    }
    command = [
        "etcd",
        "--name=etcd-0",
        "--data-dir=/var/lib/etcd",
        "--listen-client-urls=http://0.0.0.0:2379",
        f"--advertise-client-urls=http://{ename}.{namespace}.svc.cluster.local:2379",
        "--listen-peer-urls=http://127.0.0.1:2380",
    ]
    sts = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": ename, "namespace": namespace, "labels": labels},
        "spec": {
            "serviceName": ename,
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "etcd",
                            "image": spec["etcd"]["image"],
                            "command": command,
                            "ports": [{"name": "client", "containerPort": 2379}],
                            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
                            "readinessProbe": {"httpGet": {"path": "/health", "port": "client"}, "periodSeconds": 5},
                            "livenessProbe": {"tcpSocket": {"port": "client"}, "periodSeconds": 10},
                            "volumeMounts": [{"name": "etcd", "mountPath": "/var/lib/etcd"}],
                        }
                    ]
                },
            },
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "etcd"},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": spec["etcd"]["storage"]}}},
                }
            ],
        },
    }
    return [svc, sts]


def all_manifests(name: str, namespace: str, spec: dict[str, Any] | None, token: str | None) -> list[dict[str, Any]]:
    """Everything a DSO cluster needs, in the order to apply it (``token=None``: the Secret exists)."""
    s = resolve(spec)
    out: list[dict[str, Any]] = []
    if token is not None and not s.get("tokenSecret"):
        out.append(token_secret(name, namespace, token))
    out += etcd_manifests(name, namespace, s)
    out += [service(name, namespace, s), statefulset(name, namespace, s), disruption_budget(name, namespace, s)]
    return out
