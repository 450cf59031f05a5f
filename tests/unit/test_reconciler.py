"""The reconcile pass as a whole against an in-memory API and registry: the first pass, an unchanged
world that writes nothing, the status written at most every interval unless the spec changed, the
audit asked for after a relist or a failed read, a paused service, the per-service gauges, and
template fields stored before the API refused them. What each part of the pass writes, and how it
takes API faults, is tested with the part (test_objects.py, test_podwrites.py,
test_registry_sync.py); the real API server runs these paths in tests/integration."""

from __future__ import annotations

import time

from infer_operator import kinds, labels
from tests.support.reconcile_world import ETCD, NAME, NS, World, pod_body


async def test_first_pass_applies_the_owned_objects_labels_pods_and_writes_status():
    world = World(replicas=2, syncReplicas=1)
    world.add_pods(pod_body(0), pod_body(1))
    await world.run(apply_objects=True)

    assert world.kube.count("apply") == 4
    assert world.kube.obj("apps/v1", "StatefulSet", NS, NAME)["spec"]["replicas"] == 2
    assert [world.pod(i)["metadata"]["labels"][labels.LABEL_ROLE] for i in (0, 1)] == ["sync", "async"]
    assert world.pod(0)["metadata"]["annotations"][labels.ANNOTATION_SYNC_REPLICAS] == "1"
    assert labels.POD_FINALIZER not in world.pod(0)["metadata"]["finalizers"]  # registry none: no finalizer
    assert world.status()["observedGeneration"] == 1


async def test_an_unchanged_world_writes_nothing_on_the_next_pass():
    world = World(replicas=2, syncReplicas=1)
    world.add_pods(pod_body(0, "sync"), pod_body(1, "async"))
    await world.run(apply_objects=True)
    await world.run()  # the status write of the first pass is seen now
    writes = len(world.kube.calls)
    await world.run()
    assert world.kube.calls[writes:] == []


# -- the status: written when it changed, spaced, and the end of the loop --------------------------


async def test_status_writes_are_spaced_unless_the_spec_changed():
    world = World(replicas=2, syncReplicas=1)
    world.reconciler.status.interval = 3600.0
    world.add_pods(pod_body(0, "sync"), pod_body(1, "async", ready=False))
    await world.run(apply_objects=True)  # the first status is written at once
    writes = world.kube.count("patch/status", labels.KIND)
    assert writes == 1
    world.kube.put(pod_body(1, "async"))  # new counts: held back, and the pass says when to write
    retry = await world.run()
    assert world.kube.count("patch/status", labels.KIND) == writes
    assert 3500 < retry <= 3600
    world.patch_spec(replicas=3)  # a spec change is acknowledged at once
    await world.run()
    assert world.kube.count("patch/status", labels.KIND) == writes + 1
    assert world.status()["observedGeneration"] == 2
    world.reconciler.status.written_at -= 3600  # the interval has passed: the held-back counts go out
    world.kube.put(pod_body(2, "async"))
    await world.run()
    assert world.kube.count("patch/status", labels.KIND) == writes + 2


async def test_the_status_write_of_a_deleted_service_ends_the_loop():
    world = World(replicas=1)
    world.kube.fail("patch", 404, kind=labels.KIND)
    assert await world.run(apply_objects=True) is None


# -- the audit of the pod index --------------------------------------------------------------------


async def test_a_relist_makes_the_next_pass_audit():
    world = World(replicas=1)
    await world.run(apply_objects=True)
    await world.run()
    assert world.kube.count("list", "Pod") == 1
    world.reconciler.request_audit(time.monotonic())  # as records.relisted asks it
    await world.run()
    assert world.kube.count("list", "Pod") == 2


async def test_an_audit_whose_read_failed_is_tried_again_soon_not_in_an_hour():
    world = World(replicas=1)
    world.kube.fail("list", 500, kind="Pod")
    retry = await world.run(apply_objects=True)
    assert retry is not None and retry <= 5.0
    world.reconciler.schedule.audit_due_at -= 10  # the retry is due
    await world.run()
    assert world.kube.count("list", "Pod") == 2


# -- day one: pause, url, per-service gauges -------------------------------------------------------


async def test_a_paused_service_changes_nothing_says_so_and_resumes():
    world = World(replicas=2, syncReplicas=1)
    key = (kinds.INFERENCE_SERVICE.api_version, labels.KIND, NS, NAME)
    world.kube.objects[key]["metadata"]["annotations"] = {labels.ANNOTATION_PAUSED: "true"}
    world.add_pods(pod_body(0), pod_body(1))
    await world.run(apply_objects=True)
    assert world.kube.count("apply") == 0 and world.kube.count("patch", "Pod") == 0
    progressing = world.condition("Progressing")
    assert (progressing["status"], progressing["reason"]) == ("False", "Paused")
    assert world.status()["url"] == f"http://{NAME}.{NS}.svc:8000"
    world.kube.objects[key]["metadata"]["annotations"] = {}
    await world.run()
    assert world.kube.count("apply") == 4
    assert world.pod(0)["metadata"]["labels"][labels.LABEL_ROLE] == "sync"
    assert [e[1] for e in world.events] == ["Paused", "Resumed"]


async def test_per_service_gauges_follow_the_status_and_go_with_the_service():
    from infer_operator import metrics

    world = World(replicas=2, syncReplicas=2, registry=ETCD)
    world.add_pods(*(pod_body(i, "sync", finalizers=(labels.POD_FINALIZER,), registered=True) for i in range(2)))
    await world.run(apply_objects=True)
    assert metrics.SERVICE_DESIRED.labels(NS, NAME)._value.get() == 2
    assert metrics.SERVICE_READY.labels(NS, NAME)._value.get() == 2
    assert metrics.SERVICE_REGISTERED.labels(NS, NAME)._value.get() == 2
    metrics.forget_service(NS, NAME)
    assert (NS, NAME) not in metrics.SERVICE_READY._metrics


async def test_a_template_stored_before_the_api_refused_operator_fields_still_works_and_is_reported():
    world = World(replicas=1)
    key = (kinds.INFERENCE_SERVICE.api_version, labels.KIND, NS, NAME)
    world.kube.objects[key]["spec"]["template"]["spec"]["containers"][0]["readinessProbe"] = {
        "httpGet": {"path": "/h", "port": 8000}
    }
    await world.run(apply_objects=True)
    await world.run(apply_objects=True)
    sts = world.kube.obj("apps/v1", "StatefulSet", NS, NAME)
    assert sts["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["exec"]  # ours
    assert [e[1] for e in world.events] == ["TemplateFieldsReplaced"]  # once
    assert "spec.sync.readinessProbe" in world.events[0][2]
