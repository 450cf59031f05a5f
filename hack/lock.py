"""Write the hashed locks (`make lock`):

- images/operator/requirements.lock: every runtime dependency of the operator pinned to one
  version, with the sha256 of each wheel the image may install;
- requirements-dev.lock: what `make setup` adds for development on top of that (the `test` and
  `bench` extras, the build backend for the editable install), the shared packages at the
  runtime lock's versions, so the venv runs the operator with exactly the image's dependencies.

Only pip does the work: `pip install --dry-run --report` resolves pyproject.toml's dependencies from
PyPI for each Python and CPU the image may be built for, and reports each chosen wheel's hash. The
first target fixes the versions; the others are resolved with those versions as constraints, so
they only add hashes (and any dependency that a marker turns on for them alone). The versions of the
lock already there are kept (constraints of the first target too): adding a dependency changes no
other pin. Delete the lock to resolve everything afresh.

The image installs the lock with `pip install --require-hashes --only-binary=:all: -r`, and the
operator's own wheel with `--no-deps` (images/operator/install.sh): what a tag installs cannot
change between two builds, and a wheel whose hash differs is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "images" / "operator" / "requirements.lock"
DEV_LOCK = ROOT / "requirements-dev.lock"
DEV_EXTRAS = ("test", "bench")

# CPython versions and CPUs the image (python:3.12-slim, linux/amd64 + arm64) and a Debian-based
# local build (python3 3.11 on bookworm, 3.13 on trixie) may use. Debian bookworm has glibc 2.36:
# pip takes manylinux tags only as listed, so the older ones a wheel may carry are listed too.
PYTHONS = ("3.12", "3.11", "3.13")
ARCHES = ("x86_64", "aarch64")
GLIBC_TAGS = ("manylinux_2_36", "manylinux_2_28", "manylinux_2_17", "manylinux2014", "manylinux_2_5", "manylinux1")


def dependencies() -> list[str]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]


def dev_dependencies() -> list[str]:
    """The development extras and the build backend (the editable install runs without build
    isolation, so it needs no unpinned download)."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    extras = pyproject["project"]["optional-dependencies"]
    return sorted({*(dep for extra in DEV_EXTRAS for dep in extras[extra]), *pyproject["build-system"]["requires"]})


def dependencies_digest(deps: list[str]) -> str:
    """Names the dependency list the lock was made from: a test compares it with pyproject.toml."""
    return hashlib.sha256("\n".join(sorted(deps)).encode()).hexdigest()[:16]


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def resolve(deps: list[str], python: str, arch: str, constraints: Path | None, work: Path) -> list[dict]:
    report = work / f"report-{python}-{arch}.json"
    abi = "cp" + python.replace(".", "")
    platforms = [arg for tag in GLIBC_TAGS for arg in ("--platform", f"{tag}_{arch}")]
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--dry-run",
        "--ignore-installed",
        "--quiet",
        "--report",
        str(report),
        "--only-binary=:all:",
        "--python-version",
        python,
        "--implementation",
        "cp",
        "--abi",
        abi,
        *platforms,
        "--target",
        str(work / "target"),
        *deps,
    ]
    if constraints:
        command += ["-c", str(constraints)]
    # Only PyPI: a machine's extra wheel directories (PIP_FIND_LINKS) must not leak into the lock.
    env = {**os.environ, "PIP_FIND_LINKS": "", "PIP_NO_INDEX": ""}
    subprocess.run(command, check=True, env=env)
    return json.loads(report.read_text())["install"]


def current_pins(lock: Path) -> str:
    """The name==version lines of a lock already there, as pip constraints."""
    if not lock.exists():
        return ""
    return "".join(f"{m.group(1)}\n" for m in re.finditer(r"^([A-Za-z0-9_.-]+==[^\s\\]+)", lock.read_text(), re.M))


def write_lock(
    deps: list[str],
    path: Path,
    header: list[str],
    kept: str,
    *,
    leave_out: set[str] = frozenset(),
    root: str = "infer-operator",
) -> None:
    """Resolve `deps` for every target and write `path`: `kept` (name==version lines) holds the
    versions to keep; packages in `leave_out` (normalized names) are resolved but not written
    (another lock pins them)."""
    pins: dict[str, str] = {}  # normalized name -> version
    names: dict[str, str] = {}  # normalized name -> name as published
    hashes: dict[str, set[str]] = {}
    requires: dict[str, set[str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        constraints = work / "pins.txt"
        kept_file = work / "kept.txt"
        kept_file.write_text(kept)
        first = True
        for python in PYTHONS:
            for arch in ARCHES:
                print(f"resolving {path.name} for CPython {python} on {arch}", flush=True)
                for item in resolve(deps, python, arch, kept_file if first else constraints, work):
                    meta = item["metadata"]
                    key = normalize(meta["name"])
                    if pins.setdefault(key, meta["version"]) != meta["version"]:
                        sys.exit(f"{key}: {pins[key]} and {meta['version']} resolved for different targets")
                    names[key] = meta["name"]
                    hashes.setdefault(key, set()).add(item["download_info"]["archive_info"]["hashes"]["sha256"])
                    for requirement in meta.get("requires_dist") or []:
                        if "extra ==" not in requirement:
                            requires.setdefault(key, set()).add(normalize(re.split(r"[\s;<>=!~\[(]", requirement)[0]))
                constraints.write_text(
                    kept + "".join(f"{names[k]}=={v}\n" for k, v in sorted(pins.items()) if k not in leave_out)
                )
                first = False
    direct = {normalize(re.split(r"[\s;<>=!~\[(]", dep)[0]) for dep in deps}
    lines = list(header)
    for key in sorted(set(pins) - leave_out):
        via = sorted(
            ({root} if key in direct else set())
            | {names[parent] for parent, children in requires.items() if key in children and parent in pins}
        )
        lines.append(f"{names[key]}=={pins[key]} \\")
        ordered = sorted(hashes[key])
        lines += [f"    --hash=sha256:{h} \\" for h in ordered[:-1]] + [f"    --hash=sha256:{ordered[-1]}"]
        lines.append(f"    # via {', '.join(via)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    print(f"wrote {path.relative_to(ROOT)}: {len(set(pins) - leave_out)} packages")


def main() -> None:
    deps = dependencies()
    targets = f"# Targets: CPython {', '.join(PYTHONS)} on linux {', '.join(ARCHES)} (glibc >= 2.17); wheels only."
    write_lock(
        deps,
        LOCK,
        [
            "# Generated by `make lock` (hack/lock.py) from pyproject.toml's dependencies; do not edit.",
            f"# dependencies-sha256: {dependencies_digest(deps)}",
            targets,
            "# Installed by images/operator/install.sh with pip --require-hashes.",
        ],
        current_pins(LOCK),
    )
    runtime = current_pins(LOCK)
    dev = dev_dependencies()
    write_lock(
        dev,
        DEV_LOCK,
        [
            "# Generated by `make lock` (hack/lock.py) from pyproject.toml's extras "
            f"{', '.join(DEV_EXTRAS)} and build-system.requires; do not edit.",
            f"# dependencies-sha256: {dependencies_digest(dev)}",
            targets,
            "# Installed by `make setup` with pip --require-hashes, together with images/operator/requirements.lock",
            "# (the packages both need are pinned there only).",
        ],
        runtime + current_pins(DEV_LOCK),
        leave_out={normalize(line.split("==")[0]) for line in runtime.splitlines()},
        root="development",
    )


if __name__ == "__main__":
    main()
