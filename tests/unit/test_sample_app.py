"""The two-role sample app (examples/sample-app): endpoints, readiness, graceful SIGTERM; and its
InferenceServices parse and build."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from devtools.harness import free_port
from infer_operator.api.v1alpha1 import parse_spec
from infer_operator.builders import Owner, build_all

APP_DIR = Path(__file__).resolve().parents[2] / "examples" / "sample-app"
APP = APP_DIR / "app.py"


def start(role: str, **env: str) -> subprocess.Popen:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("INFER_")}
    return subprocess.Popen([sys.executable, str(APP)], env={**clean, "INFER_ROLE": role, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def wait(predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_sync_role_serves_goes_offline_and_drains_on_sigterm():
    port = free_port()
    proc = start("sync", PORT=str(port), WORK_SECONDS="0.5")
    base = f"http://127.0.0.1:{port}"
    try:
        wait(lambda: get(base + "/healthz")[0] == 200)
        status, body = get(base + "/")
        assert status == 200 and body["role"] == "sync"
        # an in-flight request is finished after SIGTERM
        result = {}
        slow = threading.Thread(target=lambda: result.update(zip(("status", "body"), get(base + "/"))))
        slow.start()
        time.sleep(0.2)
        assert get(base + "/offline")[0] == 200
        assert get(base + "/healthz")[0] == 503
        proc.send_signal(signal.SIGTERM)
        slow.join(10)
        assert result.get("status") == 200
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    output = proc.stdout.read()
    assert "stopped after 2 request(s)" in output, output


def test_async_role_processes_items_writes_ready_file_and_finishes_on_sigterm(tmp_path):
    queue, ready = tmp_path / "queue", tmp_path / "worker-ready"
    proc = start("async", QUEUE_DIR=str(queue), READY_FILE=str(ready), WORK_SECONDS="0.3")
    try:
        wait(ready.exists)
        (queue / "item-1").write_text("x")
        wait(lambda: (queue / "item-1.done").exists())
        (queue / "item-2").write_text("y")
        wait(lambda: (queue / "item-2.working").exists())  # item-2 is in flight now
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert (queue / "item-2.done").exists(), "the in-flight item is finished before exit"
        assert not ready.exists()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_role_falls_back_to_ordinal_without_infer_role():
    clean = {k: v for k, v in os.environ.items() if not k.startswith("INFER_")}
    code = "import sys; sys.path.insert(0, sys.argv[1]); import app; print(app.role())"
    for ordinal, expected in (("0", "sync"), ("2", "async")):
        out = subprocess.run([sys.executable, "-c", code, str(APP_DIR)], capture_output=True, text=True,
                             env={**clean, "INFER_ORDINAL": ordinal, "INFER_SYNC_REPLICAS": "2"}, check=True)
        assert out.stdout.strip() == expected


@pytest.mark.parametrize("registry", ["none", "etcd", "http"])
def test_sample_inferenceservices_parse_and_build(registry):
    (body,) = [d for d in yaml.safe_load_all((APP_DIR / f"inferenceservice-{registry}.yaml").read_text()) if d]
    spec = parse_spec(body["spec"])
    assert spec.registry.type == registry
    manifests = build_all(Owner(body["metadata"]["name"], "default", "uid"), spec)
    assert [m["kind"] for m in manifests] == ["ConfigMap", "Service", "Service", "StatefulSet"]
