"""InferenceService -> one StatefulSet, on a real API server with the operator running as a process."""

from __future__ import annotations

import time

import pytest
from kubernetes import client

from devtools.harness import isvc_body, wait_for
from infer_operator import labels
from tests.support.kube import condition, is_ready

pytestmark = [pytest.mark.integration]

ROLE = labels.LABEL_ROLE


def roles_of(pods):
    return {name: pod.metadata.labels.get(ROLE) for name, pod in pods.items()}


def wait_settled(kube, namespace, name, replicas, sync, timeout=90):
    """Until every pod exists, is Ready and labelled by ordinal, and the status says so."""

    def settled():
        pods = kube.pods(namespace, name)
        live = {n: p for n, p in pods.items() if p.metadata.deletion_timestamp is None}
        expected = {f"{name}-{i}": ("sync" if i < sync else "async") for i in range(replicas)}
        if roles_of(live) != expected or not all(is_ready(p) for p in live.values()) or len(pods) != replicas:
            return False
        status = kube.get_isvc(namespace, name).get("status") or {}
        ready = condition(kube.get_isvc(namespace, name), "Ready")
        return (
            (status.get("readyReplicas"), status.get("syncReady"), status.get("asyncReady"))
            == (replicas, sync, replicas - sync)
            and ready
            and ready["status"] == "True"
        )

    wait_for(settled, timeout=timeout, message=f"{name}: {replicas} Ready pods with {sync} sync")
    return kube.pods(namespace, name)


def uids(pods):
    return {name: pod.metadata.uid for name, pod in pods.items()}


def test_split_env_services_status_and_columns(cluster, kube, namespace, running_operator):
    kube.create_isvc(
        namespace,
        isvc_body(
            "llm",
            replicas=5,
            syncReplicas=2,
            sync={"command": ["python", "-m", "serve"]},
            **{"async": {"command": ["python", "-m", "worker"]}},
        ),
    )
    pods = wait_settled(kube, namespace, "llm", 5, 2)

    assert roles_of(pods) == {"llm-0": "sync", "llm-1": "sync", "llm-2": "async", "llm-3": "async", "llm-4": "async"}
    for name, pod in pods.items():
        ordinal = int(name.rsplit("-", 1)[1])
        assert pod.metadata.labels[labels.LABEL_POD_INDEX] == str(ordinal)
        assert pod.metadata.annotations[labels.ANNOTATION_SYNC_REPLICAS] == "2"
        assert pod.metadata.annotations[labels.ANNOTATION_REPLICAS] == "5"
        assert pod.metadata.labels[labels.LABEL_NAME] == "llm"
        main = pod.spec.containers[0]
        env = {e.name: e for e in main.env}
        assert env["INFER_SERVICE"].value == "llm"
        assert env["INFER_ROLE"].value_from.field_ref.field_path == f"metadata.labels['{ROLE}']"
        assert env["INFER_ORDINAL"].value_from.field_ref.field_path == f"metadata.labels['{labels.LABEL_POD_INDEX}']"
        assert main.args == ["3", "python", "-m", "serve", "python", "-m", "worker"]
        assert pod.spec.termination_grace_period_seconds == 3
        assert main.lifecycle.pre_stop._exec.command == ["/bin/sh", "/infer-operator/prestop.sh"]

    # The sync Service selects exactly the sync pods: its endpoints are their IPs.
    sync_ips = {pods["llm-0"].status.pod_ip, pods["llm-1"].status.pod_ip}
    discovery = client.DiscoveryV1Api(kube.api_client)

    def endpoint_ips():
        slices = discovery.list_namespaced_endpoint_slice(namespace, label_selector="kubernetes.io/service-name=llm")
        return {
            address for s in slices.items for e in s.endpoints or [] for address in e.addresses if e.conditions.ready
        }

    wait_for(lambda: endpoint_ips() == sync_ips, timeout=30, message="sync Service endpoints == sync pod IPs")
    headless = kube.core.read_namespaced_service("llm-headless", namespace)
    assert headless.spec.cluster_ip == "None"

    status = kube.get_isvc(namespace, "llm")["status"]
    assert status["selector"] == "app.kubernetes.io/name=llm,infer-operator.io/service=llm"
    assert status["observedGeneration"] == kube.get_isvc(namespace, "llm")["metadata"]["generation"]
    table = cluster.kubectl("get", "infsvc", "llm", "-n", namespace)
    assert table.returncode == 0, table.stderr
    header, row = table.stdout.strip().splitlines()
    assert header.split() == ["NAME", "REPLICAS", "SYNC", "READY", "SYNC-READY", "ASYNC-READY", "AGE"]
    assert row.split()[:6] == ["llm", "5", "2", "5", "2", "3"]
    wide = cluster.kubectl("get", "infsvc", "llm", "-n", namespace, "-o", "wide").stdout.splitlines()[0].split()
    assert {"REGISTERED", "REGISTRY", "STATUS"} <= set(wide)


