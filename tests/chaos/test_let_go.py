"""Always let go: every finalizer the operator adds is gone within a stated bound, whatever else
failed (a namespace deleted with its credentials Secret, a registry down during it, an object too
large for any more bookkeeping, a pod relabelled out of the operator's watch).

Bounds (see README, "Failure behaviour"): a deleted pod within --deregister-timeout; a deleted
InferenceService within --cleanup-timeout of its deletion (at once when its namespace is going and
the registry cannot be used); kopf's loop finalizer within its 10 s cancellation timeout.
"""

from __future__ import annotations

import os
import signal
import time
import urllib.request

import pytest
import yaml

from devtools.harness import free_port, isvc_body, wait_for
from infer_operator import labels
from tests.chaos.helpers import etcd_instances, etcd_registry, stuck_terminating

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.registry]


def namespace_gone(kube, name: str) -> bool:
    try:
        kube.core.read_namespace(name)
        return False
    except Exception as exc:  # noqa: BLE001 - ApiException 404 expected
        return getattr(exc, "status", None) == 404


def metric(port: int, name: str, **label_values: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith((name + "{", name + " ")) and all(f'{k}="{v}"' in line for k, v in label_values.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.fixture
def throwaway_namespace(kube, namespace):
    """A namespace of its own, deleted by the test itself (the `namespace` fixture's stays for the operator)."""
    name = f"{namespace}-del"
    kube.core.create_namespace({"metadata": {"name": name, "labels": {"infer-operator.io/test": "true"}}})
    yield name
    if not namespace_gone(kube, name):
        kube.core.delete_namespace(name)


@pytest.mark.parametrize("registry_down", [False, True], ids=["registry-up", "registry-down"])
def test_deleting_a_namespace_with_its_credentials_secret_never_hangs(
    kube, etcd, operators, throwaway_namespace, figures, registry_down
):
    """Case 5: the Secret goes with the namespace; with the registry up the entries are still
    cleaned (the client built before is used), with it down the service lets go at the bound."""
    port = free_port()
    operators("--cleanup-timeout", "15", "--metrics-port", str(port))
    ns = throwaway_namespace
    kube.core.create_namespaced_secret(ns, {"metadata": {"name": "reg-cred"}, "data": {}})
    registry = etcd_registry(etcd)
    registry["etcd"]["credentialsSecret"] = {"name": "reg-cred"}
    kube.create_isvc(ns, isvc_body("llm", replicas=2, syncReplicas=2, registry=registry))
    wait_for(lambda: len(etcd_instances(etcd, "llm")) == 2, timeout=60, message="2 registered")
    abandoned = metric(port, "infer_operator_incomplete_cleanups_total", kind=labels.KIND)
    if registry_down:
        os.kill(etcd.proc.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        kube.core.delete_namespace(ns)
        wait_for(
            lambda: namespace_gone(kube, ns),
            timeout=60,
            interval=0.5,
            message=lambda: f"namespace {ns} still there: {kube.core.read_namespace(ns).status}",
        )
        took = time.monotonic() - started
    finally:
        if registry_down:
            os.kill(etcd.proc.pid, signal.SIGCONT)
    if registry_down:
        # Nothing could be cleaned: said by the metric (events cannot be written in a namespace
        # being deleted), and the namespace went at the bound, not before.
        assert metric(port, "infer_operator_incomplete_cleanups_total", kind=labels.KIND) >= abandoned + 1
        assert took >= 10, f"let go after {took:.1f}s, before the registry was given its chance"
    else:
        assert etcd_instances(etcd, "llm") == {}, "the entries were not cleaned"
    figures.update(namespace_gone_s=took, registry_down=registry_down)


def test_a_spec_too_large_for_more_annotations_is_still_updated_and_deleted(
    cluster, kube, namespace, etcd, operators, figures
):
    """Case 6: a client-side apply keeps the whole object in an annotation (here ~130 KB); the
    operator adds no bookkeeping annotation of its own, so changes and deletion go through."""
    operators()
    body = isvc_body("big", namespace, replicas=1, syncReplicas=1, registry=etcd_registry(etcd))
    body["spec"]["template"]["spec"]["containers"][0]["env"] = [
        {"name": f"VAR_{i}", "value": "x" * 420} for i in range(300)
    ]
    result = cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(body), timeout=60)
    assert result.returncode == 0, result.stderr
    wait_for(lambda: len(etcd_instances(etcd, "big")) == 1, timeout=60, message="registered")
    body["spec"]["replicas"] = 2
    body["spec"]["syncReplicas"] = 2
    result = cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(body), timeout=60)
    assert result.returncode == 0, result.stderr
    wait_for(lambda: len(etcd_instances(etcd, "big")) == 2, timeout=60, message="the change went through")
    annotations = kube.get_isvc(namespace, "big")["metadata"].get("annotations") or {}
    assert set(annotations) == {"kubectl.kubernetes.io/last-applied-configuration"}, sorted(annotations)
    started = time.monotonic()
    kube.delete_isvc(namespace, "big")
    wait_for(lambda: not kube.isvc_exists(namespace, "big"), timeout=60, message="deleted")
    assert etcd_instances(etcd, "big") == {}
    figures.update(
        annotation_kb=len(annotations["kubectl.kubernetes.io/last-applied-configuration"]) // 1024,
        deleted_s=time.monotonic() - started,
    )


def _relabel(kube, namespace: str, pod: str) -> None:
    kube.core.patch_namespaced_pod(pod, namespace, {"metadata": {"labels": {labels.LABEL_MANAGED_BY: "other"}}})


@pytest.mark.parametrize("operator_down", [False, True], ids=["while-running", "while-down"])
def test_a_pod_relabelled_out_of_the_watch_is_taken_back_and_released(
    kube, namespace, etcd, operators, figures, operator_down
):
    """Case 7: the label is put back (the watch sees the pod again), and its deletion is released
    like any other; with the operator down at the time, its next audit finds the pod."""
    operator = operators()
    kube.create_isvc(namespace, isvc_body("llm", replicas=2, syncReplicas=2, registry=etcd_registry(etcd)))
    wait_for(lambda: len(etcd_instances(etcd, "llm")) == 2, timeout=60, message="2 registered")
    if operator_down:
        operator.kill()
    _relabel(kube, namespace, "llm-1")
    if operator_down:
        operator.start()
    started = time.monotonic()
    wait_for(
        lambda: kube.pods(namespace, "llm")["llm-1"].metadata.labels.get(labels.LABEL_MANAGED_BY) == labels.MANAGED_BY,
        timeout=30,
        message="managed-by label put back",
    )
    relabelled = time.monotonic() - started
    _relabel(kube, namespace, "llm-1")
    kube.core.delete_namespaced_pod("llm-1", namespace)
    wait_for(lambda: not stuck_terminating(kube, namespace), timeout=30, message="released")
    wait_for(
        lambda: (
            len(etcd_instances(etcd, "llm")) == 2
            and (kube.get_isvc(namespace, "llm").get("status") or {}).get("readyReplicas") == 2
        ),
        timeout=60,
        message="recreated, registered, counted",
    )
    figures.update(relabel_restored_s=relabelled, operator_down=operator_down)


def test_both_finalizers_of_a_service_go_on_deletion(kube, namespace, etcd, operators):
    """Ours (the registry cleanup) and kopf's (its loop) are both on the object, and both go."""
    operators()
    kube.create_isvc(namespace, isvc_body("odd", replicas=1, syncReplicas=1, registry=etcd_registry(etcd)))
    wait_for(lambda: len(etcd_instances(etcd, "odd")) == 1, timeout=60, message="registered")
    finalizers = kube.get_isvc(namespace, "odd")["metadata"]["finalizers"]
    assert set(finalizers) == {labels.CR_FINALIZER, labels.LOOP_FINALIZER}, finalizers
    kube.delete_isvc(namespace, "odd")
    wait_for(lambda: not kube.isvc_exists(namespace, "odd"), timeout=30, message="deleted")
    assert etcd_instances(etcd, "odd") == {}
