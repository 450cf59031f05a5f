"""A real node beside the KWOK nodes: containerd, runc, a CNI bridge, a kubelet and kube-proxy.

KWOK runs no container; this node does, so probes, hooks, signals and grace periods really happen.
It belongs to one local control plane (its state lives in ``<state dir>/realnode``) and is
started after it; the API server was started pod-reachable for it (``launcher``: bound beyond
loopback, advertising ``POD_GATEWAY``), so pods reach the API through the ``kubernetes`` Service.

    from devtools.cluster import realnode
    reason = realnode.unavailable_reason()     # None when this machine can run it
    node = realnode.up()                       # RealNode; idempotent
    realnode.load_images(["operator"])         # build (cached) and import more images
    spare = realnode.up_spare()                # a second node beside it (drains need room)
    realnode.down()                            # both; nothing left: see leftovers()

Two errors, never confused: ``RealNodeUnavailable`` when this machine cannot run a node (not
Linux, not root, a package missing, the kernel's br_netfilter missing, another control plane's
node running): callers may go on without one (tests skip, saying why). ``RealNodeError`` when
the machine can but setting the node up failed (a host command failed, containerd or the
kubelet exited, a wait timed out, an image import failed, the control plane is not running or
was started without the pod network): that is a fault to report, never a reason to skip.

One per machine: the bridge, its address and the iptables chains are host-wide, so ``up`` refuses
while another control plane's node runs (``OWNER_FILE`` names it). The node is tainted
``TAINT_KEY=true:NoSchedule`` and labelled ``NODE_LABEL``: only pods that tolerate the taint and
select the label land there, and everything else (scale tests) stays on KWOK. Its capacity
advertises ``nvidia.com/gpu`` like the KWOK nodes'.

Debian packages: containerd, runc, containernetworking-plugins, iptables, conntrack (``make setup``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from devtools.harness.processes import free_ports

from . import toolchain

ProgressFn = Callable[[str], None]

NODE_NAME = "real-node-0"
TAINT_KEY = "infer-operator.io/real-node"
NODE_LABEL = ("infer-operator.io/real-node", "true")
POD_SUBNET = "10.245.0.0/24"  # KWOK's pods use 10.244.0.0/16, Services 10.96.0.0/16
POD_GATEWAY = "10.245.0.1"  # on the bridge; also the node's IP (a loopback node IP is refused)
BRIDGE = "inferbr0"
KUBELET_PORT = 10350  # on POD_GATEWAY; pods are refused it (CHAIN)
GPU_COUNT = 8
EPHEMERAL_STORAGE = "100Gi"  # advertised, not enforced (localStorageCapacityIsolation is off)
# The spare node: a second kubelet with its own containerd on the same bridge, started on demand
# (up_spare) where a test needs room to move pods to (a drain that honours a budget). It carries
# TAINT_KEY and NODE_LABEL like the first, and one taint more, so only pods that ask land there.
SPARE_NAME = "real-node-1"
SPARE_TAINT_KEY = "infer-operator.io/real-node-spare"
SPARE_KUBELET_PORT = KUBELET_PORT + 1
# Each node's pods take addresses from their own half of POD_SUBNET (host-local IPAM per node).
POD_RANGES = {NODE_NAME: ("10.245.0.2", "10.245.0.127"), SPARE_NAME: ("10.245.0.128", "10.245.0.254")}
CHAIN = "INFER-REALNODE"
CNI_NETWORK = "realnode"
OWNER_FILE = Path("/run/infer-operator-realnode.json")
CNI_BIN_DIR = Path("/usr/lib/cni")
# Host paths the kubelet, libcni and the shims use whatever they are configured with.
HOST_DIRS = ("/var/lib/kubelet", "/var/log/containers", "/var/lib/cni", "/run/containerd")
SYSCTLS = {
    "net.ipv4.ip_forward": "1",
    # pod -> ClusterIP -> pod on the same bridge goes through kube-proxy's rules
    "net.bridge.bridge-nf-call-iptables": "1",
}
PROCESSES = ("containerd", "kubelet", "kube-proxy")  # start order; stopped in reverse
START_TIMEOUT = 120.0
TOOLS = ("containerd", "containerd-shim-runc-v2", "runc", "ctr", "iptables", "ip", "conntrack", "unshare")
CNI_PLUGINS = ("bridge", "host-local", "loopback")
DEFAULT_IMAGES = ("pause", "sample-app")


class RealNodeUnavailable(RuntimeError):
    """This machine cannot run the real node now; the message says why, in one line."""


class RealNodeError(RuntimeError):
    """Setting up the real node failed on a machine that can run one; the message says what
    failed (a command's output, a log tail). Not a reason to go on without the node."""


@dataclass(frozen=True)
class RealNode:
    """A running real node: its name, its state dir, the images loaded into its containerd."""

    name: str
    state_dir: Path
    containerd_socket: Path
    pod_logs: Path
    images: dict[str, str]  # image name -> reference

    def toleration(self) -> dict:
        return {"key": TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}

    def node_selector(self) -> dict:
        return {NODE_LABEL[0]: NODE_LABEL[1]}


def _progress_default(msg: str) -> None:
    print(f"[realnode] {msg}", file=sys.__stderr__ or sys.stderr, flush=True)


def _launcher():
    from . import launcher  # imports this module: import it late

    return launcher


def node_dir(state_dir: str | os.PathLike | None = None) -> Path:
    return _launcher().state_dir_path(state_dir) / "realnode"


def _socket(nd: Path) -> Path:
    return nd / "containerd" / "containerd.sock"


# --------------------------------------------------------------------------- can it run here?


def host_reason() -> str | None:
    """Why this machine cannot run a real node at all (not root, a tool missing), else None.
    Cheap: no process is started."""
    if sys.platform != "linux":
        return "a real node needs Linux"
    if os.geteuid() != 0:
        return "a real node needs root (containerd, network namespaces, iptables); run as root"
    missing = [t for t in TOOLS if not shutil.which(t)]
    missing += [f"{CNI_BIN_DIR}/{p}" for p in CNI_PLUGINS if not (CNI_BIN_DIR / p).is_file()]
    if missing:
        return (
            f"missing {', '.join(missing)} (Debian packages containerd runc containernetworking-plugins "
            "iptables conntrack; `make setup` installs them)"
        )
    if not Path("/proc/sys/net/bridge").is_dir():
        return "the kernel's br_netfilter is not available (/proc/sys/net/bridge is missing)"
    return None


def _owner() -> dict | None:
    try:
        return json.loads(OWNER_FILE.read_text())
    except (OSError, ValueError):
        return None


def _owner_alive(owner: dict) -> bool:
    launcher = _launcher()
    sd = Path(owner["state_dir"])
    return any(launcher._alive(launcher._record(sd / "realnode", name)) for name in PROCESSES)


def unavailable_reason(state_dir: str | os.PathLike | None = None) -> str | None:
    """Why a real node cannot start for the control plane in ``state_dir`` now, else None:
    ``host_reason()``, or another control plane's node running on this machine."""
    reason = host_reason()
    if reason:
        return reason
    owner = _owner()
    sd = _launcher().state_dir_path(state_dir)
    if owner and Path(owner["state_dir"]) != sd and _owner_alive(owner):
        return (
            f"the real node of another control plane ({owner['state_dir']}) runs on this machine (one per "
            f"machine); stop it with INFER_OPERATOR_CLUSTER_DIR={owner['state_dir']} python -m devtools.cluster down"
        )
    return None


# --------------------------------------------------------------------------- small helpers


def _sh(*cmd: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    result = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise RealNodeError(f"`{' '.join(cmd)}` failed: {(result.stderr or result.stdout).strip()[:300]}")
    return result


def _ctr(nd: Path, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    return _sh("ctr", "--address", str(_socket(nd)), "-n", "k8s.io", *args, check=check, timeout=timeout)


def _wait(what: str, predicate: Callable[[], bool], timeout: float, nd: Path, watch: Iterable[str] = ()) -> None:
    """Poll ``predicate`` (growing intervals up to 0.5 s) for ``timeout`` s; RealNodeError
    naming ``what`` and the log tail of a watched process that died meanwhile."""
    launcher = _launcher()
    deadline = time.monotonic() + timeout
    delay = 0.05
    while not predicate():
        for name in watch:
            if not launcher._alive(launcher._record(nd, name)):
                raise RealNodeError(
                    f"{name} exited while waiting for {what}; log "
                    f"{nd / 'logs' / (name + '.log')}:\n{launcher._log_tail(nd, name, 15)}"
                )
        if time.monotonic() >= deadline:
            raise RealNodeError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)


def _api(
    state: dict, sd: Path, method: str, path: str, body: dict | None = None, content_type: str = "application/json"
) -> tuple[int, dict]:
    import ssl

    req = urllib.request.Request(
        state["server"] + path, method=method, data=json.dumps(body).encode() if body is not None else None
    )
    req.add_header("Authorization", f"Bearer {state['token']}")
    req.add_header("Content-Type", content_type)
    ctx = ssl.create_default_context(cafile=str(sd / "ca.crt"))
    try:
        with urllib.request.urlopen(req, timeout=10, context=ctx) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, {}
    except (urllib.error.URLError, OSError, ValueError):
        return 0, {}


# --------------------------------------------------------------------------- configuration


def containerd_config(nd: Path) -> str:
    sock = _socket(nd)
    return f"""version = 2
root = "{nd}/containerd/root"
state = "{nd}/containerd/state"
oom_score = 0
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper",
                    "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{nd}/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "docker.io/local/pause:1"
  # root here may lack CAP_SYS_RESOURCE: without this every sandbox fails
  # (runc: "can't get final child's PID from pipe: EOF")
  restrict_oom_score_adj = true
  # pod network namespaces under our state dir, not /var/run/netns
  netns_mounts_under_state_dir = true
  enable_selinux = false
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  max_container_log_line_size = 16384
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    discard_unpacked_layers = false
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{nd}/containerd/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{nd}/cni/net.d"
    max_conf_num = 1
"""


def cni_config(nd: Path, name: str = NODE_NAME) -> dict:
    # No portmap (no hostPort in tests) and no ipMasq: the plugins then make no iptables chains.
    return {
        "cniVersion": "1.0.0",
        "name": CNI_NETWORK,
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [
                        [
                            {
                                "subnet": POD_SUBNET,
                                "rangeStart": POD_RANGES[name][0],
                                "rangeEnd": POD_RANGES[name][1],
                                "gateway": POD_GATEWAY,
                            }
                        ]
                    ],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(nd / "cni" / "ipam"),
                },
            }
        ],
    }


