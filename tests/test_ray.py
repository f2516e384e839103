"""The ray backend, run for real inside a private network namespace (see tests/ray_netns/ray_checks.py).

Ray cannot be kept on loopback on a machine with a network interface: its
GCS, raylet and workers listen on every interface, and it replaces a node
address of 127.0.0.1 with the host's (``resolve_ip_for_localhost``).  So the
checks run in ``unshare -n`` (a network namespace with only ``lo``), DSO
nodes and Ray included, and this test reports their result.  Skipped, with
the reason, where Ray is not installed (it is not in the test extra: a large
wheel) or where a network namespace cannot be made.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _netns_ok() -> str | None:
    unshare = shutil.which("unshare")
    if unshare is None:
        return "unshare (util-linux) is not installed"
    done = subprocess.run([unshare, "-n", "true"], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        return f"cannot make a network namespace here (unshare -n: {done.stderr.strip() or done.returncode}); needs root"
    return None


def test_the_ray_backend_in_a_private_network_namespace():
    try:
        import ray  # noqa: F401
    except ImportError:
        pytest.skip("ray is not installed: pip install 'crucial[ray]' (kept out of the test extra: about 240 MB installed)")
    reason = _netns_ok()
    if reason:
        pytest.skip(f"Ray binds every interface, so its tests need a private network namespace: {reason}")
    with tempfile.TemporaryDirectory(prefix="crt-", dir="/tmp") as tmp:  # short: Ray's socket paths have a length limit
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CRUCIAL_", "RAY_"))}
        env.update(CRUCIAL_RAY_NETNS="1", CRUCIAL_RAY_TMP=tmp, RAY_USAGE_STATS_ENABLED="0")
        inner = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/ray_netns/ray_checks.py"]
        script = 'ip link set lo up 2>/dev/null || true; exec "$@"'
        done = subprocess.run(
            ["unshare", "-n", "sh", "-c", script, "sh", *inner],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
    report = done.stdout[-6000:] + done.stderr[-2000:]
    assert done.returncode == 0, report
    assert " passed" in done.stdout and "skipped" not in done.stdout.splitlines()[-1], report
