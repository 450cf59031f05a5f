"""The registry's data model, shared by clients and pure planners: no I/O, no client here.

- `Instance`: one registered sync pod, naming its pod and the InferenceService that owns it;
- `Listing`: what a listing of a service's instances found (ours, and entries that are not);
- `RegistryError`: every failure of the remote side (refused, timeout, 5xx, garbage), a one-line
  message that never contains credentials;
- key-segment validation: a service name or IP containing ``/`` or ``..`` raises ValueError
  before any request is made.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
from dataclasses import dataclass, field
from typing import Any

DEFAULT_TIMEOUT = 5.0
DEFAULT_MAX_RESPONSE_BYTES = 16 * 1024 * 1024

INSTANCE_FIELDS: tuple[str, ...] = ("pod", "namespace", "uid", "ip", "port", "role", "ordinal")
_STR_FIELDS = ("pod", "namespace", "uid", "ip", "role")
_INT_FIELDS = ("port", "ordinal")
# Fields a writer may leave out when they hold their zero value (Go's `omitempty`, the usual way an
# admin controller serialises a struct): ordinal 0 is pod 0, not a broken entry.
_ZERO_OMITTABLE = {"ordinal": 0}
# The share of traffic an instance asks for, 1..100: 100 is a warm instance; less while it warms
# up (registration/plans.warmup_weight). Entries written before weights were carried have none and
# count as 100.
FULL_WEIGHT = 100
WEIGHT_FIELD = "weight"


class RegistryError(Exception):
    """A registry operation failed (unreachable, timeout, bad status, garbage response)."""


class MalformedEntry(ValueError):
    """A registry entry is not an Instance JSON object written by us."""


def one_line(text: str, limit: int = 300) -> str:
    """Collapse whitespace/control characters and truncate, for error messages."""
    out = " ".join(str(text).split())
    if len(out) > limit:
        out = out[: limit - 3] + "..."
    return out


def login(backend: str, credentials: dict[str, str]) -> tuple[str | None, str | None]:
    """(username, password) from a credentials Secret's data, both or neither.

    ValueError naming the backend when only one of the two keys is there."""
    username, password = credentials.get("username"), credentials.get("password")
    if (username is None) != (password is None):
        raise ValueError(f"{backend} credentials need both username and password")
    return username, password


def scrub(text: str, secrets: list[str | None] | tuple[str | None, ...]) -> str:
    """Replace every occurrence of any non-empty secret in ``text`` with ``***``."""
    for s in secrets:
        if s:
            text = text.replace(s, "***")
    return text


def validate_segment(kind: str, value: Any) -> str:
    """A name used as one path/key segment: non-empty str, no '/', not '.'/'..', no '..', no controls."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{kind} must be a non-empty string")
    if "/" in value or "\\" in value or ".." in value or value in (".",):
        raise ValueError(f"invalid {kind} {value!r}: must not contain '/', '\\' or '..'")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in value):
        raise ValueError(f"invalid {kind} {value!r}: must not contain whitespace or control characters")
    if len(value) > 253:
        raise ValueError(f"invalid {kind}: longer than 253 characters")
    return value


def validate_port(port: Any) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"invalid port {port!r}: must be an int in 1..65535")
    return port


def is_ip(text: str) -> bool:
    """Whether a key segment is an IPv4 or IPv6 address a pod can hold: the only per-IP config keys
    the operator may delete (`config/defaults` and the like belong to other tools; so does
    `0.0.0.0` / `::`, which no pod holds and which Dubbo's override rules use for every provider)."""
    try:
        return not ipaddress.ip_address(text).is_unspecified
    except ValueError:
        return False


@dataclass(frozen=True)
class ServiceRef:
    """The InferenceService an instance entry belongs to: whoever wrote it, by uid."""

    namespace: str
    name: str
    uid: str

    def to_obj(self) -> dict[str, str]:
        return {"namespace": self.namespace, "name": self.name, "uid": self.uid}


OWNER_FIELD = "inferenceService"


