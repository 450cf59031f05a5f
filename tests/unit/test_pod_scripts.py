"""Run the pod-side scripts (builders/scripts/*.sh) under real POSIX shells.

Every test renders the ConfigMap data with ``pod_scripts_configmap_data`` into
a temp dir, points ``INFER_SCRIPTS_DIR`` at it and runs the scripts with
/bin/sh (dash here), ``bash --posix`` and, when installed, ``busybox sh``. Waits are on
conditions with bounds, never bare sleeps.
"""

from __future__ import annotations

import http.server
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from devtools.harness import free_port, wait_for
from infer_operator.builders.pod_scripts import (
    SCRIPTS_DIR,
    SETTINGS_FILE,
    PodSettings,
    pod_scripts_configmap_data,
    render_settings,
    script_files,
)

SHELLS = [pytest.param(("/bin/sh",), id="sh")]
if shutil.which("bash"):  # /bin/sh is bash on RHEL/UBI images
    SHELLS.append(pytest.param((shutil.which("bash"), "--posix"), id="bash"))
if shutil.which("busybox"):
    SHELLS.append(pytest.param((shutil.which("busybox"), "sh"), id="busybox"))
else:  # pragma: no cover - depends on the host
    SHELLS.append(pytest.param(("busybox", "sh"), id="busybox", marks=pytest.mark.skip("busybox not installed")))

PY = os.path.realpath(sys.executable)
SETTINGS_DEFAULTS = dict(
    sync_port=None,
    drain_seconds=0,
    async_drain_seconds=0,
    offline_path=None,
    sync_probe=None,
    async_probe=None,
)


# --------------------------------------------------------------------------- helpers


@pytest.fixture(params=SHELLS)
def shell(request) -> tuple[str, ...]:
    return request.param


@pytest.fixture
def make_dir(tmp_path):
    """Render the ConfigMap into a fresh dir; returns the dir."""
    counter = iter(range(1000))

    def make(**kwargs) -> Path:
        d = tmp_path / f"cm{next(counter)}"
        d.mkdir()
        for name, text in pod_scripts_configmap_data(PodSettings(**{**SETTINGS_DEFAULTS, **kwargs})).items():
            (d / name).write_text(text)
        return d

    return make


def base_env(scripts: Path, **extra) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "INFER_SCRIPTS_DIR": str(scripts),
        "POD_NAME": "svc-0",
        "POD_NAMESPACE": "ns",
        "POD_IP": "127.0.0.1",
        "INFER_LOG_SINK": "",
    }
    for k, v in extra.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = str(v)
    return env


def run(shell, scripts: Path, script: str, *args, env=None, timeout=20, **kw):
    return subprocess.run(
        [*shell, str(scripts / script), *args],
        env=env if env is not None else base_env(scripts),
        capture_output=True,
        text=True,
        timeout=timeout,
        **kw,
    )


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        self.server.hits.append(self.path)
        status = {"/ok": 200, "/fail": 500, "/redirect": 302, "/offline": 200}.get(self.path, 404)
        queued = self.server.answers.get(self.path)
        if queued:  # a path told what to answer, in turn; the last answer stays
            status = queued.pop(0) if len(queued) > 1 else queued[0]
        if self.path == "/need-header":
            status = 200 if self.headers.get("X-Probe") == "yes it is" else 403
        self.send_response(status)
        if status == 302:
            self.send_header("Location", "/ok")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.hits = []
    srv.answers = {}  # path -> statuses to answer in turn (the last one for ever)
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def client_bin(tmp_path: Path, client: str) -> str:
    """A PATH dir with `sleep` plus only the given HTTP client (or none)."""
    d = tmp_path / f"bin-{client}"
    d.mkdir(exist_ok=True)
    (d / "sleep").symlink_to(shutil.which("sleep"))
    target = {
        "curl": shutil.which("curl"),
        "wget": shutil.which("wget"),
        "busybox-wget": shutil.which("busybox"),
        "python3": PY,
        "none": None,
    }[client]
    if client != "none":
        if not target:
            pytest.skip(f"{client} not available on this host")
        (d / ("python3" if client == "python3" else "wget" if "wget" in client else client)).symlink_to(target)
    return str(d)


