"""Helm chart fixtures: the helm binary the toolchain builds (cached)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "infer-operator"


@pytest.fixture(scope="session")
def helm_bin() -> str:
    from devtools.cluster import toolchain

    path = toolchain.binary_path("helm")
    if not path.exists():
        toolchain.ensure(["helm"])
    return str(path)


class Helm:
    def __init__(self, binary: str, kubeconfig: str | None = None):
        self.binary = binary
        self.kubeconfig = kubeconfig

    def __call__(self, *args: str, check: bool = False, timeout: float = 120) -> subprocess.CompletedProcess:
        extra = [f"--kubeconfig={self.kubeconfig}"] if self.kubeconfig else []
        return subprocess.run([self.binary, *extra, *args], capture_output=True, text=True, timeout=timeout,
                              check=check)


@pytest.fixture(scope="session")
def helm(helm_bin) -> Helm:
    """helm without a cluster (lint, template)."""
    return Helm(helm_bin)