def kubelet_config(nd: Path, healthz_port: int, name: str = NODE_NAME) -> str:
    sock = _socket(nd)
    port = KUBELET_PORT if name == NODE_NAME else SPARE_KUBELET_PORT
    taints = [TAINT_KEY] if name == NODE_NAME else [TAINT_KEY, SPARE_TAINT_KEY]
    taint_lines = "\n".join(f'- {{key: {key}, value: "true", effect: NoSchedule}}' for key in taints)
    return f"""apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: {POD_GATEWAY}
port: {port}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: {healthz_port}
# Local only: the API server reaches it for logs/exec, pods are refused its port (iptables).
authentication: {{anonymous: {{enabled: true}}, webhook: {{enabled: false}}}}
authorization: {{mode: AlwaysAllow}}
containerRuntimeEndpoint: unix://{sock}
imageServiceEndpoint: unix://{sock}
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
# No QoS cgroup tree and no node allocatable enforcement: the machine's cgroups are not ours.
cgroupsPerQOS: false
enforceNodeAllocatable: []
localStorageCapacityIsolation: false
oomScoreAdj: 0
makeIPTablesUtilChains: false
podLogsDir: {nd / "pod-logs"}
registerNode: true
registerWithTaints:
{taint_lines}
# The images are imported, never pulled: never garbage-collect them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {{memory.available: "1Mi", nodefs.available: "1%", nodefs.inodesFree: "1%", imagefs.available: "1%"}}
serializeImagePulls: false
clusterDomain: cluster.local
maxPods: 110
rotateCertificates: false
serverTLSBootstrap: false
"""


