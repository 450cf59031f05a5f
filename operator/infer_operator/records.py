"""What the operator keeps about each InferenceService between passes: one record per service (its
wake-up, its running loop, its registrar, the registry settings it last synced with), in the
spirit of kopf's own per-object memories.

A record has a lifecycle. It is made by its first user, and forgotten when its last user lets
go, which closes its registrar's registry client:

- the service's reconcile loop, while it runs;
- the cleanup after the service's deletion (registration/releaser.ServiceReleaser), while it runs;
- each release of one of its deleted pods (registration/releaser.PodReleaser), while it runs.

So a deleted service's record lives exactly as long as its pods' deregistrations and its own
cleanup need the settings and the client it synced with (a namespace being deleted takes the
credentials Secret with it; the client built before still works), and no longer: a CI system that
creates and deletes services all day leaves no records, sessions or sockets behind.

Records are keyed by uid, as kopf keys its memories: a service deleted and created again under
the same name gets a new record, while the old one lives on for its cleanup. Lookups by name
(pod events, owned objects) find the newest.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from infer_operator import kinds, metrics
from infer_operator.api.v1alpha1 import InferenceServiceSpec, RegistrySpec
from infer_operator.registration.registrar import Registrar
from infer_operator.registration.sharing import ServiceKey
from infer_operator.registry.model import ServiceRef


@dataclass
class Wakeup:
    """Coalesces bursts of events into one reconcile pass; says what needs another look."""

    event: asyncio.Event = field(default_factory=asyncio.Event)
    objects: bool = True  # re-apply owned objects (spec changed, drift, first pass)

    def poke(self, *, objects: bool = False) -> None:
        self.objects = self.objects or objects
        self.event.set()

    def take(self) -> bool:
        """Clear the wake-up and say whether owned objects must be re-applied."""
        objects, self.objects = self.objects, False
        self.event.clear()
        return objects


@dataclass(frozen=True)
class RegistrySettings:
    """Where and how a service's pods are registered: its registry spec, the sync port, and the
    InferenceService that owns the entries."""

    registry: RegistrySpec
    port: int
    owner: ServiceRef

    @property
    def place(self) -> tuple[Any, ...] | None:
        return self.registry.place(self.owner.name)


class ServiceLoop(Protocol):
    """What the rest of the operator asks of a service's running loop (reconcile/reconciler.py)."""

    def is_drift(self, kind: kinds.Kind, name: str, body: Any, *, deleted: bool) -> bool: ...

    def observe_statefulset(self, body: Any) -> bool: ...

    def request_audit(self, now: float, delay: float = 0.0) -> None: ...


@dataclass
class ServiceRecord:
    """What the operator keeps about one InferenceService between passes (see the module)."""

    namespace: str
    name: str
    registrar: Registrar
    uid: str | None = None  # None until a user knew it (a pod's release knows only the name)
    wakeup: Wakeup = field(default_factory=Wakeup)
    reconciler: ServiceLoop | None = None  # while the service's reconcile loop runs
    settings: RegistrySettings | None = None  # what the service last synced with
    users: int = 0

    @property
    def key(self) -> ServiceKey:
        return (self.namespace, self.name)

    def remember(self, spec: InferenceServiceSpec, uid: str) -> None:
        self.uid = uid
        self.settings = RegistrySettings(spec.registry, spec.sync.port, ServiceRef(self.namespace, self.name, uid))

    def poke(self, *, objects: bool = False) -> None:
        self.wakeup.poke(objects=objects)


class ServiceRecords:
    """The records of the services something of the operator is working on (see the module)."""

    def __init__(self, make_registrar: Callable[[str, str], Registrar]):
        self._make_registrar = make_registrar
        self._newest: dict[ServiceKey, ServiceRecord] = {}  # by name: the newest incarnation
        self._held: dict[int, ServiceRecord] = {}  # every record in use, by identity
        metrics.SERVICE_RECORDS.set_function(lambda: len(self._held))

    # -- lifecycle -----------------------------------------------------------------------------

    def hold(self, namespace: str, name: str, uid: str | None = None) -> ServiceRecord:
        """The service's record, made if needed, held until `let_go`. `uid` (when known) names the
        incarnation: a record of another uid is left to its users, and a new one is made."""
        record = self._newest.get((namespace, name))
        if record is None or (uid is not None and record.uid is not None and record.uid != uid):
            record = ServiceRecord(namespace, name, self._make_registrar(namespace, name), uid=uid)
            self._newest[(namespace, name)] = record
        elif uid is not None and record.uid is None:
            record.uid = uid
        record.users += 1
        self._held[id(record)] = record
        return record

    async def let_go(self, record: ServiceRecord) -> None:
        """One user is done with the record; the last one forgets it and closes its registrar."""
        record.users -= 1
        if record.users > 0:
            return
        self._held.pop(id(record), None)
        if self._newest.get(record.key) is record:
            del self._newest[record.key]
        await record.registrar.close()

    @contextlib.asynccontextmanager
    async def held(self, namespace: str, name: str, uid: str | None = None) -> AsyncIterator[ServiceRecord]:
        record = self.hold(namespace, name, uid)
        try:
            yield record
        finally:
            await self.let_go(record)

    async def close(self) -> None:
        """The operator stops: every registrar is closed and every record forgotten."""
        for record in list(self._held.values()):
            await record.registrar.close()
        self._held.clear()
        self._newest.clear()

    # -- lookups -------------------------------------------------------------------------------

    def get(self, namespace: str, name: str) -> ServiceRecord | None:
        """The newest record of the service, if something holds one."""
        return self._newest.get((namespace, name))

    def __iter__(self) -> Iterator[ServiceRecord]:
        return iter(list(self._held.values()))

    def __len__(self) -> int:
        return len(self._held)

    def poke(self, namespace: str, name: str, *, objects: bool = False) -> None:
        """Wake the service's loop, if it runs."""
        record = self._newest.get((namespace, name))
        if record is not None and record.reconciler is not None:
            record.poke(objects=objects)

    def relisted(self, namespace: str | None) -> None:
        """The pods watch of `namespace` (None: of every namespace) listed everything again: each
        running loop there audits its pod index on its next pass, which comes at once."""
        for record in self:
            if record.reconciler is not None and namespace in (None, record.namespace):
                record.reconciler.request_audit(time.monotonic())
                record.poke()

    def request_audit(self, namespace: str, name: str, delay: float) -> None:
        """Have the service's loop audit its pods `delay` seconds from now (if it runs; a loop
        that starts audits on its first pass)."""
        record = self._newest.get((namespace, name))
        if record is not None and record.reconciler is not None:
            record.reconciler.request_audit(time.monotonic(), delay)
            record.poke()
