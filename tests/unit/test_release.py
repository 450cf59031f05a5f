"""What a release publishes is named from one version, and the image installs pinned, hashed
dependencies: the version copies agree, the lock covers pyproject.toml, the workflow runs the
tested script."""

from __future__ import annotations

import importlib.util
import re
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import infer_operator

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "infer-operator"
LOCK = ROOT / "images" / "operator" / "requirements.lock"
DEV_LOCK = ROOT / "requirements-dev.lock"


def load_lock_module():
    spec = importlib.util.spec_from_file_location("hack_lock", ROOT / "hack" / "lock.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_lock(path: Path = LOCK) -> dict[str, dict]:
    """{canonical name: {"version", "hashes", "via"}} from a lock's pip requirement lines."""
    entries: dict[str, dict] = {}
    current = None
    for line in path.read_text().splitlines():
        if match := re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+) \\$", line):
            name = canonicalize_name(match[1])
            assert name not in entries, f"{name} is pinned twice"
            current = entries[name] = {"version": match[2], "hashes": [], "via": []}
        elif match := re.match(r"^\s+--hash=sha256:([0-9a-f]{64})", line):
            current["hashes"].append(match[1])
        elif match := re.match(r"^\s+# via (.+)$", line):
            current["via"] = [canonicalize_name(n) for n in match[1].split(", ")]
    return entries


def test_chart_and_image_tag_carry_the_package_version():
    version = infer_operator.__version__
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert chart["version"] == version, "Chart.yaml version differs: hack/release.sh --set-version " + version
    assert chart["appVersion"] == version, "Chart.yaml appVersion differs: hack/release.sh --set-version " + version
    # An empty tag means appVersion (templates/_helpers.tpl), so the default image is this version.
    assert values["image"]["tag"] in ("", version)


def test_pyproject_takes_its_version_from_the_package():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"], "the version's one source is infer_operator.__version__"
    assert "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "infer_operator.__version__"}


def test_lock_pins_every_runtime_dependency_with_hashes():
    lock = parse_lock()
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for dependency in map(Requirement, dependencies):
        name = canonicalize_name(dependency.name)
        assert name in lock, f"{name} is not in {LOCK.name}: run `make lock`"
        assert dependency.specifier.contains(lock[name]["version"], prereleases=True), (
            f"{name}=={lock[name]['version']} does not satisfy {dependency}: run `make lock`"
        )
        assert "infer-operator" in lock[name]["via"]
    for name, entry in lock.items():
        assert entry["hashes"], f"{name} has no hash"
        # Nothing unused: each pin is needed by the operator or by another pin.
        assert entry["via"] and set(entry["via"]) <= set(lock) | {"infer-operator"}, (name, entry["via"])


def test_lock_was_made_from_the_current_dependency_list():
    lock_module = load_lock_module()
    digest = lock_module.dependencies_digest(lock_module.dependencies())
    recorded = re.search(r"^# dependencies-sha256: (\w+)$", LOCK.read_text(), re.MULTILINE)
    assert recorded and recorded[1] == digest, "pyproject.toml's dependencies changed: run `make lock`"


def test_the_development_lock_pins_the_extras_and_the_build_backend_beside_the_runtime_lock():
    lock_module = load_lock_module()
    runtime, dev = parse_lock(), parse_lock(DEV_LOCK)
    assert not set(runtime) & set(dev), "a package pinned in both locks: run `make lock`"
    pinned = {**runtime, **dev}
    for dependency in map(Requirement, lock_module.dev_dependencies()):
        name = canonicalize_name(dependency.name)
        assert name in pinned, f"{name} is not in {DEV_LOCK.name}: run `make lock`"
        assert dependency.specifier.contains(pinned[name]["version"], prereleases=True), (name, dependency)
    for name, entry in dev.items():
        assert entry["hashes"], f"{name} has no hash"
        assert entry["via"] and set(entry["via"]) <= set(pinned) | {"development"}, (name, entry["via"])
    digest = lock_module.dependencies_digest(lock_module.dev_dependencies())
    recorded = re.search(r"^# dependencies-sha256: (\w+)$", DEV_LOCK.read_text(), re.MULTILINE)
    assert recorded and recorded[1] == digest, "pyproject.toml's extras changed: run `make lock`"


def test_make_setup_installs_the_locked_versions_only():
    makefile = (ROOT / "Makefile").read_text()
    assert "LOCKS = images/operator/requirements.lock requirements-dev.lock" in makefile
    assert "pip install --quiet --require-hashes --only-binary=:all: $(addprefix -r ,$(LOCKS))" in makefile
    assert "pip install --quiet --no-deps --no-build-isolation -e ." in makefile


def test_dockerfile_runs_the_install_script_with_the_lock():
    dockerfile = (ROOT / "Dockerfile").read_text()
    run_lines = [line for line in dockerfile.splitlines() if "install.sh" in line and not line.startswith("#")]
    assert any("requirements.lock" in line and line.lstrip().startswith("sh ") for line in run_lines), run_lines
    # The image's build steps live in the script only: no pip or user creation beside it.
    final_stage = dockerfile.split("\nFROM ${PYTHON_IMAGE}\n", 1)[1]
    assert "pip install" not in final_stage and "useradd" not in final_stage


def test_release_workflow_runs_the_release_script_on_version_tags():
    from devtools.cluster import versions

    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "release.yaml").read_text())
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as True
    assert triggers == {"push": {"tags": ["v*"]}}
    assert workflow["permissions"]["packages"] == "write"
    (job,) = workflow["jobs"].values()
    uses = [step.get("uses", "").split("@")[0] for step in job["steps"]]
    assert {"docker/setup-qemu-action", "docker/setup-buildx-action", "azure/setup-helm", "docker/login-action"} <= set(
        uses
    )
    helm = next(step for step in job["steps"] if step.get("uses", "").startswith("azure/setup-helm"))
    assert helm["with"]["version"] == versions.HELM_VERSION, "the workflow's helm differs from the tested one"
    runs = [step["run"] for step in job["steps"] if "run" in step]
    assert any(run.strip() == "hack/release.sh" for run in runs), runs
