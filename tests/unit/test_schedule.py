"""The periodic work of a service's loop: long backstops, the audit at once after a relist, and
the hook that sees kopf's pods watch list again."""

from __future__ import annotations

import contextvars
from types import SimpleNamespace

from infer_operator.handlers import watchstream
from infer_operator.reconcile.schedule import Schedule


def test_the_first_pass_audits_and_sweeps_then_both_wait_their_interval():
    schedule = Schedule(resync_seconds=3600, audit_seconds=3600, sweep_seconds=60, last_resync=0.0)
    due = schedule.take(0.0, sweeps=True)
    assert (due.resync, due.sweep) == (False, True)  # the first pass applies anyway (spec generation)
    assert schedule.take_audit(0.0)
    assert not schedule.take_audit(10.0)
    assert schedule.next_in(10.0, sweeps=True) == 50.0
    assert schedule.next_in(10.0, sweeps=False) == 3590.0


def test_an_audit_asked_for_comes_when_due_and_once():
    schedule = Schedule(resync_seconds=3600, audit_seconds=3600, sweep_seconds=60, last_resync=0.0)
    schedule.take_audit(0.0)
    schedule.request_audit(5.0)  # after a relist: now
    assert schedule.next_in(5.0, sweeps=False) == 0.0
    assert schedule.take_audit(5.0)
    assert not schedule.take_audit(6.0)
    assert schedule.next_in(6.0, sweeps=False) == 3594.0  # the resync, due an hour after 0
    schedule.request_audit(10.0, 5.0)  # after a failed read: soon, not at once
    assert schedule.next_in(10.0, sweeps=False) == 5.0
    assert not schedule.take_audit(10.0)
    schedule.request_audit(11.0)  # a relist meanwhile: the sooner wins
    assert schedule.take_audit(11.0)


class _Resource(SimpleNamespace):
    pass


def _fake_kopf(monkeypatch, streams):
    """kopf's watching module as the hook sees it: each infinite_watch call plays one stream."""
    from kopf._cogs.clients import watching

    mark = watching.Bookmark.LISTED
    plays = iter(streams)

    async def infinite_watch(*, settings=None, resource, namespace, operator_paused=None):
        for item in next(plays):
            yield mark if item == "LISTED" else item

    monkeypatch.setattr(watching, "infinite_watch", infinite_watch)
    return watching


async def test_the_hook_reports_each_listing_of_the_pods_watch_after_the_first(monkeypatch):
    watching = _fake_kopf(monkeypatch, [["a", "LISTED", "b", "LISTED", "c", "LISTED"], ["LISTED", "LISTED"]])
    seen: list = []
    assert watchstream.install(seen.append)
    assert watchstream.install(seen.append)  # installing twice wraps once
    pods = _Resource(group="", plural="pods")
    items = [item async for item in watching.infinite_watch(settings=None, resource=pods, namespace="team")]
    assert items[:2] == ["a", watching.Bookmark.LISTED]  # the stream passes through
    assert seen == ["team", "team"]
    # Another kind's listings (here InferenceServices) are none of the audit's business.
    crs = _Resource(group="serving.infer-operator.io", plural="inferenceservices")
    assert [item async for item in watching.infinite_watch(settings=None, resource=crs, namespace="team")]
    assert seen == ["team", "team"]


async def test_a_relist_reaches_every_running_loop_of_its_namespace():
    from infer_operator.runtime import ServiceRecords

    records = ServiceRecords(lambda ns, name: None)  # type: ignore[arg-type, return-value]
    a, b, idle = records.record("team", "a"), records.record("other", "b"), records.record("team", "idle")
    for record in (a, b):
        record.reconciler = SimpleNamespace(schedule=Schedule())
        record.wakeup.take()
    records.relisted("team")
    assert a.reconciler.schedule.audit_due_at is not None and a.wakeup.event.is_set()
    assert b.reconciler.schedule.audit_due_at is None and not b.wakeup.event.is_set()
    assert idle.reconciler is None  # its loop audits on its first pass anyway
    records.relisted(None)
    assert b.reconciler.schedule.audit_due_at is not None


