"""Shared machinery of the chaos cases: registries as processes, the truth, and the final checks.

The truth every case ends with: the registry lists exactly the Ready, non-terminating sync pods
(IP:port -> the instance JSON with their uid), no per-IP config of an IP no live pod holds, no pod
stuck Terminating with our finalizer, and no owned object without a live owner.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

from kubernetes import client

from devtools import harness
from devtools.harness import OperatorProcess, wait_for
from infer_operator import labels
from tests.support.kube import Kube
from tests.support.truth import expected_entries, ready_sync_pods, same_entries

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "/services"
PORT = 8000
# Fast loops so that convergence fits the suite's time budget.
OPERATOR_ARGS = (
    "--resync-seconds",
    "5",
    "--sweep-seconds",
    "5",
    "--registry-timeout",
    "2",
    "--deregister-timeout",
    "10",
)


# -- registry views ------------------------------------------------------------------------------


def etcd_instances(etcd, service: str) -> dict:
    base = f"{PREFIX}/{service}/instances/"
    out = {}
    for key, value in etcd.range_prefix(base).items():
        try:
            out[key[len(base) :]] = json.loads(value)
        except ValueError:
            out[key[len(base) :]] = value
    return out


def etcd_configs(etcd, service: str) -> set[str]:
    base = f"{PREFIX}/{service}/config/"
    return {key[len(base) :].split("/")[0] for key in etcd.range_prefix(base)}


def etcd_registry(etcd, **extra) -> dict:
    return harness.etcd_registry(etcd.client_url, PREFIX, **extra)


# -- the truth -----------------------------------------------------------------------------------


def live_ips(kube: Kube, namespace: str, service: str) -> set[str]:
    return {
        p.status.pod_ip
        for p in kube.pods(namespace, service).values()
        if p.metadata.deletion_timestamp is None and p.status.pod_ip
    }


def stuck_terminating(kube: Kube, namespace: str) -> list[str]:
    """Pods that are being deleted and still carry our finalizer."""
    return [
        p.metadata.name
        for p in kube.core.list_namespaced_pod(namespace).items
        if p.metadata.deletion_timestamp is not None and labels.POD_FINALIZER in (p.metadata.finalizers or [])
    ]


def orphans(kube: Kube, namespace: str) -> list[str]:
    """Owned objects (by our label) whose InferenceService owner no longer exists (by uid)."""
    live = {
        item["metadata"]["uid"]
        for item in kube.custom.list_namespaced_custom_object(labels.GROUP, labels.VERSION, namespace, labels.PLURAL)[
            "items"
        ]
        if not item["metadata"].get("deletionTimestamp")
    }
    found = []
    selector = labels.MANAGED_SELECTOR
    objects = [
        ("StatefulSet", o) for o in kube.apps.list_namespaced_stateful_set(namespace, label_selector=selector).items
    ]
    objects += [("Service", o) for o in kube.core.list_namespaced_service(namespace, label_selector=selector).items]
    objects += [
        ("ConfigMap", o) for o in kube.core.list_namespaced_config_map(namespace, label_selector=selector).items
    ]
    for kind, obj in objects:
        if obj.metadata.deletion_timestamp is not None:
            continue
        owners = [r.uid for r in obj.metadata.owner_references or [] if r.kind == labels.KIND]
        if not owners or not set(owners) & live:
            found.append(f"{kind}/{obj.metadata.name}")
    return found


def converged(
    kube: Kube,
    namespace: str,
    services: dict[str, Callable[[], dict]],
    configs: dict[str, Callable[[], set[str]]] | None = None,
) -> list[str]:
    """Differences between the registry and the truth (empty list: converged)."""
    problems = []
    for service, listing in services.items():
        expected = expected_entries(kube, namespace, service)
        actual = listing()
        if not same_entries(actual, expected):
            problems.append(
                f"{service}: registry {sorted(actual)} != Ready sync pods {sorted(expected)}"
                + ("" if set(actual) != set(expected) else " (contents differ)")
            )
        if configs and service in configs:
            dead = configs[service]() - live_ips(kube, namespace, service)
            if dead:
                problems.append(f"{service}: per-IP config of dead IPs {sorted(dead)}")
    stuck = stuck_terminating(kube, namespace)
    if stuck:
        problems.append(f"pods Terminating with {labels.POD_FINALIZER}: {stuck}")
    lost = orphans(kube, namespace)
    if lost:
        problems.append(f"orphaned owned objects: {lost}")
    return problems


def assert_converged(
    kube: Kube,
    namespace: str,
    services: dict[str, Callable[[], dict]],
    configs: dict[str, Callable[[], set[str]]] | None = None,
    timeout: float = 60,
) -> float:
    """Wait (bounded) until converged; returns the seconds it took."""
    started = time.monotonic()
    last: list[list[str]] = [[]]

    def check() -> bool:
        last[0] = converged(kube, namespace, services, configs)
        return not last[0]

    wait_for(check, timeout=timeout, interval=0.5, message=lambda: "; ".join(last[0]))
    return time.monotonic() - started


class LiveEntryWatch:
    """Polls the registry and the pods in the background and records every moment a Ready,
    non-terminating sync pod's entry (seen registered before, same uid) was missing. Pods are read
    before and after the registry, and only a pod unchanged across both reads counts."""

    def __init__(self, kube: Kube, namespace: str, service: str, listing: Callable[[], dict], interval: float = 0.25):
        self.kube, self.namespace, self.service, self.listing = kube, namespace, service, listing
        self.interval = interval
        self.seen: set[str] = set()  # uids seen registered
        self.missing: list[tuple[float, str]] = []
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _ready(self) -> dict[str, tuple[str, str]]:
        return {
            p.metadata.uid: (n, p.status.pod_ip)
            for n, p in ready_sync_pods(self.kube, self.namespace, self.service).items()
        }

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                before = self._ready()
                entries = self.listing()
                after = self._ready()
            except Exception:  # noqa: BLE001 - the registry may be down on purpose
                self.errors += 1
                self._stop.wait(self.interval)
                continue
            listed = {e.get("uid") for e in entries.values() if isinstance(e, dict)}
            self.seen |= listed
            for uid, (name, _ip) in before.items():
                if uid in self.seen and uid not in listed and after.get(uid) == before[uid]:
                    self.missing.append((time.time(), name))
            self._stop.wait(self.interval)

    def __enter__(self) -> LiveEntryWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)


def isvc_events(kube: Kube, namespace: str) -> list[client.CoreV1Event]:
    return kube.core.list_namespaced_event(namespace).items


def new_operator(
    cluster, tmp_path: Path, *extra: str, name: str = "operator", env: dict | None = None
) -> OperatorProcess:
    return OperatorProcess(cluster.kubeconfig, tmp_path / f"{name}.log", *OPERATOR_ARGS, *extra, env=env)


def fill_ip_holes_below(kube: Kube, namespace: str, ip: str, limit: int = 200) -> int:
    """Make `ip` the lowest free address of KWOK's pod network once its pod goes: KWOK hands out the
    lowest free address, and pods deleted by earlier cases left holes below it. Bare filler pods
    (no operator involvement) take those holes until one gets an address above `ip`. Returns how
    many fillers it took. Bounded by `limit` pods."""
    import ipaddress

    target = ipaddress.ip_address(ip)
    for count in range(1, limit + 1):
        name = kube.core.create_namespaced_pod(
            namespace,
            {
                "metadata": {"generateName": "ip-filler-"},
                "spec": {
                    "containers": [{"name": "c", "image": "registry.example/filler:1"}],
                    "terminationGracePeriodSeconds": 0,
                },
            },
        ).metadata.name
        got = wait_for(
            lambda n=name: kube.core.read_namespaced_pod(n, namespace).status.pod_ip,
            timeout=30,
            message=f"filler {name} has an IP",
        )
        if ipaddress.ip_address(got) > target:
            return count
    raise AssertionError(f"more than {limit} free addresses below {ip}")


@contextlib.contextmanager
def nodes_cordoned(kube: Kube):
    """Keep new pods unscheduled (so without an address) while inside; every node is uncordoned on
    the way out. KWOK frees a deleted pod's address when it sees the deletion, which races with
    the StatefulSet's replacement being created; a replacement scheduled only after its
    predecessor is gone from the API gets the freed address."""
    names = [node.metadata.name for node in kube.core.list_node().items]
    try:
        for name in names:
            kube.core.patch_node(name, {"spec": {"unschedulable": True}})
        yield
    finally:
        for name in names:
            kube.core.patch_node(name, {"spec": {"unschedulable": None}})
