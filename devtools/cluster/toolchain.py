"""Build the local control plane binaries, and the registry's real consumers, from the Go module
proxy, cached per version set.

The consumers are Go programs committed in this repository (``devtools/consumers/<name>/``, each
its own module with a pinned go.sum): ``grpc-consumer`` (gRPC-Go clients reading the registry
through etcd's naming resolver, and gRPC servers to call) and ``coredns`` (CoreDNS with its etcd
plugin). Their stamp carries a hash of their sources, so an edit rebuilds them.

Binaries land in ``<cache>/<versions-key>/bin/`` where ``<cache>`` is ``$INFER_OPERATOR_CACHE`` or
``~/.cache/infer-operator``. Each binary has a stamp file; only missing or stale binaries are built,
each into a temporary name that is renamed into place when the build succeeded.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from . import registry_builds
from . import versions as V

ProgressFn = Callable[[str], None]

KUBE_COMPONENTS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kubelet", "kube-proxy")
# Build order: cheapest/most needed first. kubectl last among k8s (shares the build cache).
ALL_COMPONENTS = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "kwok",
    "helm",
    "kubelet",
    "kube-proxy",
    "grpc-consumer",
    "coredns",
    "curator-consumer",
    "nacos-consumer",
    "rnacos",
    "kube-score",
    "kubeconform",
)
# The registry's real consumers, built from their committed sources (devtools/consumers/).
CONSUMERS_DIR = Path(__file__).resolve().parents[1] / "consumers"
CONSUMER_COMPONENTS = {"grpc-consumer": "grpc_resolver", "coredns": "coredns"}
# The real node's own binaries (devtools.cluster.realnode), built in the same generated module
# as the control plane, so with a warm build cache they cost seconds.
NODE_COMPONENTS = ("kubelet", "kube-proxy")
# The manifest linters (tests/helm/test_manifest_linters.py): small `go install`s.
LINTERS = ("kube-score", "kubeconform")
# What the launcher needs (helm is only for chart tests).
CLUSTER_COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kwok")

PROGRESS_INTERVAL = 20.0  # seconds between "still building" lines


class BuildError(RuntimeError):
    pass


def _stderr_progress(msg: str) -> None:
    stream = sys.__stderr__ or sys.stderr
    print(f"[devcluster] {msg}", file=stream, flush=True)


def cache_root() -> Path:
    env = os.environ.get("INFER_OPERATOR_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "infer-operator"


def toolchain_dir() -> Path:
    return cache_root() / V.versions_key()


def bin_dir() -> Path:
    return toolchain_dir() / "bin"


def binary_path(name: str) -> Path:
    if name in registry_builds.COMPONENTS:
        return registry_builds.binary_path(name)
    return bin_dir() / name


# --------------------------------------------------------------------------- go.mod helpers

_REQ_LINE = re.compile(r"^\s*(?:require\s+)?(k8s\.io/[A-Za-z0-9._/-]+)\s+v0\.0\.0(?:\s|$)")
_REPL_LINE = re.compile(r"^\s*(?:replace\s+)?(k8s\.io/[A-Za-z0-9._/-]+)\s+=>\s+\./staging/")
_GO_LINE = re.compile(r"^go\s+(\d+\.\d+(?:\.\d+)?)\s*$", re.M)


def staging_modules(kubernetes_gomod: str) -> list[str]:
    """Staging module paths named in k8s.io/kubernetes's go.mod (``k8s.io/X v0.0.0`` requirements
    and ``k8s.io/X => ./staging/...`` replacements), sorted and de-duplicated."""
    found: set[str] = set()
    for line in kubernetes_gomod.splitlines():
        line = line.split("//", 1)[0]
        for rx in (_REQ_LINE, _REPL_LINE):
            m = rx.match(line)
            if m:
                found.add(m.group(1))
    return sorted(found)


def replace_lines(kubernetes_gomod: str, staging_version: str = V.KUBERNETES_STAGING_VERSION) -> list[str]:
    return [f"{mod} => {mod} {staging_version}" for mod in staging_modules(kubernetes_gomod)]


def go_directive(gomod: str, default: str = "1.24.0") -> str:
    m = _GO_LINE.search(gomod)
    return m.group(1) if m else default


def render_kubernetes_gomod(kubernetes_gomod: str) -> str:
    lines = [
        "module infer-operator.local/devcluster/k8sbuild",
        "",
        f"go {go_directive(kubernetes_gomod)}",
        "",
        f"require k8s.io/kubernetes {V.KUBERNETES_VERSION}",
        "",
        "replace (",
        *[f"\t{r}" for r in replace_lines(kubernetes_gomod)],
        ")",
        "",
    ]
    return "\n".join(lines)


def render_etcd_module() -> tuple[str, str]:
    gomod = (
        "module infer-operator.local/devcluster/etcdbuild\n\n"
        "go 1.24\n\n"
        f"require go.etcd.io/etcd/server/v3 {V.ETCD_VERSION}\n"
    )
    main = (
        "package main\n\n"
        'import (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\n'
        "func main() { etcdmain.Main(os.Args) }\n"
    )
    return gomod, main


def kube_ldflags() -> str:
    major, minor = V.kubernetes_major_minor()
    flags = ["-s", "-w"]
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {pkg}.gitVersion={V.KUBERNETES_VERSION}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
        ]
    return " ".join(flags)


# --------------------------------------------------------------------------- running go


def _go() -> str:
    go = shutil.which("go") or "/usr/local/go/bin/go"
    if not Path(go).exists():
        raise BuildError("the Go toolchain ('go') is not on PATH")
    return go


def _run(cmd: Sequence[str], *, cwd: Path, env: dict | None, log: Path, label: str, progress: ProgressFn) -> None:
    """Run a command, output appended to ``log``; report elapsed time periodically."""
    start = time.monotonic()
    full_env = {**os.environ, **(env or {})}
    with open(log, "ab") as fh:
        fh.write(f"\n$ (cd {cwd}) {' '.join(cmd)}\n".encode())
        fh.flush()
        proc = subprocess.Popen(list(cmd), cwd=cwd, env=full_env, stdout=fh, stderr=subprocess.STDOUT)
        done = threading.Event()

        def ticker() -> None:
            while not done.wait(PROGRESS_INTERVAL):
                progress(f"  {label}: still building ({time.monotonic() - start:.0f}s)")

        t = threading.Thread(target=ticker, daemon=True)
        t.start()
        try:
            rc = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            done.set()
    if rc != 0:
        tail = log.read_text(errors="replace").splitlines()[-30:]
        raise BuildError(f"{label} failed (exit {rc}); see {log}:\n" + "\n".join(tail))


def _go_download_json(module_at_version: str, workdir: Path) -> dict:
    out = subprocess.run(
        [_go(), "mod", "download", "-json", module_at_version],
        cwd=workdir,
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise BuildError(f"go mod download {module_at_version} failed:\n{out.stdout}\n{out.stderr}")
    return json.loads(out.stdout)


# --------------------------------------------------------------------------- components


@dataclass(frozen=True)
class Component:
    name: str
    version: str

    @property
    def stamp_value(self) -> str:
        stamp = {"name": self.name, "version": self.version, "recipe": V.BUILD_RECIPE}
        if self.name in CONSUMER_COMPONENTS:
            stamp["sources"] = consumer_sources_hash(self.name)
        return json.dumps(stamp, sort_keys=True)


def consumer_sources_hash(name: str) -> str:
    """sha256 over a consumer's committed sources (go.mod, go.sum, *.go)."""
    digest = hashlib.sha256()
    src = CONSUMERS_DIR / CONSUMER_COMPONENTS[name]
    for path in sorted(p for p in src.iterdir() if p.name in ("go.mod", "go.sum") or p.suffix == ".go"):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def component(name: str) -> Component:
    if name in KUBE_COMPONENTS:
        return Component(name, V.KUBERNETES_VERSION)
    if name == "etcd":
        return Component(name, V.ETCD_VERSION)
    if name == "kwok":
        return Component(name, V.KWOK_VERSION)
    if name == "helm":
        return Component(name, V.HELM_VERSION)
    if name in CONSUMER_COMPONENTS:
        return Component(name, V.CONSUMER_VERSIONS[name])
    if name == "rnacos":
        return Component(name, V.RNACOS_VERSION)
    if name == "curator-consumer":
        return Component(name, f"curator-{V.CURATOR_VERSION}")
    if name == "nacos-consumer":
        return Component(name, f"nacos-sdk-python-{V.NACOS_SDK_PYTHON_VERSION}")
    if name == "kube-score":
        return Component(name, V.KUBE_SCORE_VERSION)
    if name == "kubeconform":
        return Component(name, V.KUBECONFORM_VERSION)
    raise KeyError(f"unknown component {name!r}; known: {', '.join(ALL_COMPONENTS)}")


