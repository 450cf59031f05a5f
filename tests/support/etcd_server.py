"""Start a real etcd process for tests, plus raw key helpers via its JSON gateway (stdlib only).

Binary: $INFER_OPERATOR_ETCD, else /usr/bin/etcd (Debian etcd-server), else the project's own build
under ~/.cache/infer-operator/*/bin/etcd, else `etcd` on PATH. Ports are free ports on 127.0.0.1;
data lives in a temp dir removed on stop. ETCD_* variables are stripped from the child's environment
so a distro config (/etc/default/etcd is only read by systemd anyway) cannot interfere; the Debian
systemd unit listens on 2379/2380, which we never use.

    with EtcdServer() as etcd:
        etcd.client_url            # http://127.0.0.1:PORT
        etcd.put("/k", "v"); etcd.get("/k"); etcd.range_prefix("/"); etcd.delete_prefix("/")
        etcd.enable_auth("root", "pw")   # later raw calls authenticate as root

Standalone: python -m tests.support.etcd_server [--port N]
"""

from __future__ import annotations

import atexit
import base64
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path


class EtcdUnavailable(RuntimeError):
    """No etcd binary found."""


def find_etcd_binary() -> str:
    env = os.environ.get("INFER_OPERATOR_ETCD")
    if env:
        if not os.access(env, os.X_OK):
            raise EtcdUnavailable(f"INFER_OPERATOR_ETCD={env} is not executable")
        return env
    candidates = ["/usr/bin/etcd"]
    candidates += sorted(glob.glob(os.path.expanduser("~/.cache/infer-operator/*/bin/etcd")))
    on_path = shutil.which("etcd")
    if on_path:
        candidates.append(on_path)
    for c in candidates:
        if os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    raise EtcdUnavailable(
        "etcd binary not found: set INFER_OPERATOR_ETCD or `apt-get install -y etcd-server`"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _b64(s: str | bytes) -> str:
    if isinstance(s, str):
        s = s.encode()
    return base64.b64encode(s).decode()


def _prefix_end(prefix: str) -> str:
    raw = bytearray(prefix.encode())
    raw[-1] += 1
    return base64.b64encode(bytes(raw)).decode()


class EtcdServer:
    def __init__(self, *, binary: str | None = None, client_port: int | None = None, start_timeout: float = 20.0):
        self.binary = binary or find_etcd_binary()
        self._want_port = client_port
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen | None = None
        self.tmpdir: str | None = None
        self.client_port = 0
        self._auth: tuple[str, str] | None = None
        self._token: str | None = None

    @property
    def client_url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def log_path(self) -> Path:
        assert self.tmpdir
        return Path(self.tmpdir) / "etcd.log"

    # ---- lifecycle -----------------------------------------------------------------------------
    def start(self) -> "EtcdServer":
        last = ""
        for _ in range(3):  # a free port may be grabbed between probe and bind: retry on new ports
            try:
                self._start_once()
                atexit.register(self.stop)  # no orphaned etcd if the test run ends abruptly
                return self
            except RuntimeError as exc:
                last = str(exc)
                self.stop()
        raise RuntimeError(f"etcd did not start: {last}")

    def _start_once(self) -> None:
        self.tmpdir = tempfile.mkdtemp(prefix="infer-op-etcd-")
        self.client_port = self._want_port or free_port()
        peer_port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
        args = [
            self.binary,
            "--name", "test",
            "--data-dir", os.path.join(self.tmpdir, "data"),
            "--listen-client-urls", self.client_url,
            "--advertise-client-urls", self.client_url,
            "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
            "--initial-cluster", f"test=http://127.0.0.1:{peer_port}",
            "--initial-cluster-state", "new",
        ]
        logf = open(self.log_path, "wb")
        try:
            self.proc = subprocess.Popen(args, stdout=logf, stderr=subprocess.STDOUT, env=env,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            logf.close()
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"etcd exited with {self.proc.returncode}: {self._log_tail()}")
            try:
                with urllib.request.urlopen(self.client_url + "/health", timeout=1) as r:
                    if json.loads(r.read()).get("health") == "true":
                        return
            except (OSError, ValueError):
                pass
            time.sleep(0.05)  # polling interval for readiness, not synchronisation
        raise RuntimeError(f"etcd not healthy within {self.start_timeout}s: {self._log_tail()}")

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-1500:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None
        if self.tmpdir:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = None

    def __enter__(self) -> "EtcdServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- raw gateway access ----------------------------------------------------------------------
    def call(self, path: str, body: dict, *, auth: bool = True) -> dict:
        headers = {"Content-Type": "application/json"}
        if auth and self._auth is not None:
            if self._token is None:
                self._token = self.call("/v3/auth/authenticate",
                                        {"name": self._auth[0], "password": self._auth[1]}, auth=False)["token"]
            headers["Authorization"] = self._token
        req = urllib.request.Request(self.client_url + path, data=json.dumps(body).encode(),
                                     headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"etcd {path}: HTTP {exc.code}: {exc.read()[:300]!r}") from None

    def put(self, key: str, value: str | bytes) -> None:
        self.call("/v3/kv/put", {"key": _b64(key), "value": _b64(value)})

    def get(self, key: str) -> bytes | None:
        kvs = self.call("/v3/kv/range", {"key": _b64(key)}).get("kvs") or []
        return base64.b64decode(kvs[0].get("value", "")) if kvs else None

    def range_prefix(self, prefix: str = "\0") -> dict[str, bytes]:
        """All keys starting with prefix (default: the whole keyspace)."""
        if prefix == "\0":
            body = {"key": _b64("\0"), "range_end": _b64("\0")}
        else:
            body = {"key": _b64(prefix), "range_end": _prefix_end(prefix)}
        kvs = self.call("/v3/kv/range", body).get("kvs") or []
        return {base64.b64decode(kv["key"]).decode(): base64.b64decode(kv.get("value", "")) for kv in kvs}

    def delete(self, key: str) -> None:
        self.call("/v3/kv/deleterange", {"key": _b64(key)})

    def delete_all(self) -> None:
        self.call("/v3/kv/deleterange", {"key": _b64("\0"), "range_end": _b64("\0")})

    def enable_auth(self, user: str = "root", password: str = "root-pw") -> None:
        """Create user+role 'root' and enable auth; later raw calls authenticate as that user."""
        self.call("/v3/auth/user/add", {"name": user, "password": password}, auth=False)
        if user != "root":
            raise ValueError("etcd requires the 'root' user to enable auth; use user='root'")
        self.call("/v3/auth/role/add", {"name": "root"}, auth=False)
        self.call("/v3/auth/user/grant", {"user": user, "role": "root"}, auth=False)
        self.call("/v3/auth/enable", {}, auth=False)
        self._auth = (user, password)
        self._token = None


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(description="run a throwaway etcd for tests/demo")
    p.add_argument("--port", type=int, default=None)
    args = p.parse_args(argv)

    def _term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _term)
    signal.signal(signal.SIGINT, _term)
    with EtcdServer(client_port=args.port) as srv:
        print(f"etcd {srv.binary} listening on {srv.client_url} (Ctrl-C to stop)", flush=True)
        try:
            while srv.proc is not None and srv.proc.poll() is None:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
