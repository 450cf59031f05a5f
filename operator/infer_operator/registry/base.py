"""Registry client basics: the Instance record, errors, the Registry interface, TLS helpers.

Every backend (etcd, http, none) implements :class:`Registry`. All failures of the remote side
(connection refused, timeout, 5xx, unexpected status, garbage response) surface as
:class:`RegistryError` with a one-line message that never contains credentials.
Invalid arguments (a service name or IP containing ``/`` or ``..``) raise :class:`ValueError`.
"""

from __future__ import annotations

import abc
import json
import os
import ssl
import tempfile
from dataclasses import dataclass, field
from typing import Any

DEFAULT_TIMEOUT = 5.0
DEFAULT_MAX_RESPONSE_BYTES = 16 * 1024 * 1024

INSTANCE_FIELDS: tuple[str, ...] = ("pod", "namespace", "uid", "ip", "port", "role", "ordinal")
_STR_FIELDS = ("pod", "namespace", "uid", "ip", "role")
_INT_FIELDS = ("port", "ordinal")


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


@dataclass(frozen=True)
class Instance:
    """One registered instance; serialised as compact JSON with exactly INSTANCE_FIELDS."""

    pod: str
    namespace: str
    uid: str
    ip: str
    port: int
    role: str
    ordinal: int

    @property
    def address(self) -> str:
        return f"{self.ip}:{self.port}"

    def to_obj(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in INSTANCE_FIELDS}

    def to_json(self) -> str:
        return json.dumps(self.to_obj(), separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_obj(cls, obj: Any) -> "Instance":
        """Build from a decoded JSON object. Extra keys are tolerated; missing/wrong-typed fields are not."""
        if not isinstance(obj, dict):
            raise MalformedEntry(f"not a JSON object: {type(obj).__name__}")
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
        return cls(**{k: obj[k] for k in INSTANCE_FIELDS})

    @classmethod
    def from_json(cls, text: str | bytes) -> "Instance":
        try:
            obj = json.loads(text)
        except (ValueError, TypeError) as exc:  # JSONDecodeError, UnicodeDecodeError
            raise MalformedEntry(f"not JSON: {one_line(str(exc), 120)}") from None
        return cls.from_obj(obj)

    def validate(self) -> "Instance":
        """Check the fields that end up in keys/URLs; raises ValueError."""
        validate_segment("ip", self.ip)
        validate_port(self.port)
        return self


@dataclass
class Listing:
    """Result of list_instances: parsed instances plus ids (keys) of entries that are not ours."""

    instances: list[Instance] = field(default_factory=list)
    malformed: list[str] = field(default_factory=list)


class Registry(abc.ABC):
    """Async registry client. Every call is bounded by the per-call ``timeout`` given at construction."""

    kind: str = "abstract"

    @abc.abstractmethod
    async def register(self, service: str, instance: Instance) -> None: ...

    @abc.abstractmethod
    async def deregister(self, service: str, ip: str, port: int) -> None:
        """Remove the instance entry; an absent entry is success."""

    @abc.abstractmethod
    async def list_instances(self, service: str) -> Listing: ...

    @abc.abstractmethod
    async def list_config_ips(self, service: str) -> set[str]: ...

    @abc.abstractmethod
    async def delete_config(self, service: str, ip: str) -> None:
        """Remove the per-IP config; absent is success."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    def describe(self) -> str:
        """Safe one-line description (no secrets)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"

    __str__ = __repr__

    async def __aenter__(self) -> "Registry":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class Secret:
    """Holds a secret string; repr/str never show it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self):  # never pickle secrets by accident
        raise TypeError("Secret is not picklable")


def _load_chain_from_data(ctx: ssl.SSLContext, cert_data: str, key_data: str | None) -> None:
    """Load a client cert/key given as PEM strings via a private (0600) temp file, deleted at once."""
    tmpdir = tempfile.mkdtemp(prefix="infer-op-tls-")
    try:
        os.chmod(tmpdir, 0o700)
        cert_path = os.path.join(tmpdir, "cert.pem")
        key_path = os.path.join(tmpdir, "key.pem")
        for path, data in ((cert_path, cert_data), (key_path, key_data)):
            if data is None:
                continue
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(data)
        ctx.load_cert_chain(cert_path, key_path if key_data is not None else None)
    finally:
        for name in ("cert.pem", "key.pem"):
            try:
                os.unlink(os.path.join(tmpdir, name))
            except FileNotFoundError:
                pass
        os.rmdir(tmpdir)


def build_ssl_context(
    *,
    ca_file: str | None = None,
    ca_data: str | None = None,
    cert_file: str | None = None,
    key_file: str | None = None,
    cert_data: str | None = None,
    key_data: str | None = None,
) -> ssl.SSLContext | None:
    """An SSLContext from files or PEM strings, or None when nothing TLS-specific is given.

    Errors raise ValueError with a message that names the problem, never the key material.
    """
    if not any((ca_file, ca_data, cert_file, key_file, cert_data, key_data)):
        return None
    if (cert_file or cert_data) is None and (key_file or key_data):
        raise ValueError("TLS client key given without a client certificate")
    try:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file or None, cadata=ca_data or None)
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise ValueError(f"cannot load TLS CA: {type(exc).__name__}") from None
    try:
        if cert_data:
            _load_chain_from_data(ctx, cert_data, key_data)
        elif cert_file:
            ctx.load_cert_chain(cert_file, key_file or None)
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise ValueError(f"cannot load TLS client certificate/key: {type(exc).__name__}") from None
    return ctx
