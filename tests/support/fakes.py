"""Small in-memory stand-ins for unit tests of the stateful core: a Kubernetes API and a registry.

They implement only the calls the operator makes, with the semantics it relies on (merge patch
with a resourceVersion precondition, delete with a uid precondition, finalizers holding a deleted
object, generation bumps on spec writes), and let a test inject failures: `FakeKube.fail(...)`
answers the next matching calls with an HTTP status, `StubRegistry.fail(...)` raises
RegistryError. Integration tests use the real API server and a real etcd instead.
"""

from __future__ import annotations

import copy
import datetime
import itertools
from dataclasses import dataclass, field
from typing import Any

from infer_operator import kinds
from infer_operator.clients.kube import KubeError
from infer_operator.registry.base import Registry
from infer_operator.registry.model import Instance, Listing, RegistryError

_REASONS = {
    404: "NotFound",
    409: "Conflict",
    422: "Invalid",
    403: "Forbidden",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    0: "Unreachable",
}


@dataclass
class _Fault:
    verb: str
    kind: str | None
    name: str | None
    status: int
    count: int
    message: str


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, null removes a key, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


@dataclass
class FakeKube:
    """The subset of `KubeClient` the operator uses, over a dict of objects."""

    objects: dict[tuple[str, str, str, str], dict[str, Any]] = field(default_factory=dict)
    calls: list[tuple[str, str, str]] = field(default_factory=list)  # (verb, kind, name)
    faults: list[_Fault] = field(default_factory=list)
    _versions: itertools.count = field(default_factory=lambda: itertools.count(100))
    _grace_over: set[tuple[str, str, str, str]] = field(default_factory=set)

    # -- test controls ---------------------------------------------------------------------

    def fail(
        self,
        verb: str,
        status: int,
        *,
        kind: str | None = None,
        name: str | None = None,
        count: int = 1,
        message: str = "injected",
    ) -> None:
        """Answer the next `count` calls of `verb` (get, list, apply, patch, delete) with `status`."""
        self.faults.append(_Fault(verb, kind, name, status, count, message))

    def put(self, body: dict[str, Any]) -> dict[str, Any]:
        """Store an object as if someone had created it (fills uid, resourceVersion, generation)."""
        body = copy.deepcopy(body)
        meta = body.setdefault("metadata", {})
        meta.setdefault("uid", f"uid-{meta['name']}-{next(self._versions)}")
        meta.setdefault("generation", 1)
        meta["resourceVersion"] = str(next(self._versions))
        self.objects[self._key(body["apiVersion"], body["kind"], meta.get("namespace", ""), meta["name"])] = body
        return copy.deepcopy(body)

    def obj(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.objects.get(self._key(api_version, kind, namespace, name)))

    def count(self, verb: str, kind: str | None = None) -> int:
        return sum(1 for v, k, _ in self.calls if v == verb and (kind is None or k == kind))

    # -- the client's calls ----------------------------------------------------------------

    async def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> Any:
        self._call("get", kind, name)
        found = self.objects.get(self._key(api_version, kind, namespace, name))
        if found is None:
            raise KubeError(404, "NotFound", f"{kind} {name} not found")
        return copy.deepcopy(found)

    async def list(
        self, api_version: str, kind: str, namespace: str | None, label_selector: str | None = None
    ) -> list[Any]:
        self._call("list", kind, "")
        out = []
        for (av, k, ns, _), body in sorted(self.objects.items()):
            if (av, k) != (api_version, kind) or (namespace and ns != namespace):
                continue
            if _selects(label_selector, body["metadata"].get("labels") or {}):
                out.append(copy.deepcopy(body))
        return out

    async def create(self, obj: dict[str, Any]) -> Any:
        meta = obj["metadata"]
        name = meta.get("name") or f"{meta.get('generateName', '')}{next(self._versions)}"
        self._call("create", obj["kind"], name)
        key = self._key(obj["apiVersion"], obj["kind"], meta.get("namespace"), name)
        if key in self.objects:
            raise KubeError(409, "AlreadyExists", f"{obj['kind']} {name} already exists")
        return self.put({**obj, "metadata": {**meta, "name": name}})

    async def apply(self, obj: dict[str, Any], **_: Any) -> Any:
        meta = obj["metadata"]
        self._call("apply", obj["kind"], meta["name"])
        key = self._key(obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"])
        current = self.objects.get(key)
        body = copy.deepcopy(obj)
        body_meta = body["metadata"]
        if current is None:
            body_meta["uid"] = f"uid-{meta['name']}-{next(self._versions)}"
            body_meta["generation"] = 1
        else:
            body_meta["uid"] = current["metadata"]["uid"]
            changed = current.get("spec") != body.get("spec")
            body_meta["generation"] = current["metadata"]["generation"] + (1 if changed else 0)
            for kept in ("status",):
                if kept in current:
                    body[kept] = current[kept]
        body_meta["resourceVersion"] = str(next(self._versions))
        self.objects[key] = body
        return copy.deepcopy(body)

    async def merge_patch(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        name: str,
        patch: dict[str, Any],
        subresource: str | None = None,
    ) -> Any:
        self._call("patch" if subresource is None else f"patch/{subresource}", kind, name)
        key = self._key(api_version, kind, namespace, name)
        current = self.objects.get(key)
        if current is None:
            raise KubeError(404, "NotFound", f"{kind} {name} not found")
        expected = (patch.get("metadata") or {}).get("resourceVersion")
        if expected is not None and expected != current["metadata"]["resourceVersion"]:
            raise KubeError(409, "Conflict", "the object has been modified")
        if subresource == "status":
            patch = {"status": patch.get("status")}
        body = merge_patch(current, patch)
        body["metadata"]["resourceVersion"] = str(next(self._versions))
        if body.get("spec") != current.get("spec"):
            body["metadata"]["generation"] = current["metadata"]["generation"] + 1
        self._store_or_finish(key, body)
        return copy.deepcopy(body)

    async def strategic_patch(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        name: str,
        patch: dict[str, Any],
        subresource: str | None = None,
    ) -> Any:
        """Only what the operator sends: pod metadata (labels and annotations merged, finalizers
        added to the list, as ObjectMeta's patch strategy says), and pod status conditions, merged
        by type."""
        self._call("patch" if subresource is None else f"patch/{subresource}", kind, name)
        key = self._key(api_version, kind, namespace, name)
        current = self.objects.get(key)
        if current is None:
            raise KubeError(404, "NotFound", f"{kind} {name} not found")
        body = copy.deepcopy(current)
        expected = (patch.get("metadata") or {}).get("resourceVersion")
        if expected is not None and expected != current["metadata"].get("resourceVersion"):
            raise KubeError(409, "Conflict", f"{kind} {name}: the object has been modified")
        if subresource is None:
            meta = body["metadata"]
            wanted = (patch.get("metadata") or {}).get("finalizers") or []
            added = [f for f in wanted if f not in (meta.get("finalizers") or [])]
            if added and meta.get("deletionTimestamp"):
                raise KubeError(
                    422, "Invalid", "Forbidden: no new finalizers can be added if the object is being deleted"
                )
            for field_name in ("labels", "annotations"):
                meta[field_name] = merge_patch(
                    meta.get(field_name) or {}, (patch.get("metadata") or {}).get(field_name) or {}
                )
            meta["finalizers"] = [*(meta.get("finalizers") or []), *added]
            meta["resourceVersion"] = str(next(self._versions))
            self.objects[key] = body
            return copy.deepcopy(body)
        conditions = {c["type"]: c for c in (body.setdefault("status", {}).get("conditions") or [])}
        for condition in (patch.get("status") or {}).get("conditions") or []:
            conditions[condition["type"]] = {**conditions.get(condition["type"], {}), **condition}
        gates = [g.get("conditionType") for g in (body.get("spec") or {}).get("readinessGates") or []]
        if gates and "Ready" in conditions:
            # The kubelet's rule: Ready = containers ready and every readiness gate True.
            ready = all(conditions.get(t, {}).get("status") == "True" for t in ["ContainersReady", *gates])
            conditions["Ready"] = {**conditions["Ready"], "status": "True" if ready else "False"}
        body["status"]["conditions"] = list(conditions.values())
        body["metadata"]["resourceVersion"] = str(next(self._versions))
        self.objects[key] = body
        return copy.deepcopy(body)

    async def delete(
        self, api_version: str, kind: str, namespace: str | None, name: str, *, uid: str | None = None
    ) -> Any:
        self._call("delete", kind, name)
        key = self._key(api_version, kind, namespace, name)
        current = self.objects.get(key)
        if current is None:
            raise KubeError(404, "NotFound", f"{kind} {name} not found")
        if uid is not None and current["metadata"]["uid"] != uid:
            raise KubeError(409, "Conflict", "Precondition failed: UID in precondition")
        body = copy.deepcopy(current)
        body["metadata"].setdefault(
            "deletionTimestamp", datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        )
        body["metadata"]["resourceVersion"] = str(next(self._versions))
        self._store_or_finish(key, body)
        return {"kind": "Status", "status": "Success"}

    async def evict(self, namespace: str, name: str, *, uid: str | None = None) -> Any:
        """The Eviction API: a delete that a budget may refuse (inject with fail("evict", "Pod", 429))."""
        self._call("evict", "Pod", name)
        return await self.delete("v1", "Pod", namespace, name, uid=uid)

    async def close(self) -> None:
        return None

    # -- internals ---------------------------------------------------------------------------

    @staticmethod
    def _key(api_version: str, kind: str, namespace: str | None, name: str) -> tuple[str, str, str, str]:
        kinds.of(api_version, kind)  # a kind the operator does not know is a bug in the caller
        return api_version, kind, namespace or "", name

    def finish(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        """A terminating pod's containers have stopped: it goes once no finalizer holds it."""
        key = self._key(api_version, kind, namespace, name)
        self._grace_over.add(key)
        self._store_or_finish(key, self.objects[key])

    def _store_or_finish(self, key: tuple[str, str, str, str], body: dict[str, Any]) -> None:
        meta = body["metadata"]
        # A pod also waits out its grace period (until `finish`), as the kubelet makes it.
        graceful = key[1] == "Pod" and key not in self._grace_over
        if meta.get("deletionTimestamp") and not meta.get("finalizers") and not graceful:
            self.objects.pop(key, None)  # the last finalizer went: the object is gone
        else:
            self.objects[key] = body

    def _call(self, verb: str, kind: str, name: str) -> None:
        self.calls.append((verb, kind, name))
        base = verb.split("/")[0]
        for fault in self.faults:
            if fault.verb == base and fault.kind in (None, kind) and fault.name in (None, name):
                fault.count -= 1
                if fault.count <= 0:
                    self.faults.remove(fault)
                raise KubeError(fault.status, _REASONS.get(fault.status, ""), fault.message)


def _selects(selector: str | None, obj_labels: dict[str, str]) -> bool:
    """Equality (`k=v`) and set (`k in (a,b)`) requirements, comma-separated outside parentheses."""
    if not selector:
        return True
    parts, depth, start = [], 0, 0
    for i, char in enumerate(selector + ","):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(selector[start:i].strip())
            start = i + 1
    for part in parts:
        if " in (" in part:
            key, values = part.split(" in (", 1)
            if obj_labels.get(key.strip()) not in {v.strip() for v in values.rstrip(")").split(",")}:
                return False
        else:
            key, value = part.split("=", 1)
            if obj_labels.get(key) != value:
                return False
    return True


@dataclass(eq=False, repr=False)
class StubRegistry(Registry):
    """A registry in memory: instances and per-IP configs per service, failures on demand."""

    instances: dict[str, dict[str, Instance]] = field(default_factory=dict)  # service -> address -> entry
    configs: dict[str, set[str]] = field(default_factory=dict)  # service -> IPs
    malformed: dict[str, list[str]] = field(default_factory=dict)  # service -> entry ids not ours
    failures: dict[str, int] = field(default_factory=dict)  # operation -> calls to fail
    ignore_deletes: int = 0  # acknowledge this many deregistrations without removing the entry
    place: str = "stub"  # what identity() answers: two stubs with one place are one store
    calls: list[tuple[str, str]] = field(default_factory=list)
    closed: bool = False
    kind = "stub"

    def fail(self, operation: str, count: int = 1) -> None:
        """Raise RegistryError on the next `count` calls of `operation` ("*" for every operation)."""
        self.failures[operation] = count

    def _call(self, operation: str, what: str) -> None:
        self.calls.append((operation, what))
        for key in (operation, "*"):
            if self.failures.get(key, 0) > 0:
                self.failures[key] -= 1
                raise RegistryError(f"stub registry: {operation} {what} failed (injected)")

    async def register(self, service: str, instance: Instance) -> None:
        self._call("register", instance.address)
        self.instances.setdefault(service, {})[instance.address] = instance

    async def deregister(self, service: str, ip: str, port: int, uid: str | None = None) -> None:
        self._call("deregister", f"{ip}:{port}")
        if self.ignore_deletes > 0:
            self.ignore_deletes -= 1
            return
        current = self.instances.get(service, {}).get(f"{ip}:{port}")
        if current is not None and uid in (None, current.uid):
            del self.instances[service][f"{ip}:{port}"]

    async def claim(self, service: str, instance: Instance) -> None:
        self._call("claim", instance.address)
        self.configs.get(service, set()).discard(instance.ip)
        self.instances.setdefault(service, {})[instance.address] = instance

    async def identity(self) -> str:
        self._call("identity", "")
        return self.place

    async def list_instances(self, service: str) -> Listing:
        self._call("list_instances", service)
        return Listing(list(self.instances.get(service, {}).values()), list(self.malformed.get(service, [])))

    async def list_config_ips(self, service: str) -> set[str]:
        self._call("list_config_ips", service)
        return set(self.configs.get(service, set()))

    async def delete_config(self, service: str, ip: str) -> None:
        self._call("delete_config", ip)
        self.configs.get(service, set()).discard(ip)

    async def close(self) -> None:
        self.closed = True

    def describe(self) -> str:
        return "stub registry"
