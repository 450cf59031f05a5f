"""The real node's images, built here without Docker or a registry, cached by content hash.

    pause        the sandbox image: one static Go binary (``pause/main.go``)
    sample-app   examples/sample-app: its Dockerfile's USER, ENV, ENTRYPOINT and files on a Debian
                 rootfs with python3 and python3-redis (the async role's queue client)
    operator     the operator image: the repo's Dockerfile's config, and its one build step,
                 images/operator/install.sh with requirements.lock, run in a chroot of the rootfs

Base: one Debian bookworm rootfs made by ``mmdebstrap`` from Debian's packages (python3, pip,
python-is-python3 for the Dockerfiles' ``python``, python3-redis), the bottom layer of both Python
images. Each archive lands in ``<cache>/images/NAME-<key>.tar``, where the key hashes every
input (recipe, sources, the rootfs's package list); an unchanged input set is never rebuilt.

    python -m devtools.images [NAMES...]     build what is missing, print each archive
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from devtools.cluster import toolchain

from . import dockerfile, oci
from .oci import ImageArchive

ProgressFn = Callable[[str], None]
ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent

# Bump when a recipe changes in a way the hashed inputs do not show.
RECIPE = 1
REFS = {
    "pause": "docker.io/local/pause:1",
    "sample-app": "docker.io/local/sample-app:dev",
    "operator": "docker.io/local/infer-operator:dev",
}
NAMES = tuple(REFS)

SUITE = "bookworm"
ROOTFS_PYTHON = "3.11"  # bookworm's python3; the lock has wheels for it
ROOTFS_PACKAGES = ("python3", "python3-pip", "python-is-python3", "python3-redis")
MIRRORS = (
    f"deb http://deb.debian.org/debian {SUITE} main",
    f"deb http://deb.debian.org/debian {SUITE}-updates main",
    f"deb http://deb.debian.org/debian-security {SUITE}-security main",
)
# What the python:3.12-slim base of the Dockerfiles sets and Debian's rootfs lacks.
BASE_ENV = {"LANG": "C.UTF-8"}

OPERATOR_DOCKERFILE = ROOT / "Dockerfile"
OPERATOR_INSTALL = ROOT / "images" / "operator" / "install.sh"
OPERATOR_LOCK = ROOT / "images" / "operator" / "requirements.lock"
SAMPLE_DIR = ROOT / "examples" / "sample-app"
# The RUN steps of examples/sample-app/Dockerfile and how this build carries them out: the redis
# client comes from Debian's python3-redis in the rootfs, the user is written as useradd writes
# it. A changed RUN there fails here (and in the unit test) instead of drifting.
SAMPLE_REDIS = 'pip install --no-cache-dir "redis>=4.3,<6"'
SAMPLE_USERADD = "useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin app"
SAMPLE_RUNS = [SAMPLE_REDIS, SAMPLE_USERADD]


class ImageBuildError(RuntimeError):
    pass


def _progress_default(msg: str) -> None:
    print(f"[images] {msg}", file=sys.__stderr__ or sys.stderr, flush=True)


def images_dir() -> Path:
    return toolchain.cache_root() / "images"


def _hash(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()[:16]


def _tree_bytes(root: Path, rel: str) -> bytes:
    """Names and contents of every file under ``root/rel`` (sorted; byte code and build output left out)."""
    out = []
    base = root / rel
    files = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file())
    for p in files:
        if "__pycache__" in p.parts or any(part.endswith(".egg-info") for part in p.parts):
            continue
        out.append(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes())
    return b"\0\0".join(out)


def _run(cmd: list[str], what: str, **kw) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-30:])
        raise ImageBuildError(f"{what} failed (exit {result.returncode}): {' '.join(cmd[:6])} ...\n{tail}")
    return result


@contextlib.contextmanager
def _lock() -> Iterator[None]:
    images_dir().mkdir(parents=True, exist_ok=True)
    with open(images_dir() / ".build.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


# --------------------------------------------------------------------------- keys


def rootfs_key() -> str:
    return _hash(str(RECIPE), SUITE, " ".join(ROOTFS_PACKAGES), "\n".join(MIRRORS))


def image_key(name: str) -> str:
    """The content hash of everything image ``name`` is built from."""
    if name == "pause":
        go = _run([toolchain._go(), "version"], "go version").stdout.strip()
        return _hash(str(RECIPE), go, _tree_bytes(HERE, "pause"))
    if name == "sample-app":
        return _hash(
            str(RECIPE), rootfs_key(), _tree_bytes(SAMPLE_DIR, "app.py"), _tree_bytes(SAMPLE_DIR, "Dockerfile")
        )
    if name == "operator":
        return _hash(
            str(RECIPE),
            rootfs_key(),
            _tree_bytes(ROOT, "operator"),
            _tree_bytes(ROOT, "pyproject.toml"),
            _tree_bytes(ROOT, "README.md"),
            _tree_bytes(ROOT, "Dockerfile"),
            _tree_bytes(ROOT, "images/operator"),
        )
    raise KeyError(f"unknown image {name!r}; known: {', '.join(NAMES)}")


def archive_path(name: str, key: str | None = None) -> Path:
    return images_dir() / f"{name}-{key or image_key(name)}.tar"


# --------------------------------------------------------------------------- the rootfs


def ensure_rootfs(progress: ProgressFn | None = None) -> Path:
    """The Debian rootfs tar (built with mmdebstrap on first use: about a minute)."""
    progress = progress or _progress_default
    out = images_dir() / f"rootfs-{SUITE}-{rootfs_key()}.tar"
    if out.is_file():
        return out
    if not shutil.which("mmdebstrap"):
        raise ImageBuildError("mmdebstrap is missing (Debian package mmdebstrap; `make setup` installs it)")
    progress(f"building the Debian {SUITE} rootfs ({', '.join(ROOTFS_PACKAGES)}) with mmdebstrap; about a minute")
    t0 = time.monotonic()
    tmp = out.with_name(out.name + ".tmp")
    # No docs, man pages or locales (smaller); apt's lists and caches are removed.
    _run(
        [
            "mmdebstrap",
            "--quiet",
            "--format=tar",
            "--variant=minbase",
            "--skip=output/dev",
            f"--include={','.join(ROOTFS_PACKAGES)}",
            "--dpkgopt=path-exclude=/usr/share/man/*",
            "--dpkgopt=path-exclude=/usr/share/doc/*",
            "--dpkgopt=path-include=/usr/share/doc/*/copyright",
            "--dpkgopt=path-exclude=/usr/share/locale/*",
            "--dpkgopt=path-exclude=/usr/share/info/*",
            '--customize-hook=rm -rf "$1"/var/cache/* "$1"/var/lib/apt/lists/* "$1"/var/log/*.log "$1"/var/log/apt/*',
            SUITE,
            str(tmp),
            "\n".join(MIRRORS),
        ],
        "mmdebstrap",
    )
    os.replace(tmp, out)
    for old in images_dir().glob(f"rootfs-{SUITE}-*.tar"):
        if old != out:
            old.unlink()
    progress(f"  rootfs: {time.monotonic() - t0:.0f}s, {out.stat().st_size / 1e6:.0f} MB")
    return out


def _rootfs_file(rootfs: Path, name: str) -> str:
    with tarfile.open(rootfs) as tf:
        for candidate in (f"./{name}", name):
            with contextlib.suppress(KeyError):
                return tf.extractfile(candidate).read().decode()
    raise ImageBuildError(f"{name} is not in {rootfs}")


# --------------------------------------------------------------------------- recipes


def _build_pause(work: Path, out: Path) -> ImageArchive:
    root = work / "rootfs"
    root.mkdir()
    env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod"}
    _run(
        [toolchain._go(), "build", "-trimpath", "-ldflags=-s -w", "-o", str(root / "pause"), "."],
        "go build pause",
        cwd=HERE / "pause",
        env=env,
    )
    layer = work / "layer.tar"
    oci.tar_directory(root, layer)
    return oci.write_archive(
        out,
        REFS["pause"],
        [layer],
        {"Entrypoint": ["/pause"], "User": "65535:65535", "Env": [oci.DEFAULT_PATH]},
        history=["COPY pause /pause"],
    )


def _build_sample_app(work: Path, out: Path, progress: ProgressFn) -> ImageArchive:
    stage = dockerfile.parse(SAMPLE_DIR / "Dockerfile")
    if stage.runs != SAMPLE_RUNS:
        raise ImageBuildError(
            f"examples/sample-app/Dockerfile RUNs {stage.runs}; the local build knows only "
            f"{SAMPLE_RUNS}: teach devtools/images/build.py the new step"
        )
    rootfs = ensure_rootfs(progress)
    layer_root = work / "app"
    for sources, dest in stage.copies:
        for src in sources:
            target = layer_root / dest.lstrip("/")
            if dest.endswith("/"):
                target = target / Path(src).name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(SAMPLE_DIR / src, target)
            target.chmod(0o644)
    (layer_root / "etc").mkdir()
    passwd = _rootfs_file(rootfs, "etc/passwd") + "app:x:10001:10001::/home/app:/usr/sbin/nologin\n"
    group = _rootfs_file(rootfs, "etc/group") + "app:x:10001:\n"
    (layer_root / "etc" / "passwd").write_text(passwd)
    (layer_root / "etc" / "group").write_text(group)
    for p in ("etc/passwd", "etc/group"):
        (layer_root / p).chmod(0o644)
    for d in [layer_root, *[p for p in layer_root.rglob("*") if p.is_dir()]]:
        d.chmod(0o755)
    layer = work / "app.tar"
    oci.tar_directory(layer_root, layer)
    return oci.write_archive(
        out,
        REFS["sample-app"],
        [rootfs, layer],
        stage.config(BASE_ENV),
        history=[
            f"mmdebstrap {SUITE} {' '.join(ROOTFS_PACKAGES)}",
            f"RUN {SAMPLE_REDIS} (python3-redis); RUN {SAMPLE_USERADD}; COPY app.py /app/app.py",
        ],
    )


def _operator_run_step(stage: dockerfile.Stage) -> None:
    """Check that the Dockerfile still builds the image the way this recipe does."""
    if len(stage.runs) != 1 or "install.sh /tmp/install/requirements.lock" not in stage.runs[0]:
        raise ImageBuildError(
            f"the Dockerfile's RUN steps changed ({stage.runs}); the local build runs "
            "images/operator/install.sh with requirements.lock: teach devtools/images/build.py"
        )
    copied = {Path(s).name for sources, dest in stage.copies if dest == "/tmp/install/" for s in sources}
    if copied != {"install.sh", "requirements.lock"}:
        raise ImageBuildError(
            f"the Dockerfile copies {sorted(copied)} to /tmp/install/; expected install.sh and requirements.lock"
        )


def _build_operator(work: Path, out: Path, progress: ProgressFn) -> ImageArchive:
    stage = dockerfile.parse(OPERATOR_DOCKERFILE)
    _operator_run_step(stage)
    rootfs = ensure_rootfs(progress)
    install = work / "install"
    (install / "wheels").mkdir(parents=True)
    shutil.copyfile(OPERATOR_INSTALL, install / "install.sh")
    shutil.copyfile(OPERATOR_LOCK, install / "requirements.lock")
    # Stage 1 of the Dockerfile: the operator's wheel, from a copy of the sources (building
    # writes build/ and *.egg-info next to them).
    src = work / "src"
    shutil.copytree(ROOT / "operator", src / "operator", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for f in ("pyproject.toml", "README.md"):
        shutil.copyfile(ROOT / f, src / f)
    t = time.monotonic()
    _run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(install), str(src)],
        "pip wheel (the operator)",
    )
    wheel = next(install.glob("infer_operator-*.whl"))
    # The locked wheels, downloaded here with their hashes checked, so the chroot needs no network
    # (install.sh: PIP_FIND_LINKS + PIP_NO_INDEX).
    machine = os.uname().machine
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--require-hashes",
            "--only-binary=:all:",
            "--platform",
            f"manylinux2014_{machine}",
            "--platform",
            f"manylinux_2_17_{machine}",
            "--python-version",
            ROOTFS_PYTHON,
            "--implementation",
            "cp",
            "--dest",
            str(install / "wheels"),
            "-r",
            str(OPERATOR_LOCK),
        ],
        "pip download (requirements.lock)",
    )
    progress(f"  operator: wheel and locked dependencies in {time.monotonic() - t:.0f}s")
    # install.sh runs as root inside the rootfs, as the Dockerfile's RUN does: an overlay mount
    # whose upper directory collects exactly what it changes (the image's second layer), in a
    # private mount namespace so that every mount goes when the step ends, whatever happens.
    lower, upper, overlay_work, merged = (work / d for d in ("lower", "upper", "ovl-work", "merged"))
    for d in (lower, upper, overlay_work, merged):
        d.mkdir()
    _run(["tar", "-xf", str(rootfs), "-C", str(lower)], "unpacking the rootfs")
    env = " ".join(f"{k}={v}" for k, v in {**BASE_ENV, **stage.env}.items())
    script = f"""set -eu
