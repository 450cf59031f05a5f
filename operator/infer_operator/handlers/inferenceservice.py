"""InferenceServices: one long-lived reconcile loop per object (a kopf daemon).

The loop is level-triggered: it wakes on any event about the object, its pods or its owned
objects, or after `resync_seconds` at the latest, and recomputes everything from what is there.
Bursts of events coalesce into one pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import kopf
import pydantic

from infer_operator import labels, metrics
from infer_operator.api.v1alpha1 import parse_spec
from infer_operator.reconcile.reconciler import ServiceReconciler
from infer_operator.reconcile.schedule import Schedule
from infer_operator.registration.registrar import RegistryConfigError
from infer_operator.registry.model import RegistryError
from infer_operator.runtime import RUNTIME


@kopf.on.event(labels.GROUP, labels.VERSION, labels.PLURAL)
def inferenceservice_changed(namespace: str, name: str, **_: Any) -> None:
    # Spec changes are noticed by generation inside the pass; this only makes it prompt.
    RUNTIME.services.poke(namespace, name)


@kopf.daemon(labels.GROUP, labels.VERSION, labels.PLURAL, id="reconcile", cancellation_timeout=10.0)
async def reconcile_loop(stopped: kopf.DaemonStopped, body: kopf.Body, namespace: str, name: str,
                         logger: logging.Logger, pods_by_service: kopf.Index, **_: Any) -> None:
    record = RUNTIME.services.record(namespace, name)
    waker = record.wakeup
    waker.poke(objects=True)

    def post(event_type: str, reason: str, message: str) -> None:
        kopf.event(body, type=event_type, reason=reason, message=message)

    options = RUNTIME.options
    reconciler = ServiceReconciler(RUNTIME.kube, record, logger, post, releaser=RUNTIME.releaser,
                                   schedule=Schedule(resync_seconds=options.resync_seconds,
                                                     audit_seconds=options.resync_seconds,
                                                     sweep_seconds=options.sweep_seconds))
    record.reconciler = reconciler

    async def relay_stop() -> None:
        await stopped.wait()
        waker.event.set()

    relay = asyncio.create_task(relay_stop())
    try:
        while not stopped:
            apply_objects = waker.take()
            pods = list(pods_by_service.get((namespace, name), ()))
            try:
                retry = await reconciler.run_pass(body, pods, apply_objects)
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
    finally:
        relay.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await relay
        record.reconciler = None


@kopf.on.delete(labels.GROUP, labels.VERSION, labels.PLURAL, id="registry-cleanup")
async def remove_registry_entries(spec: kopf.Spec, namespace: str, name: str, logger: logging.Logger,
                                  **_: Any) -> None:
    """Deleting an InferenceService removes all its instances and per-IP configs (retried until done)."""
    try:
        parsed = parse_spec(dict(spec))
    except pydantic.ValidationError:
        return  # never valid, never registered anything
    if not parsed.registry.in_use:
        return
    record = RUNTIME.services.record(namespace, name)
    record.remember(parsed)
    registrar = record.registrar
    try:
        await registrar.remove_everything(parsed.registry)
    except RegistryConfigError as exc:
        logger.warning(f"Could not clean the registry for {name}: {exc}. Fix it or remove the finalizer.")
        raise kopf.TemporaryError(str(exc), delay=30) from None
    except RegistryError as exc:
        logger.warning(f"Registry cleanup for {name} failed, will retry: {exc}")
        raise kopf.TemporaryError(str(exc), delay=10) from None
    finally:
        await registrar.close()