@dataclass(frozen=True)
class Instance:
    """One registered instance, serialised as compact JSON: INSTANCE_FIELDS, `inferenceService`
    (namespace, name, uid of the owner) for entries written by versions that record it, and
    `weight` (FULL_WEIGHT once warm).

    `stale_layout`: read from a registry whose stored value lacks what this version writes there
    (etcd: the fields real consumers read, registry/etcd.py); such an entry differs from the one
    wanted, so a pass writes it again. Never part of the JSON."""

    pod: str
    namespace: str
    uid: str
    ip: str
    port: int
    role: str
    ordinal: int
    owner: ServiceRef | None = None
    weight: int = FULL_WEIGHT
    stale_layout: bool = False

    @property
    def address(self) -> str:
        return f"{self.ip}:{self.port}"

    def same_entry(self, other: Instance | None) -> bool:
        """Whether `other` is the entry of the same pod at the same address, whatever its weight or
        stored layout."""
        if other is None:
            return False
        return dataclasses.replace(other, weight=self.weight, stale_layout=self.stale_layout) == self

    def to_obj(self) -> dict[str, Any]:
        obj: dict[str, Any] = {k: getattr(self, k) for k in INSTANCE_FIELDS}
        if self.owner is not None:
            obj[OWNER_FIELD] = self.owner.to_obj()
        obj[WEIGHT_FIELD] = self.weight
        return obj

    def to_json(self) -> str:
        return json.dumps(self.to_obj(), separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_obj(cls, obj: Any) -> Instance:
        """Build from a decoded JSON object. Extra keys are tolerated; missing/wrong-typed fields are not."""
        if not isinstance(obj, dict):
            raise MalformedEntry(f"not a JSON object: {type(obj).__name__}")
        obj = {**_ZERO_OMITTABLE, **obj}
        missing = [k for k in INSTANCE_FIELDS if k not in obj]
        if missing:
            raise MalformedEntry(f"missing fields: {', '.join(missing)}")
        for k in _STR_FIELDS:
            if not isinstance(obj[k], str):
                raise MalformedEntry(f"field {k!r} must be a string")
        for k in _INT_FIELDS:
            v = obj[k]
            if isinstance(v, bool) or not isinstance(v, int):
                raise MalformedEntry(f"field {k!r} must be an integer")
        owner = obj.get(OWNER_FIELD)
        if owner is not None:
            if not isinstance(owner, dict) or not all(
                isinstance(owner.get(k), str) for k in ("namespace", "name", "uid")
            ):
                raise MalformedEntry(f"field {OWNER_FIELD!r} must name namespace, name and uid")
            owner = ServiceRef(owner["namespace"], owner["name"], owner["uid"])
        weight = obj.get(WEIGHT_FIELD, FULL_WEIGHT)
        if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= FULL_WEIGHT:
            raise MalformedEntry(f"field {WEIGHT_FIELD!r} must be an integer in 0..{FULL_WEIGHT}")
        return cls(**{k: obj[k] for k in INSTANCE_FIELDS}, owner=owner, weight=weight)

    @classmethod
    def from_json(cls, text: str | bytes) -> Instance:
        try:
            obj = json.loads(text)
        except (ValueError, TypeError) as exc:  # JSONDecodeError, UnicodeDecodeError
            raise MalformedEntry(f"not JSON: {one_line(str(exc), 120)}") from None
        return cls.from_obj(obj)

    def validate(self) -> Instance:
        """Check the fields that end up in keys/URLs; raises ValueError."""
        validate_segment("ip", self.ip)
        validate_port(self.port)
        return self


@dataclass(frozen=True)
class Unreadable:
    """Something is listed at an address, but it is not an entry this operator can read (not JSON,
    or not our fields): a read-back must take it as still there, never as gone."""

    address: str
    reason: str


@dataclass
class Listing:
    """Result of list_instances: parsed instances plus ids (keys) of entries that are not ours."""

    instances: list[Instance] = field(default_factory=list)
    malformed: list[str] = field(default_factory=list)
