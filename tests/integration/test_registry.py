"""Registry behaviour end to end: real API server, operator process, real etcd and a real HTTP admin controller."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
from kubernetes import client

from devtools import harness
from devtools.harness import isvc_body, wait_for
from infer_operator import labels
from tests.support.admin_process import AdminControllerProcess
from tests.support.truth import expected_entries, ready_sync_pods, same_entries

pytestmark = [pytest.mark.integration, pytest.mark.registry]

HOLD_NOT_READY = "devcluster.infer-operator.io/ready"
PREFIX = "/services"


# -- registries -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def admin_controller():
    controller = AdminControllerProcess()
    yield controller
    controller.stop()


def etcd_instances(etcd, service):
    base = f"{PREFIX}/{service}/instances/"
    return {key[len(base) :]: json.loads(value) for key, value in etcd.range_prefix(base).items()}


def etcd_configs(etcd, service):
    base = f"{PREFIX}/{service}/config/"
    return {key[len(base) :] for key in etcd.range_prefix(base)}


def etcd_registry(etcd, **extra):
    return harness.etcd_registry(etcd.client_url, PREFIX, **extra)


# -- helpers --------------------------------------------------------------------------------


def wait_registered(kube, namespace, name, listing, count, timeout=60):
    def matches():
        expected = expected_entries(kube, namespace, name)
        return len(expected) == count and same_entries(listing(), expected)

    wait_for(
        matches,
        timeout=timeout,
        message=lambda: (
            f"registry == Ready sync pods ({count}); "
            f"registry={sorted(listing())} pods={sorted(expected_entries(kube, namespace, name))}"
        ),
    )
    return listing()


def pod_or_none(kube, namespace, name):
    try:
        return kube.core.read_namespaced_pod(name, namespace)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def pod_events(kube, namespace, pod_name):
    return kube.core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={pod_name}").items


def follow_deletion(kube, namespace, pod_name, uid, entry_gone, config_gone, timeout=60):
    """Poll until the old pod object is gone; return what was true at each observation."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pod = pod_or_none(kube, namespace, pod_name)
        old_present = pod is not None and pod.metadata.uid == uid
        seen.append((old_present, entry_gone(), config_gone()))
        if not old_present:
            return seen
        time.sleep(0.05)
    raise AssertionError(f"pod {pod_name} still present after {timeout}s")


# -- tests ----------------------------------------------------------------------------------


def test_etcd_registers_exactly_ready_sync_pods_and_cleans_up_on_delete(kube, namespace, etcd, running_operator):
    kube.create_isvc(namespace, isvc_body("llm", replicas=4, syncReplicas=2, registry=etcd_registry(etcd)))
    entries = wait_registered(kube, namespace, "llm", lambda: etcd_instances(etcd, "llm"), 2)
    assert {e["pod"] for e in entries.values()} == {"llm-0", "llm-1"}
    for address, entry in entries.items():  # what gRPC-Go's etcd resolver and CoreDNS read
        assert (entry["Addr"], entry["host"], entry["port"], entry["weight"]) == (address, entry["ip"], 8000, 100)
    # async pods never appear, and the status counts what is registered
    wait_for(
        lambda: kube.get_isvc(namespace, "llm").get("status", {}).get("registered") == 2,
        timeout=30,
        message="status.registered == 2",
    )
    synced = next(c for c in kube.get_isvc(namespace, "llm")["status"]["conditions"] if c["type"] == "RegistrySynced")
    assert synced["status"] == "True"

    # Per-IP configs as an ops tool writes them: live pods' configs plus one of a long-dead IP.
    pods = kube.pods(namespace, "llm")
    live_ips = {p.status.pod_ip for p in pods.values()}
    for ip in live_ips | {"10.255.255.1"}:
        etcd.put(f"{PREFIX}/llm/config/{ip}", json.dumps({"weight": 3}))
    wait_for(
        lambda: etcd_configs(etcd, "llm") == live_ips,
        timeout=30,
        message="the sweep removes the dead IP's config and keeps the live ones",
    )

    # kubectl delete pod: entry and per-IP config go before the pod object does.
    victim = pods["llm-0"]
    ip, uid = victim.status.pod_ip, victim.metadata.uid
    kube.core.delete_namespaced_pod("llm-0", namespace)
    seen = follow_deletion(
        kube,
        namespace,
        "llm-0",
        uid,
        entry_gone=lambda: f"{ip}:8000" not in etcd_instances(etcd, "llm"),
        config_gone=lambda: ip not in etcd_configs(etcd, "llm"),
    )
    # The moment the pod object was gone, its entry and config were already gone.
    assert seen[-1][1:] == (True, True), seen[-5:]
    # and at least once we saw the pod still there (held by the finalizer) with its entry already gone
    assert any(present and entry for present, entry, _ in seen), seen[-5:]

    # The recreated pod registers again, with whatever IP it got (IPs may be reused).
    entries = wait_registered(kube, namespace, "llm", lambda: etcd_instances(etcd, "llm"), 2)
    new_pod = kube.pods(namespace, "llm")["llm-0"]
    assert new_pod.metadata.uid != uid
    assert f"{new_pod.status.pod_ip}:8000" in entries

    # Deleting the InferenceService removes all its entries and configs.
    kube.delete_isvc(namespace, "llm")
    wait_for(
        lambda: not etcd.range_prefix(f"{PREFIX}/llm/"),
        timeout=60,
        message="everything under /services/llm/ removed with the InferenceService",
    )