# --------------------------------------------------------------------------- packaging


def test_script_files_and_configmap_data():
    files = script_files()
    assert set(files) == {"lib.sh", "launch.sh", "probe.sh", "prestop.sh", "gate.sh"}
    assert all(text.strip() for text in files.values())
    data = pod_scripts_configmap_data(PodSettings(**SETTINGS_DEFAULTS))
    assert set(data) == set(files) | {SETTINGS_FILE}
    assert SCRIPTS_DIR == "/infer-operator"
    assert "infer_sync_probe()" in data[SETTINGS_FILE]


@pytest.mark.parametrize("name", ["lib.sh", "launch.sh", "probe.sh", "prestop.sh", "gate.sh", SETTINGS_FILE])
def test_syntax(shell, make_dir, name):
    d = make_dir(sync_port=8000, sync_probe={"httpGet": {"path": "/h", "port": 8000}})
    r = subprocess.run([*shell, "-n", str(d / name)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


# --------------------------------------------------------------------------- lib.sh: infer_role


@pytest.mark.parametrize(
    "env, expected",
    [
        ({"INFER_ORDINAL": "0", "INFER_SYNC_REPLICAS": "2"}, "sync"),
        ({"INFER_ORDINAL": "1", "INFER_SYNC_REPLICAS": "2"}, "sync"),
        ({"INFER_ORDINAL": "2", "INFER_SYNC_REPLICAS": "2"}, "async"),
        ({"INFER_ORDINAL": "10", "INFER_SYNC_REPLICAS": "9"}, "async"),
        ({"INFER_ORDINAL": "0", "INFER_SYNC_REPLICAS": "0"}, "async"),
        ({"INFER_ORDINAL": "7", "INFER_SYNC_REPLICAS": ""}, "sync"),
        ({"INFER_ORDINAL": "7"}, "sync"),
        ({"POD_NAME": "my-svc-3", "INFER_SYNC_REPLICAS": "2"}, "async"),
        ({"POD_NAME": "my-svc-1", "INFER_SYNC_REPLICAS": "2"}, "sync"),
        ({"INFER_ROLE": "async", "INFER_ORDINAL": "0", "INFER_SYNC_REPLICAS": "2"}, "async"),
        ({"INFER_ROLE": "sync", "INFER_ORDINAL": "5", "INFER_SYNC_REPLICAS": "2"}, "sync"),
        ({"INFER_ROLE": "bogus"}, None),
        ({"POD_NAME": "noordinal", "INFER_SYNC_REPLICAS": "2"}, None),
        ({"INFER_ORDINAL": "x", "INFER_SYNC_REPLICAS": "2"}, None),
    ],
)
def test_infer_role(shell, make_dir, env, expected):
    d = make_dir()
    r = subprocess.run(
        [*shell, "-c", '. "$INFER_SCRIPTS_DIR/lib.sh"; infer_role'],
        env=base_env(d, **env),
        capture_output=True,
        text=True,
    )
    if expected is None:
        assert r.returncode != 0 and r.stdout == "" and r.stderr
    else:
        assert (r.returncode, r.stdout) == (0, expected + "\n"), r.stderr


# --------------------------------------------------------------------------- launch.sh

TRICKY = ["a b", "$HOME", "*", "'q\"", "", "-n", "x\ny", "\\t"]


@pytest.mark.parametrize(
    "env, role",
    [
        ({"INFER_ORDINAL": "0", "INFER_SYNC_REPLICAS": "1"}, "sync"),
        ({"INFER_ORDINAL": "1", "INFER_SYNC_REPLICAS": "1"}, "async"),
        ({"INFER_ORDINAL": "4", "INFER_SYNC_REPLICAS": None}, "sync"),  # all-sync default
        ({"INFER_ORDINAL": None, "POD_NAME": "svc-2", "INFER_SYNC_REPLICAS": "1"}, "async"),
        ({"INFER_ROLE": "sync", "INFER_ORDINAL": "3", "INFER_SYNC_REPLICAS": "1"}, "sync"),
        ({"INFER_ROLE": "async", "INFER_ORDINAL": "0", "INFER_SYNC_REPLICAS": "1"}, "async"),
    ],
)
def test_launch_execs_role_argv(shell, make_dir, tmp_path, env, role):
    d = make_dir()
    out = tmp_path / "out"
    app = tmp_path / "app.sh"
    app.write_text(
        'out=$1; shift\n{ echo "pid=$$"; echo "role=$INFER_ROLE"; for a; do printf \'<%s>\\n\' "$a"; done; } >"$out"\n'
    )
    sync_argv = ["/bin/sh", str(app), str(out), "SYNC", *TRICKY]
    async_argv = ["/bin/sh", str(app), str(out), "ASYNC", *TRICKY[::-1]]
    proc = subprocess.Popen(
        [*shell, str(d / "launch.sh"), str(len(sync_argv)), *sync_argv, *async_argv],
        env=base_env(d, **env),
        stderr=subprocess.PIPE,
        text=True,
    )
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    words = TRICKY if role == "sync" else TRICKY[::-1]
    expected = f"pid={proc.pid}\nrole={role}\n<{role.upper()}>\n" + "".join(f"<{w}>\n" for w in words)
    # pid == launch.sh's pid: exec replaced the shell.
    assert out.read_text() == expected
    assert f"role={role}" in err and "launch" in err


@pytest.mark.parametrize(
    "args, env",
    [
        ([], {}),
        (["x", "echo", "hi"], {}),
        (["-1", "echo", "hi"], {}),
        (["3", "echo", "hi"], {}),
        (["2", "echo", "hi"], {"INFER_ORDINAL": "1", "INFER_SYNC_REPLICAS": "1"}),  # async argv empty
        (["0", "echo", "hi"], {"INFER_ORDINAL": "0", "INFER_SYNC_REPLICAS": "1"}),  # sync argv empty
        (["1", "echo", "hi"], {"INFER_ROLE": "weird"}),
    ],
)
def test_launch_bad_usage(shell, make_dir, args, env):
    d = make_dir()
    r = run(shell, d, "launch.sh", *args, env=base_env(d, **env))
    assert r.returncode == 64, (r.stdout, r.stderr)
    assert r.stdout == ""
    assert "launch.sh" in r.stderr or "INFER_ROLE" in r.stderr


def test_launch_sigterm_reaches_app(shell, make_dir, tmp_path):
    d = make_dir()
    ready, marker = tmp_path / "ready", tmp_path / "marker"
    app = (
        "import os, pathlib, signal, sys\n"
        "def h(sig, frame):\n"
        "    pathlib.Path(sys.argv[2]).write_text('TERM %d' % os.getpid()); sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, h)\n"
        "pathlib.Path(sys.argv[1]).write_text(str(os.getpid()))\n"
        "while True: signal.pause()\n"
    )
    proc = subprocess.Popen(
        [*shell, str(d / "launch.sh"), "5", PY, "-c", app, str(ready), str(marker), "false"],
        env=base_env(d, INFER_ORDINAL=0, INFER_SYNC_REPLICAS=1),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: ready.exists() and ready.read_text(), 10, 0.02, "app ready")
        assert ready.read_text() == str(proc.pid)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert marker.read_text() == f"TERM {proc.pid}"
    finally:
        proc.kill()
        proc.communicate()


def _unshare_ok() -> str | None:
    if not shutil.which("unshare"):
        return "unshare not installed"
    r = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True, text=True)
    return None if r.returncode == 0 else f"unshare --pid unusable here: {r.stderr.strip()}"


def _children(pid: int) -> list[int]:
    kids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            kids.append(int(entry))
    return kids


@pytest.fixture
def as_pid1(shell, make_dir):
    reason = _unshare_ok()
    if reason:
        pytest.skip(reason)
    d = make_dir()
    procs = []

    def start(*args):
        p = subprocess.Popen(
            ["unshare", "--pid", "--fork", "--mount-proc", *shell, str(d / "launch.sh"), *args],
            env=base_env(d, INFER_ORDINAL=0, INFER_SYNC_REPLICAS=1),
            stderr=subprocess.PIPE,
            text=True,
        )
        procs.append(p)
        return p

    yield start
    for p in procs:
        for kid in _children(p.pid):
            for grandkid in _children(kid):
                try:
                    os.kill(grandkid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        p.kill()
        p.communicate()


def test_launch_pid1_forwards_sigterm_to_app_without_handler(as_pid1):
    proc = as_pid1("2", "sleep", "300", "false")
    # The namespace's PID 1 is unshare's child; it is ready once it has
    # started the app (traps are installed before the app is forked).
    init = wait_for(lambda: _children(proc.pid), 10, 0.02, "namespace init")[0]
    wait_for(lambda: _children(init), 10, 0.02, "app started under init")
    os.kill(init, signal.SIGTERM)
    assert proc.wait(timeout=10) == 128 + signal.SIGTERM
    assert "PID 1" in proc.stderr.read()


def test_launch_pid1_exit_status(as_pid1):
    proc = as_pid1("3", "sh", "-c", "exit 3", "false")
    assert proc.wait(timeout=10) == 3
    assert "PID 1" in proc.stderr.read()


# --------------------------------------------------------------------------- probe.sh

SYNC = {"INFER_ORDINAL": "0", "INFER_SYNC_REPLICAS": "1"}
ASYNC = {"INFER_ORDINAL": "1", "INFER_SYNC_REPLICAS": "1"}


def test_probe_sync_default_is_listening(shell, make_dir, http_server):
    port = http_server.server_address[1]
    assert run(shell, make_dir(sync_port=port), "probe.sh", env=None).returncode == 0
    d = make_dir(sync_port=free_port())
    assert run(shell, d, "probe.sh", env=base_env(d, **SYNC)).returncode == 1


def test_probe_listening_ipv6(shell, make_dir):
    try:
        srv = socket.socket(socket.AF_INET6)
        srv.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback")
    with srv:
        srv.listen()
        d = make_dir(sync_port=srv.getsockname()[1])
        assert run(shell, d, "probe.sh", env=base_env(d, **SYNC)).returncode == 0


@pytest.mark.parametrize("client", ["curl", "wget", "busybox-wget", "python3", "none"])
@pytest.mark.parametrize(
    "path, headers, expected",
    [
        ("/ok", None, 0),
        ("ok", None, 0),  # no leading slash
        ("/fail", None, 1),
        ("/missing", None, 1),
        ("/redirect", None, 0),
        ("/need-header", [{"name": "X-Probe", "value": "yes it is"}], 0),
        ("/need-header", None, 1),
    ],
)
def test_probe_http_get(shell, make_dir, http_server, tmp_path, client, path, headers, expected):
    port = http_server.server_address[1]
    probe = {"httpGet": {"path": path, "port": "sync", "scheme": "HTTP"}}
    if headers:
        probe["httpGet"]["httpHeaders"] = headers
    # What is tested is the answer, not the timeout: a generous one keeps a loaded machine (a
    # redirect is two requests) from failing the check.
    d = make_dir(sync_port=port, sync_probe=probe, probe_timeout_seconds=10)
    r = run(shell, d, "probe.sh", env=base_env(d, PATH=client_bin(tmp_path, client), **SYNC))
    if client == "none":
        # No HTTP client: degraded to the listen check, with a warning.
        assert r.returncode == 0 and "warning" in r.stderr and "listen check" in r.stderr
    else:
        assert r.returncode == expected, r.stderr
        assert ("/" + path.lstrip("/")) in http_server.hits


def test_probe_http_get_server_down(shell, make_dir):
    port = free_port()
    d = make_dir(sync_port=port, sync_probe={"httpGet": {"path": "/ok", "port": port}})
    assert run(shell, d, "probe.sh", env=base_env(d, **SYNC)).returncode != 0


@pytest.mark.parametrize("kind", ["tcpSocket", "grpc"])
def test_probe_tcp_and_grpc_listen_check(shell, make_dir, http_server, kind):
    port = http_server.server_address[1]
    d = make_dir(sync_port=1234, sync_probe={kind: {"port": port}})
    assert run(shell, d, "probe.sh", env=base_env(d, **SYNC)).returncode == 0
    d = make_dir(sync_port=port, sync_probe={kind: {"port": free_port()}})
    assert run(shell, d, "probe.sh", env=base_env(d, **SYNC)).returncode == 1


def test_probe_exec(shell, make_dir, tmp_path):
    flag = tmp_path / "ready dir $x" / "ready'file"
    flag.parent.mkdir()
    d = make_dir(sync_port=1, sync_probe={"exec": {"command": ["test", "-e", str(flag)]}})
    assert run(shell, d, "probe.sh", env=base_env(d, **SYNC)).returncode == 1
    flag.write_text("")
    assert run(shell, d, "probe.sh", env=base_env(d, **SYNC)).returncode == 0


def test_probe_async_default_always_ready(shell, make_dir):
    d = make_dir(sync_port=free_port())  # nothing listens: sync would fail
    assert run(shell, d, "probe.sh", env=base_env(d, **ASYNC)).returncode == 0
    assert run(shell, d, "probe.sh", env=base_env(d, **SYNC)).returncode == 1


def test_probe_async_exec_failing(shell, make_dir):
    d = make_dir(sync_port=1, async_probe={"exec": {"command": ["sh", "-c", "exit 7"]}})
    assert run(shell, d, "probe.sh", env=base_env(d, **ASYNC)).returncode == 7


# --------------------------------------------------------------------------- prestop.sh


def test_prestop_sync_calls_offline_then_drains(shell, make_dir, http_server, tmp_path):
    sink = tmp_path / "sink"
    d = make_dir(sync_port=http_server.server_address[1], drain_seconds=1, offline_path="/offline")
    start = time.monotonic()
    r = run(shell, d, "prestop.sh", env=base_env(d, INFER_LOG_SINK=sink, **SYNC))
    elapsed = time.monotonic() - start
    assert r.returncode == 0, r.stderr
    assert http_server.hits == ["/offline"]
    assert elapsed >= 1.0
    assert "called offline path /offline" in r.stderr and "draining for 1 s" in r.stderr
    assert "pod=svc-0" in sink.read_text() and "draining" in sink.read_text()


def test_prestop_async_returns_at_once(shell, make_dir, http_server):
    d = make_dir(sync_port=http_server.server_address[1], drain_seconds=30, offline_path="/offline")
    start = time.monotonic()
    r = run(shell, d, "prestop.sh", env=base_env(d, INFER_LOG_SINK="/nonexistent/dir/x", **ASYNC))
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - start < 5
    assert http_server.hits == []


def test_prestop_offline_server_down_still_exits_0(shell, make_dir):
    d = make_dir(sync_port=free_port(), drain_seconds=0, offline_path="offline")
    r = run(shell, d, "prestop.sh", env=base_env(d, **SYNC))
    assert r.returncode == 0
    assert "failed (continuing)" in r.stderr


def test_prestop_runs_the_templates_own_handler_first(shell, make_dir, http_server, tmp_path):
    marker = tmp_path / "drained"
    d = make_dir(sync_port=http_server.server_address[1], drain_seconds=0, offline_path="/offline")
    r = run(shell, d, "prestop.sh", "exec", "sh", "-c", f"echo first > {marker}", env=base_env(d, **SYNC))
    assert r.returncode == 0, r.stderr
    assert marker.read_text() == "first\n"
    assert r.stderr.index("ran the template's preStop command") < r.stderr.index("called offline path")
    r = run(
        shell,
        d,
        "prestop.sh",
        "http",
        str(http_server.server_address[1]),
        "/quiesce",
        "HTTP",
        "127.0.0.1",
        env=base_env(d, **SYNC),
    )
    assert r.returncode == 0 and http_server.hits[-2:] == ["/quiesce", "/offline"], (r.stderr, http_server.hits)
    start = time.monotonic()
    r = run(shell, d, "prestop.sh", "sleep", "1", env=base_env(d, **ASYNC))
    assert r.returncode == 0 and time.monotonic() - start >= 1.0


def test_prestop_goes_on_when_the_templates_handler_fails(shell, make_dir, http_server):
    d = make_dir(sync_port=http_server.server_address[1], drain_seconds=0, offline_path="/offline")
    r = run(shell, d, "prestop.sh", "exec", "false", env=base_env(d, **SYNC))
    assert r.returncode == 0
    assert "exited 1 (continuing)" in r.stderr and http_server.hits == ["/offline"]


@pytest.mark.parametrize(
    ("grace", "drain", "expected"), [("30", 1, "draining for 1 s"), ("2", 30, "cut to 1 s"), ("1", 5, "cut to 0 s")]
)
def test_a_drain_never_outgrows_the_pods_own_grace_period(shell, make_dir, grace, drain, expected):
    d = make_dir(sync_port=free_port(), drain_seconds=drain)
    start = time.monotonic()
    r = run(shell, d, "prestop.sh", env=base_env(d, INFER_GRACE_SECONDS=grace, **SYNC))
    assert r.returncode == 0 and expected in r.stderr, r.stderr
    assert time.monotonic() - start < min(drain, int(grace)) + 2


RELEASED = "/released/ns/svc-0"  # what base_env's pod asks the operator


def test_prestop_waits_for_the_operator_to_confirm_the_deregistration_then_calls_offline(shell, make_dir, http_server):
    port = http_server.server_address[1]
    http_server.answers[RELEASED] = [503, 503, 503, 200]
    d = make_dir(sync_port=port, drain_seconds=0, offline_path="/offline", release_url=f"http://127.0.0.1:{port}")
    r = run(shell, d, "prestop.sh", env=base_env(d, INFER_GRACE_SECONDS="30", **SYNC))
    assert r.returncode == 0, r.stderr
    assert http_server.hits == [RELEASED] * 4 + ["/offline"], http_server.hits
    assert "waiting for the operator to confirm" in r.stderr and "the operator confirmed" in r.stderr


def test_prestop_with_the_operator_away_keeps_serving_until_the_drain_must_start(shell, make_dir):
    # Nothing answers: the operator is down. Grace 5 s: the hook ends by 4 s; a 1 s drain starts by 3 s.
    d = make_dir(sync_port=free_port(), drain_seconds=1, release_url=f"http://127.0.0.1:{free_port()}")
    start = time.monotonic()
    r = run(shell, d, "prestop.sh", env=base_env(d, INFER_GRACE_SECONDS="5", **SYNC))
    took = time.monotonic() - start
    assert r.returncode == 0 and "did not confirm the deregistration" in r.stderr, r.stderr
    assert "draining for 1 s" in r.stderr
    assert 2.5 <= took <= 5.5, took


def test_prestop_without_a_release_endpoint_does_not_wait(shell, make_dir, http_server):
    d = make_dir(sync_port=http_server.server_address[1], drain_seconds=0, offline_path="/offline")
    r = run(shell, d, "prestop.sh", env=base_env(d, INFER_GRACE_SECONDS="30", **SYNC))
    assert r.returncode == 0 and http_server.hits == ["/offline"] and "the operator" not in r.stderr


def test_prestop_waits_for_the_requests_in_flight_after_the_drain(shell, make_dir, http_server):
    port = http_server.server_address[1]
    http_server.answers["/idle"] = [503, 503, 503, 200]
    d = make_dir(sync_port=port, drain_seconds=0, idle_path="/idle")
    r = run(shell, d, "prestop.sh", env=base_env(d, INFER_GRACE_SECONDS="30", **SYNC))
    assert r.returncode == 0, r.stderr
    assert http_server.hits == ["/idle"] * 4 and "nothing in flight any more" in r.stderr


def test_prestop_waits_for_requests_in_flight_no_longer_than_the_grace_period(shell, make_dir, http_server):
    port = http_server.server_address[1]
    http_server.answers["/idle"] = [503]  # a stream that never ends
    d = make_dir(sync_port=port, drain_seconds=0, idle_path="/idle")
    start = time.monotonic()
    r = run(shell, d, "prestop.sh", env=base_env(d, INFER_GRACE_SECONDS="3", **SYNC))
    assert r.returncode == 0 and "still busy at the end of the grace period" in r.stderr, r.stderr
    assert time.monotonic() - start <= 3.5


def test_the_probe_checks_the_pods_own_sync_port_not_the_services_current_one(shell, make_dir, tmp_path):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        own = listener.getsockname()[1]
        d = make_dir(sync_port=free_port())  # the service moved to another port since
        assert run(shell, d, "probe.sh", env=base_env(d, INFER_SYNC_PORT=str(own), **SYNC)).returncode == 0
        assert run(shell, d, "probe.sh", env=base_env(d, **SYNC)).returncode != 0


# --------------------------------------------------------------------------- gate.sh


def test_gate_waits_for_role_label(shell, make_dir, tmp_path):
    d = make_dir()
    podinfo = tmp_path / "podinfo"
    podinfo.mkdir()
    (podinfo / "labels").write_text('app="x"\n')
    errfile = tmp_path / "err"
    with errfile.open("w") as err:
        proc = subprocess.Popen(
            [*shell, str(d / "gate.sh")],
            env=base_env(d, INFER_PODINFO_DIR=podinfo, INFER_GATE_INTERVAL=1, INFER_GATE_TIMEOUT=60),
            stderr=err,
        )
    try:
        wait_for(lambda: "waiting" in errfile.read_text(), 10, 0.02, "gate waiting line")
        assert proc.poll() is None
        tmp = podinfo / "labels.tmp"
        # Downward-API files have no trailing newline.
        tmp.write_text('app="x"\ninfer-operator.io/role="sync"')
        tmp.rename(podinfo / "labels")
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
        proc.wait()
    text = errfile.read_text()
    assert "svc-0" in text and 'infer-operator.io/role="sync"' in text


def test_gate_passes_at_once_when_labelled(shell, make_dir, tmp_path):
    d = make_dir()
    (tmp_path / "labels").write_text('infer-operator.io/role="async"\nz="1"')
    r = run(shell, d, "gate.sh", env=base_env(d, INFER_PODINFO_DIR=tmp_path, INFER_GATE_TIMEOUT=0))
    assert r.returncode == 0, r.stderr


def test_gate_times_out(shell, make_dir, tmp_path):
    d = make_dir()
    (tmp_path / "labels").write_text('infer-operator.io/roles="no"\nx-infer-operator.io/role="no"\n')
    start = time.monotonic()
    r = run(shell, d, "gate.sh", env=base_env(d, INFER_PODINFO_DIR=tmp_path, INFER_GATE_TIMEOUT=1), timeout=15)
    assert r.returncode == 1
    assert time.monotonic() - start < 10
    assert "svc-0" in r.stderr and "has not been labelled" in r.stderr and "Is infer-operator running?" in r.stderr


def test_gate_times_out_without_file(shell, make_dir, tmp_path):
    d = make_dir()
    r = run(shell, d, "gate.sh", env=base_env(d, INFER_PODINFO_DIR=tmp_path / "nope", INFER_GATE_TIMEOUT=0))
    assert r.returncode == 1 and "Is infer-operator running?" in r.stderr


# --------------------------------------------------------------------------- render_settings


def _bodies(text: str) -> dict[str, str]:
    out, name = {}, None
    for line in text.splitlines():
        if line.endswith("() {"):
            name = line[: -len("() {")]
        elif line == "}":
            name = None
        elif name:
            out[name] = line.strip()
    return out


@pytest.mark.parametrize(
    "sync_port, probe, expected",
    [
        (8000, None, 'infer_listening "$INFER_SYNC_PORT"'),
        (None, None, "true"),
        # the sync port (by number or any name) is the pod's own at run time
        (
            8000,
            {"httpGet": {"path": "/healthz", "port": 8000, "scheme": "HTTP"}},
            """infer_http_get "$INFER_SYNC_PORT" /healthz HTTP ''""",
        ),
        (8000, {"httpGet": {"port": "sync"}}, """infer_http_get "$INFER_SYNC_PORT" / HTTP ''"""),
        (
            8000,
            {"httpGet": {"port": "http", "scheme": "HTTPS", "host": "10.0.0.1"}},
            'infer_http_get "$INFER_SYNC_PORT" / HTTPS 10.0.0.1',
        ),
        (8000, {"httpGet": {"port": "9001", "path": "/h"}}, "infer_http_get 9001 /h HTTP ''"),
        (
            8000,
            {"httpGet": {"port": 1, "path": "/", "httpHeaders": [{"name": "A", "value": "b c"}]}},
            "infer_http_get 1 / HTTP '' 'A: b c'",
        ),
        (8000, {"tcpSocket": {"port": 8000}}, 'infer_tcp "$INFER_SYNC_PORT"'),
        (8000, {"tcpSocket": {"port": "sync"}, "periodSeconds": 3}, 'infer_tcp "$INFER_SYNC_PORT"'),
        (8000, {"grpc": {"port": 9000, "service": "x"}}, "infer_listening 9000"),
        (8000, {"exec": {"command": ["cat", "/tmp/ready"]}}, "cat /tmp/ready"),
        (8000, {"exec": {"command": ["sh", "-c", "test -e /x && echo ok"]}}, "sh -c 'test -e /x && echo ok'"),
    ],
)
def test_render_settings_probe_table(sync_port, probe, expected):
    text = render_settings(
        PodSettings(
            sync_port=sync_port,
            drain_seconds=5,
            async_drain_seconds=0,
            offline_path=None,
            sync_probe=probe,
            async_probe=probe,
        )
    )
    bodies = _bodies(text)
    assert bodies["infer_sync_probe"] == expected
    assert bodies["infer_async_probe"] == (expected if probe is not None else "true")


def test_render_settings_variables(shell, tmp_path):
    (tmp_path / "settings.sh").write_text(
        render_settings(
            PodSettings(
                sync_port=8000,
                drain_seconds=30,
                async_drain_seconds=2,
                offline_path="/offline",
                sync_probe=None,
                async_probe=None,
                probe_timeout_seconds=3,
            )
        )
    )
    r = subprocess.run(
        [
            *shell,
            "-c",
            '. ./settings.sh; printf "%s|" "$INFER_SYNC_PORT" "$INFER_DRAIN_SECONDS" '
            '"$INFER_ASYNC_DRAIN_SECONDS" "$INFER_OFFLINE_PATH" "$INFER_PROBE_TIMEOUT_SECONDS"',
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert r.stdout == "8000|30|2|/offline|3|"


HOSTILE = [
    "'; touch PWNED; '",
    "$(touch PWNED)",
    "`touch PWNED`",
    '"; touch PWNED; "',
    "a\ntouch PWNED\n",
    "x && touch PWNED",
    "*",
    "$HOME ${IFS} \\",
]


@pytest.mark.parametrize("hostile", HOSTILE)
def test_render_settings_quotes_hostile_input(shell, tmp_path, hostile):
    """Hostile path/argv/header values reach the helpers as literal words."""
    text = render_settings(
        PodSettings(
            sync_port=8000,
            drain_seconds=0,
            async_drain_seconds=0,
            offline_path=hostile,
            sync_probe={
                "httpGet": {
                    "path": hostile,
                    "port": 8000,
                    "host": hostile,
                    "httpHeaders": [{"name": "X", "value": hostile}],
                }
            },
            async_probe={"exec": {"command": ["printf", "<%s>", hostile, hostile]}},
        )
    )
    (tmp_path / "settings.sh").write_text(text)
    script = (
        ". ./settings.sh\n"
        "infer_http_get() { printf '[%s]' \"$@\"; }\n"  # stub: show the argv it gets
        "printf '{%s}' \"$INFER_OFFLINE_PATH\"; infer_sync_probe; infer_async_probe\n"
    )
    r = subprocess.run([*shell, "-c", script], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"{{{hostile}}}[8000][{hostile}][HTTP][{hostile}][X: {hostile}]<{hostile}><{hostile}>"
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"sync_probe": {"httpGet": {"port": 1}, "tcpSocket": {"port": 1}}},
        {"sync_probe": {"periodSeconds": 5}},
        {"sync_probe": {"exec": {"command": []}}},
        {"sync_probe": {"httpGet": {"port": "http"}}, "sync_port": None},
        {"sync_probe": {"tcpSocket": {"port": 70000}}},
        {"sync_probe": {"tcpSocket": {"port": True}}},
        {"offline_path": "/a\x00b"},
    ],
)
def test_render_settings_rejects(kwargs):
    """Free-form probe handlers are checked here; numbers come validated from the API model."""
    with pytest.raises(ValueError):
        render_settings(PodSettings(**{**SETTINGS_DEFAULTS, "sync_port": 8000, **kwargs}))
