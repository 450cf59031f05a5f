"""The pod index audited against the API: ghosts dropped, strays taken back.

kopf relists after a "410 Gone" (an API server restart, a long disconnect) without dropping objects
deleted in the gap, so such a ghost would count as unavailable forever and stall every role flip.
When the schedule says (the first pass, after a relist, as a long backstop), the service's pods are
read from the API: pods of the index the read lacks are set aside for good (uids never return),
and pods that left the watch holding our finalizer are handed to the releaser.

State: the uids set aside.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from infer_operator import kinds, labels, metrics
from infer_operator.clients.kube import KubeClient, KubeError
from infer_operator.podview import PodView
from infer_operator.registration.releaser import PodReleaser
from infer_operator.registration.sharing import Views


async def read_service_pods(kube: KubeClient, namespace: str, name: str) -> list[PodView]:
    """The service's pods as the API has them now (by the service label, not the watch's).
    Raises KubeError."""
    bodies = await kube.list(
        kinds.POD.api_version, kinds.POD.kind, namespace, label_selector=f"{labels.LABEL_SERVICE}={name}"
    )
    return [PodView.from_body(body) for body in bodies]


def vanished_pods(indexed: Sequence[PodView], fresh: Sequence[PodView]) -> list[PodView]:
    """Pods of the index that a later read of the API does not list: deleted (uids never return).

    Only sound when `indexed` was taken before the read started; a pod the read lists but the
    index lacks is merely not seen yet, and is none of this function's business.
    """
    listed = {pod.uid for pod in fresh}
    return [pod for pod in indexed if pod.uid not in listed]


@dataclass(frozen=True)
class AuditResult:
    pods: list[PodView]  # the index's pods, ghosts left out
    fresh: list[PodView] | None  # the read, when one was made and succeeded
    error: str | None = None  # why a read that was due could not be made


@dataclass
class PodAudit:
    kube: KubeClient
    namespace: str
    name: str
    logger: logging.Logger | logging.LoggerAdapter
    releaser: PodReleaser
    vanished: set[str] = field(default_factory=set)

    async def run(self, pods: Sequence[PodView], views: Views, *, read: bool) -> AuditResult:
        """Leave out the ghosts found so far; with `read`, read the pods first to find more and
        take back strays. A failed read drops nothing."""
        self.vanished &= {pod.uid for pod in pods}  # kopf forgot them too
        fresh: list[PodView] | None = None
        error: str | None = None
        if read:
            try:
                fresh = await read_service_pods(self.kube, self.namespace, self.name)
            except KubeError as exc:
                error = str(exc)
            else:
                for stray in (p for p in fresh if not p.managed and labels.POD_FINALIZER in p.finalizers):
                    await self.releaser.reclaim(stray, views)
                for pod in vanished_pods(pods, fresh):
                    if pod.uid not in self.vanished:
                        self.vanished.add(pod.uid)
                        metrics.VANISHED_PODS.inc()
                        self.logger.warning(
                            f"Pod {pod.name} ({pod.uid}) of {self.name} is gone from the API but "
                            f"still in the watch cache (its deletion was missed); ignoring it."
                        )
        return AuditResult([pod for pod in pods if pod.uid not in self.vanished], fresh, error)
