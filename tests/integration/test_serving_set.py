"""The registry lists exactly the sync pods that can serve, outside the happy path too (real API
server, KWOK nodes, real etcd): a lost node, the user's own readiness gate, a pod whose IP changed,
a node clock ahead of the operator's, and upkeep that goes on while applies are refused, the spec is
invalid or the service is paused. Where a kubelet or the node lifecycle controller would write
something (a node's Ready condition and taints, a pod's IP, a condition's time), the test writes
it, as they would."""

from __future__ import annotations

import datetime
import json
import secrets

import pytest
from kubernetes import client

from devtools.cluster.launcher import node_manifest
from devtools.harness import isvc_body, wait_for
from infer_operator import labels
from tests.support.kube import Kube

pytestmark = [pytest.mark.integration, pytest.mark.registry]

PREFIX = "/services"
HOLD_NOT_READY = "devcluster.infer-operator.io/ready"
BOUND = 15.0  # seconds within which a pod that cannot serve must have left the registry


def etcd_registry(etcd, **extra):
    return {"type": "etcd", "etcd": {"endpoints": [etcd.client_url], "prefix": PREFIX}, **extra}


def listed(etcd, service: str) -> dict[str, dict]:
    """Instance entries of `service`: address -> the entry's JSON."""
    base = f"{PREFIX}/{service}/instances/"
    return {key[len(base) :]: json.loads(value) for key, value in etcd.range_prefix(base).items()}


def listed_pods(etcd, service: str) -> set[str]:
    return {entry["pod"] for entry in listed(etcd, service).values()}


def patch_pod_status(kube: Kube, namespace: str, name: str, status: dict) -> None:
    kube.core.patch_namespaced_pod_status(name, namespace, {"status": status})


def set_condition(kube: Kube, namespace: str, name: str, kind: str, status: str, **extra) -> None:
    """Write one pod condition (a strategic merge by type), as the kubelet or another controller does."""
    patch_pod_status(kube, namespace, name, {"conditions": [{"type": kind, "status": status, **extra}]})


def events_about(kube: Kube, namespace: str, pod: str) -> list[client.CoreV1Event]:
    return kube.core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={pod}").items


@pytest.fixture
def spare_node(kube):
    """A KWOK node of this test's own, for its pods only (a label selects it). The test may take it
    away from KWOK (no more heartbeats) and mark it lost; it is handed back and removed afterwards."""
    name = f"kwok-lost-{secrets.token_hex(3)}"
    body = node_manifest(name)
    body["metadata"]["labels"]["infer-operator.io/test-node"] = name
    # The client's model wants every nodeInfo field a kubelet reports; KWOK fills them in.
    info = body["status"]["nodeInfo"]
    for field in ("bootID", "containerRuntimeVersion", "kernelVersion", "kubeProxyVersion", "machineID"):
        info.setdefault(field, "")
    info.setdefault("osImage", "kwok")
    info.setdefault("systemUUID", name)
    kube.core.create_node(body)

    def ready() -> bool:
        node = kube.core.read_node(name)
        conditions = {c.type: c.status for c in node.status.conditions or []}
        taints = {t.key for t in node.spec.taints or []}
        return conditions.get("Ready") == "True" and "node.kubernetes.io/not-ready" not in taints

    wait_for(ready, timeout=60, message=f"node {name} Ready")
    yield name
    try:
        kube.core.delete_node(name)
    except client.ApiException as exc:
        if exc.status != 404:
            raise


