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
    return subprocess.Popen(
        [sys.executable, str(APP)],
        env={**clean, "INFER_ROLE": role, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


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
        slow = threading.Thread(target=lambda: result.update(zip(("status", "body"), get(base + "/"), strict=True)))
        slow.start()
        wait(lambda: get(base + "/stats")[1]["in_flight"] == 1)
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


def test_idle_answers_503_while_a_request_or_a_stream_is_in_flight():
    port = free_port()
    proc = start("sync", PORT=str(port), WORK_SECONDS="1.0", STREAM_TOKENS_PER_SECOND="20")
    base = f"http://127.0.0.1:{port}"
    try:
        wait(lambda: get(base + "/healthz")[0] == 200)
        assert get(base + "/idle") == (200, {"idle": True, "in_flight": 0})
        request = threading.Thread(target=get, args=(base + "/",))
        request.start()
        wait(lambda: get(base + "/idle")[0] == 503)
        request.join(10)
        wait(lambda: get(base + "/idle")[0] == 200)
        lines = []

        def stream() -> None:
            with urllib.request.urlopen(base + "/stream?seconds=1", timeout=10) as response:
                lines.extend(line for line in response.read().decode().splitlines() if line)

        streaming = threading.Thread(target=stream)
        streaming.start()
        wait(lambda: get(base + "/idle")[1]["in_flight"] == 1)
        streaming.join(10)
        assert lines[-1] == "data: [DONE]" and len(lines) == 21, lines
        assert get(base + "/idle")[0] == 200 and get(base + "/stats")[1]["streamed"] == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


def test_a_shutdown_timeout_cuts_what_is_still_in_flight():
    port = free_port()
    proc = start("sync", PORT=str(port), SHUTDOWN_SECONDS="0.5")
    base = f"http://127.0.0.1:{port}"
    try:
        wait(lambda: get(base + "/healthz")[0] == 200)
        errors = []

        def stream() -> None:
            try:
                with urllib.request.urlopen(base + "/stream?seconds=5", timeout=10) as response:
                    response.read()
            except Exception as exc:  # noqa: BLE001 - the cut is what is expected
                errors.append(exc)

        streaming = threading.Thread(target=stream)
        streaming.start()
        wait(lambda: get(base + "/idle")[0] == 503)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0 and time.monotonic() - started < 3
        streaming.join(10)
        assert errors, "the stream should have been cut"
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "shutdown timeout of 0.5 s: exiting with 1 request(s) in flight" in proc.stdout.read()


@pytest.fixture
def redis_server():
    from tests.support.redis_server import RedisServer, RedisUnavailable

    try:
        server = RedisServer()
    except RedisUnavailable as exc:
        pytest.fail(str(exc))
    yield server
    server.stop()


def test_async_role_works_the_queue_finishes_the_job_in_hand_on_sigterm(tmp_path, redis_server):
    jobs = redis_server.client()
    ready = tmp_path / "worker-ready"
    env = dict(REDIS_URL=redis_server.url, READY_FILE=str(ready), WORK_SECONDS="0.4", POD_NAME="llm-2")
    proc = start("async", **env)
    try:
        wait(ready.exists)
        jobs.lpush("jobs", "job-1")
        wait(lambda: jobs.hget("jobs:done", "job-1") == "1")
        jobs.lpush("jobs", "job-2")
        wait(lambda: jobs.llen("jobs:processing:llm-2") == 1)  # job-2 is in hand now
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert jobs.hget("jobs:done", "job-2") == "1", "the job in hand is finished before exit"
        assert jobs.llen("jobs:processing:llm-2") == 0 and jobs.llen("jobs") == 0
        assert not ready.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
    output = proc.stdout.read()
    assert "SIGTERM received" in output and "stopped after 2 job(s)" in output, output


def test_a_job_taken_by_a_killed_worker_is_done_once_by_the_next_pod_of_the_same_name(tmp_path, redis_server):
    jobs = redis_server.client()
    env = dict(REDIS_URL=redis_server.url, READY_FILE=str(tmp_path / "r1"), WORK_SECONDS="5", POD_NAME="llm-3")
    first = start("async", **env)
    try:
        wait(lambda: (tmp_path / "r1").exists())
        jobs.lpush("jobs", "job-a")
        wait(lambda: jobs.llen("jobs:processing:llm-3") == 1)
        first.kill()  # SIGKILL mid-job: the job stays in this pod's processing list
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    second = start("async", **{**env, "READY_FILE": str(tmp_path / "r2"), "WORK_SECONDS": "0.1"})
    try:
        wait(lambda: jobs.hget("jobs:done", "job-a") == "1")
        second.send_signal(signal.SIGTERM)
        assert second.wait(10) == 0
    finally:
        if second.poll() is None:
            second.kill()
    assert jobs.hgetall("jobs:done") == {"job-a": "1"}  # not lost, not done twice
    assert "put back a job" in second.stdout.read()


def test_a_slow_model_load_keeps_the_sync_role_unready_until_loaded():
    port = free_port()
    proc = start("sync", PORT=str(port), MODEL_LOAD_SECONDS="1.5")
    started = time.monotonic()
    try:
        wait(lambda: get(f"http://127.0.0.1:{port}/healthz")[0] == 200)
        assert time.monotonic() - started >= 1.5
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


def test_role_falls_back_to_ordinal_without_infer_role():
    clean = {k: v for k, v in os.environ.items() if not k.startswith("INFER_")}
    code = "import sys; sys.path.insert(0, sys.argv[1]); import app; print(app.role())"
    for ordinal, expected in (("0", "sync"), ("2", "async")):
        out = subprocess.run(
            [sys.executable, "-c", code, str(APP_DIR)],
            capture_output=True,
            text=True,
            env={**clean, "INFER_ORDINAL": ordinal, "INFER_SYNC_REPLICAS": "2"},
            check=True,
        )
        assert out.stdout.strip() == expected


@pytest.mark.parametrize("registry", ["none", "etcd", "http"])
def test_sample_inferenceservices_parse_and_build(registry):
    (body,) = [d for d in yaml.safe_load_all((APP_DIR / f"inferenceservice-{registry}.yaml").read_text()) if d]
    spec = parse_spec(body["spec"])
    assert spec.registry.type == registry
    manifests = build_all(Owner(body["metadata"]["name"], "default", "uid"), spec)
    assert [m["kind"] for m in manifests] == ["ConfigMap", "Service", "Service", "StatefulSet"]
