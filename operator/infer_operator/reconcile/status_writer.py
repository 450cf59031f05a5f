"""A service's status, as a pass reports it: written only when it changed and at most every
`interval` seconds unless the spec changed, the service's gauges, and an event when it becomes
degraded or recovers.

State: when the last status was written, whether a write failed (write again soon), how long a
held-back write waits, and the problem last reported.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from infer_operator import labels, metrics
from infer_operator.api.v1alpha1 import InferenceServiceSpec
from infer_operator.clients.kube import KubeClient, KubeError
from infer_operator.reconcile.status import Problem, status_changed
from infer_operator.reconcile.step import RETRY_SOON_SECONDS, EmitEvent

# Status writes of one service are at least this far apart, unless the spec changed: while pods
# start or go, every pass sees new counts, and a cold start wrote several statuses per pod
# (bench/README.md). The last status is always written, once the interval has passed.
STATUS_INTERVAL_SECONDS = 2.0


@dataclass
class StatusWriter:
    kube: KubeClient
    namespace: str
    name: str
    logger: logging.Logger | logging.LoggerAdapter
    emit: EmitEvent
    interval: float = STATUS_INTERVAL_SECONDS
    written_at: float = -float("inf")  # time.monotonic() of the last status write
    pending: bool = False  # the last write failed: write again soon
    deferred: float | None = None  # seconds until a status held back by the interval is written
    last_problem: Problem | None = None

    async def write(self, previous: dict[str, Any], desired: dict[str, Any], spec: InferenceServiceSpec | None) -> bool:
        """Export the gauges and write the status if it changed (see the module); False when the
        InferenceService is gone."""
        self._export(spec, desired)
        self.pending = False
        self.deferred = None
        if not status_changed(previous, desired):
            return True
        wait = self.written_at + self.interval - time.monotonic()
        if wait > 0 and previous.get("observedGeneration") == desired.get("observedGeneration"):
            self.deferred = wait
            return True
        try:
            await self.kube.merge_patch(
                labels.API_VERSION, labels.KIND, self.namespace, self.name, {"status": desired}, subresource="status"
            )
        except KubeError as exc:
            if exc.not_found:
                return False
            self.logger.warning(f"Could not write the status of {self.name}, will retry: {exc}")
            self.pending = True
            return True
        self.written_at = time.monotonic()
        return True

    @property
    def retry_in(self) -> float | None:
        """Seconds until the status wants another pass (a failed or held-back write), if any."""
        if self.pending:
            return RETRY_SOON_SECONDS
        return self.deferred

    def _export(self, spec: InferenceServiceSpec | None, status: dict[str, Any]) -> None:
        """Per-service gauges, from the status just computed."""
        if spec is not None:
            metrics.SERVICE_DESIRED.labels(self.namespace, self.name).set(spec.replicas)
        metrics.SERVICE_READY.labels(self.namespace, self.name).set(status.get("readyReplicas") or 0)
        metrics.SERVICE_REGISTERED.labels(self.namespace, self.name).set(status.get("registered") or 0)

    def report_problem(self, problem: Problem | None) -> None:
        """An event and a log line when the service becomes degraded, changes why, or recovers."""
        if problem == self.last_problem:
            return
        if problem is not None:
            self.logger.error(f"InferenceService {self.name} is degraded: {problem.reason}: {problem.message}")
            self.emit("Warning", problem.reason, problem.message)
        elif self.last_problem is not None:
            self.logger.info(f"InferenceService {self.name} recovered from {self.last_problem.reason}.")
            self.emit("Normal", "Recovered", f"recovered from {self.last_problem.reason}")
        self.last_problem = problem