def test_an_hpa_scales_below_the_split_and_to_zero_through_scale(cluster, kube, namespace, running_operator):
    kube.create_isvc(namespace, isvc_body("llm", replicas=3, syncReplicas=2))
    wait_settled(kube, namespace, "llm", 3, 2)
    result = cluster.kubectl("scale", "infsvc", "llm", "-n", namespace, "--replicas=1")
    assert result.returncode == 0, result.stderr  # was: 422, syncReplicas must not exceed replicas
    wait_settled(kube, namespace, "llm", 1, 1)
    assert kube.get_isvc(namespace, "llm")["status"]["syncReplicas"] == 1
    assert cluster.kubectl("scale", "infsvc", "llm", "-n", namespace, "--replicas=0").returncode == 0
    wait_for(
        lambda: (
            not kube.pods(namespace, "llm")
            and (kube.get_isvc(namespace, "llm").get("status") or {}).get("replicas") == 0
        ),
        timeout=60,
        message="scaled to zero",
    )
    assert cluster.kubectl("scale", "infsvc", "llm", "-n", namespace, "--replicas=3").returncode == 0
    wait_settled(kube, namespace, "llm", 3, 2)  # the split comes back with the replicas


def test_split_change_restarts_only_the_flipping_pod(kube, namespace, running_operator):
    kube.create_isvc(namespace, isvc_body("llm", replicas=5, syncReplicas=2))
    before = wait_settled(kube, namespace, "llm", 5, 2)
    revision = kube.apps.read_namespaced_stateful_set("llm", namespace).status.update_revision

    kube.patch_isvc(namespace, "llm", {"spec": {"syncReplicas": 3}})
    after = wait_settled(kube, namespace, "llm", 5, 3)

    changed = {name for name in before if uids(before)[name] != uids(after)[name]}
    assert changed == {"llm-2"}
    assert after["llm-2"].metadata.labels[ROLE] == "sync"
    assert after["llm-2"].metadata.annotations[labels.ANNOTATION_SYNC_REPLICAS] == "3"
    sts = kube.apps.read_namespaced_stateful_set("llm", namespace)
    assert sts.status.update_revision == revision
    assert {p.metadata.labels["controller-revision-hash"] for p in after.values()} == {revision}
    reasons = [e.reason for e in kube.events(namespace, "llm")]
    assert "RoleChange" in reasons


def test_scaling_restarts_nobody_and_kubectl_scale_works(cluster, kube, namespace, running_operator):
    kube.create_isvc(namespace, isvc_body("llm", replicas=3, syncReplicas=1))
    before = wait_settled(kube, namespace, "llm", 3, 1)

    result = cluster.kubectl("scale", "infsvc", "llm", "-n", namespace, "--replicas=5")
    assert result.returncode == 0, result.stderr
    grown = wait_settled(kube, namespace, "llm", 5, 1)
    assert {n: uids(grown)[n] for n in before} == uids(before)

    kube.patch_isvc(namespace, "llm", {"spec": {"replicas": 2}})
    shrunk = wait_settled(kube, namespace, "llm", 2, 1)
    assert uids(shrunk) == {n: uids(before)[n] for n in ("llm-0", "llm-1")}
    scale = kube.custom.get_namespaced_custom_object_scale(
        labels.GROUP, labels.VERSION, namespace, labels.PLURAL, "llm"
    )
    assert scale["status"]["replicas"] == 2
    assert scale["status"]["selector"] == "app.kubernetes.io/name=llm,infer-operator.io/service=llm"