mount -t overlay overlay -o lowerdir={lower},upperdir={upper},workdir={overlay_work} {merged}
mkdir -p {merged}/dev {merged}/tmp/install
mount --rbind /dev {merged}/dev
mount --bind {install} {merged}/tmp/install
chroot {merged} /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root {env} \\
  PIP_NO_INDEX=1 PIP_FIND_LINKS=/tmp/install/wheels PIP_BREAK_SYSTEM_PACKAGES=1 PIP_ROOT_USER_ACTION=ignore \\
  /bin/sh /tmp/install/install.sh /tmp/install/requirements.lock /tmp/install/{wheel.name}
"""
    t = time.monotonic()
    _run(["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", script], "install.sh in the rootfs")
    progress(f"  operator: install.sh in the rootfs in {time.monotonic() - t:.0f}s")
    # The Dockerfile removes /tmp/install; nothing of the build stays in the layer.
    layer = work / "operator.tar"
    oci.tar_directory(upper, layer, whiteouts=True, exclude=["tmp/install", "root/.cache"])
    return oci.write_archive(
        out,
        REFS["operator"],
        [rootfs, layer],
        stage.config(BASE_ENV),
        history=[
            f"mmdebstrap {SUITE} {' '.join(ROOTFS_PACKAGES)}",
            "RUN sh /tmp/install/install.sh /tmp/install/requirements.lock /dist/*.whl",
        ],
    )


# --------------------------------------------------------------------------- entry points


def cached(name: str) -> ImageArchive | None:
    """The archive of image ``name`` for today's inputs, if it was built already."""
    path = archive_path(name)
    if not path.is_file():
        return None
    digest_file = path.with_suffix(".digest")
    if not digest_file.is_file():
        return None
    digest, size = digest_file.read_text().split()
    return ImageArchive(REFS[name], path, digest, int(size))