def kube_proxy_config(nd: Path, healthz_port: int, metrics_port: int) -> str:
    return f"""apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {{kubeconfig: {nd / "kubeconfig"}}}
mode: iptables
hostnameOverride: {NODE_NAME}
bindAddress: {POD_GATEWAY}
healthzBindAddress: 127.0.0.1:{healthz_port}
metricsBindAddress: 127.0.0.1:{metrics_port}
clusterCIDR: {POD_SUBNET}
detectLocalMode: ClusterCIDR
nodePortAddresses: [primary]
oomScoreAdj: 0
iptables: {{localhostNodePorts: false, minSyncPeriod: 1s, syncPeriod: 30s}}
# Leave the kernel's conntrack table settings alone.
conntrack: {{maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}}
"""


# --------------------------------------------------------------------------- up


def _record_host_state(nd: Path) -> None:
    """Remember, once per node life, the sysctls and host dirs it changes so down() restores them."""
    saved = nd / "host.json"
    if saved.is_file():
        return
    sysctls = {k: _sh("sysctl", "-n", k).stdout.strip() for k in SYSCTLS}
    created = [d for d in HOST_DIRS if not os.path.exists(d)]
    saved.write_text(json.dumps({"sysctls": sysctls, "created_dirs": created}))


def _network_up() -> None:
    for key, value in SYSCTLS.items():
        _sh("sysctl", "-qw", f"{key}={value}")
    if _sh("ip", "link", "show", BRIDGE, check=False).returncode != 0:
        _sh("ip", "link", "add", BRIDGE, "type", "bridge")
        _sh("ip", "addr", "add", f"{POD_GATEWAY}/{POD_SUBNET.split('/')[1]}", "dev", BRIDGE)
        _sh("ip", "link", "set", BRIDGE, "up")
    # Pods must not use the nodes' kubelet APIs (anonymous, AlwaysAllow) on their gateway address.
    if _sh("iptables", "-t", "filter", "-N", CHAIN, check=False).returncode != 0:
        _sh("iptables", "-t", "filter", "-F", CHAIN)
    for port in (KUBELET_PORT, SPARE_KUBELET_PORT):
        _sh(
            "iptables",
            "-t",
            "filter",
            "-A",
            CHAIN,
            "-d",
            f"{POD_GATEWAY}/32",
            "-p",
            "tcp",
            "--dport",
            str(port),
            "-j",
            "REJECT",
        )
    if _sh("iptables", "-t", "filter", "-C", "INPUT", "-i", BRIDGE, "-j", CHAIN, check=False).returncode != 0:
        _sh("iptables", "-t", "filter", "-I", "INPUT", "1", "-i", BRIDGE, "-j", CHAIN)


