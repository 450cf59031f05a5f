"""Start and stop the local control plane, and inject faults into it (restart one component).

etcd, kube-apiserver, kube-controller-manager, kube-scheduler and KWOK (fake nodes/pods), all on
127.0.0.1 with free ports.

Everything lives in one state dir (default ``~/.cache/infer-operator/cluster``, or
``$INFER_OPERATOR_CLUSTER_DIR``): logs in ``logs/``, pid records in ``pids/``, the admin kubeconfig
in ``kubeconfig``. Stdlib only (the HTTP checks use urllib), Linux only (/proc).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from devtools.harness.processes import free_ports

from . import realnode, toolchain
from . import versions as V

ProgressFn = Callable[[str], None]

# Start order; stopped in reverse.
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")

SERVICE_CIDR = "10.96.0.0/16"
SERVICE_IP = "10.96.0.1"  # the `kubernetes` Service: the first address of SERVICE_CIDR
POD_CIDR = "10.244.0.0/16"
NODE_LABEL = ("type", "kwok")
# KWOK renews each fake node's Lease in kube-node-lease (a quarter of this apart, as a kubelet does).
NODE_LEASE_SECONDS = 40
DEFAULT_NODE_COUNT = 2
NODE_CAPACITY = {"cpu": "32", "memory": "256Gi", "pods": "110", "ephemeral-storage": "1Ti", "nvidia.com/gpu": "8"}
# While a pod has this annotation set to "false", KWOK keeps it NotReady (see stages/).
READY_ANNOTATION = "devcluster.infer-operator.io/ready"

START_TIMEOUT = 90.0  # bound for each wait while starting
STOP_TIMEOUT = 10.0  # SIGTERM -> SIGKILL bound per process


class ClusterError(RuntimeError):
    pass


@dataclass(frozen=True)
class Cluster:
    """What ``up()`` returns."""

    kubeconfig: Path
    server: str
    state_dir: Path


@dataclass(frozen=True)
class ProcessStatus:
    name: str
    pid: int | None
    alive: bool
    rss_bytes: int = 0


@dataclass(frozen=True)
class ClusterStatus:
    state_dir: Path
    server: str | None
    kubeconfig: Path | None
    api_ready: bool
    processes: list[ProcessStatus] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return self.api_ready and bool(self.processes) and all(p.alive for p in self.processes)

    @property
    def rss_bytes(self) -> int:
        return sum(p.rss_bytes for p in self.processes if p.alive)

    def render(self) -> str:
        lines = [
            f"state dir:  {self.state_dir}",
            f"server:     {self.server or '-'}",
            f"kubeconfig: {self.kubeconfig or '-'}",
            f"api ready:  {'yes' if self.api_ready else 'no'}",
        ]
        for p in self.processes:
            state = (
                f"running pid {p.pid}, {p.rss_bytes / 2**20:.0f} MiB"
                if p.alive
                else ("stopped" if p.pid is None else f"dead (pid {p.pid})")
            )
            lines.append(f"  {p.name:<24} {state}")
        if self.processes:
            lines.append(f"  {'total RSS':<24} {self.rss_bytes / 2**20:.0f} MiB")
        return "\n".join(lines)


# --------------------------------------------------------------------------- paths / helpers


def state_dir_path(state_dir: str | os.PathLike | None = None) -> Path:
    if state_dir is not None:
        return Path(state_dir).expanduser().resolve()
    env = os.environ.get("INFER_OPERATOR_CLUSTER_DIR")
    if env:
        return Path(env).expanduser().resolve()
    return (Path.home() / ".cache" / "infer-operator" / "cluster").resolve()


def kubeconfig_path(state_dir: str | os.PathLike | None = None) -> Path:
    return state_dir_path(state_dir) / "kubeconfig"


def _progress_default(msg: str) -> None:
    stream = sys.__stderr__ or sys.stderr
    print(f"[devcluster] {msg}", file=stream, flush=True)


def stages_yaml() -> str:
    """All KWOK Stage documents in ``devtools/cluster/stages`` as one multi-document YAML."""
    root = resources.files(__package__).joinpath("stages")
    docs = []
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            docs.append(entry.read_text().strip())
    return "\n---\n".join(docs) + "\n"


@contextlib.contextmanager
def _locked(sd: Path) -> Iterator[None]:
    sd.mkdir(parents=True, exist_ok=True)
    with open(sd / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# --------------------------------------------------------------------------- process records


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks) of a pid, or None if it does not exist."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return fields[0], int(fields[19])


def _rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _pid_file(sd: Path, name: str) -> Path:
    return sd / "pids" / f"{name}.pid"


def _record(sd: Path, name: str) -> dict | None:
    try:
        return json.loads(_pid_file(sd, name).read_text())
    except (OSError, ValueError):
        return None


def _alive(rec: dict | None) -> bool:
    if not rec:
        return False
    _reap(rec["pid"])
    st = _proc_stat(rec["pid"])
    return st is not None and st[0] not in ("Z", "X") and st[1] == rec.get("start_time")


def _start(sd: Path, name: str, argv: list[str]) -> subprocess.Popen:
    (sd / "logs").mkdir(exist_ok=True)
    (sd / "pids").mkdir(exist_ok=True)
    with open(sd / "logs" / f"{name}.log", "ab") as log:
        log.write(f"\n==== {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(argv)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=sd,
            start_new_session=True,
            close_fds=True,
        )
    st = _proc_stat(proc.pid)
    rec = {"pid": proc.pid, "start_time": st[1] if st else None, "argv0": argv[0]}
    tmp = _pid_file(sd, name).with_suffix(".tmp")
    tmp.write_text(json.dumps(rec))
    os.replace(tmp, _pid_file(sd, name))
    return proc


def _log_tail(sd: Path, name: str, n: int = 25) -> str:
    try:
        lines = (sd / "logs" / f"{name}.log").read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(lines[-n:])


def _stray_pids(sd: Path) -> dict[int, str]:
    """Processes of our binaries whose command line names this state dir (pid -> component), e.g.
    left behind when a pid file was lost after a crash."""
    bins = {str(toolchain.binary_path(c)): c for c in COMPONENTS}
    marker = str(sd)
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        a0 = argv[0].decode(errors="replace") if argv else ""
        if a0 in bins and any(marker in a.decode(errors="replace") for a in argv[1:]):
            st = _proc_stat(int(entry.name))
            if st and st[0] not in ("Z", "X"):
                found[int(entry.name)] = bins[a0]
    return found


def _wait_gone(pid: int, start_time: int | None, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        _reap(pid)
        st = _proc_stat(pid)
        if st is None or st[0] in ("Z", "X") or (start_time is not None and st[1] != start_time):
            _reap(pid)
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def _terminate(pid: int, start_time: int | None, timeout: float) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if _wait_gone(pid, start_time, timeout):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if not _wait_gone(pid, start_time, 10.0):
        raise ClusterError(f"pid {pid} survived SIGKILL")


# --------------------------------------------------------------------------- HTTP helpers


def _ssl_context(ca_file: Path | None) -> ssl.SSLContext:
    if ca_file and ca_file.is_file():
        return ssl.create_default_context(cafile=str(ca_file))
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _http(
    method: str,
    url: str,
    *,
    token: str | None = None,
    ca_file: Path | None = None,
    body: dict | None = None,
    timeout: float = 5.0,
) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    ctx = _ssl_context(ca_file) if url.startswith("https") else None
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=ctx) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (urllib.error.URLError, OSError, TimeoutError):
        return 0, b""


def _wait(
    what: str, predicate: Callable[[], bool], timeout: float, procs: dict[str, subprocess.Popen], sd: Path
) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        if predicate():
            return
        for name, p in procs.items():
            if p.poll() is not None:
                raise ClusterError(
                    f"{name} exited with {p.returncode} while waiting for {what}; "
                    f"log tail ({sd / 'logs' / (name + '.log')}):\n"
                    f"{_log_tail(sd, name)}"
                )
        if time.monotonic() >= deadline:
            raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)


# --------------------------------------------------------------------------- certificates


def write_serving_cert(cert_dir: Path, ca_file: Path, ips: list[str]) -> None:
    """A CA (written to ``ca_file``) and the API server's serving certificate signed by it, for
    ``ips`` and the ``kubernetes`` Service's DNS names, as ``cert_dir/apiserver.{crt,key}`` (the
    files the API server loads from its --cert-dir instead of making a self-signed pair).
    CalledProcessError when openssl fails."""
    import tempfile

    cert_dir.mkdir(parents=True, exist_ok=True)
    dns = [
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)

        def openssl(*args: str) -> None:
            subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=t)

        openssl(
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "3650",
            "-subj",
            "/CN=infer-devcluster-ca",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        )
        san = ",".join([f"IP:{ip}" for ip in ips] + [f"DNS:{name}" for name in dns])
        (t / "ext.cnf").write_text(
            f"subjectAltName={san}\nbasicConstraints=CA:FALSE\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
        )
        openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=kube-apiserver",
            "-keyout",
            "leaf.key",
            "-out",
            "leaf.csr",
        )
        openssl(
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "3650",
            "-extfile",
            "ext.cnf",
            "-out",
            "leaf.crt",
        )
        # The chain: clients that were given only the leaf's file (older kubeconfigs) still verify.
        (cert_dir / "apiserver.crt").write_bytes((t / "leaf.crt").read_bytes() + (t / "ca.crt").read_bytes())
        key = cert_dir / "apiserver.key"
        key.write_bytes((t / "leaf.key").read_bytes())
        key.chmod(0o600)
        shutil.copyfile(t / "ca.crt", ca_file)


# --------------------------------------------------------------------------- kubeconfig / nodes


def _write_kubeconfig(path: Path, server: str, token: str, ca_file: Path) -> None:
    ca = base64.b64encode(ca_file.read_bytes()).decode()
    text = f"""apiVersion: v1
