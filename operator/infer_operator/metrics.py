"""Prometheus metrics of the operator (served by `infer-operator run --metrics-port`)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram, start_http_server

RECONCILES = Counter("infer_operator_reconciles_total", "Reconcile passes", ["result"])
ROLE_RESTARTS = Counter("infer_operator_role_restarts_total", "Pods restarted to change role")
ROLLOUT_RESTARTS = Counter("infer_operator_rollout_restarts_total", "Pods restarted to update them to a new template")
VANISHED_PODS = Counter("infer_operator_vanished_pods_total",
                        "Pods the watch cache still held after the API had deleted them (missed deletions)")
REGISTRATIONS = Counter("infer_operator_registrations_total", "Instances registered", ["backend"])
DEREGISTRATIONS = Counter("infer_operator_deregistrations_total", "Instances deregistered", ["backend", "cause"])
STALE_REMOVED = Counter("infer_operator_stale_removed_total", "Stale entries removed by the sweep", ["backend", "what"])
REGISTRY_ERRORS = Counter("infer_operator_registry_errors_total", "Failed registry calls", ["backend", "operation"])
INCOMPLETE_CLEANUPS = Counter(
    "infer_operator_incomplete_cleanups_total",
    "Objects let go although their registry data could not be cleaned, or whose finalizer could not be removed",
    ["kind", "reason"])
DEREGISTRATION_LATENCY = Histogram(
    "infer_operator_deregistration_seconds",
    "From a pod's deletionTimestamp to its confirmed deregistration",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)


def serve(port: int) -> None:
    start_http_server(port)