def up(
    state_dir: str | os.PathLike | None = None,
    *,
    images: Iterable[str] = DEFAULT_IMAGES,
    progress: ProgressFn | None = None,
    build: bool = True,
) -> RealNode:
    """Start the real node for the running control plane in ``state_dir`` (idempotent: a node
    already running for this very control plane start is kept, images are loaded if new).

    Builds the kubelet, kube-proxy and ``images`` first when ``build`` (cached). Returns once the
    Node is Ready, advertises ``nvidia.com/gpu`` and kube-proxy is healthy. RealNodeUnavailable
    (one line: why) when this machine cannot run it; RealNodeError when it can but the set-up
    failed. Either way nothing of it is left running."""
    progress = progress or _progress_default
    launcher = _launcher()
    sd = launcher.state_dir_path(state_dir)
    reason = unavailable_reason(sd)
    if reason:
        raise RealNodeUnavailable(reason)
    state = launcher._state(sd)
    if not state or not launcher._healthy(sd):
        raise RealNodeError(f"the control plane in {sd} is not running; start it first (python -m devtools.cluster up)")
    if state.get("pod_gateway") != POD_GATEWAY:
        raise RealNodeError(
            "the control plane was started without the pod network address (its API "
            "server advertises 127.0.0.1); restart it: python -m devtools.cluster down, then up"
        )
    nd = sd / "realnode"
    nd.mkdir(parents=True, exist_ok=True)
    if build:
        toolchain.ensure(toolchain.NODE_COMPONENTS, progress=progress)
    from devtools.images import build as image_build

    wanted = list(dict.fromkeys(["pause", *images]))
    archives = (
        image_build.ensure(wanted, progress=progress)
        if build
        else {n: a for n in wanted if (a := image_build.cached(n))}
    )
    with launcher._locked(nd):
        current = _node_state(nd)
        if (
            current
            and current.get("control_plane_started_at") == state["started_at"]
            and all(launcher._alive(launcher._record(nd, p)) for p in PROCESSES)
        ):
            _load(nd, archives, progress)
            return _handle(nd, archives)
        t0 = time.monotonic()
        _down_locked(sd, nd, progress=None, delete_node=True)
        try:
            _up_locked(sd, nd, state, archives, progress)
        except BaseException:
            with contextlib.suppress(Exception):
                _down_locked(sd, nd, progress=None, delete_node=True)
            raise
        progress(
            f"real node {NODE_NAME} up in {time.monotonic() - t0:.1f}s (pods: toleration {TAINT_KEY}, "
            f"nodeSelector {NODE_LABEL[0]}={NODE_LABEL[1]})"
        )
        return _handle(nd, archives)


def _handle(nd: Path, archives: dict, node: str = NODE_NAME) -> RealNode:
    loaded = json.loads((nd / "images.json").read_text()) if (nd / "images.json").is_file() else {}
    state_dir = nd.parent if node == NODE_NAME else nd.parent.parent
    return RealNode(node, state_dir, _socket(nd), nd / "pod-logs", {name: info["ref"] for name, info in loaded.items()})


def _node_state(nd: Path) -> dict | None:
    try:
        return json.loads((nd / "state.json").read_text())
    except (OSError, ValueError):
        return None


def _up_locked(sd: Path, nd: Path, state: dict, archives: dict, progress: ProgressFn) -> None:
    launcher = _launcher()
    OWNER_FILE.write_text(json.dumps({"state_dir": str(sd), "pid": os.getpid()}))
    _record_host_state(nd)
    _network_up()
    _start_containerd(nd, NODE_NAME, archives, progress)
    kubelet_healthz, proxy_healthz, proxy_metrics = free_ports(3)
    _start_kubelet(sd, nd, state, NODE_NAME, kubelet_healthz, progress)
    # Like the KWOK nodes: GPUs to schedule against, and ephemeral storage (our kubelet runs with
    # localStorageCapacityIsolation off, so it reports none, and a pod that requests some, as the
    # chart's operator does, would never be scheduled). The kubelet keeps a patched capacity (and
    # allocatable follows it) until it registers afresh, so this is done on every start.
    gpu = {"nvidia.com/gpu": str(GPU_COUNT), "ephemeral-storage": EPHEMERAL_STORAGE}

    def gpu_allocatable() -> bool:
        code, _ = _api(
            state,
            sd,
            "PATCH",
            f"/api/v1/nodes/{NODE_NAME}/status",
            {"status": {"capacity": gpu, "allocatable": gpu}},
            "application/merge-patch+json",
        )
        code, node = _api(state, sd, "GET", f"/api/v1/nodes/{NODE_NAME}")
        allocatable = node["status"].get("allocatable", {}) if code == 200 else {}
        return allocatable.get("nvidia.com/gpu") == str(GPU_COUNT) and "ephemeral-storage" in allocatable

    _wait(f"nvidia.com/gpu={GPU_COUNT} allocatable on {NODE_NAME}", gpu_allocatable, 30, nd, ["kubelet"])

    t = time.monotonic()
    (nd / "kube-proxy.yaml").write_text(kube_proxy_config(nd, proxy_healthz, proxy_metrics))
    launcher._start(
        nd, "kube-proxy", [str(toolchain.binary_path("kube-proxy")), f"--config={nd / 'kube-proxy.yaml'}", "--v=1"]
    )

    def proxy_healthy() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{proxy_healthz}/healthz", timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    _wait("kube-proxy healthy", proxy_healthy, 60, nd, ["kube-proxy"])
    progress(f"  kube-proxy healthy ({time.monotonic() - t:.1f}s)")
    (nd / "state.json").write_text(
        json.dumps(
            {"control_plane_started_at": state["started_at"], "kubelet_healthz": kubelet_healthz, "node": NODE_NAME}
        )
    )


