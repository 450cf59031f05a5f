"""Run the operator as a separate process against a cluster, the way users run it.

Tests kill, stop and restart it; its log is kept in a file and shown when a test fails.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from devtools.cluster.processes import terminate


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class OperatorProcess:
    def __init__(self, kubeconfig: str, log_path: Path, *extra_args: str, env: dict[str, str] | None = None):
        self.kubeconfig = str(kubeconfig)
        self.log_path = log_path
        self.extra_args = list(extra_args)
        self.env = env or {}
        self.process: subprocess.Popen | None = None
        self.health_port = 0

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self, timeout: float = 60.0) -> OperatorProcess:
        self.health_port = free_port()
        args = [
            sys.executable, "-m", "infer_operator", "run",
            "--kubeconfig", self.kubeconfig,
            "--liveness", f"http://127.0.0.1:{self.health_port}/healthz",
            "--metrics-port", "0",
            *self.extra_args,
        ]
        if "--peering" not in self.extra_args:
            args.append("--standalone")
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        log.write(f"\n===== start {' '.join(args)}\n".encode())
        log.flush()
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                        env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env})
        log.close()
        self.wait_healthy(timeout)
        return self

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"operator exited with {self.process.returncode}:\n{self.log_tail()}")
            if self.healthy():
                return
            time.sleep(0.2)
        raise AssertionError(f"operator not healthy within {timeout}s:\n{self.log_tail()}")

    def signal(self, signum: int) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signum)

    def stop(self, timeout: float = 20.0) -> int | None:
        return terminate(self.process, timeout)

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])
