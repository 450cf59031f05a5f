"""The HTTP registry contract served by a separate process, as a user's admin controller would be.

Tests drive it from outside: inspect its state, seed per-IP configs, inject faults.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

from devtools.harness import free_port, terminate, wait_for

ROOT = Path(__file__).resolve().parents[2]


class AdminControllerProcess:
    """The HTTP registry contract served by a separate process (a user's admin controller)."""

    def __init__(self, token: str | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [sys.executable, "-m", "tests.support.admin_controller", "--port", str(self.port)]
        if token:
            args += ["--token", token]
        self.process = subprocess.Popen(
            args,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            cwd=ROOT,
        )
        wait_for(self._up, timeout=20, message="admin controller listening")

    def _up(self) -> bool:
        try:
            self.state()
            return True
        except OSError:
            return False

    def _call(self, method: str, path: str, body=None):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            text = response.read()
            return json.loads(text) if text else None

    def state(self):
        return self._call("GET", "/_admin/state")

    def instances(self, service: str) -> dict:
        return self.state()["instances"].get(service, {})

    def configs(self, service: str) -> set[str]:
        return set(self.state()["configs"].get(service, []))

    def seed_config(self, service: str, ip: str) -> None:
        self._call("PUT", f"/_admin/services/{service}/configs/{ip}", {"weight": 1})

    def faults(self, **spec) -> None:
        self._call("POST", "/_admin/faults", spec)

    def stop(self) -> None:
        terminate(self.process, 10)