def _start_containerd(nd: Path, name: str, archives: dict, progress: ProgressFn) -> None:
    """A node's containerd (its own root, state and socket under ``nd``), its CNI config, its images."""
    launcher = _launcher()
    for sub in ("containerd", "cni/net.d", "cni/ipam", "kubelet", "pod-logs", "logs", "pids"):
        (nd / sub).mkdir(parents=True, exist_ok=True)
    t = time.monotonic()
    (nd / "containerd" / "config.toml").write_text(containerd_config(nd))
    launcher._start(nd, "containerd", ["containerd", "--config", str(nd / "containerd" / "config.toml")])
    _wait(
        "containerd to answer",
        lambda: _ctr(nd, "version", check=False, timeout=5).returncode == 0,
        30,
        nd,
        ["containerd"],
    )
    progress(f"  {name}: containerd ready ({time.monotonic() - t:.1f}s)")
    (nd / "cni" / "net.d" / f"10-{CNI_NETWORK}.conflist").write_text(json.dumps(cni_config(nd, name), indent=2))
    _load(nd, archives, progress)


def _start_kubelet(sd: Path, nd: Path, state: dict, name: str, healthz_port: int, progress: ProgressFn) -> None:
    """A node's kubelet, registered as ``name``; returns once the Node is Ready."""
    launcher = _launcher()
    t = time.monotonic()
    kubeconfig = nd / "kubeconfig"
    shutil.copyfile(sd / "kubeconfig", kubeconfig)  # the admin identity: enough for a local test node
    (nd / "kubelet.yaml").write_text(kubelet_config(nd, healthz_port, name))
    labels = [f"{NODE_LABEL[0]}={NODE_LABEL[1]}"] + ([] if name == NODE_NAME else [f"{SPARE_TAINT_KEY}=true"])
    started = time.time()
    launcher._start(
        nd,
        "kubelet",
        [
            str(toolchain.binary_path("kubelet")),
            f"--config={nd / 'kubelet.yaml'}",
            f"--kubeconfig={kubeconfig}",
            f"--root-dir={nd / 'kubelet'}",
            f"--cert-dir={nd / 'kubelet' / 'pki'}",
            f"--hostname-override={name}",
            f"--node-ip={POD_GATEWAY}",
            f"--node-labels={','.join(labels)}",
            "--v=2",
        ],
    )

    def node_ready() -> bool:
        code, node = _api(state, sd, "GET", f"/api/v1/nodes/{name}")
        if code != 200:
            return False
        for cond in node.get("status", {}).get("conditions", []):
            if cond["type"] == "Ready" and cond["status"] == "True":
                beat = time.mktime(time.strptime(cond["lastHeartbeatTime"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
                return beat >= int(started) - 1
        return False

    _wait(f"node {name} Ready", node_ready, START_TIMEOUT, nd, ["containerd", "kubelet"])
    progress(f"  kubelet registered {name}, Ready ({time.monotonic() - t:.1f}s)")


# --------------------------------------------------------------------------- the spare node


def spare_dir(state_dir: str | os.PathLike | None = None) -> Path:
    return node_dir(state_dir) / "spare"


def spare_running(state_dir: str | os.PathLike | None = None) -> bool:
    launcher = _launcher()
    sp = spare_dir(state_dir)
    return all(launcher._alive(launcher._record(sp, p)) for p in ("containerd", "kubelet"))


def up_spare(
    state_dir: str | os.PathLike | None = None,
    *,
    images: Iterable[str] = ("sample-app",),
    progress: ProgressFn | None = None,
) -> RealNode:
    """Start the spare node ``SPARE_NAME`` beside the running real node (idempotent): its own
    containerd and kubelet, pods on the same bridge and Service network, tainted
    ``SPARE_TAINT_KEY`` as well. Returns once the Node is Ready with ``images`` loaded.
    RealNodeError when the real node is not running or the start fails (then nothing of the
    spare is left running)."""
    progress = progress or _progress_default
    launcher = _launcher()
    sd = launcher.state_dir_path(state_dir)
    nd = sd / "realnode"
    state = launcher._state(sd)
    if not state or not running(sd):
        raise RealNodeError(f"the spare node starts beside the real node, which is not running in {sd}")
    from devtools.images import build as image_build

    archives = image_build.ensure(list(dict.fromkeys(["pause", *images])), progress=progress)
    sp = nd / "spare"
    with launcher._locked(nd):
        current = _node_state(sp)
        if current and current.get("control_plane_started_at") == state["started_at"] and spare_running(sd):
            _load(sp, archives, progress)
            return _handle(sp, archives, SPARE_NAME)
        t0 = time.monotonic()
        _stop_spare_locked(sd, nd)
        try:
            _start_containerd(sp, SPARE_NAME, archives, progress)
            _start_kubelet(sd, sp, state, SPARE_NAME, free_ports(1)[0], progress)
        except BaseException:
            with contextlib.suppress(Exception):
                _stop_spare_locked(sd, nd)
            raise
        (sp / "state.json").write_text(
            json.dumps({"control_plane_started_at": state["started_at"], "node": SPARE_NAME})
        )
        progress(
            f"spare node {SPARE_NAME} up in {time.monotonic() - t0:.1f}s (pods: also toleration {SPARE_TAINT_KEY})"
        )
        return _handle(sp, archives, SPARE_NAME)


def down_spare(state_dir: str | os.PathLike | None = None, *, progress: ProgressFn | None = None) -> None:
    """Stop the spare node and delete its Node object; the real node runs on. Safe to repeat."""
    launcher = _launcher()
    sd = launcher.state_dir_path(state_dir)
    nd = sd / "realnode"
    if not (nd / "spare").is_dir():
        return
    with launcher._locked(nd):
        t0 = time.monotonic()
        if _stop_spare_locked(sd, nd) and progress:
            progress(f"  spare node {SPARE_NAME} stopped in {time.monotonic() - t0:.1f}s")


def _stop_spare_locked(sd: Path, nd: Path) -> bool:
    """The spare's kubelet, pod tasks, containerd, leftover processes and mounts; its Node
    object. Whether anything was running."""
    launcher = _launcher()
    sp = nd / "spare"
    if not sp.is_dir():
        return False
    anything = _stop_kubelet_and_containerd(sp)
    for pid in _pids_under([str(_socket(sp)), f"{sp}/"]):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)
        launcher._wait_gone(pid, None, 5)
        anything = True
    anything = _unmount_under(sp) or anything
    for sub in ("cni/ipam", "containerd/state", "containerd/runc", "kubelet"):
        shutil.rmtree(sp / sub, ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        (sp / "state.json").unlink()
    state = launcher._state(sd)
    if state:
        _api(state, sd, "DELETE", f"/api/v1/nodes/{SPARE_NAME}")
    return anything


def _load(nd: Path, archives: dict, progress: ProgressFn) -> None:
    """Import the image archives containerd does not hold yet (by manifest digest)."""
    loaded_file = nd / "images.json"
    loaded = json.loads(loaded_file.read_text()) if loaded_file.is_file() else {}
    present = {}
    for line in _ctr(nd, "images", "ls").stdout.splitlines()[1:]:
        cols = line.split()
        if len(cols) >= 3:
            present[cols[0]] = cols[2]
    for name, archive in archives.items():
        if present.get(archive.ref) == archive.digest:
            loaded[name] = {"ref": archive.ref, "digest": archive.digest}
            continue
        t = time.monotonic()
        _ctr(nd, "images", "import", "--no-unpack=false", str(archive.path), timeout=600)
        loaded[name] = {"ref": archive.ref, "digest": archive.digest}
        progress(f"  image {archive.ref} imported ({time.monotonic() - t:.1f}s, {archive.size / 1e6:.0f} MB)")
    loaded_file.write_text(json.dumps(loaded))


def load_images(
    names: Iterable[str], state_dir: str | os.PathLike | None = None, *, progress: ProgressFn | None = None
) -> dict[str, str]:
    """Build (cached) and import images into the running node's containerd; name -> reference.
    RealNodeError when the node is not running."""
    from devtools.images import build as image_build

    progress = progress or _progress_default
    nd = node_dir(state_dir)
    if not running(state_dir):
        raise RealNodeError("the real node is not running")
    archives = image_build.ensure(list(names), progress=progress)
    _load(nd, archives, progress)
    return {n: a.ref for n, a in archives.items()}


def running(state_dir: str | os.PathLike | None = None) -> bool:
    launcher = _launcher()
    nd = node_dir(state_dir)
    return all(launcher._alive(launcher._record(nd, p)) for p in PROCESSES)


def rss_bytes(state_dir: str | os.PathLike | None = None) -> dict[str, int]:
    """Resident memory of the node's processes (name -> bytes; the pods' own processes excluded)."""
    launcher = _launcher()
    nd = node_dir(state_dir)
    out = {}
    for name in PROCESSES:
        rec = launcher._record(nd, name)
        if launcher._alive(rec):
            out[name] = launcher._rss(rec["pid"])
    return out


# --------------------------------------------------------------------------- down


def down(
    state_dir: str | os.PathLike | None = None, *, progress: ProgressFn | None = None, delete_node: bool = True
) -> None:
    """Stop the node of the control plane in ``state_dir`` and undo what it changed on the host:
    processes (kubelet, kube-proxy, pod tasks, containerd, shims), mounts, the bridge, iptables
    chains, sysctls, host files. Deletes the Node object when the API answers and ``delete_node``.
    Safe to repeat; does nothing where no node was started. Images stay in containerd's root."""
    launcher = _launcher()
    sd = launcher.state_dir_path(state_dir)
    nd = sd / "realnode"
    if not nd.is_dir():
        return
    with launcher._locked(nd):
        _down_locked(sd, nd, progress=progress, delete_node=delete_node)


def _pids_under(markers: Iterable[str]) -> dict[int, str]:
    """Processes whose command line names one of ``markers`` (pid -> command line)."""
    found = {}
    markers = [m for m in markers if m]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(m in cmd for m in markers):
            found[int(entry.name)] = cmd.strip()
    return found


def _mounts_under(root: Path) -> list[str]:
    out = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4].replace("\\040", " ")
            if point == str(root) or point.startswith(str(root) + "/"):
                out.append(point)
    return out


def _down_locked(sd: Path, nd: Path, progress: ProgressFn | None, delete_node: bool) -> None:
    launcher = _launcher()
    say = progress or (lambda _msg: None)
    t0 = time.monotonic()
    # 0. The spare node, if one runs beside it (it shares the bridge and the chains below).
    anything = _stop_spare_locked(sd, nd)
    # 1. The kubelet first (it would restart what we stop), then kube-proxy and its rules.
    rec = launcher._record(nd, "kube-proxy")
    proxy_ran = launcher._alive(rec)
    anything = _stop_kubelet_and_containerd(nd, also=("kube-proxy",)) or anything
    proxy = toolchain.binary_path("kube-proxy")
    if proxy_ran and proxy.is_file():
        subprocess.run([str(proxy), "--cleanup", "--v=0"], capture_output=True, timeout=60)
    # 2. Whatever still runs from our dirs: shims (they outlive containerd by design).
    for pid, cmd in _pids_under([str(_socket(nd)), f"{nd}/"]).items():
        say(f"  killing leftover process {pid}: {cmd[:100]}")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)
        launcher._wait_gone(pid, None, 5)
        anything = True
    # 3. Mounts below the node dir (the kubelet's root bind mount, pod volumes, network
    #    namespaces, container root filesystems), deepest first.
    anything = _unmount_under(nd) or anything
    # 4. Network: the bridge (veths went with their namespaces), our chain, kube-proxy's and the
    #    KUBE-FIREWALL chain `kube-proxy --cleanup` leaves (one kube-proxy per machine: every
    #    KUBE- chain is this node's).
    if subprocess.run(["ip", "link", "show", BRIDGE], capture_output=True).returncode == 0:
        subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True)
        anything = True
    _delete_chains()
    # 5. Host settings and files.
    saved = nd / "host.json"
    if saved.is_file():
        host = json.loads(saved.read_text())
        for key, value in host["sysctls"].items():
            subprocess.run(["sysctl", "-qw", f"{key}={value}"], capture_output=True)
        _remove_host_files(host["created_dirs"])
        saved.unlink()
    for sub in ("cni/ipam", "containerd/state", "containerd/runc", "kubelet"):
        shutil.rmtree(nd / sub, ignore_errors=True)
    owner = _owner()
    if owner and Path(owner["state_dir"]) == sd:
        OWNER_FILE.unlink(missing_ok=True)
    with contextlib.suppress(FileNotFoundError):
        (nd / "state.json").unlink()
    # 6. The Node object: its pods are then garbage-collected, and the next start registers anew.
    state = launcher._state(sd)
    if delete_node and state:
        _api(state, sd, "DELETE", f"/api/v1/nodes/{NODE_NAME}")
    if anything:
        say(f"  real node {NODE_NAME} stopped in {time.monotonic() - t0:.1f}s")