def lose(kube: Kube, namespace: str, node: str) -> None:
    """What a partition looks like from the API: KWOK stops heartbeating the node (its label goes),
    and the node lifecycle controller's marks are written: Ready Unknown, the unreachable taint,
    and every pod on it Ready False (its containers' own readiness left as last reported)."""
    kube.core.patch_node(node, {"metadata": {"labels": {"type": None}}})
    unknown = {
        "type": "Ready",
        "status": "Unknown",
        "reason": "NodeStatusUnknown",
        "message": "Kubelet stopped posting node status.",
    }
    kube.core.patch_node_status(node, {"status": {"conditions": [unknown]}})
    kube.core.patch_node(node, {"spec": {"taints": [{"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}]}})
    for pod in kube.core.list_namespaced_pod(namespace, field_selector=f"spec.nodeName={node}").items:
        set_condition(kube, namespace, pod.metadata.name, "Ready", "False", reason="NodeNotReady")


def test_pods_on_a_lost_node_leave_the_registry_at_once(kube, namespace, etcd, running_operator, spare_node):
    # Two sync pods, ordinal 1 on the node that will be lost (the other lands anywhere else).
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "infer-operator.io/test-node", "operator": "DoesNotExist"}]}
                ]
            }
        }
    }
    body = isvc_body("edge", replicas=1, syncReplicas=1, registry=etcd_registry(etcd))
    body["spec"]["template"]["spec"]["affinity"] = affinity
    kube.create_isvc(namespace, body)
    lost_body = isvc_body("far", replicas=1, syncReplicas=1, registry=etcd_registry(etcd, service="edge"))
    lost_body["spec"]["template"]["spec"]["nodeSelector"] = {"infer-operator.io/test-node": spare_node}
    kube.create_isvc(namespace, lost_body)
    wait_for(lambda: listed_pods(etcd, "edge") == {"edge-0", "far-0"}, timeout=60, message="both registered")

    lose(kube, namespace, spare_node)
    wait_for(
        lambda: listed_pods(etcd, "edge") == {"edge-0"},
        timeout=BOUND,
        message=lambda: f"far-0 (on the lost node) deregistered: {listed_pods(etcd, 'edge')}",
    )
    assert any(e.reason == "NodeLost" and spare_node in e.message for e in events_about(kube, namespace, "far-0"))
    # The pod object stays until the taint's toleration runs out (or someone deletes it): finding
    # such pods is in the README; the registry meanwhile lists only what can answer.
    assert kube.core.read_namespaced_pod("far-0", namespace).metadata.deletion_timestamp is None


def test_a_pod_whose_own_readiness_gate_is_false_is_not_registered_until_it_is_true(
    kube, namespace, etcd, running_operator
):
    gate = "example.com/model-warm"
    body = isvc_body("gated", replicas=1, syncReplicas=1, registry=etcd_registry(etcd))
    body["spec"]["template"]["spec"]["readinessGates"] = [{"conditionType": gate}]
    kube.create_isvc(namespace, body)

    def decided_none() -> bool:
        pod = kube.pods(namespace, "gated").get("gated-0")
        if pod is None or not any(
            c.type == "ContainersReady" and c.status == "True" for c in pod.status.conditions or []
        ):
            return False
        synced = {c["type"]: c for c in (kube.get_isvc(namespace, "gated").get("status") or {}).get("conditions", [])}
        return synced.get("RegistrySynced", {}).get("message", "").startswith("0 instance(s)")

    wait_for(decided_none, timeout=60, message="the operator saw the pod's containers ready and listed nothing")
    assert listed_pods(etcd, "gated") == set()
    set_condition(kube, namespace, "gated-0", gate, "True")  # the model-warm controller's word
    wait_for(lambda: listed_pods(etcd, "gated") == {"gated-0"}, timeout=BOUND, message="registered once warm")
    set_condition(kube, namespace, "gated-0", gate, "False")  # taken back
    wait_for(lambda: not listed_pods(etcd, "gated"), timeout=BOUND, message="deregistered when the gate is False")


def test_a_pod_whose_ip_changed_is_listed_at_its_new_address_only(kube, namespace, etcd, running_operator):
    kube.create_isvc(namespace, isvc_body("moved", replicas=1, syncReplicas=1, registry=etcd_registry(etcd)))
    wait_for(lambda: listed_pods(etcd, "moved") == {"moved-0"}, timeout=60, message="registered")
    old = kube.pods(namespace, "moved")["moved-0"].status.pod_ip
    new = "10.250.255.77"  # the sandbox was re-created (node reboot, CNI restart): another IP
    etcd.put(f"{PREFIX}/moved/config/{new}", json.dumps({"weight": 0}))  # a previous holder's of the new IP
    # The kubelet reports the new sandbox's address: podIP and podIPs replaced (a PUT of the status).
    pod = kube.core.read_namespaced_pod_status("moved-0", namespace)
    pod.status.pod_ip = new
    pod.status.pod_ips = [client.V1PodIP(ip=new)]
    kube.core.replace_namespaced_pod_status("moved-0", namespace, pod)
    wait_for(
        lambda: set(listed(etcd, "moved")) == {f"{new}:8000"},
        timeout=BOUND,
        message=lambda: f"listed at {new} only, not at {old}: {set(listed(etcd, 'moved'))}",
    )
    assert not etcd.range_prefix(f"{PREFIX}/moved/config/{new}"), "the new address's old config was inherited"
    assert any(e.reason == "AddressChanged" for e in events_about(kube, namespace, "moved-0"))