def test_not_ready_pod_is_deregistered_and_register_delay_applies(kube, namespace, etcd, running_operator):
    kube.create_isvc(
        namespace, isvc_body("warm", replicas=2, syncReplicas=2, registry=etcd_registry(etcd, registerDelaySeconds=4))
    )
    # Watched from before the pods are Ready: when each entry first appears, against when its pod's
    # containers became ready (the API's timestamps have one-second resolution). The pod itself
    # is Ready only after that: its readiness gate waits for the registration.
    first_seen: dict[str, float] = {}

    def both_registered():
        for entry in etcd_instances(etcd, "warm").values():
            first_seen.setdefault(entry["pod"], time.time())
        return len(first_seen) == 2

    wait_for(both_registered, timeout=90, interval=0.05, message="2 registered")
    pods = kube.pods(namespace, "warm")
    for name, seen in first_seen.items():
        serving = next(c for c in pods[name].status.conditions if c.type == "ContainersReady")
        waited = seen - serving.last_transition_time.timestamp()
        assert waited >= 4.0 - 1.0, f"{name} registered {waited:.1f}s after its app answered (registerDelaySeconds 4)"
    wait_registered(kube, namespace, "warm", lambda: etcd_instances(etcd, "warm"), 2, timeout=30)
    for name, seen in first_seen.items():
        ready = next(c for c in kube.pods(namespace, "warm")[name].status.conditions if c.type == "Ready")
        assert ready.last_transition_time.timestamp() >= seen - 1.0, f"{name} was Ready before it was registered"

    kube.core.patch_namespaced_pod("warm-1", namespace, {"metadata": {"annotations": {HOLD_NOT_READY: "false"}}})
    wait_for(
        lambda: {e["pod"] for e in etcd_instances(etcd, "warm").values()} == {"warm-0"},
        timeout=30,
        message="NotReady pod deregistered",
    )
    held_at = time.monotonic()
    kube.core.patch_namespaced_pod("warm-1", namespace, {"metadata": {"annotations": {HOLD_NOT_READY: "true"}}})
    wait_for(
        lambda: {e["pod"] for e in etcd_instances(etcd, "warm").values()} == {"warm-0", "warm-1"},
        timeout=30,
        message="Ready again: registered again (after the delay)",
    )
    assert time.monotonic() - held_at >= 4.0


def test_registry_down_during_deletion_releases_after_timeout_then_sweep_cleans(
    kube, namespace, etcd, running_operator
):
    kube.create_isvc(namespace, isvc_body("flaky", replicas=2, syncReplicas=2, registry=etcd_registry(etcd)))
    wait_registered(kube, namespace, "flaky", lambda: etcd_instances(etcd, "flaky"), 2)
    victim = kube.pods(namespace, "flaky")["flaky-1"]
    ip, uid = victim.status.pod_ip, victim.metadata.uid
    etcd.put(f"{PREFIX}/flaky/config/{ip}", "{}")

    os.kill(etcd.proc.pid, signal.SIGSTOP)  # unreachable: connections hang, every call times out
    try:
        deleted_at = time.monotonic()
        kube.core.delete_namespaced_pod("flaky-1", namespace)
        # Held past its 3 s grace period by the finalizer, then released after the operator's
        # --deregister-timeout (10 s in the test fixture), with an event saying so.
        wait_for(
            lambda: (p := pod_or_none(kube, namespace, "flaky-1")) is None or p.metadata.uid != uid,
            timeout=60,
            message="pod released after the deregistration timeout",
        )
        held = time.monotonic() - deleted_at
        assert held >= 8.0, f"released after {held:.1f}s, before the timeout"
        events = wait_for(
            lambda: [e for e in pod_events(kube, namespace, "flaky-1") if e.reason == "DeregistrationTimedOut"],
            timeout=30,
            message="DeregistrationTimedOut event",
        )
        assert events[0].type == "Warning"
        status = wait_for(
            lambda: next(
                (
                    c
                    for c in kube.get_isvc(namespace, "flaky").get("status", {}).get("conditions", [])
                    if c["type"] == "RegistrySynced" and c["status"] == "False"
                ),
                None,
            ),
            timeout=30,
            message="RegistrySynced=False while etcd is unreachable",
        )
        assert status["reason"] == "RegistryUnreachable"
    finally:
        os.kill(etcd.proc.pid, signal.SIGCONT)

    def healed():
        entries = etcd_instances(etcd, "flaky")
        live = {
            p.status.pod_ip for p in kube.pods(namespace, "flaky").values() if p.metadata.deletion_timestamp is None
        }
        stale_entries = [e for e in entries.values() if e["uid"] == uid and e["ip"] not in live]
        stale_config = ip in etcd_configs(etcd, "flaky") and ip not in live
        return not stale_entries and not stale_config

    wait_for(healed, timeout=60, message="the sweep removes what the timed-out deregistration left")
    wait_registered(kube, namespace, "flaky", lambda: etcd_instances(etcd, "flaky"), 2)


