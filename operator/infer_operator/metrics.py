"""Prometheus metrics of the operator (served by `infer-operator run --metrics-port`).

Every metric the chart's dashboard and alerts use is defined here (a chart test reads this module).
Counters count since the process started; a standby replica (kopf peering) exports zeros and
`infer_operator_active 0`.
"""

from __future__ import annotations

import logging
import platform

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from infer_operator import __version__

RECONCILES = Counter("infer_operator_reconciles_total", "Reconcile passes", ["result"])
RECONCILE_DURATION = Histogram(
    "infer_operator_reconcile_duration_seconds", "Duration of one reconcile pass of one InferenceService",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
ROLE_RESTARTS = Counter("infer_operator_role_restarts_total", "Pods restarted to change role")
ROLLOUT_RESTARTS = Counter("infer_operator_rollout_restarts_total", "Pods restarted to update them to a new template")
VANISHED_PODS = Counter("infer_operator_vanished_pods_total",
                        "Pods the watch cache still held after the API had deleted them (missed deletions)")
REGISTRATIONS = Counter("infer_operator_registrations_total", "Instances registered", ["backend"])
DEREGISTRATIONS = Counter("infer_operator_deregistrations_total", "Instances deregistered", ["backend", "cause"])
STALE_REMOVED = Counter("infer_operator_stale_removed_total", "Stale entries removed by the sweep", ["backend", "what"])
REGISTRY_ERRORS = Counter("infer_operator_registry_errors_total", "Failed registry calls", ["backend", "operation"])
REGISTRY_LATENCY = Histogram(
    "infer_operator_registry_request_duration_seconds", "Duration of one registry call, by backend and operation",
    ["backend", "operation"], buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
INCOMPLETE_CLEANUPS = Counter(
    "infer_operator_incomplete_cleanups_total",
    "Objects let go although their registry data could not be cleaned, or whose finalizer could not be removed",
    ["kind", "reason"])
DEREGISTRATION_LATENCY = Histogram(
    "infer_operator_deregistration_seconds",
    "From a pod's deletionTimestamp to its confirmed deregistration",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)
PODS_HELD = Gauge("infer_operator_pods_held",
                  "Deleted pods held by the operator's finalizer while their deregistration is under way")
ACTIVE = Gauge("infer_operator_active", "1 on the replica that acts, 0 on a standby (kopf peering)")
BUILD_INFO = Gauge("infer_operator_build_info", "The operator's version (always 1)", ["version", "python"])
SERVICE_DESIRED = Gauge("infer_operator_service_desired_replicas", "spec.replicas of an InferenceService",
                        ["namespace", "service"])
SERVICE_READY = Gauge("infer_operator_service_ready_replicas", "Ready pods of an InferenceService",
                      ["namespace", "service"])
SERVICE_REGISTERED = Gauge("infer_operator_service_registered_instances",
                           "Instances of an InferenceService in its registry", ["namespace", "service"])
SERVICE_GAUGES = (SERVICE_DESIRED, SERVICE_READY, SERVICE_REGISTERED)

BUILD_INFO.labels(__version__, platform.python_version()).set(1)
ACTIVE.set(1)


def forget_service(namespace: str, service: str) -> None:
    """Drop a deleted InferenceService's series (a gauge would otherwise report it for ever)."""
    for gauge in SERVICE_GAUGES:
        try:
            gauge.remove(namespace, service)
        except KeyError:
            pass


class PeeringState(logging.Filter):
    """Follows kopf's pauses for a peer of higher priority: kopf announces them only in its log
    (`kopf._core.engines.peering`), so this filter on that logger sets `infer_operator_active`.
    It never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith(("Pausing operations", "Pausing all operators")):
            ACTIVE.set(0)
        elif message.startswith("Resuming operations"):
            ACTIVE.set(1)
        return True


PEERING_LOGGER = "kopf._core.engines.peering"


def follow_peering() -> None:
    """Let `infer_operator_active` follow kopf's pauses (its peering messages are INFO: keep them)."""
    logger = logging.getLogger(PEERING_LOGGER)
    logger.setLevel(logging.INFO)
    logger.addFilter(PeeringState())


def serve(port: int) -> None:
    follow_peering()
    start_http_server(port)