def _stop_kubelet_and_containerd(nd: Path, also: Iterable[str] = ()) -> bool:
    """Stop a node's kubelet (first: it would restart what is stopped) and ``also``, then its
    pods' processes through its containerd (their shims exit with them), then containerd.
    Whether anything ran."""
    launcher = _launcher()
    anything = False
    for name in ("kubelet", *also):
        rec = launcher._record(nd, name)
        if launcher._alive(rec):
            launcher._terminate(rec["pid"], rec.get("start_time"), 10)
            anything = True
        with contextlib.suppress(FileNotFoundError):
            launcher._pid_file(nd, name).unlink()
    rec = launcher._record(nd, "containerd")
    if launcher._alive(rec):
        anything = True
        tasks = _ctr(nd, "tasks", "ls", "-q", check=False, timeout=20).stdout.split()
        for task in tasks:
            _ctr(nd, "tasks", "kill", "-s", "SIGKILL", task, check=False, timeout=20)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            listing = _ctr(nd, "tasks", "ls", check=False, timeout=20).stdout.splitlines()[1:]
            if all(line.split()[-1] == "STOPPED" for line in listing if line.split()):
                break
            time.sleep(0.1)
        for task in tasks:
            _ctr(nd, "tasks", "delete", "-f", task, check=False, timeout=20)
        launcher._terminate(rec["pid"], rec.get("start_time"), 15)
    with contextlib.suppress(FileNotFoundError):
        launcher._pid_file(nd, "containerd").unlink()
    return anything


