"""The local control plane behaves like the cluster the operator needs (KWOK nodes and pods)."""

from __future__ import annotations

import secrets

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from devtools.cluster.launcher import READY_ANNOTATION
from devtools.harness import assert_stays, wait_for

pytestmark = pytest.mark.integration

TEST_FINALIZER = "devcluster.infer-operator.io/test-hold"


def _statefulset(name: str, replicas: int) -> client.V1StatefulSet:
    labels = {"app": name}
    return client.V1StatefulSet(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1StatefulSetSpec(
            replicas=replicas,
            service_name=name,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(
                    termination_grace_period_seconds=1,
                    init_containers=[client.V1Container(name="fetch-model", image="example.invalid/init:1")],
                    containers=[
                        client.V1Container(
                            name="server",
                            image="example.invalid/server:1",
                            resources=client.V1ResourceRequirements(
                                requests={"cpu": "100m", "nvidia.com/gpu": "1"}, limits={"nvidia.com/gpu": "1"}
                            ),
                        )
                    ],
                ),
            ),
        ),
    )


def _create_sts(api, namespace: str, name: str, replicas: int) -> None:
    core = client.CoreV1Api(api)
    core.create_namespaced_service(
        namespace,
        client.V1Service(
            metadata=client.V1ObjectMeta(name=name),
            spec=client.V1ServiceSpec(
                cluster_ip="None", selector={"app": name}, ports=[client.V1ServicePort(port=8000)]
            ),
        ),
    )
    client.AppsV1Api(api).create_namespaced_stateful_set(namespace, _statefulset(name, replicas))


def _ready(pod: client.V1Pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def _read_pod(core: client.CoreV1Api, namespace: str, name: str) -> client.V1Pod | None:
    try:
        return core.read_namespaced_pod(name, namespace)
    except ApiException as e:
        if e.status == 404:
            return None
        raise


def _wait_pods_ready(core, namespace: str, names: list[str], timeout: float = 60) -> list:
    def all_ready():
        pods = [_read_pod(core, namespace, n) for n in names]
        if all(
            p is not None and p.metadata.deletion_timestamp is None and p.status.phase == "Running" and _ready(p)
            for p in pods
        ):
            return pods
        return None

    def describe():
        pods = [_read_pod(core, namespace, n) for n in names]
        return "pods not Running+Ready: " + ", ".join(
            f"{n}={'absent' if p is None else (p.status.phase, _ready(p))}" for n, p in zip(names, pods, strict=True)
        )

    return wait_for(all_ready, timeout=timeout, interval=0.25, message=describe)


def test_statefulset_gpu_pods_run_ready_with_distinct_ips(cluster, namespace):
    api = cluster.api_client()
    core = client.CoreV1Api(api)
    _create_sts(api, namespace, "gpu", 3)
    pods = _wait_pods_ready(core, namespace, ["gpu-0", "gpu-1", "gpu-2"])

    ips = [p.status.pod_ip for p in pods]
    assert all(ips) and len(set(ips)) == 3, ips
    for i, pod in enumerate(pods):
        assert pod.metadata.labels["apps.kubernetes.io/pod-index"] == str(i)
        assert pod.spec.node_name.startswith("kwok-node-")
        assert pod.spec.containers[0].resources.limits["nvidia.com/gpu"] == "1"
        (init,) = pod.status.init_container_statuses
        assert init.name == "fetch-model"
        assert init.state.terminated is not None and init.state.terminated.reason == "Completed"
        assert all(cs.ready for cs in pod.status.container_statuses)
        assert {c.type: c.status for c in pod.status.conditions}["Initialized"] == "True"

    sts = client.AppsV1Api(api).read_namespaced_stateful_set("gpu", namespace)
    wait_for(
        lambda: client.AppsV1Api(api).read_namespaced_stateful_set("gpu", namespace).status.ready_replicas == 3,
        timeout=30,
        message=f"statefulset status never reported 3 ready replicas: {sts.status}",
    )
    # kubectl from the toolchain talks to the same cluster.
    out = cluster.kubectl("-n", namespace, "get", "pods", "-o", "name", check=True).stdout.split()
    assert sorted(out) == ["pod/gpu-0", "pod/gpu-1", "pod/gpu-2"]


def test_finalizer_holds_terminating_pod_then_statefulset_recreates_it(cluster, namespace):
    api = cluster.api_client()
    core = client.CoreV1Api(api)
    _create_sts(api, namespace, "fin", 1)
    (pod,) = _wait_pods_ready(core, namespace, ["fin-0"])
    old_uid = pod.metadata.uid
    core.patch_namespaced_pod("fin-0", namespace, {"metadata": {"finalizers": [TEST_FINALIZER]}})
    core.delete_namespaced_pod("fin-0", namespace)  # grace period 1s from the pod spec

    def terminating():
        p = _read_pod(core, namespace, "fin-0")
        return p is not None and p.metadata.uid == old_uid and p.metadata.deletion_timestamp

    wait_for(terminating, timeout=10, message="pod never got a deletionTimestamp")
    # Well past the 1 s grace period the pod is still there (Terminating), finalizer intact.
    assert_stays(terminating, duration=4, message="pod with a finalizer was deleted")
    p = _read_pod(core, namespace, "fin-0")
    assert p.metadata.finalizers == [TEST_FINALIZER]
    wait_for(
        lambda: not _ready(_read_pod(core, namespace, "fin-0")), timeout=10, message="terminating pod stayed Ready"
    )

    core.patch_namespaced_pod("fin-0", namespace, [{"op": "remove", "path": "/metadata/finalizers"}])

    def recreated():
        p = _read_pod(core, namespace, "fin-0")
        return p is not None and p.metadata.uid != old_uid

    wait_for(recreated, timeout=30, message="StatefulSet did not recreate fin-0")
    (new,) = _wait_pods_ready(core, namespace, ["fin-0"])
    assert new.metadata.uid != old_uid and new.status.pod_ip  # the IP may be reused


def test_garbage_collection_and_namespace_deletion(cluster, namespace):
    api = cluster.api_client()
    core = client.CoreV1Api(api)
    owner = core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner"), data={"a": "1"})
    )
    core.create_namespaced_config_map(
        namespace,
        client.V1ConfigMap(
            metadata=client.V1ObjectMeta(
                name="owned",
                owner_references=[
                    client.V1OwnerReference(api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid)
                ],
            ),
            data={"b": "2"},
        ),
    )
    core.delete_namespaced_config_map("owner", namespace)

    def owned_gone():
        try:
            core.read_namespaced_config_map("owned", namespace)
            return False
        except ApiException as e:
            if e.status == 404:
                return True
            raise

    wait_for(owned_gone, timeout=30, message="owned ConfigMap was not garbage-collected")

    other = f"{namespace}-del"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=other)))
    core.create_namespaced_config_map(
        other, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="x"), data={"c": "3"})
    )
    core.delete_namespace(other)

    def ns_gone():
        try:
            core.read_namespace(other)
            return False
        except ApiException as e:
            if e.status == 404:
                return True
            raise

    wait_for(ns_gone, timeout=60, message=f"namespace {other} deletion did not complete")


