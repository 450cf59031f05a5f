"""A narrated, self-checking walkthrough of infer-operator: ``make demo`` / ``python -m devtools.demo``.

What it does (every wait is bounded and polls a condition; any failed check exits non-zero, so the
demo doubles as a smoke test):

 1. Cluster: ``$KUBECONFIG``'s cluster if it answers, else the local control plane (etcd,
    kube-apiserver, controller-manager, scheduler, KWOK fake nodes; built and cached on first use),
    stopped at the end unless ``--keep``. Where this machine can run one (root, containerd), the
    local control plane gets its real node too and the demo's pods are real containers of the
    sample app (examples/sample-app, built here); otherwise they run on KWOK. It says which.
 2. Installs the CRD, starts a throwaway etcd as the registry and the operator as a subprocess.
 3. Applies an InferenceService (4 pods, 2 sync + 2 async, registry etcd) and waits for it.
 4. Shows the registry, then seeds per-IP config keys as an ops tool would (plus one for a dead IP).
 5. Deletes a sync pod and prints the timeline: deregistered and config removed before the pod
    object goes, recreated, registered again; the sweep removes the dead IP's config. On real pods
    also the pod's own log: the offline call, the drain, SIGTERM after the deregistration.
 6. Changes the split 2 -> 3: only the pod whose role flips restarts.
 7. Deletes the InferenceService: its registry entries go with it. Stops everything it started.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from devtools.harness import (
    ClusterHandle,
    OperatorProcess,
    env_kubeconfig,
    etcd_registry,
    external,
    isvc_body,
    local,
    wait_for,
)
from infer_operator import labels

NAMESPACE = "infer-demo"
NAME = "llm"
PREFIX = "/services"
PORT = 8000
DRAIN_SECONDS = 2
GRACE_SECONDS = 5
SWEEP_SECONDS = 5
DEAD_IP = "10.255.255.1"
ROOT = Path(__file__).resolve().parents[1]
CRD_NAME = f"{labels.PLURAL}.{labels.GROUP}"


class DemoFailure(AssertionError):
    """A check failed: the demo stops, cleans up and exits 1 (as it does when a harness wait times out)."""


# Transient API and registry errors while polling: keep polling (a failed check, an
# AssertionError, still stops the wait at once).
TRANSIENT = (Exception,)


# --------------------------------------------------------------------------- output


class Out:
    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def section(self, title: str) -> None:
        print(f"\n{'=' * 100}\n[{self.elapsed():6.1f}s] {title}\n{'=' * 100}", flush=True)

    def step(self, msg: str) -> None:
        print(f"==> {msg}", flush=True)

    def info(self, msg: str = "") -> None:
        print(textwrap.indent(msg, "    ") if msg else "", flush=True)

    def ok(self, msg: str) -> None:
        print(f"    [ok] {msg}", flush=True)


OUT = Out()


def check(condition: Any, message: str) -> None:
    if not condition:
        raise DemoFailure(message)
    OUT.ok(message)


# --------------------------------------------------------------------------- cluster


class Cluster:
    """The demo's view of the cluster (a harness ClusterHandle): narrated kubectl, and reads."""

    def __init__(self, handle: ClusterHandle):
        from kubernetes import client

        self.handle = handle
        self.kubeconfig = handle.kubeconfig
        self.api = handle.api_client()
        self.core = client.CoreV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)

    def kubectl(
        self, *args: str, check_rc: bool = True, show: bool = True, input: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess:
        if show:
            OUT.step("kubectl " + " ".join(args))
        try:
            result = self.handle.kubectl(*args, input=input, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise DemoFailure(f"kubectl {' '.join(args)} did not finish within {timeout:.0f}s") from None
        if check_rc and result.returncode != 0:
            raise DemoFailure(f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
        return result

    # ---- reads (the Python client: fast enough to poll every 100 ms)

    def pods(self) -> dict[str, Any]:
        items = self.core.list_namespaced_pod(
            NAMESPACE, label_selector=f"{labels.LABEL_SERVICE}={NAME}", _request_timeout=5
        ).items
        return {p.metadata.name: p for p in items}

    def pod(self, name: str) -> Any | None:
        from kubernetes.client.rest import ApiException

        try:
            return self.core.read_namespaced_pod(name, NAMESPACE, _request_timeout=5)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def isvc(self) -> dict | None:
        from kubernetes.client.rest import ApiException

        try:
            return self.custom.get_namespaced_custom_object(
                labels.GROUP, labels.VERSION, NAMESPACE, labels.PLURAL, NAME, _request_timeout=5
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def namespace_exists(self) -> bool:
        from kubernetes.client.rest import ApiException

        try:
            self.core.read_namespace(NAMESPACE, _request_timeout=5)
            return True
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise


def is_ready(pod: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))


def role(pod: Any) -> str:
    return (pod.metadata.labels or {}).get(labels.LABEL_ROLE, "-")


def pod_table(pods: dict[str, Any]) -> str:
    rows = [("NAME", "ROLE", "IP", "READY", "TERMINATING", "UID")]
    for name in sorted(pods):
        p = pods[name]
        rows.append(
            (
                name,
                role(p),
                p.status.pod_ip or "-",
                "true" if is_ready(p) else "false",
                "yes" if p.metadata.deletion_timestamp else "no",
                p.metadata.uid[:8],
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


# --------------------------------------------------------------------------- operator


def start_operator(kubeconfig: Path, log_path: Path) -> OperatorProcess:
    operator = OperatorProcess(
        kubeconfig,
        log_path,
        "--resync-seconds",
        "10",
        "--sweep-seconds",
        str(SWEEP_SECONDS),
        "--registry-timeout",
        "2",
        "--deregister-timeout",
        "15",
        namespaces=[NAMESPACE],
        metrics=True,
    )
    operator.start()
    # Shown once started: its ports are picked at start.
    OUT.step("started the operator: " + " ".join(["python", *operator.argv()[1:]]))
    OUT.ok(f"operator running (pid {operator.pid}); log: {operator.log_path}")
    return operator


def operator_metrics(operator: OperatorProcess, prefix: str = "infer_operator_") -> list[str]:
    """The operator's own samples (no help, histogram buckets or creation times); [] if unreachable."""
    try:
        body = operator.metrics_text(timeout=3)
    except OSError:
        return []
    return [
        line
        for line in body.splitlines()
        if line.startswith(prefix) and "_created" not in line and "_bucket" not in line
    ]


# --------------------------------------------------------------------------- registry view


class RegistryView:
    """The demo's eyes on etcd: keys of one service, read straight through the JSON gateway."""

    def __init__(self, etcd: Any):
        self.etcd = etcd
        self.base = f"{PREFIX}/{NAME}/"

    def all(self) -> dict[str, bytes]:
        return self.etcd.range_prefix(self.base)

    def instances(self) -> dict[str, dict]:
        out = {}
        for key, value in self.etcd.range_prefix(self.base + "instances/").items():
            try:
                out[key.rsplit("/", 1)[1]] = json.loads(value)
            except ValueError:
                out[key.rsplit("/", 1)[1]] = {"raw": value.decode(errors="replace")}
        return out

    def configs(self) -> dict[str, bytes]:
        return {k.split("/config/", 1)[1]: v for k, v in self.etcd.range_prefix(self.base + "config/").items()}

    def config_key(self, ip: str) -> str:
        return f"{self.base}config/{ip}"

    def show(self, title: str) -> None:
        OUT.step(f"{title}: etcd keys under {self.base} (POST {self.etcd.client_url}/v3/kv/range)")
        entries = self.all()
        if not entries:
            OUT.info("(none)")
        for key, value in entries.items():
            OUT.info(f"{key} = {value.decode(errors='replace')}")


# --------------------------------------------------------------------------- timeline


class Timeline:
    """Watch for named events (predicates) and print each one with its time since ``start``."""

    def __init__(self, start: float):
        self.start = start
        self.seen: dict[str, float] = {}

    def mark(self, event: str, at: float | None = None) -> None:
        if event not in self.seen:
            self.seen[event] = (at if at is not None else time.monotonic()) - self.start
            print(f"    +{self.seen[event]:6.2f}s  {event}", flush=True)

    def run(self, events: list[tuple[str, Callable[[], bool]]], timeout: float, interval: float = 0.1) -> None:
        deadline = time.monotonic() + timeout
        pending = [(n, f) for n, f in events if n not in self.seen]
        while pending:
            for name, predicate in pending:
                try:
                    if predicate():
                        self.mark(name)
                except AssertionError:
                    raise
                except Exception:  # noqa: BLE001 - transient read errors: poll again
                    pass
            pending = [(n, f) for n, f in pending if n not in self.seen]
            if not pending:
                return
            if time.monotonic() >= deadline:
                raise DemoFailure(f"timed out after {timeout:.0f}s; never saw: " + "; ".join(n for n, _ in pending))
            time.sleep(interval)

    def at(self, event: str) -> float:
        return self.seen[event]


# --------------------------------------------------------------------------- the demo


def manifest(etcd_url: str, node: Any = None, redis_url: str | None = None) -> dict:
    if node is not None:
        # Real pods: the sample app (sync: HTTP; async: a Redis queue worker), on the real node.
        probe = {"periodSeconds": 1}
        container = {
            "name": "model",
            "image": node.images["sample-app"],
            "imagePullPolicy": "Never",
            "env": [{"name": "REDIS_URL", "value": redis_url}],
            "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"nvidia.com/gpu": 1}},
        }
        return isvc_body(
            NAME,
            NAMESPACE,
            replicas=4,
            syncReplicas=2,
            sync={
                "command": ["python", "/app/app.py"],
                "port": PORT,
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": PORT}, **probe},
            },
            **{
                "async": {
                    "command": ["python", "/app/app.py"],
                    "readinessProbe": {"exec": {"command": ["test", "-f", "/tmp/worker-ready"]}, **probe},
                }
            },
            lifecycle={
                "offlinePath": "/offline",
                "drainSeconds": DRAIN_SECONDS,
                "terminationGracePeriodSeconds": GRACE_SECONDS,
            },
            registry=etcd_registry(etcd_url, PREFIX),
            template={
                "metadata": {"labels": {"team": "demo"}},
                "spec": {
                    "containers": [container],
                    "tolerations": [node.toleration()],
                    "nodeSelector": node.node_selector(),
                },
            },
        )
    return isvc_body(
        NAME,
        NAMESPACE,
        replicas=4,
        syncReplicas=2,
        sync={"command": ["python3", "-m", "http.server", str(PORT)], "port": PORT},
        **{"async": {"command": ["python3", "-c", "import time\nwhile True: time.sleep(3600)"]}},
        lifecycle={"drainSeconds": DRAIN_SECONDS, "terminationGracePeriodSeconds": GRACE_SECONDS},
        registry=etcd_registry(etcd_url, PREFIX),
        template={
            "metadata": {"labels": {"team": "demo"}},
            "spec": {"containers": [{"name": "model", "image": "python:3.12-alpine"}]},
        },
    )


class Demo:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.workdir = Path(tempfile.mkdtemp(prefix="infer-demo-"))
        self.cluster: Cluster | None = None
        self.etcd: Any = None
        self.operator: OperatorProcess | None = None
        self.registry: RegistryView | None = None
        self.seeded_at = 0.0
        self.external = False
        self.node: Any = None  # the real node, when the pods run as real containers
        self.redis: Any = None  # the async role's queue on real pods

    # ------------------------------------------------------------------ 1. cluster

    def step_cluster(self) -> None:
        OUT.section("1. A Kubernetes API")
        from devtools.cluster import toolchain

        first = env_kubeconfig()
        handle = external(first) if first else None
        if handle:
            self.external = True
            OUT.step(f"using the cluster of $KUBECONFIG ({first}): {handle.server}")
            OUT.info(
                "pods pull python:3.12-alpine there; everything the demo creates lives in namespace "
                f"{NAMESPACE} and is deleted at the end"
            )
            self.cluster = Cluster(handle)
            return
        if first:
            OUT.step(f"$KUBECONFIG={os.environ['KUBECONFIG']} does not answer: using the local control plane instead")
        else:
            OUT.step(
                "no $KUBECONFIG: starting the local control plane "
                "(etcd, kube-apiserver, controller-manager, scheduler, KWOK fake nodes)"
            )
        missing = toolchain.missing(toolchain.CLUSTER_COMPONENTS)
        if missing:
            OUT.info(
                f"building {', '.join(missing)} from the Go module proxy first: this can take ~8 min the "
                f"first time (cached in {toolchain.toolchain_dir()})"
            )
        handle = local(progress=lambda m: OUT.info(f"[devcluster] {m}"))
        if not handle.started:
            OUT.info(f"(it was already running in {handle.state_dir}: it is left running at the end)")
        OUT.ok(f"control plane at {handle.server}; export KUBECONFIG={handle.kubeconfig}")
        self.cluster = Cluster(handle)
        from devtools.cluster import realnode

        OUT.step("the real node (containerd, a CNI bridge, a kubelet built from the same Kubernetes module)")
        try:
            self.node = realnode.up(handle.state_dir, progress=lambda m: OUT.info(f"[realnode] {m}"))
        except realnode.RealNodeUnavailable as exc:
            OUT.info(f"no real node: {exc}")
            OUT.info(
                "so the pods run on KWOK's fake nodes: they get an IP and turn Ready without running a "
                "container (no probe, hook or signal really happens)"
            )
        else:
            OUT.ok(
                f"pods run on the real node {self.node.name}: real containers of the sample app image "
                f"({self.node.images['sample-app']}), real probes, preStop hooks and signals"
            )
        out = self.cluster.kubectl("get", "nodes").stdout
        OUT.info(out.rstrip())

    # ------------------------------------------------------------------ 2. CRD, etcd, operator

    def step_install(self) -> None:
        OUT.section("2. The CRD, a registry (etcd) and the operator")
        c = self.cluster
        crd_file = ROOT / "crds" / f"{labels.GROUP}_{labels.PLURAL}.yaml"
        if crd_file.is_file():
            c.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crd_file))
        else:
            from infer_operator.api.crd import render_crd_yaml

            OUT.info(f"({crd_file} not found: applying the CRD rendered by `infer-operator crd`)")
            c.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=render_crd_yaml())
        # Polled: `kubectl wait` fails at once while the new CRD has no conditions yet.
        wait_for(
            lambda: (
                c.kubectl(
                    "get",
                    "crd",
                    CRD_NAME,
                    "-o",
                    "jsonpath={.status.conditions[?(@.type=='Established')].status}",
                    check_rc=False,
                    show=False,
                ).stdout.strip()
                == "True"
            ),
            60,
            0.5,
            f"CRD {CRD_NAME} Established",
            ignore=TRANSIENT,
        )
        # Established is not quite "servable": the API server may answer 429 "storage is
        # (re)initializing" for a moment. Wait until a list works, so the operator starts cleanly.
        wait_for(
            lambda: (
                c.custom.list_cluster_custom_object(labels.GROUP, labels.VERSION, labels.PLURAL, _request_timeout=5)
                is not None
            ),
            30,
            0.25,
            "the API server serving InferenceServices",
            ignore=TRANSIENT,
        )
        OUT.ok(f"CRD {CRD_NAME} established (kubectl get infsvc works from here on)")

        if c.namespace_exists():
            OUT.step(f"namespace {NAMESPACE} exists (left over from an earlier run?): it is deleted first")
            self._delete_namespace(timeout=120)
        c.kubectl("create", "namespace", NAMESPACE)

        from devtools.cluster.etcd import EtcdServer

        self.etcd = EtcdServer(name="demo-registry")
        OUT.step(f"starting etcd for the registry ({self.etcd.binary})")
        self.etcd.start()
        self.registry = RegistryView(self.etcd)
        OUT.ok(f"etcd at {self.etcd.client_url}; log: {self.etcd.log_path}")

        if self.node is not None:
            from devtools.cluster import realnode
            from devtools.harness.redis_server import RedisServer

            self.redis = RedisServer(host=realnode.POD_GATEWAY)
            OUT.ok(f"Redis at {self.redis.url}: the queue the async role's workers take jobs from")

        self.operator = start_operator(c.kubeconfig, self.workdir / "operator.log")
        OUT.info(
            f"it watches namespace {NAMESPACE}, sweeps the registry every {SWEEP_SECONDS}s; follow it with:\n"
            f"  tail -f {self.operator.log_path}"
        )

    # ------------------------------------------------------------------ 3. InferenceService

    def step_apply(self) -> None:
        OUT.section("3. An InferenceService: 4 pods, 2 sync (HTTP, registered) + 2 async (queue workers)")
        body = manifest(self.etcd.client_url, self.node, self.redis.url if self.redis else None)
        path = self.workdir / "llm.yaml"
        path.write_text(yaml.safe_dump(body, sort_keys=False))
        OUT.step(f"the manifest ({path}):")
        OUT.info(path.read_text().rstrip())
        self.cluster.kubectl("apply", "-f", str(path))
        pods = self.wait_settled(sync=2, timeout=300 if self.external else 120)
        where = (
            f"real containers on {self.node.name}"
            if self.node
            else ("pods of $KUBECONFIG's cluster" if self.external else "fake pods on KWOK nodes")
        )
        OUT.ok(f"4 pods Ready ({where}): ordinals 0-1 are sync, 2-3 async (role = ordinal < syncReplicas)")
        self.show_isvc()
        OUT.step("pods:")
        OUT.info(pod_table(pods))
        sts = self.cluster.kubectl(
            "get", "statefulset,service,configmap", "-n", NAMESPACE, "-l", f"{labels.LABEL_SERVICE}={NAME}"
        )
        OUT.info(sts.stdout.rstrip())

    def wait_settled(self, sync: int, timeout: float, replicas: int = 4) -> dict[str, Any]:
        expected = {f"{NAME}-{i}": ("sync" if i < sync else "async") for i in range(replicas)}

        def settled() -> dict[str, Any] | None:
            pods = self.cluster.pods()
            if {n: role(p) for n, p in pods.items()} != expected:
                return None
            if not all(is_ready(p) and not p.metadata.deletion_timestamp for p in pods.values()):
                return None
            status = (self.cluster.isvc() or {}).get("status") or {}
            if (status.get("readyReplicas"), status.get("syncReady")) != (replicas, sync):
                return None
            return pods

        return wait_for(
            settled,
            timeout,
            0.25,
            f"{replicas} Ready pods, {sync} of them sync, and the status saying so",
            ignore=TRANSIENT,
        )

    def show_isvc(self) -> None:
        out = self.cluster.kubectl("get", "infsvc", "-n", NAMESPACE, "-o", "wide")
        OUT.info(out.stdout.rstrip())

    # ------------------------------------------------------------------ 4. registry

    def expected_instances(self, pods: dict[str, Any]) -> dict[str, str]:
        """address -> pod uid, for the Ready sync pods."""
        return {
            f"{p.status.pod_ip}:{PORT}": p.metadata.uid
            for p in pods.values()
            if role(p) == "sync" and is_ready(p) and p.status.pod_ip and not p.metadata.deletion_timestamp
        }

    def registered(self) -> dict[str, str]:
        return {addr: entry.get("uid", "?") for addr, entry in self.registry.instances().items()}

    def wait_registry_matches(self, timeout: float = 30) -> dict[str, Any]:
        def matches() -> dict[str, Any] | None:
            pods = self.cluster.pods()
            want = self.expected_instances(pods)
            return pods if want and self.registered() == want else None

        return wait_for(matches, timeout, 0.25, "the registry listing exactly the Ready sync pods", ignore=TRANSIENT)

    def step_registry(self) -> None:
        OUT.section("4. The registry: the operator registered the Ready sync pods (and only those)")
        pods = self.wait_registry_matches()
        self.registry.show("registered instances")
        sync_ips = sorted(p.status.pod_ip for p in pods.values() if role(p) == "sync")
        check(
            set(self.registered()) == {f"{ip}:{PORT}" for ip in sync_ips},
            f"instances == the 2 sync pods ({', '.join(sync_ips)}), port {PORT}; no async pod is registered",
        )
        for addr, entry in self.registry.instances().items():
            pod = pods.get(entry.get("pod", ""))
            check(
                pod is not None and entry.get("uid") == pod.metadata.uid and entry.get("role") == "sync",
                f"{addr} names its pod {entry.get('pod')} (uid, role sync, ordinal {entry.get('ordinal')})",
            )

        OUT.step(f"an ops tool now writes per-IP config for every pod IP, plus one for an IP no pod holds ({DEAD_IP})")
        for name in sorted(pods):
            ip = pods[name].status.pod_ip
            self.etcd.put(self.registry.config_key(ip), json.dumps({"pod": name, "maxBatch": 8}))
        self.etcd.put(self.registry.config_key(DEAD_IP), json.dumps({"pod": "gone-long-ago", "maxBatch": 8}))
        self.seeded_at = time.monotonic()
        self.registry.show("after seeding")
        OUT.info(
            f"the operator only ever deletes config: when a pod goes (its IP), and in the sweep "
            f"(every {SWEEP_SECONDS}s: IPs no live pod of the service holds, like {DEAD_IP})"
        )

    # ------------------------------------------------------------------ 5. deleting a sync pod

    def step_delete_pod(self) -> None:
        OUT.section(f"5. Deleting sync pod {NAME}-0: deregistered and cleaned up before it goes")
        c = self.cluster
        pods = c.pods()
        victim = pods[f"{NAME}-0"]
        old_uid, old_ip = victim.metadata.uid, victim.status.pod_ip
        old_addr = f"{old_ip}:{PORT}"
        others = {n: p.status.pod_ip for n, p in pods.items() if n != victim.metadata.name}
        check(
            labels.POD_FINALIZER in (victim.metadata.finalizers or []),
            f"{NAME}-0 ({old_ip}) carries the finalizer {labels.POD_FINALIZER}: it cannot vanish before "
            f"the operator has cleaned up after it",
        )
        OUT.info(f"preStop drain {DRAIN_SECONDS}s, grace period {GRACE_SECONDS}s; timeline from the delete command:")

        dead_key = self.registry.config_key(DEAD_IP)
        new: dict[str, Any] = {}

        def current() -> Any | None:
            return c.pod(f"{NAME}-0")

        def deletion_seen() -> bool:
            p = current()
            return p is None or p.metadata.uid != old_uid or p.metadata.deletion_timestamp is not None

        def old_gone() -> bool:
            p = current()
            return p is None or p.metadata.uid != old_uid

        def recreated() -> bool:
            p = current()
            if p is not None and p.metadata.uid != old_uid:
                new["pod"] = p
                return True
            return False

        def new_ready() -> bool:
            p = current()
            if p is not None and p.metadata.uid != old_uid and is_ready(p) and p.status.pod_ip:
                new["pod"] = p
                return True
            return False

        def reregistered() -> bool:
            p = new.get("pod")
            if p is None or not p.status.pod_ip:
                return False
            entry = self.registry.instances().get(f"{p.status.pod_ip}:{PORT}")
            return bool(entry and entry.get("uid") == p.metadata.uid)

        pod_log = None
        if self.node is not None:
            from devtools.harness.realpods import ContainerLog, container_log_file

            path = container_log_file(self.node.pod_logs, NAMESPACE, f"{NAME}-0", old_uid, "model")
            pod_log = ContainerLog(path) if path else None
        wall0 = time.time()
        timeline = Timeline(time.monotonic())
        swept_early = self.etcd.get(dead_key) is None
        if swept_early:
            timeline.mark(
                f"(config of dead IP {DEAD_IP} was already swept, "
                f"{time.monotonic() - self.seeded_at:.1f}s after seeding)"
            )
        c.kubectl("delete", "pod", f"{NAME}-0", "-n", NAMESPACE, "--wait=false", show=False)
        timeline.mark(f"kubectl delete pod {NAME}-0 --wait=false")
        events = [
            ("deletionTimestamp set (pod Terminating)", deletion_seen),
            (f"instance {old_addr} gone from the registry", lambda: old_addr not in self.registry.instances()),
            (
                f"config {self.registry.config_key(old_ip)} gone",
                lambda: self.etcd.get(self.registry.config_key(old_ip)) is None,
            ),
            ("old pod object gone (finalizer released, grace period over)", old_gone),
            (f"{NAME}-0 recreated by the StatefulSet (new uid)", recreated),
            (f"new {NAME}-0 Ready", new_ready),
            (f"new {NAME}-0 registered again", reregistered),
        ]
        if not swept_early:
            events.append((f"sweep removed config of dead IP {DEAD_IP}", lambda: self.etcd.get(dead_key) is None))
        timeline.run(events, timeout=120)

        t = timeline.at
        deregistered = t(f"instance {old_addr} gone from the registry")
        config_gone = t(f"config {self.registry.config_key(old_ip)} gone")
        pod_gone = t("old pod object gone (finalizer released, grace period over)")
        check(
            deregistered <= pod_gone and config_gone <= pod_gone,
            f"deregistration ({deregistered:.2f}s) and config removal ({config_gone:.2f}s) came before the "
            f"pod object went ({pod_gone:.2f}s)",
        )
        check(
            deregistered < DRAIN_SECONDS,
            f"deregistered {deregistered:.2f}s after the delete, within the {DRAIN_SECONDS}s preStop drain "
            f"(clients stop getting this instance before it stops serving)",
        )
        if pod_log is not None:
            self.show_pod_log(pod_log, wall0, deregistered)
        new_pod = new["pod"]
        new_ip = new_pod.status.pod_ip
        OUT.info(
            f"new {NAME}-0: IP {new_ip} ({'same IP as before' if new_ip == old_ip else f'was {old_ip}'}), "
            f"uid {new_pod.metadata.uid[:8]} (was {old_uid[:8]})"
        )
        pods = self.wait_registry_matches()
        check(self.etcd.get(dead_key) is None, f"the sweep removed the config of dead IP {DEAD_IP}")
        configs = self.registry.configs()
        kept = {n: ip for n, ip in others.items() if ip in configs}
        check(kept == others, f"configs of the live pods were kept ({', '.join(sorted(others.values()))})")
        self.registry.show("registry now")
        OUT.info(
            f"(config/{old_ip} stays gone even if the new pod got the same IP: it belonged to the old "
            f"pod; writing config for the new one is the ops tool's job)"
        )
        OUT.step("pods:")
        OUT.info(pod_table(pods))
        lines = self.operator.grep(f"{NAME}-0")
        if lines:
            OUT.step("the operator's log about it:")
            OUT.info("\n".join(line[:220] for line in lines[-6:]))

    def show_pod_log(self, pod_log: Any, wall0: float, deregistered: float) -> None:
        """The deleted pod's own log (read on the real node) from the delete on; checks the app got
        SIGTERM after the deregistration and after the drain."""
        from devtools.harness.realpods import OFFLINE_MSG, PRESTOP_DONE, SIGTERM_MSG

        lines = [line for line in pod_log.read() if line.at >= wall0 - 0.5]
        pod_log.close()
        OUT.step(f"what happened inside {NAME}-0 (its container log, read on the node), from the delete:")
        OUT.info("\n".join(f"t={line.at - wall0:+6.2f}s  {line.text[:160]}" for line in lines))
        sigterm = pod_log.app_time(SIGTERM_MSG)
        offline = pod_log.app_time(OFFLINE_MSG)
        done = pod_log.first(PRESTOP_DONE)
        check(
            sigterm is not None and offline is not None and done is not None,
            "the app was told to go offline (offlinePath), the preStop drain ran, then the app got SIGTERM",
        )
        check(
            offline < done.at <= sigterm + 0.05 and deregistered < sigterm - wall0,
            f"order: deregistered +{deregistered:.2f}s, offline +{offline - wall0:.2f}s, drain ended "
            f"+{done.at - wall0:.2f}s, SIGTERM +{sigterm - wall0:.2f}s",
        )

    # ------------------------------------------------------------------ 6. changing the split

    def step_split(self) -> None:
        OUT.section("6. Changing the split 2 -> 3: only the pod whose role flips restarts")
        c = self.cluster
        before = c.pods()
        uids_before = {n: p.metadata.uid for n, p in before.items()}
        OUT.info(pod_table(before))
        timeline = Timeline(time.monotonic())
        c.kubectl(
            "patch", "infsvc", NAME, "-n", NAMESPACE, "--type=merge", "-p", '{"spec":{"syncReplicas":3}}', show=False
        )
        timeline.mark(f'kubectl patch infsvc {NAME} --type=merge -p \'{{"spec":{{"syncReplicas":3}}}}\'')
        holder: dict[str, Any] = {}

        def p2() -> Any | None:
            return c.pod(f"{NAME}-2")

        def p2_new() -> bool:
            p = p2()
            if p is not None and p.metadata.uid != uids_before[f"{NAME}-2"]:
                holder["pod"] = p
                return True
            return False

        def p2_ready_sync() -> bool:
            p = p2()
            return bool(p and p.metadata.uid != uids_before[f"{NAME}-2"] and is_ready(p) and role(p) == "sync")

        def p2_registered() -> bool:
            p = holder.get("pod")
            if p is None:
                return False
            p = p2()
            if p is None or not p.status.pod_ip:
                return False
            entry = self.registry.instances().get(f"{p.status.pod_ip}:{PORT}")
            return bool(entry and entry.get("uid") == p.metadata.uid and entry.get("role") == "sync")

        timeline.run(
            [
                (
                    f"{NAME}-2 (async) Terminating",
                    lambda: (
                        p2() is None
                        or p2().metadata.deletion_timestamp is not None
                        or p2().metadata.uid != uids_before[f"{NAME}-2"]
                    ),
                ),
                (f"{NAME}-2 recreated (new uid)", p2_new),
                (f"{NAME}-2 Ready as sync", p2_ready_sync),
                (f"{NAME}-2 registered", p2_registered),
            ],
            timeout=120,
        )
        after = self.wait_settled(sync=3, timeout=60)
        pods = self.wait_registry_matches()
        changed = sorted(n for n in uids_before if after[n].metadata.uid != uids_before[n])
        check(changed == [f"{NAME}-2"], f"only {NAME}-2 was restarted (changed uids: {changed})")
        check(len(self.registered()) == 3, "3 instances registered (llm-0, llm-1, llm-2)")
        self.show_isvc()
        OUT.info(pod_table(pods))
        self.registry.show("registry now")

    # ------------------------------------------------------------------ 7. deleting the service

    def step_delete_service(self) -> None:
        OUT.section("7. Deleting the InferenceService: its registry entries and configs go with it")
        c = self.cluster
        timeline = Timeline(time.monotonic())
        c.kubectl("delete", "infsvc", NAME, "-n", NAMESPACE, "--wait=false", show=False)
        timeline.mark(f"kubectl delete infsvc {NAME} --wait=false")
        timeline.run(
            [
                ("registry instances gone", lambda: not self.registry.instances()),
                (f"all keys under {PREFIX}/{NAME}/ gone", lambda: not self.registry.all()),
                ("InferenceService gone (finalizer released)", lambda: c.isvc() is None),
                ("all pods gone (deregistered and released by the operator)", lambda: not c.pods()),
            ],
            timeout=120,
        )
        OUT.info(
            "(the pods go through Kubernetes garbage collection: InferenceService -> StatefulSet -> pods. "
            "Right after a CRD is installed the garbage collector may take up to ~30s to notice "
            "owners of the new kind)"
        )
        self.registry.show("registry now")
        check(not self.registry.all(), f"nothing left under {PREFIX}/{NAME}/")
        metrics = operator_metrics(self.operator)
        if metrics:
            OUT.step(f"the operator's Prometheus metrics (http://127.0.0.1:{self.operator.metrics_port}/metrics):")
            OUT.info("\n".join(metrics))

    # ------------------------------------------------------------------ checks on the operator itself

    def check_operator_log(self) -> None:
        OUT.section("Operator health over the run")
        check(self.operator.alive(), "the operator is still running")
        errors = self.operator.grep("Traceback", "ERROR", "CRITICAL")
        # kopf logs a failed API request it is about to retry at ERROR level; it is not a failure.
        retried = [line for line in errors if "will retry" in line]
        bad = [line for line in errors if "will retry" not in line]
        if retried:
            OUT.info(
                f"({len(retried)} API request(s) failed once and were retried by kopf, e.g.:\n  {retried[0][:200]})"
            )
        if bad:
            OUT.info("\n".join(line[:240] for line in bad[:20]))
        check(not bad, "no errors or tracebacks in the operator log")
        warnings = [line for line in self.operator.grep("WARNING") if "is cancelled. Will escalate" not in line]
        if warnings:
            OUT.step(f"{len(warnings)} warning(s) in the operator log:")
            OUT.info("\n".join(line[:240] for line in warnings[:10]))

    # ------------------------------------------------------------------ cleanup

    def _delete_namespace(self, timeout: float) -> None:
        c = self.cluster
        c.kubectl("delete", "namespace", NAMESPACE, "--wait=false", "--ignore-not-found")
        wait_for(
            lambda: not c.namespace_exists(), timeout, 0.5, f"namespace {NAMESPACE} being deleted", ignore=TRANSIENT
        )

    def cleanup(self, failed: bool) -> list[str]:
        """Stop what the demo started; returns problems (never raises)."""
        problems: list[str] = []
        OUT.section("Cleaning up")
        if self.cluster is not None:
            try:
                if self.cluster.namespace_exists():
                    # On failure the operator may be the problem: don't wait for long.
                    self._delete_namespace(timeout=30 if failed else 90)
                    OUT.ok(f"namespace {NAMESPACE} deleted")
            except Exception as exc:  # noqa: BLE001
                problems.append(f"namespace {NAMESPACE}: {exc}")
        if self.operator is not None:
            rc = self.operator.stop()
            OUT.step(f"operator stopped (exit code {rc}); its log stays at {self.operator.log_path}")
        if self.redis is not None:
            self.redis.stop()
        if self.etcd is not None:
            self.etcd.stop()
            OUT.step(f"registry etcd stopped; its log stays at {self.etcd.log_path}")
        if self.cluster is not None:
            handle = self.cluster.handle
            try:
                if handle.release(keep=self.args.keep):
                    OUT.step("local control plane stopped")
                elif handle.started:
                    OUT.step(
                        f"--keep: the local control plane keeps running ({handle.state_dir}); "
                        f"export KUBECONFIG={handle.kubeconfig}; stop it with "
                        "`python -m devtools.cluster down` (or `make cluster-down`)"
                    )
            except Exception as exc:  # noqa: BLE001
                problems.append(f"stopping the local control plane: {exc}")
        return problems

    def run(self) -> int:
        failed = False
        steps = [
            self.step_cluster,
            self.step_install,
            self.step_apply,
            self.step_registry,
            self.step_delete_pod,
            self.step_split,
            self.step_delete_service,
            self.check_operator_log,
        ]
        try:
            for step in steps:
                step()
        except AssertionError as exc:  # a DemoFailure, or a harness wait that timed out
            failed = True
            print(f"\n!!! DEMO FAILED: {exc}", flush=True)
            if self.operator is not None:
                print(
                    f"\n--- operator log, last 80 lines ({self.operator.log_path}) ---\n"
                    f"{self.operator.log_tail(80)}\n---",
                    flush=True,
                )
        except KeyboardInterrupt:
            failed = True
            print("\n!!! interrupted", flush=True)
        except BaseException:
            failed = True
            raise
        finally:
            problems = self.cleanup(failed)
            for p in problems:
                print(f"!!! cleanup: {p}", flush=True)
        if failed:
            print(f"\nFAILED after {OUT.elapsed():.0f}s (files in {self.workdir})", flush=True)
            return 1
        where = (
            f"real pods on the real node {self.node.name}"
            if self.node
            else ("$KUBECONFIG's cluster" if self.external else "KWOK fake nodes (no real node on this machine)")
        )
        print(f"\nDemo passed in {OUT.elapsed():.0f}s, on {where}. Operator log: {self.operator.log_path}", flush=True)
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.demo", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--keep", action="store_true", help="leave the local control plane running at the end (if the demo started it)"
    )
    args = parser.parse_args(argv)
    print(f"infer-operator demo  ({datetime.datetime.now().isoformat(timespec='seconds')})", flush=True)
    return Demo(args).run()


if __name__ == "__main__":
    sys.exit(main())
