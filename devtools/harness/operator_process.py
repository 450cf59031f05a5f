"""The operator as a subprocess, run the way users run it: health-checked start, stop, kill, signal, a log file."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable
from pathlib import Path

from .processes import free_port, terminate
from .waiting import wait_for

REPO_ROOT = Path(__file__).resolve().parents[2]


class OperatorProcess:
    """``python -m <module> run --kubeconfig ...`` as a child process.

    ``args`` are more ``run`` flags; ``--standalone`` is added unless they ask for ``--peering``.
    ``namespaces`` become ``--namespace`` flags (none: all namespaces). ``env`` is added to this
    process's environment. ``metrics``: serve Prometheus metrics on a free port
    (``metrics_port``), else ``--metrics-port 0``. ``module`` is what runs the CLI: the benchmarks
    run it under a wrapper that counts its requests. ``release_host``: serve the pods' release
    checks on a free port (``release_port``), which pods reach at that host (the real node's pods
    reach this machine at the bridge's address; the port stays across restarts, as running pods keep
    the address); without it none is served (``--release-port 0``).

    Each ``start()`` picks a new liveness port (``health_port``) and appends to ``log_path``.
    """

    def __init__(
        self,
        kubeconfig: str | os.PathLike,
        log_path: Path,
        *args: str,
        namespaces: Iterable[str] = (),
        env: dict[str, str] | None = None,
        metrics: bool = False,
        module: str = "infer_operator",
        release_host: str | None = None,
    ):
        self.kubeconfig = str(kubeconfig)
        self.log_path = Path(log_path)
        self.extra_args = list(args)
        self.namespaces = list(namespaces)
        self.env = env or {}
        self.serve_metrics = metrics
        self.module = module
        self.process: subprocess.Popen | None = None
        self.health_port = 0
        self.metrics_port = 0
        self.release_host = release_host
        self.release_port = 0
        self.started_at = 0.0  # time.monotonic() of the last start()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def argv(self) -> list[str]:
        args = [
            sys.executable,
            "-m",
            self.module,
            "run",
            "--kubeconfig",
            self.kubeconfig,
            "--liveness",
            f"http://127.0.0.1:{self.health_port}/healthz",
            "--metrics-port",
            str(self.metrics_port),
        ]
        if "--release-port" not in self.extra_args:
            args += ["--release-port", str(self.release_port)]
            if self.release_host:
                args += ["--release-url", f"http://{self.release_host}:{self.release_port}"]
        for namespace in self.namespaces:
            args += ["--namespace", namespace]
        args += self.extra_args
        if "--peering" not in self.extra_args:
            args.append("--standalone")
        return args

    def start(self, timeout: float = 60.0) -> OperatorProcess:
        """Start it and wait up to ``timeout`` seconds for its liveness endpoint; AssertionError
        (with the log's tail) if it exits or stays unhealthy."""
        self.health_port = free_port()
        self.metrics_port = free_port() if self.serve_metrics else 0
        # The same release port across restarts: running pods have its address in their settings.
        if self.release_host and not self.release_port:
            self.release_port = free_port()
        args = self.argv()
        # The repo root is importable so that a wrapper outside the installed package
        # (bench.instrumented) can be the module; its own session, so that a Ctrl-C meant for the
        # caller does not skip the caller's orderly stop.
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
            **self.env,
        }
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== start {' '.join(args)}\n".encode())
            log.flush()
            self.started_at = time.monotonic()
            self.process = subprocess.Popen(
                args,
                cwd=REPO_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        self.wait_healthy(timeout)
        return self

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def wait_healthy(self, timeout: float) -> None:
        def up() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"operator exited with {self.process.returncode}:\n{self.log_tail()}")
            return self.healthy()

        wait_for(up, timeout, message=lambda: f"operator not healthy:\n{self.log_tail()}")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, signum: int) -> None:
        if self.alive():
            self.process.send_signal(signum)

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM, SIGKILL after ``timeout`` seconds; the exit code (None if never started)."""
        return terminate(self.process, timeout)

    def kill(self) -> None:
        if self.alive():
            self.process.kill()
            self.process.wait(10)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def grep(self, *needles: str) -> list[str]:
        """Log lines containing any of ``needles``."""
        return [line for line in self.log_text().splitlines() if any(n in line for n in needles)]

    def metrics_text(self, timeout: float = 5.0) -> str:
        """The Prometheus exposition text (needs ``metrics=True``); OSError when unreachable."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=timeout) as resp:
            return resp.read().decode()

    def metrics(self, timeout: float = 5.0) -> dict[str, float]:
        """Prometheus samples: ``'name{labels}'`` -> value."""
        out = {}
        for line in self.metrics_text(timeout).splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                try:
                    out[key] = float(value)
                except ValueError:
                    pass
        return out