def test_http_registry_same_behaviour(kube, namespace, admin_controller, running_operator):
    registry = {"type": "http", "http": {"url": admin_controller.url}, "service": "llm-http"}
    kube.create_isvc(namespace, isvc_body("web", replicas=3, syncReplicas=1, registry=registry))
    entries = wait_registered(kube, namespace, "web", lambda: admin_controller.instances("llm-http"), 1)
    assert [e["pod"] for e in entries.values()] == ["web-0"]

    pod = kube.pods(namespace, "web")["web-0"]
    ip, uid = pod.status.pod_ip, pod.metadata.uid
    admin_controller.seed_config("llm-http", ip)
    admin_controller.seed_config("llm-http", "10.255.0.9")
    kube.core.delete_namespaced_pod("web-0", namespace)
    seen = follow_deletion(
        kube,
        namespace,
        "web-0",
        uid,
        entry_gone=lambda: f"{ip}:8000" not in admin_controller.instances("llm-http"),
        config_gone=lambda: ip not in admin_controller.configs("llm-http"),
    )
    assert seen[-1][1:] == (True, True), seen[-5:]
    wait_registered(kube, namespace, "web", lambda: admin_controller.instances("llm-http"), 1)
    wait_for(
        lambda: "10.255.0.9" not in admin_controller.configs("llm-http"),
        timeout=30,
        message="sweep removes dead IP config over http",
    )


def test_none_registry_writes_nothing(kube, namespace, etcd, admin_controller, running_operator):
    before = admin_controller.state()
    kube.create_isvc(namespace, isvc_body("plain", replicas=2, syncReplicas=1))
    wait_for(lambda: len(ready_sync_pods(kube, namespace, "plain")) == 1, timeout=60, message="Ready sync pod")
    pod = kube.pods(namespace, "plain")["plain-0"]
    assert labels.POD_FINALIZER not in (pod.metadata.finalizers or [])
    kube.core.delete_namespaced_pod("plain-0", namespace)
    wait_for(
        lambda: (
            len(ready_sync_pods(kube, namespace, "plain")) == 1
            and kube.pods(namespace, "plain")["plain-0"].metadata.uid != pod.metadata.uid
        ),
        timeout=60,
        message="pod recreated",
    )
    assert etcd.range_prefix("/") == {}
    assert admin_controller.state() == before
    assert kube.get_isvc(namespace, "plain")["status"].get("registered") == 0


def test_scale_down_and_forced_deletion_deregister_too(kube, namespace, etcd, running_operator):
    # All-sync service: scaling down removes sync pods, which must leave the registry.
    kube.create_isvc(namespace, isvc_body("many", replicas=4, syncReplicas=None, registry=etcd_registry(etcd)))
    wait_registered(kube, namespace, "many", lambda: etcd_instances(etcd, "many"), 4)
    pods = kube.pods(namespace, "many")
    for ip in (p.status.pod_ip for p in pods.values()):
        etcd.put(f"{PREFIX}/many/config/{ip}", "{}")

    kube.patch_isvc(namespace, "many", {"spec": {"replicas": 2}})
    wait_registered(kube, namespace, "many", lambda: etcd_instances(etcd, "many"), 2)
    gone_ips = {pods[n].status.pod_ip for n in ("many-2", "many-3")}
    wait_for(
        lambda: not gone_ips & etcd_configs(etcd, "many"),
        timeout=30,
        message="scaled-away pods' per-IP configs removed",
    )

    # kubectl delete --grace-period=0 --force: the finalizer still holds the object until cleanup is done.
    victim = kube.pods(namespace, "many")["many-1"]
    ip, uid = victim.status.pod_ip, victim.metadata.uid
    kube.core.delete_namespaced_pod("many-1", namespace, grace_period_seconds=0)
    seen = follow_deletion(
        kube,
        namespace,
        "many-1",
        uid,
        entry_gone=lambda: f"{ip}:8000" not in etcd_instances(etcd, "many"),
        config_gone=lambda: ip not in etcd_configs(etcd, "many"),
    )
    assert seen[-1][1:] == (True, True), seen[-5:]
    wait_registered(kube, namespace, "many", lambda: etcd_instances(etcd, "many"), 2)