kind: Config
clusters:
- name: infer-devcluster
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: admin
  user:
    token: {token}
contexts:
- name: infer-devcluster
  context:
    cluster: infer-devcluster
    user: admin
    namespace: default
current-context: infer-devcluster
"""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.chmod(0o600)
    os.replace(tmp, path)


def node_manifest(name: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                NODE_LABEL[0]: NODE_LABEL[1],
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "nvidia.com/gpu.present": "true",
            },
            "annotations": {"node.alpha.kubernetes.io/ttl": "0", "kwok.x-k8s.io/node": "fake"},
        },
        "spec": {},
        "status": {
            "capacity": dict(NODE_CAPACITY),
            "allocatable": dict(NODE_CAPACITY),
            "nodeInfo": {"architecture": "amd64", "operatingSystem": "linux", "kubeletVersion": V.KUBERNETES_VERSION},
        },
    }


# --------------------------------------------------------------------------- state


def _state(sd: Path) -> dict | None:
    try:
        return json.loads((sd / "state.json").read_text())
    except (OSError, ValueError):
        return None


def _api_ready(st: dict | None, sd: Path, timeout: float = 2.0) -> bool:
    if not st:
        return False
    code, _ = _http("GET", st["server"] + "/readyz", token=st["token"], ca_file=sd / "ca.crt", timeout=timeout)
    return code == 200


def _healthy(sd: Path) -> bool:
    st = _state(sd)
    if not st or not kubeconfig_path(sd).is_file():
        return False
    if not all(_alive(_record(sd, c)) for c in COMPONENTS):
        return False
    return _api_ready(st, sd)


def status(state_dir: str | os.PathLike | None = None) -> ClusterStatus:
    sd = state_dir_path(state_dir)
    st = _state(sd)
    procs = []
    for name in COMPONENTS:
        rec = _record(sd, name)
        alive = _alive(rec)
        procs.append(ProcessStatus(name, rec["pid"] if rec else None, alive, _rss(rec["pid"]) if alive else 0))
    kc = kubeconfig_path(sd)
    return ClusterStatus(
        state_dir=sd,
        server=st["server"] if st else None,
        kubeconfig=kc if kc.is_file() else None,
        api_ready=_api_ready(st, sd),
        processes=procs,
    )


def pids(state_dir: str | os.PathLike | None = None) -> dict[str, int]:
    """Recorded pids of the running components (name -> pid)."""
    sd = state_dir_path(state_dir)
    out = {}
    for name in COMPONENTS:
        rec = _record(sd, name)
        if _alive(rec):
            out[name] = rec["pid"]
    return out


# --------------------------------------------------------------------------- down


def _down_locked(sd: Path, timeout: float, progress: ProgressFn | None) -> None:
    # Recorded pids plus strays (lost pid files), stopped in reverse start order: an apiserver
    # with clients still connected or without its etcd is slow to exit.
    victims: dict[str, list[tuple[int, int | None]]] = {c: [] for c in COMPONENTS}
    for name in COMPONENTS:
        rec = _record(sd, name)
        if rec and _alive(rec):
            victims[name].append((rec["pid"], rec.get("start_time")))
    known = {pid for v in victims.values() for pid, _ in v}
    for pid, name in _stray_pids(sd).items():
        if pid not in known:
            st = _proc_stat(pid)
            victims[name].append((pid, st[1] if st else None))
    for name in reversed(COMPONENTS):
        for pid, start_time in victims[name]:
            t0 = time.monotonic()
            _terminate(pid, start_time, timeout)
            if progress:
                progress(f"  stopped {name} (pid {pid}) in {time.monotonic() - t0:.1f}s")
        with contextlib.suppress(FileNotFoundError):
            _pid_file(sd, name).unlink()
    with contextlib.suppress(FileNotFoundError):
        (sd / "state.json").unlink()


def down(
    state_dir: str | os.PathLike | None = None, *, timeout: float = STOP_TIMEOUT, progress: ProgressFn | None = None
) -> None:
    """Stop kwok, scheduler, controller-manager, apiserver, etcd (in that order): SIGTERM, then
    SIGKILL after ``timeout`` s. Also stops leftovers from a crashed run. Keeps logs."""
    sd = state_dir_path(state_dir)
    if not sd.exists():
        return
    # The real node first: its kubelet needs the API server to let go of its pods cleanly, and a
    # node left running would outlive the control plane it belongs to.
    realnode.down(sd, progress=progress)
    with _locked(sd):
        _down_locked(sd, timeout, progress)


# --------------------------------------------------------------------------- up


def up(
    state_dir: str | os.PathLike | None = None,
    *,
    nodes: int = DEFAULT_NODE_COUNT,
    build: bool = True,
    progress: ProgressFn | None = None,
    timeout: float = START_TIMEOUT,
) -> Cluster:
    """Start the local control plane (idempotent: returns at once if it is already up and healthy).

    Builds missing binaries first when ``build`` (cached; a cold build takes minutes). Returns when
    the API is ready, ``nodes`` KWOK nodes are Ready and the default ServiceAccount exists.
    """
    progress = progress or _progress_default
    sd = state_dir_path(state_dir)
    with _locked(sd):
        st = _state(sd)
        if st and _healthy(sd):
            return Cluster(kubeconfig_path(sd), st["server"], sd)
        if build:
            toolchain.ensure(toolchain.CLUSTER_COMPONENTS, progress=progress)
        else:
            missing = toolchain.missing(toolchain.CLUSTER_COMPONENTS)
            if missing:
                raise ClusterError(f"binaries missing: {', '.join(missing)} (run the 'build' command)")
        _down_locked(sd, STOP_TIMEOUT, None)
        t0 = time.monotonic()
        try:
            cluster = _start_all(sd, nodes, progress, timeout, realnode.unavailable_reason(sd) is None)
        except BaseException:
            with contextlib.suppress(Exception):
                _down_locked(sd, STOP_TIMEOUT, None)
            raise
        progress(f"control plane up in {time.monotonic() - t0:.1f}s; kubeconfig: {cluster.kubeconfig}")
        return cluster


def _start_all(sd: Path, nodes: int, progress: ProgressFn, timeout: float, pod_network: bool) -> Cluster:
    bins = {c: str(toolchain.binary_path(c)) for c in COMPONENTS}
    # Fresh runtime state each start (logs are kept, appended).
    for sub in ("etcd", "certs", "pids"):
        shutil.rmtree(sd / sub, ignore_errors=True)
    for f in ("state.json", "kubeconfig", "ca.crt"):
        with contextlib.suppress(FileNotFoundError):
            (sd / f).unlink()
    (sd / "logs").mkdir(exist_ok=True)

    # Service-account key pair and admin token.
    sa_key, sa_pub = sd / "sa.key", sd / "sa.pub"
    if not (sa_key.is_file() and sa_pub.is_file()):
        subprocess.run(["openssl", "genrsa", "-out", str(sa_key), "2048"], check=True, capture_output=True)
        subprocess.run(
            ["openssl", "rsa", "-in", str(sa_key), "-pubout", "-out", str(sa_pub)], check=True, capture_output=True
        )
    token = secrets.token_hex(24)
    tokens = sd / "tokens.csv"
    tokens.write_text(f'{token},admin,admin-uid,"system:masters"\n')
    tokens.chmod(0o600)

    etcd_client, etcd_peer, api_port = free_ports(3)
    server = f"https://127.0.0.1:{api_port}"
    # Pods on the real node reach the API server through the `kubernetes` Service, whose endpoint
    # is the advertised address: 127.0.0.1 cannot be one (inside a pod it is the pod itself), so
    # where a real node can run the server listens on all addresses and advertises the node's pod
    # bridge gateway, which its serving certificate names.
    pod_gateway = realnode.POD_GATEWAY if pod_network else None
    ca_file = sd / "ca.crt"
    write_serving_cert(sd / "certs", ca_file, ["127.0.0.1", SERVICE_IP] + ([pod_gateway] if pod_gateway else []))
    procs: dict[str, subprocess.Popen] = {}

    def started(name: str, t: float) -> None:
        progress(f"  {name} ready ({time.monotonic() - t:.1f}s)")

    t = time.monotonic()
    etcd_url = f"http://127.0.0.1:{etcd_client}"
    procs["etcd"] = _start(
        sd,
        "etcd",
        [
            bins["etcd"],
            "--name=devcluster",
            f"--data-dir={sd / 'etcd'}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls=http://127.0.0.1:{etcd_peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}",
            f"--initial-cluster=devcluster=http://127.0.0.1:{etcd_peer}",
            "--initial-cluster-state=new",
            "--unsafe-no-fsync",
            "--log-level=warn",
        ],
    )
    _wait("etcd /health", lambda: _http("GET", etcd_url + "/health", timeout=1)[0] == 200, timeout, procs, sd)
    started("etcd", t)

    t = time.monotonic()
    procs["kube-apiserver"] = _start(
        sd,
        "kube-apiserver",
        [
            bins["kube-apiserver"],
            f"--etcd-servers={etcd_url}",
            f"--secure-port={api_port}",
            f"--bind-address={'0.0.0.0' if pod_gateway else '127.0.0.1'}",
            f"--advertise-address={pod_gateway or '127.0.0.1'}",
            # The real node's kubelet reports its Hostname address first, which does not resolve:
            # `kubectl logs/exec` must dial its InternalIP.
            "--kubelet-preferred-address-types=InternalIP,Hostname,InternalDNS,ExternalDNS,ExternalIP",
            f"--cert-dir={sd / 'certs'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={sa_pub}",
            f"--service-account-signing-key-file={sa_key}",
            f"--token-auth-file={tokens}",
            "--authorization-mode=RBAC",
            "--allow-privileged=true",
            "--profiling=false",
        ],
    )
    _wait(
        "kube-apiserver /readyz",
        lambda: _http("GET", server + "/readyz", token=token, timeout=2)[0] == 200,
        timeout,
        procs,
        sd,
    )
    started("kube-apiserver", t)

    kubeconfig = kubeconfig_path(sd)
    _write_kubeconfig(kubeconfig, server, token, ca_file)
    kc = str(kubeconfig)

    # --node-monitor-grace-period: the node lifecycle controller marks a node Unknown, and every
    # pod on it NotReady, when neither its Lease nor its status heartbeat moved within this period
    # (default 50s). KWOK renews the Leases (--node-lease-duration-seconds below; without that flag
    # it makes none, the status heartbeat every ~10 minutes was all there was, and every pod went
    # NotReady about 10 minutes after `up`). Under CPU load (benchmarks, fault tests) a renewal can
    # still slip past 50s, so readiness flapped; fake nodes never really fail, so allow 10 minutes.
    # The controller itself must keep running: it is what removes the node.kubernetes.io/not-ready
    # taint that the apiserver's TaintNodesByCondition admission puts on every new Node (with
    # -nodelifecycle nodes stay tainted, nothing schedules).
    # -nodeipam/-route/-service/-cloud-node-lifecycle: no pod CIDRs (KWOK assigns pod IPs from
    # --cidr), no cloud provider, no load balancers.
    procs["kube-controller-manager"] = _start(
        sd,
        "kube-controller-manager",
        [
            bins["kube-controller-manager"],
            f"--kubeconfig={kc}",
            f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}",
            f"--service-account-private-key-file={sa_key}",
            f"--root-ca-file={ca_file}",
            "--leader-elect=false",
            "--secure-port=0",
            "--controllers=*,-nodeipam,-service,-route,-cloud-node-lifecycle",
            "--node-monitor-grace-period=10m",
            "--profiling=false",
        ],
    )
    procs["kube-scheduler"] = _start(
        sd,
        "kube-scheduler",
        [
            bins["kube-scheduler"],
            f"--kubeconfig={kc}",
            f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}",
            "--leader-elect=false",
            "--secure-port=0",
            "--profiling=false",
        ],
    )
    kwok_config = sd / "kwok.yaml"
    kwok_config.write_text(stages_yaml())
    procs["kwok"] = _start(
        sd,
        "kwok",
        [
            bins["kwok"],
            f"--kubeconfig={kc}",
            f"--config={kwok_config}",
            f"--manage-nodes-with-label-selector={NODE_LABEL[0]}={NODE_LABEL[1]}",
            f"--cidr={POD_CIDR}",
            "--node-ip=127.0.0.1",
            "--server-address=127.0.0.1:0",
            f"--node-lease-duration-seconds={NODE_LEASE_SECONDS}",
        ],
    )

    t = time.monotonic()
    names = [f"kwok-node-{i}" for i in range(nodes)]
    for name in names:
        code, body = _http("POST", server + "/api/v1/nodes", token=token, ca_file=ca_file, body=node_manifest(name))
        if code not in (201, 409):
            raise ClusterError(f"creating node {name} failed: HTTP {code} {body[:300]!r}")

    def nodes_ready() -> bool:
        code, body = _http(
            "GET",
            server + f"/api/v1/nodes?labelSelector={NODE_LABEL[0]}%3D{NODE_LABEL[1]}",
            token=token,
            ca_file=ca_file,
        )
        if code != 200:
            return False
        ready = 0
        for n in json.loads(body).get("items", []):
            conds = {c["type"]: c["status"] for c in n.get("status", {}).get("conditions", [])}
            taints = {tt["key"] for tt in n.get("spec", {}).get("taints", []) or []}
            if conds.get("Ready") == "True" and not taints & {
                "node.kubernetes.io/not-ready",
                "node.kubernetes.io/unreachable",
            }:
                ready += 1
        return ready >= nodes

    def default_sa() -> bool:
        return (
            _http("GET", server + "/api/v1/namespaces/default/serviceaccounts/default", token=token, ca_file=ca_file)[0]
            == 200
        )

    _wait(f"{nodes} KWOK nodes Ready", nodes_ready, timeout, procs, sd)
    _wait("default ServiceAccount", default_sa, timeout, procs, sd)
    started("controllers, scheduler, kwok, nodes", t)

    state = {
        "server": server,
        "token": token,
        "etcd": etcd_url,
        "versions": V.VERSIONS,
        "started_at": time.time(),
        "pod_gateway": pod_gateway,
        "api_port": api_port,
    }
    tmp = sd / "state.json.tmp"
    tmp.write_text(json.dumps(state, indent=2))
    tmp.chmod(0o600)
    os.replace(tmp, sd / "state.json")
    return Cluster(kubeconfig, server, sd)


# --------------------------------------------------------------------------- fault injection


def restart_component(
    name: str, state_dir: str | os.PathLike | None = None, *, down_seconds: float = 0.0, timeout: float = START_TIMEOUT
) -> float:
    """Stop one running component (SIGTERM, then SIGKILL) and start it again with the same command
    line, after ``down_seconds``. For fault-injection tests. Returns the seconds it was down
    (until its readiness check passed again, for etcd and the kube-apiserver)."""
    if name not in COMPONENTS:
        raise ValueError(f"unknown component {name!r}; expected one of {', '.join(COMPONENTS)}")
    sd = state_dir_path(state_dir)
    with _locked(sd):
        rec = _record(sd, name)
        if not _alive(rec):
            raise ClusterError(f"{name} is not running")
        with open(f"/proc/{rec['pid']}/cmdline", "rb") as fh:
            argv = [arg.decode() for arg in fh.read().split(b"\0") if arg]
        t0 = time.monotonic()
        _terminate(rec["pid"], rec.get("start_time"), STOP_TIMEOUT)
        if down_seconds > 0:
            time.sleep(down_seconds)
        proc = _start(sd, name, argv)
        st = _state(sd)
        if name == "kube-apiserver" and st:
            _wait(
                "kube-apiserver /readyz",
                lambda: _http("GET", st["server"] + "/readyz", token=st["token"], timeout=2)[0] == 200,
                timeout,
                {name: proc},
                sd,
            )
        elif name == "etcd" and st:
            _wait(
                "etcd /health",
                lambda: _http("GET", st["etcd"] + "/health", timeout=1)[0] == 200,
                timeout,
                {name: proc},
                sd,
            )
        return time.monotonic() - t0


def reachable(kubeconfig: str) -> str | None:
    """The server URL if the kubeconfig's current cluster answers /version within a few seconds."""
    try:
        from kubernetes import client, config

        cfg = client.Configuration()
        config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
        with client.ApiClient(cfg) as api:
            client.VersionApi(api).get_code(_request_timeout=3)
        return cfg.host
    except Exception:  # noqa: BLE001 - any failure means "not usable"
        return None
