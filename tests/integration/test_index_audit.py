"""A pod deletion the watch never delivered must not stall an InferenceService.

kopf relists after a "410 Gone" (every kube-apiserver restart causes one) without dropping the
objects deleted in the gap, so its pod index can keep a terminating ghost forever. The ghost
counts as unavailable and would block every role flip. The reconcile loop audits its index
against a fresh read of the API and ignores ghosts; a failed read drops nothing.

These tests drive the operator's ServiceReconciler directly against the real API server, with an
index that holds one ghost (exactly what kopf leaves behind), and the real pods of the service.
"""

from __future__ import annotations

import dataclasses
import logging
import time

import pytest
from kubernetes import client

from devtools.harness import free_port, isvc_body, wait_for
from infer_operator import labels
from infer_operator.clients.kube import KubeClient, load_configuration
from infer_operator.podview import PodView
from infer_operator.reconcile.reconciler import ServiceReconciler
from infer_operator.reconcile.schedule import Schedule
from infer_operator.records import ServiceRecords
from infer_operator.registration.registrar import Registrar
from infer_operator.registration.releaser import PodReleaser
from infer_operator.registration.sharing import NO_VIEWS
from tests.support.kube import is_ready

pytestmark = pytest.mark.integration

SERVICE = "ghost"


def _pod_body(ordinal: int, role: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{SERVICE}-{ordinal}",
            "labels": {**labels.common_labels(SERVICE), labels.LABEL_ROLE: role, labels.LABEL_POD_INDEX: str(ordinal)},
        },
        "spec": {
            "containers": [{"name": "model", "image": "registry.example/llm:1"}],
            "terminationGracePeriodSeconds": 1,
        },
    }


@pytest.fixture
def service_pods(cluster, namespace):
    """Three Ready pods of the service, all started as sync; the spec below wants ghost-2 async."""
    api = cluster.api_client()
    core = client.CoreV1Api(api)
    for ordinal in range(3):
        core.create_namespaced_pod(namespace, _pod_body(ordinal, labels.ROLE_SYNC))

    def all_ready():
        pods = core.list_namespaced_pod(namespace, label_selector=f"{labels.LABEL_SERVICE}={SERVICE}").items
        return pods if len(pods) == 3 and all(is_ready(p) and p.status.pod_ip for p in pods) else None

    pods = wait_for(all_ready, timeout=60, message="3 pods Ready")
    views = [PodView.from_body(api.sanitize_for_serialization(p)) for p in pods]
    return core, sorted(views, key=lambda v: v.ordinal)


def _reconciler(kube: KubeClient, namespace: str, audit_seconds: float, emitted: list) -> ServiceReconciler:
    logger = logging.getLogger("test.index_audit")
    services = ServiceRecords(lambda ns, name: Registrar(kube, ns, name, 1.0))
    releaser = PodReleaser(kube, services, lambda *event: None, timeout=lambda: 1.0)
    # As after a first pass: the next audit is `audit_seconds` away (0: due now).
    reconciler = ServiceReconciler(
        kube,
        services.hold(namespace, SERVICE),
        logger,
        lambda *event: emitted.append(event),
        releaser=releaser,
        schedule=Schedule(audit_seconds=audit_seconds, last_read=time.monotonic()),
    )
    # The owned objects are not under test: apply nothing (a StatefulSet over these bare pods
    # would adopt and roll them, and its owner, with a made-up uid, would have it collected).
    reconciler.objects.applied_generation, reconciler.objects.named_target = 1, False
    return reconciler


def _body(namespace: str) -> dict:
    body = isvc_body(SERVICE, namespace, replicas=3, syncReplicas=2)
    body["metadata"].update(uid="00000000-0000-0000-0000-00000000beef", generation=1)
    return body


def _ghost_of(pod: PodView) -> PodView:
    """The same ordinal's previous pod: deleted while the watch was down, still in kopf's index."""
    return dataclasses.replace(pod, uid="11111111-2222-3333-4444-555555555555", deleting=True, ready=False)


def _terminating(core, namespace: str, name: str) -> bool:
    try:
        return core.read_namespaced_pod(name, namespace).metadata.deletion_timestamp is not None
    except client.ApiException as exc:
        return exc.status == 404


async def test_a_ghost_blocks_the_role_flip_until_the_audit_drops_it(cluster, namespace, service_pods, caplog):
    core, pods = service_pods
    index = [*pods, _ghost_of(pods[1])]
    kube = KubeClient(load_configuration(str(cluster.kubeconfig)))
    emitted: list = []
    try:
        # No audit due: the ghost spends the whole maxUnavailable budget, so ghost-2 is not restarted.
        blind = _reconciler(kube, namespace, audit_seconds=3600, emitted=emitted)
        await blind.run_pass(_body(namespace), index, apply_objects=False)
        assert not _terminating(core, namespace, f"{SERVICE}-2"), "flip went ahead although the budget was spent"
        assert emitted == []

        # With the audit (as after a relist of the pods watch), the ghost is recognised (logged
        # once), and the flip goes ahead.
        caplog.set_level(logging.WARNING, logger="test.index_audit")
        audited = _reconciler(kube, namespace, audit_seconds=3600, emitted=emitted)
        audited.schedule.request_audit(time.monotonic())
        await audited.run_pass(_body(namespace), index, apply_objects=False)
        wait_for(
            lambda: _terminating(core, namespace, f"{SERVICE}-2"),
            timeout=10,
            message="ghost-2 restarted to take the async role",
        )
        assert [event[1] for event in emitted] == ["RoleChange"]
        ghost_logs = [r.getMessage() for r in caplog.records if "still in the watch cache" in r.getMessage()]
        assert len(ghost_logs) == 1 and f"{SERVICE}-1" in ghost_logs[0], ghost_logs
        # The live pod of the same ordinal is not mistaken for the ghost.
        assert not _terminating(core, namespace, f"{SERVICE}-1")
        audited.schedule.request_audit(time.monotonic())  # another audit
        await audited.run_pass(_body(namespace), index, apply_objects=False)
        # The ghost is logged once, however many passes see it (the restarted ghost-2 may be gone
        # from the API by now too, and logged for itself).
        assert (
            len(
                [
                    r
                    for r in caplog.records
                    if "still in the watch cache" in r.getMessage() and f"{SERVICE}-1 " in r.getMessage()
                ]
            )
            == 1
        )
    finally:
        await kube.close()


async def test_a_failed_read_drops_nothing(cluster, namespace, service_pods, tmp_path):
    _, pods = service_pods
    index = [*pods, _ghost_of(pods[1])]
    unreachable = tmp_path / "kubeconfig"
    unreachable.write_text(cluster.kubeconfig.read_text().replace(cluster.server, f"https://127.0.0.1:{free_port()}"))
    kube = KubeClient(load_configuration(str(unreachable)))
    try:
        reconciler = _reconciler(kube, namespace, audit_seconds=0, emitted=[])
        audit = await reconciler.audit.run(index, NO_VIEWS, read=reconciler.schedule.take_audit(time.monotonic()))
        assert audit.fresh is None and audit.error, "an unreachable API must be reported, not read as empty"
        assert {p.uid for p in audit.pods} == {p.uid for p in index}
    finally:
        await kube.close()
