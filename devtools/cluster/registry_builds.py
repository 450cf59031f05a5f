"""The registries' servers and consumers that are not Go programs, built and cached like the rest of
the toolchain (toolchain.ensure dispatches here):

- ``rnacos``: r-nacos, a Nacos server in Rust (Apache-2.0), ``cargo install rnacos --version V
  --locked`` from crates.io. About 14 minutes on 2 cores cold; its own cache directory, keyed by its
  version only, so that a bump of the Kubernetes toolchain never rebuilds it.
- ``nacos-consumer``: devtools/consumers/nacos/consumer.py on nacos-sdk-python, in a virtualenv of
  its own (the SDK depends on packages PyPI serves as sources only, which the project's hashed,
  wheels-only venv refuses); keyed by a hash of its sources and requirements.txt.
- ``curator-consumer``: the Java consumer of devtools/consumers/curator (Apache Curator's service
  discovery), its jars resolved from Maven Central by Debian's Maven from the committed pom.xml and
  compiled with Debian's JDK 17; keyed by a hash of its sources. Its "binary" is a launcher script.

Both live under ``<cache>/rust/`` and ``<cache>/java/`` (``<cache>`` = ``$INFER_OPERATOR_CACHE`` or
``~/.cache/infer-operator``); each is built into a temporary directory renamed into place.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from . import versions as V

ProgressFn = Callable[[str], None]
RunFn = Callable[..., None]

CONSUMERS_DIR = Path(__file__).resolve().parents[1] / "consumers"
CRATES = {"rnacos": ("rnacos", V.RNACOS_VERSION)}  # component -> (crate, version)
JAVA_CONSUMERS = {"curator-consumer": "curator"}  # component -> devtools/consumers/<dir>
PYTHON_CONSUMERS = {"nacos-consumer": "nacos"}
COMPONENTS = (*CRATES, *JAVA_CONSUMERS, *PYTHON_CONSUMERS)


def _cache_root() -> Path:
    env = os.environ.get("INFER_OPERATOR_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "infer-operator"


def sources_hash(name: str) -> str:
    digest = hashlib.sha256()
    src = CONSUMERS_DIR / {**JAVA_CONSUMERS, **PYTHON_CONSUMERS}[name]
    inputs = ("pom.xml", "requirements.txt")
    for path in sorted(p for p in src.iterdir() if p.name in inputs or p.suffix in (".java", ".py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def home(name: str) -> Path:
    """The component's own cache directory."""
    if name in CRATES:
        crate, version = CRATES[name]
        return _cache_root() / "rust" / f"{crate}-{version}-r{V.BUILD_RECIPE}"
    kind = "java" if name in JAVA_CONSUMERS else "python"
    return _cache_root() / kind / f"{name}-{sources_hash(name)[:16]}"


def binary_path(name: str) -> Path:
    return home(name) / "bin" / name


def stamp_value(name: str) -> str:
    if name in CRATES:
        return json.dumps({"crate": CRATES[name][0], "version": CRATES[name][1], "recipe": V.BUILD_RECIPE})
    return json.dumps({"consumer": name, "sources": sources_hash(name), "recipe": V.BUILD_RECIPE})


def stamp_path(name: str) -> Path:
    return home(name) / ".stamp"


def is_built(name: str) -> bool:
    path, stamp = binary_path(name), stamp_path(name)
    return path.is_file() and os.access(path, os.X_OK) and stamp.is_file() and stamp.read_text() == stamp_value(name)


def build(name: str, run: RunFn, log: Path, progress: ProgressFn) -> None:
    final = home(name)
    tmp = final.with_name(final.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        if name in CRATES:
            _build_crate(name, tmp, run, log, progress)
        elif name in JAVA_CONSUMERS:
            _build_java(name, tmp, run, log, progress)
        else:
            _build_python(name, tmp, run, log, progress)
        (tmp / ".stamp").write_text(stamp_value(name))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _build_crate(name: str, root: Path, run: RunFn, log: Path, progress: ProgressFn) -> None:
    crate, version = CRATES[name]
    cargo = shutil.which("cargo") or str(Path.home() / ".cargo" / "bin" / "cargo")
    if not Path(cargo).exists():
        raise RuntimeError("cargo is not on PATH (r-nacos is built from crates.io with cargo)")
    # The build directory is kept between builds (a rebuild after a recipe bump is incremental).
    target = _cache_root() / "rust" / f"target-{crate}"
    run(
        [cargo, "install", crate, "--version", version, "--locked", "--root", str(root)],
        cwd=root,
        env={"CARGO_TARGET_DIR": str(target), "CARGO_TERM_PROGRESS_WHEN": "never"},
        log=log,
        label=f"{name} (cargo install {crate} {version}, about 14 min on 2 cores)",
        progress=progress,
    )
    if not (root / "bin" / crate).is_file():
        raise RuntimeError(f"cargo install {crate} left no binary in {root / 'bin'}")
    if crate != name:
        os.replace(root / "bin" / crate, root / "bin" / name)


def _build_java(name: str, root: Path, run: RunFn, log: Path, progress: ProgressFn) -> None:
    src = CONSUMERS_DIR / JAVA_CONSUMERS[name]
    mvn, javac = shutil.which("mvn"), shutil.which("javac")
    if not mvn or not javac:
        raise RuntimeError("Debian's maven and JDK (javac) are needed for the Java consumer: `make setup`")
    lib, classes = root / "lib", root / "classes"
    classes.mkdir()
    run(
        [
            mvn,
            "-q",
            "-B",
            "-f",
            str(src / "pom.xml"),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={lib}",
            "-DincludeScope=runtime",
        ],
        cwd=root,
        env=None,
        log=log,
        label=f"{name} (Maven Central jars)",
        progress=progress,
    )
    sources = sorted(str(p) for p in src.glob("*.java"))
    run(
        [javac, "-d", str(classes), "-cp", f"{lib}/*", *sources],
        cwd=root,
        env=None,
        log=log,
        label=f"{name} (javac)",
        progress=progress,
    )
    bin_dir = root / "bin"
    bin_dir.mkdir()
    launcher = bin_dir / name
    final = home(name)
    launcher.write_text(
        f'#!/bin/sh\nexec java -Xmx128m -XX:+UseSerialGC -cp "{final / "classes"}:{final / "lib"}/*" Consumer "$@"\n'
    )
    launcher.chmod(0o755)


def _build_python(name: str, root: Path, run: RunFn, log: Path, progress: ProgressFn) -> None:
    src = CONSUMERS_DIR / PYTHON_CONSUMERS[name]
    venv = root / "venv"
    run(
        [sys.executable, "-m", "venv", str(venv)],
        cwd=root,
        env=None,
        log=log,
        label=f"{name} (venv)",
        progress=progress,
    )
    run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
            str(src / "requirements.txt"),
        ],
        cwd=root,
        env=None,
        log=log,
        label=f"{name} (pip install -r requirements.txt)",
        progress=progress,
    )
    for path in src.glob("*.py"):
        shutil.copy(path, root / path.name)
    bin_dir = root / "bin"
    bin_dir.mkdir()
    final = home(name)
    launcher = bin_dir / name
    launcher.write_text(f'#!/bin/sh\nexec "{final / "venv" / "bin" / "python"}" "{final / "consumer.py"}" "$@"\n')
    launcher.chmod(0o755)


def check_java_tools() -> list[str]:
    """What the Java consumer's build needs and is missing."""
    return [tool for tool in ("mvn", "javac", "java") if not shutil.which(tool)]


__all__ = ["COMPONENTS", "binary_path", "build", "is_built"]
