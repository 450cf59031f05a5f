"""Helm chart fixtures: the helm binary the toolchain builds (cached)."""

from __future__ import annotations

import secrets
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "infer-operator"


def kube_version() -> str:
    """The Kubernetes version to render for: the local control plane's. Without --kube-version helm
    assumes v1.20, which the chart's kubeVersion refuses."""
    from devtools.cluster import versions

    return versions.KUBERNETES_VERSION


def render_notes(helm: Helm, *args: str, tmp_path: Path) -> str:
    """NOTES.txt as `helm install` prints it, rendered offline: helm template skips NOTES.txt, so a
    copy of the chart renders it as a string inside a template of its own."""
    chart = tmp_path / "notes-chart"
    shutil.copytree(CHART, chart)
    notes = (chart / "templates" / "NOTES.txt").read_text()
    (chart / "templates" / "NOTES.txt").unlink()
    (chart / "templates" / "_notes.tpl").write_text('{{- define "test.notes" -}}' + notes + "{{- end -}}")
    (chart / "templates" / "notes.yaml").write_text('notes: {{ include "test.notes" . | toJson }}\n')
    result = helm(
        "template",
        "infer-operator",
        str(chart),
        "--kube-version",
        kube_version(),
        "--show-only",
        "templates/notes.yaml",
        *args,
    )
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)["notes"]


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
        return subprocess.run(
            [self.binary, *extra, *args], capture_output=True, text=True, timeout=timeout, check=check
        )


@pytest.fixture(scope="session")
def helm(helm_bin) -> Helm:
    """helm without a cluster (lint, template)."""
    return Helm(helm_bin)


@pytest.fixture
def release_namespace(cluster):
    """A namespace to install a release into, deleted afterwards."""
    name = f"helm-{secrets.token_hex(3)}"
    assert cluster.kubectl("create", "namespace", name).returncode == 0
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false")


def can_i(cluster, sa: str, verb: str, resource: str, namespace: str | None) -> bool:
    scope = ["-n", namespace] if namespace else ["-A"]
    resource, _, sub = resource.partition("/")  # kubectl reads "pods/log" as a pod named "log"
    subresource = [f"--subresource={sub}"] if sub else []
    result = cluster.kubectl("auth", "can-i", verb, resource, *subresource, f"--as={sa}", *scope)
    assert result.stdout.strip() in ("yes", "no"), result.stdout + result.stderr
    return result.stdout.strip() == "yes"