def _stamp(name: str) -> Path:
    return bin_dir() / f".{name}.stamp"


def is_built(name: str) -> bool:
    if name in registry_builds.COMPONENTS:
        return registry_builds.is_built(name)
    path, stamp = binary_path(name), _stamp(name)
    if not (path.is_file() and os.access(path, os.X_OK) and stamp.is_file()):
        return False
    return stamp.read_text() == component(name).stamp_value


def missing(components: Iterable[str] = CLUSTER_COMPONENTS) -> list[str]:
    return [c for c in components if not is_built(c)]


def _kubernetes_src() -> Path:
    src = toolchain_dir() / "src" / "kubernetes"
    gomod = src / "go.mod"
    if gomod.is_file():
        return src
    src.mkdir(parents=True, exist_ok=True)
    info = _go_download_json(f"k8s.io/kubernetes@{V.KUBERNETES_VERSION}", src.parent)
    upstream = Path(info["GoMod"]).read_text()
    mods = staging_modules(upstream)
    if len(mods) < 20:  # sanity: 1.34 has ~30
        raise BuildError(f"only found {len(mods)} staging modules in k8s.io/kubernetes go.mod")
    tmp = gomod.with_suffix(".tmp")
    tmp.write_text(render_kubernetes_gomod(upstream))
    tmp.rename(gomod)
    return src