def ensure(
    names: tuple[str, ...] | list[str] = NAMES, *, progress: ProgressFn | None = None, force: bool = False
) -> dict[str, ImageArchive]:
    """Build whichever of the images ``names`` is missing for today's inputs; name -> archive.
    ImageBuildError (with the failing command's output) when a build fails."""
    progress = progress or _progress_default
    out: dict[str, ImageArchive] = {}
    for name in names:
        if name not in REFS:
            raise KeyError(f"unknown image {name!r}; known: {', '.join(NAMES)}")
        hit = None if force else cached(name)
        if hit:
            out[name] = hit
            continue
        with _lock():
            hit = None if force else cached(name)
            if hit:
                out[name] = hit
                continue
            key = image_key(name)
            path = archive_path(name, key)
            progress(f"building image {REFS[name]} (inputs {key})")
            t0 = time.monotonic()
            work = Path(tempfile.mkdtemp(prefix=f".build-{name}-", dir=images_dir()))
            try:
                if name == "pause":
                    archive = _build_pause(work, path)
                elif name == "sample-app":
                    archive = _build_sample_app(work, path, progress)
                else:
                    archive = _build_operator(work, path, progress)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            path.with_suffix(".digest").write_text(f"{archive.digest} {archive.size}\n")
            for old in images_dir().glob(f"{name}-*.tar"):
                if old != path:
                    old.unlink()
                    old.with_suffix(".digest").unlink(missing_ok=True)
            progress(f"  {REFS[name]}: {time.monotonic() - t0:.1f}s, {archive.size / 1e6:.0f} MB")
            out[name] = archive
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m devtools.images", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"default: all ({', '.join(NAMES)})")
    parser.add_argument("--force", action="store_true", help="rebuild even when cached")
    args = parser.parse_args(argv)
    try:
        for name, archive in ensure(args.names or NAMES, force=args.force).items():
            print(f"{name}\t{archive.ref}\t{archive.path}\t{archive.size / 1e6:.0f} MB")
    except ImageBuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
