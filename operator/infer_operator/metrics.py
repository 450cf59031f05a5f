"""Prometheus metrics of the operator (served by `infer-operator run --metrics-port`).

Every metric the chart's dashboard and alerts use is defined here (a chart test reads this module).
Counters count since the process started; a standby replica (kopf peering) exports zeros and
`infer_operator_active 0` (kopf_hooks/logs.py follows kopf's pauses).
"""

from __future__ import annotations

import platform

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from infer_operator import __version__

RECONCILES = Counter("infer_operator_reconciles_total", "Reconcile passes", ["result"])
RECONCILE_DURATION = Histogram(
    "infer_operator_reconcile_duration_seconds",
    "Duration of one reconcile pass of one InferenceService",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
ROLE_RESTARTS = Counter("infer_operator_role_restarts_total", "Pods restarted to change role")
ROLLOUT_RESTARTS = Counter("infer_operator_rollout_restarts_total", "Pods restarted to update them to a new template")
VANISHED_PODS = Counter(
    "infer_operator_vanished_pods_total",
    "Pods the watch cache still held after the API had deleted them (missed deletions)",
)
REGISTRATIONS = Counter("infer_operator_registrations_total", "Instances registered", ["backend"])
DEREGISTRATIONS = Counter("infer_operator_deregistrations_total", "Instances deregistered", ["backend", "cause"])
STALE_REMOVED = Counter("infer_operator_stale_removed_total", "Stale entries removed by the sweep", ["backend", "what"])
REGISTRY_ERRORS = Counter("infer_operator_registry_errors_total", "Failed registry calls", ["backend", "operation"])
REGISTRY_LATENCY = Histogram(
    "infer_operator_registry_request_duration_seconds",
    "Duration of one registry call, by backend and operation",
    ["backend", "operation"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
INCOMPLETE_CLEANUPS = Counter(
    "infer_operator_incomplete_cleanups_total",
    "Objects let go although their registry data could not be cleaned, or whose finalizer could not be removed",
    ["kind", "reason"],
)
DEREGISTRATION_LATENCY = Histogram(
    "infer_operator_deregistration_seconds",
    "From a pod's deletionTimestamp to its confirmed deregistration",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)
PODS_HELD = Gauge(
    "infer_operator_pods_held", "Deleted pods held by the operator's finalizer while their deregistration is under way"
)
SERVICE_RECORDS = Gauge(
    "infer_operator_service_records",
    "InferenceServices the operator keeps a record of: running loops, cleanups after a deletion, "
    "releases of their pods (records.py)",
)
REGISTRY_CLIENTS = Gauge(
    "infer_operator_registry_clients",
    "Registry clients open: one per InferenceService with a registry in use, and one while a "
    "registry moved away from is cleaned",
)
ACTIVE = Gauge("infer_operator_active", "1 on the replica that acts, 0 on a standby (kopf peering)")
BUILD_INFO = Gauge("infer_operator_build_info", "The operator's version (always 1)", ["version", "python"])
SERVICE_DESIRED = Gauge(
    "infer_operator_service_desired_replicas", "spec.replicas of an InferenceService", ["namespace", "service"]
)
SERVICE_READY = Gauge(
    "infer_operator_service_ready_replicas", "Ready pods of an InferenceService", ["namespace", "service"]
)
SERVICE_REGISTERED = Gauge(
    "infer_operator_service_registered_instances",
    "Instances of an InferenceService in its registry",
    ["namespace", "service"],
)
SERVICE_GAUGES = (SERVICE_DESIRED, SERVICE_READY, SERVICE_REGISTERED)
KOPF_HOOKS = Gauge(
    "infer_operator_kopf_hook_installed",
    "1 when a hook into kopf's internals is installed, 0 when it fell back to kopf's own behaviour (kopf_hooks/)",
    ["hook"],
)

# The label values of the labelled counters the chart's alerts read. Their series exist from start-up,
# at 0: a series that first appears at 1 has no earlier sample, so increase() and rate() see no
# increase, and the first incident after every restart or failover would never alert.
INCOMPLETE_CLEANUP_REASONS = {
    "Pod": ("DeregistrationTimedOut", "DeregistrationSkipped", "DeregistrationFailed", "FinalizerNotRemoved"),
    "InferenceService": ("RegistryCleanupAbandoned", "FinalizerNotRemoved"),
}
RECONCILE_RESULTS = ("ok", "error")
REGISTRY_ERROR_OPERATIONS = ("sync", "sweep", "deregister")  # per backend: registry/backends.py starts them


def start_registry_series(backends: list[str]) -> None:
    """The registry error counters of every backend, at 0 (called where the backends are known)."""
    for backend in backends:
        for operation in REGISTRY_ERROR_OPERATIONS:
            REGISTRY_ERRORS.labels(backend, operation)


BUILD_INFO.labels(__version__, platform.python_version()).set(1)
ACTIVE.set(1)
for _kind, _reasons in INCOMPLETE_CLEANUP_REASONS.items():
    for _reason in _reasons:
        INCOMPLETE_CLEANUPS.labels(_kind, _reason)
for _result in RECONCILE_RESULTS:
    RECONCILES.labels(_result)


def forget_service(namespace: str, service: str) -> None:
    """Drop a deleted InferenceService's series (a gauge would otherwise report it for ever)."""
    for gauge in SERVICE_GAUGES:
        try:
            gauge.remove(namespace, service)
        except KeyError:
            pass


def serve(port: int) -> None:
    start_http_server(port)