def _etcd_src() -> Path:
    src = toolchain_dir() / "src" / "etcd"
    if (src / "go.sum").is_file():
        return src
    src.mkdir(parents=True, exist_ok=True)
    gomod, main = render_etcd_module()
    (src / "go.mod").write_text(gomod)
    (src / "main.go").write_text(main)
    return src


def _build_one(name: str, log: Path, progress: ProgressFn) -> None:
    if name in registry_builds.COMPONENTS:  # cargo and Maven + javac, each in its own cache directory
        registry_builds.build(name, _run, log, progress)
        return
    out_dir = bin_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    final = binary_path(name)
    go = _go()
    if name in KUBE_COMPONENTS:
        src = _kubernetes_src()
        tmp = out_dir / f".{name}.tmp-{os.getpid()}"
        _run(
            [
                go,
                "build",
                "-mod=mod",
                "-trimpath",
                f"-ldflags={kube_ldflags()}",
                "-o",
                str(tmp),
                f"k8s.io/kubernetes/cmd/{name}",
            ],
            cwd=src,
            env=None,
            log=log,
            label=name,
            progress=progress,
        )
    elif name == "etcd":
        src = _etcd_src()
        if not (src / "go.sum").is_file():
            _run([go, "mod", "tidy"], cwd=src, env=None, log=log, label="etcd (go mod tidy)", progress=progress)
        tmp = _build_module(name, src, "-mod=mod", log, progress)
    elif name in ("kwok", "helm", *LINTERS):
        pkg = {
            "kwok": f"sigs.k8s.io/kwok/cmd/kwok@{V.KWOK_VERSION}",
            "helm": f"helm.sh/helm/v3/cmd/helm@{V.HELM_VERSION}",
            "kube-score": f"github.com/zegl/kube-score/cmd/kube-score@{V.KUBE_SCORE_VERSION}",
            "kubeconform": f"github.com/yannh/kubeconform/cmd/kubeconform@{V.KUBECONFORM_VERSION}",
        }[name]
        gobin = Path(tempfile.mkdtemp(prefix=f".{name}-gobin-", dir=out_dir))
        try:
            _run(
                [go, "install", "-trimpath", "-ldflags=-s -w", pkg],
                cwd=out_dir,
                env={"GOBIN": str(gobin)},
                log=log,
                label=name,
                progress=progress,
            )
            tmp = out_dir / f".{name}.tmp-{os.getpid()}"
            os.replace(gobin / name, tmp)
        finally:
            shutil.rmtree(gobin, ignore_errors=True)
    elif name in CONSUMER_COMPONENTS:
        # Built where it is committed, with its own go.mod and go.sum (-mod=readonly: nothing
        # is resolved anew), into the cache; the source tree stays clean.
        tmp = _build_module(name, CONSUMERS_DIR / CONSUMER_COMPONENTS[name], "-mod=readonly", log, progress)
    else:
        raise KeyError(name)
    os.chmod(tmp, 0o755)
    os.replace(tmp, final)
    stamp_tmp = _stamp(name).with_suffix(".tmp")
    stamp_tmp.write_text(component(name).stamp_value)
    os.replace(stamp_tmp, _stamp(name))


