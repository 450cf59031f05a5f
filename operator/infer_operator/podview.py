"""A small, immutable view of a pod: the only facts the operator's decisions need.

The pod index keeps these instead of whole pod bodies, which keeps memory flat at thousands of pods.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from infer_operator import labels

# The end of the registration mark's message before the IP it names (reconcile/readiness.py writes it).
MARK_AT = " at "


def parse_time(value: str | None) -> datetime.datetime | None:
    if not value:
        return None
    try:
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def ordinal_of(name: str, pod_labels: dict[str, str]) -> int | None:
    raw = pod_labels.get(labels.LABEL_POD_INDEX)
    if raw is None:
        raw = name.rsplit("-", 1)[-1] if "-" in name else None
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


def _named_port(pod_spec: dict[str, Any]) -> int | None:
    for container in (pod_spec.get("containers") or [])[:1]:
        for port in container.get("ports") or []:
            if port.get("name") == labels.SYNC_PORT_NAME:
                return port.get("containerPort")
    return None


def service_of(name: str, meta: dict[str, Any]) -> str:
    """The InferenceService a pod belongs to: its service label, else (a label of ours was taken
    off by hand or by another controller) its name label or its StatefulSet owner, as long as the
    pod's name is that StatefulSet's `<service>-<ordinal>`; "" when none says."""
    pod_labels = meta.get("labels") or {}
    candidates = [pod_labels.get(labels.LABEL_SERVICE), pod_labels.get(labels.LABEL_NAME)]
    candidates += [
        ref.get("name")
        for ref in meta.get("ownerReferences") or []
        if ref.get("kind") == "StatefulSet" and ref.get("controller")
    ]
    prefix, _, ordinal = name.rpartition("-")
    named_by_set = ordinal.isdigit()
    for candidate in candidates:
        if candidate and (candidate == pod_labels.get(labels.LABEL_SERVICE) or (named_by_set and candidate == prefix)):
            return candidate
    return ""


def lost_labels(service: str, pod_labels: dict[str, str]) -> tuple[str, ...]:
    """The labels of ours (labels.common_labels) a pod of `service` does not carry as set."""
    if not service:
        return ()
    return tuple(sorted(k for k, v in labels.common_labels(service).items() if pod_labels.get(k) != v))


@dataclass(frozen=True)
class PodView:
    name: str
    namespace: str
    uid: str
    service: str
    ordinal: int | None
    role: str | None
    ip: str | None
    ready: bool  # the pod's Ready condition: what Services and the StatefulSet count
    serving: bool  # its containers are ready (ContainersReady): the app answers its probe
    serving_since: datetime.datetime | None  # when its containers became ready
    deleting: bool
    finalizers: tuple[str, ...]
    resource_version: str = ""
    registered: bool = False  # carries the registration mark (labels.CONDITION_REGISTERED)
    registered_ip: str | None = None  # the IP the mark names (None: a mark older than that, or none)
    gate_open: bool = False  # the operator's readiness gate is True (labels.CONDITION_READY)
    managed: bool = True  # carries the managed-by label the operator's watch selects on
    lost: tuple[str, ...] = ()  # labels of ours it does not carry (taken off by hand or another controller)
    revision: str | None = None  # the StatefulSet revision it was made from (controller-revision-hash)
    sync_port: int | None = None  # the serving port it was started with (its named container port)
    grace_seconds: int | None = None  # its terminationGracePeriodSeconds
    node: str | None = None  # spec.nodeName: where it runs
    # The readiness gates of its spec other than the operator's own that are not True (a
    # model-warm gate another controller sets, a load balancer controller's gate): while any is
    # left, the pod is not Ready, and so must not be listed either.
    gates_pending: tuple[str, ...] = ()

    @classmethod
    def from_body(cls, body: Any) -> PodView:
        meta = body.get("metadata") or {}
        status = body.get("status") or {}
        spec = body.get("spec") or {}
        pod_labels = meta.get("labels") or {}
        ready = serving = registered = gate_open = False
        serving_since = None
        registered_ip = None
        gates = {g.get("conditionType") for g in spec.get("readinessGates") or [] if isinstance(g, dict)}
        gates.discard(labels.CONDITION_READY)
        gates.discard(None)
        true_conditions = set()
        for condition in status.get("conditions") or []:
            kind, true = condition.get("type"), condition.get("status") == "True"
            if true:
                true_conditions.add(kind)
            if kind == "Ready":
                ready = true
            elif kind == "ContainersReady":
                serving = true
                serving_since = parse_time(condition.get("lastTransitionTime")) if true else None
            elif kind == labels.CONDITION_REGISTERED:
                registered = true
                message = condition.get("message") or ""
                registered_ip = message.rpartition(MARK_AT)[2] if true and MARK_AT in message else None
            elif kind == labels.CONDITION_READY:
                gate_open = true
        running = status.get("phase") == "Running"
        service = service_of(meta.get("name", ""), meta)
        return cls(
            name=meta.get("name", ""),
            namespace=meta.get("namespace", ""),
            uid=meta.get("uid", ""),
            service=service,
            ordinal=ordinal_of(meta.get("name", ""), pod_labels),
            role=pod_labels.get(labels.LABEL_ROLE),
            ip=status.get("podIP") or None,
            ready=ready and running,
            serving=serving and running,
            serving_since=serving_since if serving and running else None,
            deleting=meta.get("deletionTimestamp") is not None,
            finalizers=tuple(meta.get("finalizers") or ()),
            resource_version=meta.get("resourceVersion", ""),
            registered=registered,
            registered_ip=registered_ip,
            gate_open=gate_open,
            managed=pod_labels.get(labels.LABEL_MANAGED_BY) == labels.MANAGED_BY,
            lost=lost_labels(service, pod_labels),
            revision=pod_labels.get(labels.LABEL_REVISION),
            sync_port=_named_port(spec),
            grace_seconds=spec.get("terminationGracePeriodSeconds"),
            node=spec.get("nodeName") or None,
            gates_pending=tuple(sorted(gates - true_conditions)),
        )

    @property
    def live(self) -> bool:
        """Exists and is not on its way out."""
        return not self.deleting
