"""The release steps that can run here: hack/release.sh --dry-run packages the chart with the
version's one source and names what the workflow would push; images/operator/install.sh (the
image's build steps) installs the locked dependencies and the operator's wheel into a Python."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile

import pytest
import yaml

import infer_operator
from tests.helm.conftest import CHART, ROOT, kube_version

pytestmark = pytest.mark.integration

VERSION = infer_operator.__version__


def release(*args: str, helm_bin: str, out, root=ROOT, **env: str) -> subprocess.CompletedProcess:
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in ("GITHUB_REF_NAME", "GITHUB_REPOSITORY_OWNER", "GITHUB_REPOSITORY")
    }
    # DOCKER names nothing runnable: a dry run must not call it.
    environment.update(HELM=helm_bin, OUT=str(out), DOCKER="/nonexistent/docker", **env)
    return subprocess.run(
        ["sh", str(root / "hack" / "release.sh"), *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
        check=False,
    )


def test_dry_run_packages_the_chart_pointing_at_the_image_it_would_push(helm, helm_bin, tmp_path):
    result = release(
        "--dry-run", "--tag", f"v{VERSION}", helm_bin=helm_bin, out=tmp_path, GITHUB_REPOSITORY_OWNER="Acme-Corp"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    image = f"ghcr.io/acme-corp/infer-operator:{VERSION}"
    pushes = [line for line in result.stdout.splitlines() if line.startswith("would run: ")]
    assert len(pushes) == 2, result.stdout
    build, chart_push = pushes
    assert "buildx build --platform linux/amd64,linux/arm64" in build and f"--tag {image}" in build
    assert build.rstrip().endswith("--push " + str(ROOT))
    package = tmp_path / f"infer-operator-{VERSION}.tgz"
    assert chart_push.endswith(f"push {package} oci://ghcr.io/acme-corp/charts")

    with tarfile.open(package) as archive:
        chart = yaml.safe_load(archive.extractfile("infer-operator/Chart.yaml"))
        assert {n for n in archive.getnames() if n.startswith("infer-operator/crds/")} == {
            f"infer-operator/crds/{p.name}" for p in (CHART / "crds").glob("*.yaml")
        }
    assert (chart["version"], chart["appVersion"]) == (VERSION, VERSION)
    rendered = helm("template", "x", str(package), "--kube-version", kube_version())
    assert rendered.returncode == 0, rendered.stderr
    (deployment,) = [d for d in yaml.safe_load_all(rendered.stdout) if d and d["kind"] == "Deployment"]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == image


def test_default_values_point_at_what_the_default_owner_publishes(helm, helm_bin, tmp_path):
    result = release("--dry-run", helm_bin=helm_bin, out=tmp_path)
    assert result.returncode == 0, result.stderr
    rendered = helm("template", "x", str(CHART), "--kube-version", kube_version())
    (deployment,) = [d for d in yaml.safe_load_all(rendered.stdout) if d and d["kind"] == "Deployment"]
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert f"--tag {image} " in result.stdout, (image, result.stdout)


def test_a_tag_other_than_the_version_is_refused(helm_bin, tmp_path):
    result = release("--dry-run", "--tag", "v99.0.0", helm_bin=helm_bin, out=tmp_path)
    assert result.returncode != 0
    assert "v99.0.0" in result.stderr and f"v{VERSION}" in result.stderr
    assert not list(tmp_path.glob("*.tgz")), "nothing is packaged for a wrong tag"


def test_set_version_updates_every_copy(helm_bin, tmp_path):
    # A copy of the files the script reads and writes, so the repository is left alone.
    tree = tmp_path / "tree"
    for part in ("hack", "charts", "operator/infer_operator/__init__.py"):
        source, target = ROOT / part, tree / part
        target.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if source.is_dir() else shutil.copy)(source, target)
    bumped = release("--set-version", "7.8.9", helm_bin=helm_bin, out=tmp_path / "out", root=tree)
    assert bumped.returncode == 0, bumped.stderr
    assert "make deploy" in bumped.stdout
    result = release("--dry-run", "--tag", "v7.8.9", helm_bin=helm_bin, out=tmp_path / "out", root=tree)
    assert result.returncode == 0, result.stderr
    assert "infer-operator:7.8.9" in result.stdout
    assert (tmp_path / "out" / "infer-operator-7.8.9.tgz").exists()


def test_install_script_installs_the_locked_dependencies_and_the_operator(tmp_path):
    """The image's build steps in a throwaway venv (standing in for the image's python3) with its
    own /etc: dependencies from PyPI checked against the lock's hashes."""
    wheels = tmp_path / "wheels"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(wheels), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = wheels.glob("infer_operator-*.whl")
    assert wheel.name.startswith(f"infer_operator-{VERSION}-")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (etc / "group").write_text("root:x:0:\n")
    env = {**os.environ, "PYTHON": str(venv / "bin" / "python"), "ETC_DIR": str(etc)}
    lock = ROOT / "images" / "operator" / "requirements.lock"

    def install(lock_file):
        return subprocess.run(
            ["sh", str(ROOT / "images" / "operator" / "install.sh"), str(lock_file), str(wheel)],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
            check=False,
        )

    result = install(lock)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.strip().endswith(f"infer-operator {VERSION}")
    assert "nonroot:x:65532:65532:" in (etc / "passwd").read_text()
    assert "nonroot:x:65532:" in (etc / "group").read_text()
    listed = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "list",
            "--format=json",
            "--exclude",
            "pip",
            "--exclude",
            "setuptools",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    installed = {entry["name"].lower().replace("_", "-"): entry["version"] for entry in json.loads(listed)}
    pinned = {}
    for line in lock.read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split(" ")[0].split("==")
            pinned[name.lower().replace("_", "-")] = version
    assert installed == {**pinned, "infer-operator": VERSION}

    # Run twice (a rebuilt layer, a retried build): the user is not added again.
    assert install(lock).returncode == 0
    assert [line for line in (etc / "passwd").read_text().splitlines() if line.startswith("nonroot:")] == [
        "nonroot:x:65532:65532:nonroot:/nonexistent:/usr/sbin/nologin"
    ]

    # A lock that misses a dependency fails the build instead of pulling an unpinned package.
    text = lock.read_text()
    start = text.index("\nidna==") + 1
    end = text.index("# via", start)
    end = text.index("\n", end) + 1
    partial = tmp_path / "partial.lock"
    partial.write_text(text[:start] + text[end:])
    venv_fresh = tmp_path / "venv-fresh"
    subprocess.run([sys.executable, "-m", "venv", str(venv_fresh)], check=True, timeout=120)
    env["PYTHON"] = str(venv_fresh / "bin" / "python")
    refused = install(partial)
    assert refused.returncode != 0
    assert "idna" in refused.stdout + refused.stderr
