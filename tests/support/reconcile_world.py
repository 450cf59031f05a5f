"""The world the reconcile tests run a service's passes in: an InferenceService, its pods and a stub
registry over an in-memory API, with the operator's parts wired up as its loop wires them. Shared
by test_reconciler.py and the tests of the pass's parts (test_objects.py, test_podwrites.py,
test_registry_sync.py)."""

from __future__ import annotations

import logging

from devtools.harness import isvc_body
from infer_operator import kinds, labels
from infer_operator.nodeview import NodeView
from infer_operator.podview import PodView
from infer_operator.reconcile.reconciler import ServiceReconciler
from infer_operator.reconcile.schedule import Schedule
from infer_operator.records import ServiceRecords
from infer_operator.registration.registrar import Registrar
from infer_operator.registration.releaser import PodReleaser
from infer_operator.registration.sharing import NO_VIEWS, Views
from tests.support.fakes import FakeKube, StubRegistry

NS = "team"
NAME = "llm"
ETCD = {"type": "etcd", "etcd": {"endpoints": ["http://etcd:2379"]}}


def pod_body(
    ordinal: int,
    role: str | None = None,
    *,
    ready: bool = True,
    ip: str | None = None,
    finalizers: tuple[str, ...] = (),
    registered: bool = False,
    gated: bool = False,
    node: str | None = None,
    gates: dict[str, bool] | None = None,
) -> dict:
    """A running pod; `ready`: its containers are ready. `gated`: it carries the operator's
    readiness gate, still closed (Ready waits for it, as the kubelet rules); otherwise Ready = `ready`."""
    meta_labels = {**labels.common_labels(NAME), labels.LABEL_POD_INDEX: str(ordinal)}
    if role:
        meta_labels[labels.LABEL_ROLE] = role
    since = "2026-01-01T00:00:00Z"
    conditions = [
        {"type": "Ready", "status": "True" if ready and not gated else "False", "lastTransitionTime": since},
        {"type": "ContainersReady", "status": "True" if ready else "False", "lastTransitionTime": since},
    ]
    if registered:
        conditions.append({"type": labels.CONDITION_REGISTERED, "status": "True"})
    if not gated:
        conditions.append({"type": labels.CONDITION_READY, "status": "True"})
    readiness_gates = [{"conditionType": labels.CONDITION_READY}]
    for gate, true in (gates or {}).items():  # the user's own gates, and their conditions
        readiness_gates.append({"conditionType": gate})
        conditions.append({"type": gate, "status": "True" if true else "False"})
    spec: dict = {"readinessGates": readiness_gates}
    if node:
        spec["nodeName"] = node
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{NAME}-{ordinal}",
            "namespace": NS,
            "labels": meta_labels,
            "finalizers": list(finalizers),
        },
        "spec": spec,
        "status": {"phase": "Running", "podIP": ip or f"10.0.0.{ordinal + 10}", "conditions": conditions},
    }


def revised(body: dict, revision: str, *, grace: int | None = None, port: int | None = 8000) -> dict:
    """`body` as a pod of the StatefulSet's `revision`, its sync port named (unless `port` is None)."""
    body["metadata"]["labels"][labels.LABEL_REVISION] = revision
    spec = body.setdefault("spec", {})
    container = {"name": "model"}
    if port is not None:
        container["ports"] = [{"name": labels.SYNC_PORT_NAME, "containerPort": port}]
    spec["containers"] = [container]
    if grace is not None:
        spec["terminationGracePeriodSeconds"] = grace
    return body


class World:
    """An InferenceService, its pods and a stub registry, with the operator's objects wired up."""

    def __init__(self, **spec):
        self.kube = FakeKube()
        self.registry = StubRegistry()
        self.events: list[tuple[str, str, str]] = []
        self.pod_events: list[tuple[str, str, str]] = []
        self.posted: list[tuple[str, str, str, str]] = []  # (pod, type, reason, message) of the pass's pod events
        self.views = NO_VIEWS
        body = self.kube.put(isvc_body(NAME, NS, **{"syncReplicas": None, **spec}))
        self.services = ServiceRecords(
            lambda ns, name: Registrar(self.kube, ns, name, 1.0, connect=lambda *_: self.registry)
        )
        self.releaser = PodReleaser(
            self.kube, self.services, lambda ref, *event: self.pod_events.append(event), timeout=lambda: 1.0
        )
        # Held for the world's life, as the service's loop holds it while it runs.
        self.record = self.services.hold(NS, NAME, body["metadata"]["uid"])
        self.reconciler = ServiceReconciler(
            self.kube,
            self.record,
            logging.getLogger("test"),
            lambda *event: self.events.append(event),
            releaser=self.releaser,
            schedule=Schedule(resync_seconds=3600, audit_seconds=3600, sweep_seconds=3600),
            status_interval=0.0,
            post_event=lambda involved, *event: self.posted.append((involved["name"], *event)),
        )

    def body(self) -> dict:
        return self.kube.obj(kinds.INFERENCE_SERVICE.api_version, labels.KIND, NS, NAME)

    def finalizers(self) -> list[str]:
        return self.body()["metadata"].get("finalizers") or []

    def patch_spec(self, **changes) -> None:
        key = (kinds.INFERENCE_SERVICE.api_version, labels.KIND, NS, NAME)
        body = self.kube.objects[key]
        body["spec"].update(changes)
        body["metadata"]["generation"] += 1

    def add_pods(self, *bodies: dict) -> None:
        for body in bodies:
            self.kube.put(body)

    def index(self) -> list[PodView]:
        return [PodView.from_body(b) for (_, kind, _, _), b in sorted(self.kube.objects.items()) if kind == "Pod"]

    async def run(self, apply_objects: bool = False):
        return await self.reconciler.run_pass(self.body(), self.index(), apply_objects, self.views)

    def nodes(self, **ready: str) -> None:
        """The nodes the watch shows: name -> their Ready status ("True", "False", "Unknown")."""
        self.views = Views({}, {}, {name: [NodeView(name, status)] for name, status in ready.items()})

    def status(self) -> dict:
        return self.body().get("status") or {}

    def condition(self, type_: str) -> dict:
        return next(c for c in self.status()["conditions"] if c["type"] == type_)

    def pod(self, ordinal: int) -> dict | None:
        return self.kube.obj("v1", "Pod", NS, f"{NAME}-{ordinal}")