def test_pod_management_policy_cannot_be_changed(kube, namespace, running_operator):
    kube.create_isvc(namespace, isvc_body("fixed", replicas=1))
    with pytest.raises(client.ApiException) as refused:
        kube.patch_isvc(namespace, "fixed", {"spec": {"podManagementPolicy": "OrderedReady"}})
    assert refused.value.status == 422 and "spec.podManagementPolicy cannot be changed" in refused.value.body


@pytest.mark.parametrize("blocked_by", ["refused apply", "paused"])
def test_registry_upkeep_goes_on_while_the_service_cannot_be_reconciled(
    kube, namespace, etcd, running_operator, blocked_by
):
    kube.create_isvc(namespace, isvc_body("kept", replicas=2, syncReplicas=2, registry=etcd_registry(etcd)))
    wait_for(lambda: listed_pods(etcd, "kept") == {"kept-0", "kept-1"}, timeout=60, message="both registered")
    if blocked_by == "refused apply":
        # A value only the StatefulSet's own validation refuses: every apply fails from now on.
        template = kube.get_isvc(namespace, "kept")["spec"]["template"]
        template["spec"]["containers"][0]["resources"] = {"limits": {"memory": "lots", "nvidia.com/gpu": 1}}
        kube.patch_isvc(namespace, "kept", {"spec": {"template": template}})

        def degraded() -> bool:
            conditions = (kube.get_isvc(namespace, "kept").get("status") or {}).get("conditions", [])
            return any(c["type"] == "Degraded" and c["status"] == "True" for c in conditions)

        wait_for(degraded, timeout=30, message="Degraded: the StatefulSet refuses the template")
    else:
        kube.custom.patch_namespaced_custom_object(
            labels.GROUP,
            labels.VERSION,
            namespace,
            labels.PLURAL,
            "kept",
            {"metadata": {"annotations": {labels.ANNOTATION_PAUSED: "true"}}},
        )

        def paused() -> bool:
            conditions = (kube.get_isvc(namespace, "kept").get("status") or {}).get("conditions", [])
            return any(c["type"] == "Progressing" and c["reason"] == "Paused" for c in conditions)

        wait_for(paused, timeout=30, message="Progressing: Paused")
    # A sync pod stops answering meanwhile: it leaves the registry, and comes back when it answers.
    kube.core.patch_namespaced_pod("kept-1", namespace, {"metadata": {"annotations": {HOLD_NOT_READY: "false"}}})
    wait_for(lambda: listed_pods(etcd, "kept") == {"kept-0"}, timeout=BOUND, message="kept-1 deregistered")
    kube.core.patch_namespaced_pod("kept-1", namespace, {"metadata": {"annotations": {HOLD_NOT_READY: None}}})
    wait_for(lambda: listed_pods(etcd, "kept") == {"kept-0", "kept-1"}, timeout=BOUND, message="kept-1 back")


def test_a_node_clock_ahead_does_not_stretch_the_warm_up(kube, namespace, etcd, running_operator):
    delay = 3
    body = isvc_body("skew", replicas=1, syncReplicas=1, registry=etcd_registry(etcd, registerDelaySeconds=delay))
    body["spec"]["template"]["metadata"]["annotations"] = {HOLD_NOT_READY: "false"}  # held until the test says
    kube.create_isvc(namespace, body)

    def running() -> bool:
        pod = kube.pods(namespace, "skew").get("skew-0")
        return pod is not None and pod.status.phase == "Running" and (pod.metadata.labels or {}).get(labels.LABEL_ROLE)

    wait_for(running, timeout=60, message="skew-0 running, containers not ready")
    # A kubelet whose clock is an hour ahead reports its containers ready "an hour from now".
    ahead = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    set_condition(kube, namespace, "skew-0", "ContainersReady", "True", lastTransitionTime=ahead)
    kube.core.patch_namespaced_pod("skew-0", namespace, {"metadata": {"annotations": {HOLD_NOT_READY: None}}})
    wait_for(
        lambda: listed_pods(etcd, "skew") == {"skew-0"},
        timeout=delay + BOUND,
        message="registered after the warm-up as the operator's clock counts it",
    )