def test_crd_cel_validation_rejects_with_rule_message(cluster, namespace):
    api = cluster.api_client()
    ext = client.ApiextensionsV1Api(api)
    group = f"t{secrets.token_hex(3)}.devcluster.infer-operator.io"
    plural = "widgets"
    message = "minReplicas must not exceed maxReplicas"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": plural, "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {
                                        "minReplicas": {"type": "integer"},
                                        "maxReplicas": {"type": "integer"},
                                    },
                                    "x-kubernetes-validations": [
                                        {"rule": "self.minReplicas <= self.maxReplicas", "message": message}
                                    ],
                                }
                            },
                        }
                    },
                }
            ],
        },
    }
    ext.create_custom_resource_definition(crd)
    try:

        def established():
            c = ext.read_custom_resource_definition(f"{plural}.{group}")
            return any(x.type == "Established" and x.status == "True" for x in (c.status.conditions or []))

        wait_for(established, timeout=30, message="CRD not Established")
        co = client.CustomObjectsApi(api)

        def body(name, lo, hi):
            return {
                "apiVersion": f"{group}/v1",
                "kind": "Widget",
                "metadata": {"name": name},
                "spec": {"minReplicas": lo, "maxReplicas": hi},
            }

        def create_ok():
            try:
                co.create_namespaced_custom_object(group, "v1", namespace, plural, body("ok", 1, 2))
                return True
            except ApiException as e:
                if e.status == 404:  # the new resource may take a moment to be served
                    return False
                raise

        wait_for(create_ok, timeout=30, message="valid Widget could not be created")

        with pytest.raises(ApiException) as err:
            co.create_namespaced_custom_object(group, "v1", namespace, plural, body("bad", 3, 1))
        assert err.value.status == 422
        assert message in err.value.body
    finally:
        ext.delete_custom_resource_definition(f"{plural}.{group}")


def test_hold_not_ready_annotation(cluster, namespace):
    api = cluster.api_client()
    core = client.CoreV1Api(api)
    _create_sts(api, namespace, "hold", 1)
    (pod,) = _wait_pods_ready(core, namespace, ["hold-0"])
    uid = pod.metadata.uid

    core.patch_namespaced_pod("hold-0", namespace, {"metadata": {"annotations": {READY_ANNOTATION: "false"}}})

    def not_ready():
        p = _read_pod(core, namespace, "hold-0")
        return (
            p.metadata.uid == uid
            and p.status.phase == "Running"
            and not _ready(p)
            and not any(cs.ready for cs in p.status.container_statuses)
        )

    wait_for(not_ready, timeout=20, message="annotated pod did not become NotReady")
    assert_stays(not_ready, duration=1.5, message="held pod became Ready again while annotated")

    core.patch_namespaced_pod("hold-0", namespace, {"metadata": {"annotations": {READY_ANNOTATION: None}}})
    (again,) = _wait_pods_ready(core, namespace, ["hold-0"], timeout=20)
    assert again.metadata.uid == uid
    assert all(cs.ready for cs in again.status.container_statuses)


def test_down_leaves_no_process(tmp_path, cluster):
    # `cluster` only orders this after the shared control plane exists (binaries built).
    psutil = pytest.importorskip("psutil")
    from devtools.cluster import launcher

    state = tmp_path / "cp"
    info = launcher.up(state, nodes=1)
    try:
        pids = launcher.pids(state)
        assert set(pids) == set(launcher.COMPONENTS)
        assert launcher.up(state).server == info.server  # idempotent: same cluster
        assert launcher.status(state).healthy
    finally:
        launcher.down(state)

    def survivor(pid):
        try:
            return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    assert [n for n, pid in pids.items() if survivor(pid)] == []
    strays = [
        p.pid for p in psutil.process_iter(["cmdline"]) if any(str(state) in a for a in (p.info["cmdline"] or []))
    ]
    assert strays == []
    assert not launcher.status(state).healthy
