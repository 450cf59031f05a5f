"""InferenceServices: one long-lived reconcile loop per object (a kopf daemon), an index by registry
place (who shares a registry service), and the start of the cleanup when one is deleted.

The loop is level-triggered: it wakes on any event about the object, its pods or its owned
objects, or when its periodic work is due at the latest, and recomputes everything from what is
there. Bursts of events coalesce into one pass. kopf keeps no bookkeeping of its own on the object
(no on.create/update/delete handlers): the operator's finalizer is added and removed by the
operator, so kopf's annotations can never make an object too large to update.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import kopf

from infer_operator import labels, metrics
from infer_operator.clients.events import reference
from infer_operator.reconcile.reconciler import ServiceReconciler
from infer_operator.reconcile.schedule import Schedule
from infer_operator.registration.releaser import registries_of
from infer_operator.registration.sharing import Views
from infer_operator.runtime import RUNTIME

# How long a woken loop waits for more of the same burst of events before its pass: without it a
# service ran about one pass per pod event, and those passes held the event loop while deletion
# events waited to be read (bench/README.md, deregistration).
COALESCE_SECONDS = 0.05


@kopf.index(labels.GROUP, labels.VERSION, labels.PLURAL)
async def services_by_place(body: kopf.Body, namespace: str, name: str, **_: Any) -> dict[Any, tuple[str, str]] | None:
    """(namespace, name) of each InferenceService, keyed by the registry place it registers at."""
    current, _retired = registries_of(body)
    place = current.place(name) if current is not None else None
    return {place: (namespace, name)} if place is not None else None


@kopf.on.event(labels.GROUP, labels.VERSION, labels.PLURAL)
async def inferenceservice_changed(
    body: kopf.Body,
    namespace: str,
    name: str,
    pods_by_service: kopf.Index,
    services_by_place: kopf.Index,
    nodes_by_name: kopf.Index,
    **_: Any,
) -> None:
    # Spec changes are noticed by generation inside the pass; this only makes it prompt. (A
    # coroutine: kopf runs plain functions in threads, and the cleanup starts a task on this loop.)
    RUNTIME.services.poke(namespace, name)
    if body.get("metadata", {}).get("deletionTimestamp"):
        RUNTIME.service_releaser.handle(body, Views(pods_by_service, services_by_place, nodes_by_name))


@kopf.daemon(labels.GROUP, labels.VERSION, labels.PLURAL, id="reconcile", cancellation_timeout=10.0)
async def reconcile_loop(
    stopped: kopf.DaemonStopped,
    body: kopf.Body,
    namespace: str,
    name: str,
    uid: str,
    logger: logging.Logger,
    pods_by_service: kopf.Index,
    services_by_place: kopf.Index,
    nodes_by_name: kopf.Index,
    **_: Any,
) -> None:
    records = RUNTIME.services
    record = records.hold(namespace, name, uid)
    waker = record.wakeup
    waker.poke(objects=True)
    views = Views(pods_by_service, services_by_place, nodes_by_name)
    involved = reference(labels.API_VERSION, labels.KIND, namespace, name, uid)

    def post(event_type: str, reason: str, message: str) -> None:
        RUNTIME.events.post(involved, event_type, reason, message)

    options = RUNTIME.options
    reconciler = ServiceReconciler(
        RUNTIME.kube,
        record,
        logger,
        post,
        releaser=RUNTIME.releaser,
        owned=RUNTIME.owned,
        post_event=RUNTIME.events.post,
        release_url=options.release_url,
        cleanup_timeout=options.cleanup_timeout_seconds,
        schedule=Schedule(
            resync_seconds=options.resync_seconds,
            audit_seconds=options.audit_seconds,
            sweep_seconds=options.sweep_seconds,
        ),
    )
    record.reconciler = reconciler

    async def relay_stop() -> None:
        await stopped.wait()
        waker.event.set()

    relay = asyncio.create_task(relay_stop())
    try:
        while not stopped:
            try:
                async with RUNTIME.pass_slots:
                    apply_objects = waker.take()
                    pods = views.pods_of(namespace, name)
                    with metrics.RECONCILE_DURATION.time():
                        retry = await reconciler.run_pass(body, pods, apply_objects, views)
                metrics.RECONCILES.labels("ok").inc()
            except Exception:  # noqa: BLE001 - one bad pass must not end the loop
                metrics.RECONCILES.labels("error").inc()
                logger.exception(f"Reconciling {name} failed unexpectedly; retrying.")
                retry = 5.0
                waker.objects = True
            # The reconciler says when its periodic work (resync, audit, sweep) is next due.
            timeout = retry if retry is not None else RUNTIME.options.resync_seconds
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(waker.event.wait(), timeout=timeout)
            if waker.event.is_set() and not stopped:
                # Events come in bursts (a pod's start is several, a rollout or a drain many):
                # let the rest of one arrive, for one pass instead of one per event.
                await asyncio.sleep(COALESCE_SECONDS)
    finally:
        relay.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await relay
        record.reconciler = None
        metrics.forget_service(namespace, name)
        # kopf stops the loop when the deletion starts: the cleanup takes the record over before
        # the loop lets go of it (started by the deletion's event already, or here), so the
        # registry client built while the credentials Secret was there stays for the cleanup.
        RUNTIME.service_releaser.handle(body, views)
        await records.let_go(record)