def test_drift_is_repaired(kube, namespace, running_operator):
    kube.create_isvc(namespace, isvc_body("llm", replicas=2, syncReplicas=1))
    wait_settled(kube, namespace, "llm", 2, 1)

    kube.core.delete_namespaced_service("llm", namespace)
    wait_for(
        lambda: _exists(kube.core.read_namespaced_service, "llm", namespace),
        timeout=30,
        message="deleted sync Service comes back",
    )

    kube.apps.patch_namespaced_stateful_set("llm", namespace, {"spec": {"replicas": 4}})
    wait_for(
        lambda: kube.apps.read_namespaced_stateful_set("llm", namespace).spec.replicas == 2,
        timeout=30,
        message="edited StatefulSet replicas are put back",
    )
    kube.core.patch_namespaced_config_map("llm-scripts", namespace, {"data": {"settings.sh": "exit 1"}})
    wait_for(
        lambda: (
            "infer_sync_probe" in kube.core.read_namespaced_config_map("llm-scripts", namespace).data["settings.sh"]
        ),
        timeout=30,
        message="edited scripts ConfigMap is put back",
    )


def test_deleting_the_service_removes_everything_it_owned(kube, namespace, running_operator):
    kube.create_isvc(namespace, isvc_body("llm", replicas=2, syncReplicas=1))
    wait_settled(kube, namespace, "llm", 2, 1)
    kube.delete_isvc(namespace, "llm")

    def all_gone():
        return (
            not kube.isvc_exists(namespace, "llm")
            and not kube.apps.list_namespaced_stateful_set(namespace).items
            and not [s for s in kube.core.list_namespaced_service(namespace).items]
            and not [
                c for c in kube.core.list_namespaced_config_map(namespace).items if c.metadata.name.startswith("llm")
            ]
            and not kube.pods(namespace, "llm")
        )

    wait_for(all_gone, timeout=90, message="InferenceService and all it owned are gone")


def test_template_the_api_server_rejects_is_reported_degraded(kube, namespace, running_operator):
    body = isvc_body("broken", replicas=2, syncReplicas=1)
    body["spec"]["template"]["spec"]["containers"][0]["ports"] = [{"containerPort": 70000}]
    kube.create_isvc(namespace, body)

    def degraded():
        found = condition(kube.get_isvc(namespace, "broken"), "Degraded")
        return found if found and found["status"] == "True" else None

    found = wait_for(degraded, timeout=30, message="Degraded condition")
    assert found["reason"] == "InvalidPodTemplate"
    assert "spec.template.spec.containers[0].ports[0].containerPort" in found["message"]
    events = kube.events(namespace, "broken")
    assert any(e.reason == "InvalidPodTemplate" and e.type == "Warning" for e in events)
    assert kube.pods(namespace, "broken") == {}

    # Fixing the spec recovers.
    fixed = {"spec": {"template": body["spec"]["template"]}}
    fixed["spec"]["template"]["spec"]["containers"][0]["ports"] = [{"containerPort": 8000}]
    kube.patch_isvc(namespace, "broken", fixed)
    wait_settled(kube, namespace, "broken", 2, 1)
    assert condition(kube.get_isvc(namespace, "broken"), "Degraded")["status"] == "False"


def _exists(read, *args) -> bool:
    try:
        read(*args)
        return True
    except client.ApiException as exc:
        if exc.status == 404:
            return False
        raise


def test_split_change_restarts_flipping_pods_one_at_a_time(kube, namespace, running_operator):
    kube.create_isvc(namespace, isvc_body("llm", replicas=4, syncReplicas=1))
    before = wait_settled(kube, namespace, "llm", 4, 1)
    kube.patch_isvc(namespace, "llm", {"spec": {"syncReplicas": 3}})

    most_down = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        pods = kube.pods(namespace, "llm")
        live = {n: p for n, p in pods.items() if p.metadata.deletion_timestamp is None and is_ready(p)}
        most_down = max(most_down, 4 - len(live))
        roles = {n: p.metadata.labels.get(ROLE) for n, p in live.items()}
        if roles == {"llm-0": "sync", "llm-1": "sync", "llm-2": "sync", "llm-3": "async"}:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("split change 1 -> 3 did not settle within 120s")
    after = wait_settled(kube, namespace, "llm", 4, 3)
    assert {n for n in before if uids(before)[n] != uids(after)[n]} == {"llm-1", "llm-2"}
    assert most_down == 1, f"{most_down} pods were down at once (maxUnavailable is 1)"
    restarts = [e for e in kube.events(namespace, "llm") if e.reason == "RoleChange"]
    assert sum(e.count or 1 for e in restarts) == 2


