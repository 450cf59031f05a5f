"""r-nacos, a Nacos server (v1 HTTP OpenAPI, 2.x gRPC client protocol) in Rust, one node on
127.0.0.1, with authentication on: its binary comes from the project's cached build
(devtools/cluster/registry_builds.py, `rnacos`).

It listens on three ports of its own: HTTP (the OpenAPI, `url`), gRPC (`grpc_port`: the 2.x
clients, e.g. nacos-sdk-python, which find it at the HTTP port + 1000) and its console.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import tempfile
import urllib.request
from pathlib import Path

from devtools.harness.processes import free_port, terminate
from devtools.harness.waiting import wait_for

START_TIMEOUT = 60.0


class NacosUnavailable(RuntimeError):
    pass


def _free_http_port() -> int:
    """A port whose +1000 (the gRPC port 2.x clients derive from it) is free too."""
    import socket

    for _ in range(50):
        port = free_port()
        if port + 1000 > 65535:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1000))
            except OSError:
                continue
        return port
    raise NacosUnavailable("no free pair of ports (N, N+1000) for r-nacos")


class ExternalNacos:
    """A Nacos server someone else runs (NACOS_URL), as the tests use a NacosServer."""

    def __init__(self, url: str, username: str, password: str) -> None:
        self.url, self.username, self.password = url.rstrip("/"), username, password
        self.grpc_port = int(url.rsplit(":", 1)[-1].strip("/")) + 1000

    token = property(lambda self: lambda: NacosServer.token(self))  # type: ignore[assignment]


class NacosServer:
    def __init__(self, *, username: str = "nacos-admin", password: str = "s3cret-nacos-pw", auth: bool = True):
        from devtools.cluster import toolchain

        self.binary = str(toolchain.ensure(["rnacos"])["rnacos"])
        self.username, self.password, self.auth = username, password, auth
        self.port = _free_http_port()
        self.grpc_port = self.port + 1000
        self.console_port = free_port()
        self.dir: Path | None = None
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> NacosServer:
        """Start the server and wait (START_TIMEOUT s) until the admin can log in.

        r-nacos creates the admin user only once its Raft node leads; if that is not so half a second
        after start, it looks again once, ten seconds later, and never after. A start that misses both
        (seen once under a loaded CI machine) is tried once more on fresh ports and a fresh data
        directory, the first attempt's log printed; a second miss fails with both logs' tails.
        """
        try:
            return self._start_once()
        except NacosUnavailable as first:
            print(f"[nacos] r-nacos did not come up; trying once more on fresh ports: {first}", flush=True)
            self.port = _free_http_port()
            self.grpc_port = self.port + 1000
            self.console_port = free_port()
            try:
                return self._start_once()
            except NacosUnavailable as second:
                raise NacosUnavailable(f"r-nacos did not come up twice; first: {first}; second: {second}") from None

    def _log_tail(self) -> str:
        try:
            return (self.dir / "stderr.log").read_text(errors="replace")[-2000:]  # type: ignore[operator]
        except OSError:
            return "(no log)"

    def _start_once(self) -> NacosServer:
        self.dir = Path(tempfile.mkdtemp(prefix="rnacos-"))
        env = {
            **os.environ,
            "RNACOS_HTTP_PORT": str(self.port),
            "RNACOS_GRPC_PORT": str(self.grpc_port),
            "RNACOS_HTTP_CONSOLE_PORT": str(self.console_port),
            "RNACOS_SDK_HOST": "127.0.0.1",
            "RNACOS_CONSOLE_HOST": "127.0.0.1",
            "RNACOS_RAFT_NODE_ADDR": f"127.0.0.1:{self.grpc_port}",
            "RNACOS_DATA_DIR": str(self.dir / "data"),
            "RNACOS_ENABLE_OPEN_API_AUTH": "true" if self.auth else "false",
            "RNACOS_INIT_ADMIN_USERNAME": self.username,
            "RNACOS_INIT_ADMIN_PASSWORD": self.password,
            "RNACOS_ENABLE_METRICS": "false",
            # Every login counts against a per-user limit (100 a minute by default), failed ones
            # included, and the suites log in per client: a test server is not where it is tested.
            "RNACOS_API_LOGIN_ONE_MINUTE_LIMIT": "1000000",
            "RNACOS_CONSOLE_LOGIN_ONE_HOUR_LIMIT": "1000000",
            "RUST_LOG": "info",
        }
        self.proc = subprocess.Popen(
            [self.binary],
            cwd=self.dir,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(self.dir / "stderr.log", "wb"),  # noqa: SIM115 - the process holds it
            start_new_session=True,
        )
        atexit.register(self.stop)
        try:
            wait_for(
                lambda: self.proc is None or self.proc.poll() is not None or self.token() is not None,
                timeout=START_TIMEOUT,
                interval=0.5,
                message=f"r-nacos on {self.url}",
            )
        except AssertionError as exc:
            log = self._log_tail()
            self.stop()
            raise NacosUnavailable(f"{exc}; its log ends: {log}") from None
        if self.proc.poll() is not None:
            log = self._log_tail()
            self.stop()
            raise NacosUnavailable(f"r-nacos exited at start: {log}")
        return self

    def token(self) -> str | None:
        """An access token (None while the server does not answer)."""
        data = f"username={self.username}&password={self.password}".encode()
        try:
            with urllib.request.urlopen(f"{self.url}/nacos/v1/auth/login", data=data, timeout=2) as resp:
                return json.loads(resp.read())["accessToken"]
        except (OSError, ValueError, KeyError):
            return None

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc, 10)
            self.proc = None
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self) -> NacosServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