def _unmount_under(root: Path) -> bool:
    """Unmount everything below ``root``, deepest first; whether anything was mounted."""
    anything = False
    for _ in range(3):
        points = sorted(set(_mounts_under(root)), key=len, reverse=True)
        if not points:
            break
        anything = True
        for point in points:
            if subprocess.run(["umount", point], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", point], capture_output=True)
    return anything


def _delete_chains() -> None:
    for ipt in ("iptables", "ip6tables"):
        if not shutil.which(ipt):
            continue
        for table in ("filter", "nat", "mangle"):
            rules = subprocess.run([ipt, "-t", table, "-S"], capture_output=True, text=True).stdout.splitlines()
            ours = [
                r.split()[1]
                for r in rules
                if r.startswith("-N ") and (r.split()[1].startswith("KUBE-") or r.split()[1] == CHAIN)
            ]
            for rule in rules:
                parts = rule.split()
                if (
                    rule.startswith("-A ")
                    and "-j" in parts
                    and parts[parts.index("-j") + 1] in ours
                    and parts[1] not in ours
                ):
                    subprocess.run([ipt, "-t", table, "-D", *parts[1:]], capture_output=True)
            for chain in ours:
                subprocess.run([ipt, "-t", table, "-F", chain], capture_output=True)
            for chain in ours:
                subprocess.run([ipt, "-t", table, "-X", chain], capture_output=True)


def _remove_host_files(created_dirs: list[str]) -> None:
    # Files the kubelet, libcni and the shims put in host paths whatever they are configured with.
    for path in (
        "/var/lib/kubelet/device-plugins/kubelet.sock",
        "/var/lib/kubelet/device-plugins/kubelet_internal_checkpoint",
    ):
        Path(path).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        for link in Path("/var/log/containers").iterdir():
            if link.is_symlink() and "/realnode/pod-logs/" in os.readlink(link):
                link.unlink()
    with contextlib.suppress(OSError):
        for f in Path("/var/lib/cni/results").iterdir():
            if f.name.startswith(f"{CNI_NETWORK}-") or f.name.startswith("cni-loopback-"):
                f.unlink()
    with contextlib.suppress(OSError):
        for sock in Path("/run/containerd/s").iterdir():
            if sock.is_socket() and not _listening(sock):
                sock.unlink()
    for d in sorted(created_dirs, key=len, reverse=True):
        # Only the directories our first start created, and only when nothing else is in them.
        for sub in sorted(Path(d).rglob("*"), key=lambda p: len(str(p)), reverse=True) if Path(d).is_dir() else []:
            if sub.is_dir() and not sub.is_symlink():
                with contextlib.suppress(OSError):
                    sub.rmdir()
        with contextlib.suppress(OSError):
            Path(d).rmdir()


def _listening(sock: Path) -> bool:
    import socket

    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(0.5)
    try:
        s.connect(str(sock))
        return True
    except OSError:
        return False
    finally:
        s.close()


# --------------------------------------------------------------------------- leftovers


def leftovers(state_dir: str | os.PathLike | None = None) -> list[str]:
    """What of a real node is left on this machine (empty after a clean ``down``): processes,
    mounts, the bridge, veths, iptables chains, shim sockets, host files. One sentence each."""
    nd = node_dir(state_dir)
    found = []
    markers = [
        str(nd) + "/",
        str(_socket(nd)),
        str(toolchain.binary_path("kubelet")),
        str(toolchain.binary_path("kube-proxy")),
        "containerd-shim-runc-v2",
    ]
    for pid, cmd in _pids_under(markers).items():
        found.append(f"process {pid} runs: {cmd[:120]}")
    for point in _mounts_under(nd):
        found.append(f"mount {point} is still mounted")
    if subprocess.run(["ip", "link", "show", BRIDGE], capture_output=True).returncode == 0:
        found.append(f"the bridge {BRIDGE} still exists")
    veths = subprocess.run(["ip", "-o", "link", "show", "master", BRIDGE], capture_output=True, text=True).stdout
    found += [f"link {line.split(':')[1].strip()} is still on {BRIDGE}" for line in veths.splitlines() if line]
    for ipt in ("iptables", "ip6tables"):
        if not shutil.which(ipt):
            continue
        for table in ("filter", "nat", "mangle"):
            rules = subprocess.run([ipt, "-t", table, "-S"], capture_output=True, text=True).stdout.splitlines()
            chains = [
                r.split()[1]
                for r in rules
                if r.startswith("-N ") and (r.split()[1].startswith(("KUBE-", "CNI-")) or r.split()[1] == CHAIN)
            ]
            if chains:
                found.append(f"{ipt} table {table} still has chains {', '.join(chains[:5])}")
    with contextlib.suppress(OSError):
        socks = [s for s in Path("/run/containerd/s").iterdir() if s.is_socket() and not _listening(s)]
        if socks:
            found.append(f"{len(socks)} stale shim socket(s) in /run/containerd/s")
    with contextlib.suppress(OSError):
        links = [
            p
            for p in Path("/var/log/containers").iterdir()
            if p.is_symlink() and "/realnode/pod-logs/" in os.readlink(p)
        ]
        if links:
            found.append(f"{len(links)} pod log link(s) in /var/log/containers")
    with contextlib.suppress(OSError):
        cache = [f for f in Path("/var/lib/cni/results").iterdir() if f.name.startswith(f"{CNI_NETWORK}-")]
        if cache:
            found.append(f"{len(cache)} CNI result file(s) in /var/lib/cni/results")
    if Path("/var/lib/kubelet/device-plugins/kubelet.sock").exists():
        found.append("/var/lib/kubelet/device-plugins/kubelet.sock exists")
    owner = _owner()
    if owner and Path(owner["state_dir"]) == nd.parent:
        found.append(f"{OWNER_FILE} still names this control plane")
    return found