def watch_most_down(kube, namespace: str, name: str, replicas: int, done, timeout: float = 180) -> int:
    """Poll the pods until `done(pods)`; the most that were not Ready (or terminating) at once."""
    most_down = 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pods = kube.pods(namespace, name)
        live = {n: p for n, p in pods.items() if p.metadata.deletion_timestamp is None and is_ready(p)}
        most_down = max(most_down, replicas - len(live))
        if done(pods):
            return most_down
        time.sleep(0.1)
    raise AssertionError(f"{name} did not settle within {timeout}s")


def test_one_edit_of_the_template_and_the_split_keeps_one_pod_down(kube, namespace, running_operator):
    kube.create_isvc(namespace, isvc_body("llm", replicas=4, syncReplicas=2))
    wait_settled(kube, namespace, "llm", 4, 2)
    body = kube.get_isvc(namespace, "llm")
    containers = body["spec"]["template"]["spec"]["containers"]
    containers[0]["image"] = "registry.example/llm:2"
    kube.patch_isvc(namespace, "llm", {"spec": {"syncReplicas": 3, "template": {"spec": {"containers": containers}}}})

    def rolled(pods):
        live = [p for p in pods.values() if p.metadata.deletion_timestamp is None and is_ready(p)]
        return (
            len(live) == 4
            and all(p.spec.containers[0].image == "registry.example/llm:2" for p in live)
            and {p.metadata.name: p.metadata.labels.get(ROLE) for p in live}
            == {"llm-0": "sync", "llm-1": "sync", "llm-2": "sync", "llm-3": "async"}
        )

    most_down = watch_most_down(kube, namespace, "llm", 4, rolled)
    assert most_down == 1, f"{most_down} pods down at once: the role flip and the rollout share one budget"
    wait_settled(kube, namespace, "llm", 4, 3)
    assert kube.get_isvc(namespace, "llm")["status"]["updatedReplicas"] == 4
    # llm-2 needed both (new template, new role): restarted once, as a role change
    reasons = {e.reason for e in kube.events(namespace, "llm")}
    assert {"RollingUpdate", "RoleChange"} <= reasons


def test_a_port_change_reaches_each_pod_on_the_port_it_serves(kube, namespace, etcd, running_operator):
    from tests.chaos.helpers import etcd_instances, etcd_registry

    kube.create_isvc(namespace, isvc_body("web", replicas=3, syncReplicas=3, registry=etcd_registry(etcd)))
    wait_settled(kube, namespace, "web", 3, 3)
    wait_for(lambda: len(etcd_instances(etcd, "web")) == 3, timeout=60, message="3 registered")
    service = kube.core.read_namespaced_service("web", namespace)
    assert service.spec.ports[0].target_port == labels.SYNC_PORT_NAME
    kube.patch_isvc(namespace, "web", {"spec": {"sync": {"port": 8001}, "updateStrategy": {"type": "OnDelete"}}})
    # The Service moves to the new port number, but reaches every pod on its own named port; the
    # registry keeps each pod at the port it serves: none of the (old) pods is at 8001.
    wait_for(
        lambda: kube.core.read_namespaced_service("web", namespace).spec.ports[0].port == 8001,
        timeout=30,
        message="Service on the new port",
    )
    entries = etcd_instances(etcd, "web")
    assert len(entries) == 3 and all(e["port"] == 8000 for e in entries.values()), entries
    # A pod restarted now serves 8001, and is registered there.
    old = kube.pods(namespace, "web")["web-0"]
    kube.core.delete_namespaced_pod("web-0", namespace)
    wait_for(
        lambda: any(
            e["pod"] == "web-0" and e["port"] == 8001 and e["uid"] != old.metadata.uid
            for e in etcd_instances(etcd, "web").values()
        ),
        timeout=60,
        message="web-0 registered at 8001 after its restart",
    )
    assert sorted(e["port"] for e in etcd_instances(etcd, "web").values()) == [8000, 8000, 8001]


