"""A throwaway etcd to use as the registry, for the demo, the tests and the benchmarks.

Binary: ``$INFER_OPERATOR_ETCD``, else ``/usr/bin/etcd`` (Debian ``etcd-server``), else the local control
plane toolchain's etcd (if built), else ``etcd`` on PATH. Listens on free ports on 127.0.0.1; data and log
live in a temp dir (the data is removed on stop, the log is kept). Stdlib only: keys are read and
written through etcd's JSON gateway (``POST /v3/kv/...``, base64 keys and values), etcd 3.4 .. 3.6.

    with EtcdServer() as etcd:
        etcd.client_url                     # http://127.0.0.1:PORT
        etcd.put("/k", "v"); etcd.get("/k"); etcd.range_prefix("/services/"); etcd.delete("/k")
        etcd.enable_auth("root", "pw")      # later calls authenticate as root
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from devtools.harness.processes import free_port, terminate

from . import toolchain


class EtcdError(RuntimeError):
    pass


def find_binary() -> str:
    env = os.environ.get("INFER_OPERATOR_ETCD")
    if env:
        if not os.access(env, os.X_OK):
            raise EtcdError(f"INFER_OPERATOR_ETCD={env} is not an executable file")
        return env
    candidates = ["/usr/bin/etcd"]
    if toolchain.is_built("etcd"):
        candidates.append(str(toolchain.binary_path("etcd")))
    on_path = shutil.which("etcd")
    if on_path:
        candidates.append(on_path)
    for candidate in candidates:
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise EtcdError(
        "no etcd binary: set INFER_OPERATOR_ETCD, `apt-get install etcd-server`, or "
        "`python -m devtools.cluster build etcd`"
    )


def b64(value: str | bytes) -> str:
    """``value`` base64-encoded, as the JSON gateway takes keys and values."""
    return base64.b64encode(value.encode() if isinstance(value, str) else value).decode()


def prefix_end(prefix: str) -> str:
    """The base64 ``range_end`` that, with ``prefix`` as the key, selects every key starting with it."""
    raw = bytearray(prefix.encode())
    raw[-1] += 1
    return base64.b64encode(bytes(raw)).decode()


class EtcdServer:
    def __init__(
        self,
        *,
        binary: str | None = None,
        start_timeout: float = 30.0,
        name: str = "registry",
        client_port: int | None = None,
        host: str = "127.0.0.1",
    ):
        self.binary = binary or find_binary()
        self.start_timeout = start_timeout
        self.name = name
        self._wanted_port = client_port
        # The client address: 127.0.0.1, or e.g. the real node's pod gateway for pods to reach it.
        self.host = host
        self.proc: subprocess.Popen | None = None
        self.workdir: Path | None = None
        self.client_port = 0
        self._auth: tuple[str, str] | None = None
        self._token: str | None = None

    @property
    def client_url(self) -> str:
        return f"http://{self.host}:{self.client_port}"

    @property
    def log_path(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "etcd.log"

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> EtcdServer:
        last = ""
        for _ in range(3):  # a free port can be taken between probing and binding: retry on new ones
            try:
                self._start_once()
                return self
            except EtcdError as exc:
                last = str(exc)
                self.stop()
        raise EtcdError(f"etcd did not start: {last}")

    def _start_once(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="infer-etcd-"))
        self.client_port, peer_port = self._wanted_port or free_port(), free_port()
        peer = f"http://127.0.0.1:{peer_port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
        argv = [
            self.binary,
            "--name",
            self.name,
            "--data-dir",
            str(self.workdir / "data"),
            "--listen-client-urls",
            self.client_url,
            "--advertise-client-urls",
            self.client_url,
            "--listen-peer-urls",
            peer,
            "--initial-advertise-peer-urls",
            peer,
            "--initial-cluster",
            f"{self.name}={peer}",
            "--initial-cluster-state",
            "new",
        ]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self.proc.poll() is not None:
                raise EtcdError(f"etcd exited with {self.proc.returncode}: {self.log_tail()}")
            if self.healthy():
                return
            if time.monotonic() >= deadline:
                raise EtcdError(f"etcd not healthy within {self.start_timeout:.0f}s: {self.log_tail()}")
            time.sleep(0.1)

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.client_url + "/health", timeout=1) as resp:
                return json.loads(resp.read()).get("health") == "true"
        except (OSError, ValueError):
            return False

    def log_tail(self, chars: int = 1500) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except (OSError, AssertionError):
            return "(no log)"

    def stop(self, timeout: float = 10.0) -> None:
        terminate(self.proc, timeout, kill_wait=5)
        self.proc = None
        if self.workdir is not None:
            shutil.rmtree(self.workdir / "data", ignore_errors=True)

    def __enter__(self) -> EtcdServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ JSON gateway

    def call(self, path: str, body: dict, timeout: float = 5.0, *, auth: bool = True) -> dict:
        headers = {"Content-Type": "application/json"}
        if auth and self._auth is not None:
            if self._token is None:
                name, password = self._auth
                self._token = self.call("/v3/auth/authenticate", {"name": name, "password": password}, auth=False)[
                    "token"
                ]
            headers["Authorization"] = self._token
        req = urllib.request.Request(
            self.client_url + path, data=json.dumps(body).encode(), headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            raise EtcdError(f"etcd {path}: HTTP {exc.code}: {exc.read()[:300]!r}") from None
        except OSError as exc:
            raise EtcdError(f"etcd {path}: {exc}") from None

    def put(self, key: str, value: str | bytes) -> None:
        self.call("/v3/kv/put", {"key": b64(key), "value": b64(value)})

    def get(self, key: str) -> bytes | None:
        kvs = self.call("/v3/kv/range", {"key": b64(key)}).get("kvs") or []
        return base64.b64decode(kvs[0].get("value", "")) if kvs else None

    def range_prefix(self, prefix: str = "\0") -> dict[str, bytes]:
        """Every key starting with ``prefix`` (default: the whole keyspace) -> its value, sorted by key."""
        if prefix == "\0":
            body = {"key": b64("\0"), "range_end": b64("\0")}
        else:
            body = {"key": b64(prefix), "range_end": prefix_end(prefix)}
        kvs = self.call("/v3/kv/range", body).get("kvs") or []
        return {base64.b64decode(kv["key"]).decode(): base64.b64decode(kv.get("value", "")) for kv in kvs}

    def delete(self, key: str) -> None:
        self.call("/v3/kv/deleterange", {"key": b64(key)})

    def delete_all(self) -> None:
        self.call("/v3/kv/deleterange", {"key": b64("\0"), "range_end": b64("\0")})

    def enable_auth(self, user: str = "root", password: str = "root-pw") -> None:
        """Create the root user and role and turn auth on; later calls authenticate as that user."""
        if user != "root":
            raise ValueError("etcd requires the 'root' user to enable auth; use user='root'")
        self.call("/v3/auth/user/add", {"name": user, "password": password}, auth=False)
        self.call("/v3/auth/role/add", {"name": "root"}, auth=False)
        self.call("/v3/auth/user/grant", {"user": user, "role": "root"}, auth=False)
        self.call("/v3/auth/enable", {}, auth=False)
        self._auth = (user, password)
        self._token = None