async def test_objects_are_slimmed_as_they_pass(monkeypatch):
    pod = {"metadata": {"name": "llm-0", "managedFields": [{"manager": "kubelet"}], "labels": {"a": "b"}},
           "spec": {"containers": [{"name": "model", "image": "x", "env": [{"name": "A"}]}], "volumes": []},
           "status": {"phase": "Running", "containerStatuses": [{}]}}
    service = {"metadata": {"name": "llm", "managedFields": [{}]}, "spec": {"ports": [{"port": 80}]}}
    crd = {"metadata": {"name": "x", "managedFields": [{}]}, "spec": {"group": "g"}}
    watching = _fake_kopf(monkeypatch, [[{"type": "ADDED", "object": pod}], [{"type": None, "object": service}],
                                        [{"type": None, "object": crd}]])
    watchstream.install(lambda namespace: None)
    [event] = [item async for item in watching.infinite_watch(resource=_Resource(group="", plural="pods"),
                                                              namespace=None)]
    assert event["object"] == {"metadata": {"name": "llm-0", "labels": {"a": "b"}},
                               "spec": {"containers": [{"name": "model"}]}, "status": {"phase": "Running"}}
    [event] = [item async for item in watching.infinite_watch(resource=_Resource(group="", plural="services"),
                                                              namespace=None)]
    assert event["object"] == {"metadata": {"name": "llm"}}  # an owned kind: its watch reads the metadata
    [event] = [item async for item in watching.infinite_watch(
        resource=_Resource(group="apiextensions.k8s.io", plural="customresourcedefinitions"), namespace=None)]
    assert event["object"] == {"metadata": {"name": "x"}, "spec": {"group": "g"}}


def test_kopfs_success_line_of_event_handlers_is_dropped_and_nothing_else():
    import logging

    from infer_operator.handlers.setup import QuietEventHandlers

    def record(level, msg):
        return logging.LogRecord("kopf.objects", level, __file__, 1, msg, None, None)

    quiet = QuietEventHandlers()
    assert not quiet.filter(record(logging.INFO, "Handler 'pod_changed' succeeded."))
    assert quiet.filter(record(logging.ERROR, "Handler 'pod_changed' failed with an exception. Will retry."))
    assert quiet.filter(record(logging.INFO, "Daemon 'reconcile' succeeded."))
    assert quiet.filter(record(logging.INFO, "Pod llm-0 of llm takes the sync role (ordinal 0)."))


async def test_pod_events_reach_the_early_hook_before_kopf_and_its_errors_stay_out_of_the_stream(monkeypatch):
    pod = {"metadata": {"name": "llm-0"}}
    watching = _fake_kopf(monkeypatch, [[{"type": "MODIFIED", "object": pod}, "LISTED"],
                                        [{"type": "MODIFIED", "object": {"metadata": {"name": "llm"}}}]])
    seen: list = []

    def hook(event):
        seen.append(event["object"]["metadata"]["name"])
        raise RuntimeError("a bug in the hook")

    watchstream.install(lambda namespace: None, hook)
    items = [item async for item in watching.infinite_watch(resource=_Resource(group="", plural="pods"),
                                                            namespace="team")]
    assert len(items) == 2 and seen == ["llm-0"]  # kopf still gets the event
    [_] = [item async for item in watching.infinite_watch(resource=_Resource(group="", plural="services"),
                                                          namespace="team")]
    assert seen == ["llm-0"]  # only pods


def test_a_deleted_pod_holding_our_finalizer_is_released_from_the_watch_stream(monkeypatch):
    from infer_operator import labels
    from infer_operator.handlers import pods
    from infer_operator.registration.sharing import NO_VIEWS
    from infer_operator.runtime import RUNTIME

    handled: list = []
    queue: contextvars.ContextVar[str] = contextvars.ContextVar("queue")  # kopf's event queue, per object

    def handle(pod, views):
        handled.append((pod.name, queue.get("none")))

    monkeypatch.setattr(type(RUNTIME), "releaser", SimpleNamespace(handle=handle))

    def event(name, *, deleting=True, finalizers=(labels.POD_FINALIZER,)):
        meta = {"name": name, "namespace": "team", "uid": name, "finalizers": list(finalizers),
                "labels": {labels.LABEL_SERVICE: "llm", labels.LABEL_MANAGED_BY: labels.MANAGED_BY}}
        if deleting:
            meta["deletionTimestamp"] = "2026-11-29T00:00:00Z"
        return {"type": "MODIFIED", "object": {"metadata": meta}}

    monkeypatch.setattr(RUNTIME, "views", None)
    pods.release_early(event("before-any-handler"))  # kopf's handler releases it: the indexes are not known yet
    monkeypatch.setattr(RUNTIME, "views", NO_VIEWS)
    handler_context = contextvars.copy_context()
    handler_context.run(queue.set, "kopf's")
    monkeypatch.setattr(RUNTIME, "handler_context", handler_context)
    pods.release_early(event("llm-0"))
    pods.release_early(event("llm-1", deleting=False))
    pods.release_early(event("llm-2", finalizers=()))
    # A DELETED event still showing our finalizer is a relabelled pod's previous state: kopf's
    # handler reads the pod before anything is released.
    pods.release_early({**event("llm-3"), "type": "DELETED"})
    # Started in the handler's context: where kopf.event finds its queue (the release posts events).
    assert handled == [("llm-0", "kopf's")]