def test_a_drain_raised_beyond_running_pods_grace_says_they_are_outdated(kube, namespace, running_operator):
    kube.create_isvc(
        namespace,
        isvc_body(
            "slow",
            replicas=2,
            syncReplicas=2,
            updateStrategy={"type": "OnDelete"},
            lifecycle={"drainSeconds": 1, "terminationGracePeriodSeconds": 3},
        ),
    )
    wait_settled(kube, namespace, "slow", 2, 2)
    kube.patch_isvc(
        namespace, "slow", {"spec": {"lifecycle": {"drainSeconds": 50, "terminationGracePeriodSeconds": 60}}}
    )

    def says_outdated():
        progressing = condition(kube.get_isvc(namespace, "slow"), "Progressing")
        return progressing if progressing and progressing["reason"] == "OnDelete" else None

    progressing = wait_for(says_outdated, timeout=60, message="status says pods are outdated")
    assert progressing["status"] == "True"
    assert "2 of 2 pod(s) run an older template" in progressing["message"]
    assert "deleting them applies the change" in progressing["message"]
    assert "grace period not longer than drainSeconds" in progressing["message"]
    assert all(p.spec.termination_grace_period_seconds == 3 for p in kube.pods(namespace, "slow").values())


def test_the_templates_own_pre_stop_is_kept_and_runs_first(kube, namespace, running_operator):
    body = isvc_body("hooked", replicas=1, syncReplicas=1)
    body["spec"]["template"]["spec"]["containers"][0]["lifecycle"] = {
        "preStop": {"exec": {"command": ["touch", "/tmp/drain"]}}
    }
    kube.create_isvc(namespace, body)
    pods = wait_settled(kube, namespace, "hooked", 1, 1)
    assert pods["hooked-0"].spec.containers[0].lifecycle.pre_stop._exec.command == [
        "/bin/sh",
        "/infer-operator/prestop.sh",
        "exec",
        "touch",
        "/tmp/drain",
    ]


def test_restarts_respect_a_disruption_budget_and_the_budget_follows_the_spec(kube, namespace, running_operator):
    """The spec's PodDisruptionBudget is made, guards the operator's own restarts (Eviction API),
    and goes when the spec drops it."""
    policy = client.PolicyV1Api(kube.core.api_client)
    kube.create_isvc(namespace, isvc_body("llm", replicas=3, syncReplicas=1, podDisruptionBudget={"minAvailable": 3}))
    before = wait_settled(kube, namespace, "llm", 3, 1)
    wait_for(
        lambda: policy.read_namespaced_pod_disruption_budget("llm", namespace).status.current_healthy == 3,
        timeout=60,
        message="the budget sees 3 healthy pods",
        ignore=(client.ApiException,),
    )

    kube.patch_isvc(namespace, "llm", {"spec": {"syncReplicas": 2}})

    def says_it_waits():
        progressing = condition(kube.get_isvc(namespace, "llm"), "Progressing")
        return progressing and "PodDisruptionBudget" in progressing["message"]

    wait_for(says_it_waits, timeout=60, message="Progressing says the restart waits for the budget")
    assert "RestartBlocked" in [e.reason for e in kube.events(namespace, "llm")]
    assert uids(kube.pods(namespace, "llm")) == uids(before)  # nobody restarted against the budget

    kube.patch_isvc(namespace, "llm", {"spec": {"podDisruptionBudget": {"maxUnavailable": 1, "minAvailable": None}}})
    after = wait_settled(kube, namespace, "llm", 3, 2)
    assert {name for name in before if uids(before)[name] != uids(after)[name]} == {"llm-1"}

    kube.patch_isvc(namespace, "llm", {"spec": {"podDisruptionBudget": None}})

    def budget_gone():
        try:
            policy.read_namespaced_pod_disruption_budget("llm", namespace)
        except client.ApiException as exc:
            return exc.status == 404
        return False

    wait_for(budget_gone, timeout=60, message="the budget the spec dropped is deleted")


def test_an_object_of_the_same_name_that_is_not_ours_is_left_alone(kube, namespace, running_operator):
    theirs = {
        "metadata": {"name": "llm", "labels": {"app": "theirs"}},
        "spec": {"selector": {"app": "theirs"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    kube.core.create_namespaced_service(namespace, theirs)
    kube.create_isvc(namespace, isvc_body("llm", replicas=1))

    def degraded():
        found = condition(kube.get_isvc(namespace, "llm"), "Degraded")
        return found if found and found["status"] == "True" else None

    found = wait_for(degraded, timeout=60, message="Degraded, naming the Service")
    assert found["reason"] == "ObjectNotOwned" and "Service llm" in found["message"]
    service = kube.core.read_namespaced_service("llm", namespace)
    assert service.spec.selector == {"app": "theirs"} and not service.metadata.owner_references
    assert service.spec.ports[0].port == 80

    # Once the user renames theirs away, the operator goes on.
    kube.core.delete_namespaced_service("llm", namespace)
    wait_settled(kube, namespace, "llm", 1, 1)
