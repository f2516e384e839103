"""The Lithops configurations and runtime images documented in deploy/lithops/ and docs/backends.md.

Each YAML file is loaded by Lithops' own config loader
(``lithops.config.default_config``: the compute backend's and the storage
backend's ``load_config``), with no cloud credentials in the environment —
what can be checked without an account.  The GCP loader wants a service
account file to exist (it does not read it here): an empty one stands in.
"""

from __future__ import annotations

import copy
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml", reason="needs PyYAML (crucial[k8s], in the test extra)")
lithops_config = pytest.importorskip("lithops.config", reason="needs crucial[lithops]")

ROOT = Path(__file__).resolve().parent.parent
LITHOPS = ROOT / "deploy" / "lithops"
CONFIGS = {
    "aws_lambda.yaml": ("aws_lambda", "aws_s3"),
    "gcp_cloudrun.yaml": ("gcp_cloudrun", "gcp_storage"),
    "k8s.yaml": ("k8s", "minio"),
    "knative.yaml": ("knative", "minio"),
}


@pytest.fixture(autouse=True)
def _no_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "LITHOPS_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    account = tmp_path / "service-account.json"
    account.write_text("{}")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(account))


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((LITHOPS / name).read_text())


def backend_modules_missing(backend: str) -> str | None:
    try:
        __import__(f"lithops.serverless.backends.{backend}")
    except ImportError as exc:
        return str(exc)
    return None


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_each_config_parses_with_lithops_own_loader(name):
    compute, storage = CONFIGS[name]
    missing = backend_modules_missing(compute)
    if missing:
        pytest.skip(f"Lithops' {compute} backend cannot be imported ({missing}): pip install 'lithops[aws,gcp]'")
    raw = load(name)
    resolved = lithops_config.default_config(config_data=copy.deepcopy(raw), load_storage_config=True)
    assert resolved["lithops"]["backend"] == compute and resolved["lithops"]["storage"] == storage
    section = resolved[compute]
    assert "crucial-runtime" in section["runtime"]
    assert section["runtime_memory"] == raw[compute]["runtime_memory"]
    assert int(section["max_workers"]) >= 1  # what crucial's LithopsBackend takes as its cap


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_each_config_is_in_the_docs(name):
    """docs/backends.md shows the same configuration (its YAML block names the same sections)."""
    docs = (ROOT / "docs" / "backends.md").read_text()
    assert f"deploy/lithops/{name}" in docs
    compute, storage = CONFIGS[name]
    assert f"backend: {compute}" in docs and f"storage: {storage}" in docs


def test_a_broken_config_is_refused_by_the_loader():
    raw = load("gcp_cloudrun.yaml")
    del raw["gcp"]
    missing = backend_modules_missing("gcp_cloudrun")
    if missing:
        pytest.skip(missing)
    with pytest.raises(Exception, match="gcp"):
        lithops_config.default_config(config_data=raw, load_storage_config=False)


def test_crucials_lithops_backend_takes_the_config(monkeypatch: pytest.MonkeyPatch):
    """LithopsBackend resolves the same files (it builds a FunctionExecutor: only up to that point here)."""
    from crucial.compute import lithops as crucial_lithops

    raw = load("k8s.yaml")
    made: list[dict[str, Any]] = []

    class NoExecutor:
        def __init__(self, config: dict[str, Any], log_level: Any = None) -> None:
            made.append(config)
            raise RuntimeError("no Kubernetes here")

    import lithops

    monkeypatch.setattr(lithops, "FunctionExecutor", NoExecutor)
    import crucial

    with pytest.raises(crucial.ConfigError, match="k8s"):
        crucial_lithops.LithopsBackend(raw)
    assert made and made[0]["k8s"]["runtime"] == raw["k8s"]["runtime"]


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.lambda"])
def test_the_runtime_images_install_this_crucial_on_the_callers_python(name):
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    text = (LITHOPS / name).read_text()
    base = re.search(r"^FROM python:(\d+)\.(\d+)-slim", text, re.M)
    assert base, "a python base image"
    floor = re.search(r">=\s*(\d+)\.(\d+)", meta["requires-python"])
    assert floor and (int(base[1]), int(base[2])) >= (int(floor[1]), int(floor[2]))
    assert re.search(r'pip install --no-cache-dir "\.\[lithops\]"', text), "crucial (with its lithops extra) from this checkout"
    assert "lithops" in meta["optional-dependencies"]
    assert "COPY src ./src" in text and "COPY pyproject.toml" in text
    for dep in meta["dependencies"]:  # crucial's own dependencies come with it: nothing pinned against them
        assert re.split(r"[<>=;\[ ]", dep)[0] in ("cloudpickle", "greenlet", "click", "sortedcontainers")
