"""handlers/pods.py: a deleted pod holding our finalizer starts its release as its event passes
the watch stream (release_early), before kopf queues it."""

from __future__ import annotations

from types import SimpleNamespace

from infer_operator import labels
from infer_operator.handlers import pods
from infer_operator.registration.sharing import NO_VIEWS
from infer_operator.runtime import RUNTIME


def test_a_deleted_pod_holding_our_finalizer_is_released_from_the_watch_stream(monkeypatch):
    handled: list = []
    monkeypatch.setattr(type(RUNTIME), "releaser", SimpleNamespace(handle=lambda pod, views: handled.append(pod.name)))

    def event(name, *, deleting=True, finalizers=(labels.POD_FINALIZER,)):
        meta = {
            "name": name,
            "namespace": "team",
            "uid": name,
            "finalizers": list(finalizers),
            "labels": labels.common_labels("llm"),
        }
        if deleting:
            meta["deletionTimestamp"] = "2026-11-29T00:00:00Z"
        return {"type": "MODIFIED", "object": {"metadata": meta}}

    monkeypatch.setattr(RUNTIME, "views", None)
    monkeypatch.setattr(RUNTIME, "pending_releases", {})
    pods.release_early(event("before-any-handler"))  # the indexes are not complete yet: it waits
    assert handled == [] and list(RUNTIME.pending_releases) == ["before-any-handler"]
    monkeypatch.setattr(RUNTIME, "views", NO_VIEWS)
    pods.release_early(event("llm-0"))
    pods.release_early(event("llm-1", deleting=False))
    pods.release_early(event("llm-2", finalizers=()))
    # A DELETED event still showing our finalizer is a relabelled pod's previous state: kopf's
    # handler reads the pod before anything is released.
    pods.release_early({**event("llm-3"), "type": "DELETED"})
    assert handled == ["llm-0"]


async def test_deletions_seen_before_the_first_handler_are_released_by_it(monkeypatch):
    """After a (re)start, kopf lists every pod and runs no handler before its indexes are complete:
    the pods deleted while the operator was away are released first thing after that."""
    handled: list = []
    monkeypatch.setattr(type(RUNTIME), "releaser", SimpleNamespace(handle=lambda pod, views: handled.append(pod.name)))
    monkeypatch.setattr(RUNTIME, "views", None)
    monkeypatch.setattr(RUNTIME, "pending_releases", {})
    meta = {
        "name": "llm-1",
        "namespace": "team",
        "uid": "u1",
        "finalizers": [labels.POD_FINALIZER],
        "deletionTimestamp": "2026-11-29T00:00:00Z",
        "labels": labels.common_labels("llm"),
    }
    pods.release_early({"type": None, "object": {"metadata": meta}})  # from the first listing
    assert handled == []
    other = {"metadata": {**meta, "name": "llm-0", "uid": "u0", "finalizers": [], "deletionTimestamp": None}}
    await pods.pod_changed(
        event={"type": None, "object": other},
        body=other,
        namespace="team",
        pods_by_service={},
        services_by_place={},
        nodes_by_name={},
    )
    assert handled == ["llm-1"] and RUNTIME.pending_releases == {} and RUNTIME.views is not None