def _build_module(name: str, src: Path, mod: str, log: Path, progress: ProgressFn) -> Path:
    """`go build` of the main package of the module in `src` into a temporary name in the cache."""
    tmp = bin_dir() / f".{name}.tmp-{os.getpid()}"
    _run(
        [_go(), "build", mod, "-trimpath", "-ldflags=-s -w", "-o", str(tmp), "."],
        cwd=src,
        env=None,
        log=log,
        label=name,
        progress=progress,
    )
    return tmp


def ensure(
    components: Iterable[str] = CLUSTER_COMPONENTS, *, progress: ProgressFn | None = None, force: bool = False
) -> dict[str, Path]:
    """Build whatever of ``components`` is missing; return name -> binary path.

    Idempotent and serial (one Go build at a time). Build logs go to ``<toolchain>/build.log``.
    """
    progress = progress or _stderr_progress
    wanted = list(dict.fromkeys(components))
    for c in wanted:
        component(c)  # validate names
    if not force and not missing(wanted):
        return {c: binary_path(c) for c in wanted}
    toolchain_dir().mkdir(parents=True, exist_ok=True)
    with open(toolchain_dir() / ".build.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress("another process is building the toolchain; waiting for it")
            fcntl.flock(lock, fcntl.LOCK_EX)
        _build_missing(wanted, force, progress)
    return {c: binary_path(c) for c in wanted}


def _build_missing(wanted: list[str], force: bool, progress: ProgressFn) -> None:
    todo = [c for c in ALL_COMPONENTS if c in wanted and (force or not is_built(c))]
    if todo:
        log = toolchain_dir() / "build.log"
        progress(f"building {', '.join(todo)} into {bin_dir()} (log: {log}); a cold build takes several minutes")
        total = time.monotonic()
        for c in todo:
            t0 = time.monotonic()
            progress(f"  {c} {component(c).version}: building...")
            _build_one(c, log, progress)
            size = binary_path(c).stat().st_size / 1e6
            progress(f"  {c}: done in {time.monotonic() - t0:.0f}s ({size:.0f} MB)")
        progress(f"toolchain ready in {time.monotonic() - total:.0f}s")
