"""etcd v3 backend over the JSON gRPC gateway (etcd 3.4 .. 3.6), using aiohttp: its spec section
(`registry.etcd`), its client and its row in the backend table.

Key layout (prefix default ``/services``; slashes normalised, no trailing slash)::

    {prefix}/{service}/instances/{ip}:{port}   = Instance JSON (written/deleted by us)
    {prefix}/{service}/config/{ip}             = per-IP config (written by other tools; we only delete)
    {prefix}/{service}/config/{ip}/...         = also belongs to {ip}; deleted together with it

``list_config_ips`` returns the first path segment below ``config/`` of every key there, so both
``config/{ip}`` and ``config/{ip}/anything`` report ``ip``. ``delete_config`` deletes the exact key
``config/{ip}`` and the prefix ``config/{ip}/`` (never ``config/{ip}0`` or ``config/{ip}.x``).

Every range/delete is confined to ``{prefix}/{service}/``; service names and IPs containing ``/``
or ``..`` are rejected with ValueError before any request.

An instance value is the Instance JSON plus the fields two real consumers read, so that neither
needs glue (``entry_value``)::

    {"pod",...,"ordinal","inferenceService","weight",        <- ours (weight: 1..100, 100 = warm)
     "Addr": "ip:port", "Metadata": {"weight": w},         <- gRPC-Go's etcd naming resolver
     "host": "ip", "ttl": 5}                               <- CoreDNS's etcd plugin (SkyDNS; with
                                                              our "port" and "weight")

Both decode with Go's encoding/json (keys case-insensitive, unknown keys ignored), and our reader
ignores theirs. A listed value without them (written by an earlier version) is read as
`stale_layout` and written again by the next pass.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import logging
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlsplit

import aiohttp
from pydantic import Field

from infer_operator.api.base import Model, SecretReference

from ._aio import make_session, read_capped
from .base import Backend, Registry
from .model import (
    DEFAULT_TIMEOUT,
    Instance,
    Listing,
    MalformedEntry,
    RegistryError,
    Unreadable,
    login,
    one_line,
    scrub,
    validate_port,
    validate_segment,
)
from .tls import TLS_SECRET_KEYS, Secret, tls_context

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "/services"
DEFAULT_ETCD_MAX_RESPONSE_BYTES = 64 * 1024 * 1024
# Per-IP configs removed per transaction: two operations each (the key and the keys below it),
# within etcd's default --max-txn-ops of 128. One transaction per config made a large sweep a long
# chain of round trips (bench/README.md).
CONFIG_DELETES_PER_TXN = 64

# gRPC status codes as returned in the gateway's JSON error body
_GRPC_UNAUTHENTICATED = 16
_GRPC_INVALID_ARGUMENT = 3
_GRPC_UNAVAILABLE = 14
_GRPC_RESOURCE_EXHAUSTED = 8

# The DNS TTL CoreDNS gives the records of an entry (its default, 300 s, would let a caching
# resolver keep a deleted pod for five minutes): inside the default 10 s drain.
DNS_TTL_SECONDS = 5


def grpc_address(ip: str, port: int) -> str:
    """host:port as gRPC dials it (IPv6 in brackets)."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def consumer_fields(instance: Instance) -> dict[str, Any]:
    """What gRPC-Go's etcd resolver (`Addr`, `Metadata`) and CoreDNS's etcd plugin (`host`, `ttl`;
    `port` and `weight` are ours already) read from an entry."""
    return {
        "Addr": grpc_address(instance.ip, instance.port),
        "Metadata": {"weight": instance.weight},
        "host": instance.ip,
        "ttl": DNS_TTL_SECONDS,
    }


def entry_value(instance: Instance) -> str:
    """The stored value of an instance entry: ours and the consumers' fields, compact JSON."""
    return json.dumps({**instance.to_obj(), **consumer_fields(instance)}, separators=(",", ":"), ensure_ascii=False)


def read_entry(value: bytes) -> Instance:
    """An instance entry's value as ours; `stale_layout` when the consumers' fields are missing or
    out of date. Raises MalformedEntry."""
    try:
        obj = json.loads(value)
    except (ValueError, TypeError) as exc:  # JSONDecodeError, UnicodeDecodeError
        raise MalformedEntry(f"not JSON: {one_line(str(exc), 120)}") from None
    instance = Instance.from_obj(obj)
    if any(obj.get(k) != v for k, v in consumer_fields(instance).items()):
        instance = dataclasses.replace(instance, stale_layout=True)
    return instance


class _Unavailable(Exception):
    """One endpoint answered that it cannot serve the call now (HTTP 5xx or 429: a learner, a
    member without quorum, rate limiting): the call goes to the next endpoint."""


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def _unb64(data: str) -> bytes:
    return base64.b64decode(data.encode("ascii"), validate=False)


def prefix_range_end(prefix: str) -> str:
    """etcd range_end covering every key that starts with ``prefix`` (base64-encoded)."""
    raw = bytearray(prefix.encode("utf-8"))
    for i in range(len(raw) - 1, -1, -1):
        if raw[i] < 0xFF:
            raw[i] += 1
            return base64.b64encode(bytes(raw[: i + 1])).decode("ascii")
    return base64.b64encode(b"\0").decode("ascii")  # whole keyspace (never happens: prefixes are ASCII)


def normalise_prefix(prefix: str) -> str:
    """'/services/' -> '/services'; 'a//b' -> '/a/b'; '/' or '' -> '' (keys then start '/{service}/')."""
    if not isinstance(prefix, str):
        raise ValueError("etcd prefix must be a string")
    parts = [p for p in prefix.split("/") if p]
    for p in parts:
        if p in (".", "..") or any(ord(c) < 0x20 for c in p):
            raise ValueError(f"invalid etcd prefix {prefix!r}")
    return "".join("/" + p for p in parts)


def _normalise_endpoint(ep: str, index: int, tls: bool) -> str:
    ep = ep.strip()
    if not ep:
        raise ValueError(f"etcd endpoint #{index} is empty")
    if "://" not in ep:
        ep = ("https://" if tls else "http://") + ep
    parts = urlsplit(ep)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"etcd endpoint #{index} must be http(s)://host:port")
    if parts.username or parts.password:
        raise ValueError(f"etcd endpoint #{index} must not contain credentials; use username/password")
    return ep.rstrip("/")


class EtcdRegistry(Registry):
    kind = "etcd"

    def __init__(
        self,
        endpoints: Sequence[str] | str,
        *,
        prefix: str = DEFAULT_PREFIX,
        username: str | None = None,
        password: str | Secret | None = None,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_response_bytes: int = DEFAULT_ETCD_MAX_RESPONSE_BYTES,
    ) -> None:
        if isinstance(endpoints, str):
            endpoints = [e for e in endpoints.split(",") if e.strip()]
        if not endpoints:
            raise ValueError("etcd registry needs at least one endpoint")
        self._endpoints = [_normalise_endpoint(e, i, ssl_context is not None) for i, e in enumerate(endpoints)]
        self._prefix = normalise_prefix(prefix)
        if (username is None) != (password is None):
            raise ValueError("etcd username and password must be given together")
        self._username = username
        self._password = password if isinstance(password, Secret) or password is None else Secret(password)
        self._ssl_context = ssl_context
        if not timeout or timeout <= 0:
            raise ValueError("timeout must be > 0")
        self._timeout = float(timeout)
        self._max_response = int(max_response_bytes)
        self._session: aiohttp.ClientSession | None = None
        self._token: Secret | None = None
        self._auth_lock = asyncio.Lock()
        self._preferred = 0  # index of the endpoint that answered last
        # Instance key -> (mod revision, pod uid) as this client last wrote or listed it, so that a
        # deregistration can delete the entry in one conditional transaction. A stale record only
        # fails the comparison (and the entry is read first, as without it).
        self._versions: dict[str, tuple[int, str]] = {}
        self._cluster_id: str | None = None  # from any response header

    # ---- description -------------------------------------------------------------------------
    def describe(self) -> str:
        auth = f", user={self._username}" if self._username else ""
        tls = ", tls" if self._ssl_context is not None else ""
        return f"etcd endpoints={','.join(self._endpoints)} prefix={self._prefix or '/'}{auth}{tls}"

    @property
    def prefix(self) -> str:
        return self._prefix

    # ---- key layout --------------------------------------------------------------------------
    def service_prefix(self, service: str) -> str:
        validate_segment("service", service)
        return f"{self._prefix}/{service}/"

    def instances_prefix(self, service: str) -> str:
        return self.service_prefix(service) + "instances/"

    def config_prefix(self, service: str) -> str:
        return self.service_prefix(service) + "config/"

    def instance_key(self, service: str, ip: str, port: int) -> str:
        validate_segment("ip", ip)
        validate_port(port)
        return f"{self.instances_prefix(service)}{ip}:{port}"

    def config_key(self, service: str, ip: str) -> str:
        validate_segment("ip", ip)
        return f"{self.config_prefix(service)}{ip}"

    # ---- Registry API ------------------------------------------------------------------------
    async def register(self, service: str, instance: Instance) -> None:
        instance.validate()
        key = self.instance_key(service, instance.ip, instance.port)
        data = await self._call("/v3/kv/put", {"key": _b64(key), "value": _b64(entry_value(instance))}, f"put {key}")
        self._remember(key, data, instance.uid)

    async def deregister(self, service: str, ip: str, port: int, uid: str | None = None) -> None:
        key = self.instance_key(service, ip, port)
        if uid is None:
            await self._call("/v3/kv/deleterange", {"key": _b64(key)}, f"delete {key}")
            self._versions.pop(key, None)
            return
        known = self._versions.get(key)
        if known is not None and known[1] == uid:
            # The version this client wrote or listed names the pod: delete it if it is still that
            # version, in one round trip.
            if await self._txn([_unchanged(_KV(key, b"", known[0]))], [_delete(key)], f"delete {key} of pod {uid}"):
                self._versions.pop(key, None)
                return
        found = await self._range(key, prefix=False, keys_only=False)
        if not found or _names_pod(found[0].value) != uid:
            return  # gone already, or another pod's entry now (a reused address), or not ours
        # Delete only the version read: a new holder writing the key meanwhile keeps its entry.
        await self._txn([_unchanged(found[0])], [_delete(key)], f"delete {key} of pod {uid}")
        self._versions.pop(key, None)

    def _remember(self, key: str, response: dict[str, Any], uid: str) -> None:
        """A write of an instance entry succeeded: its mod revision is the response's revision."""
        try:
            self._versions[key] = (int((response.get("header") or {})["revision"]), uid)
        except (KeyError, TypeError, ValueError):
            self._versions.pop(key, None)

    async def claim(self, service: str, instance: Instance) -> None:
        instance.validate()
        key = self.config_key(service, instance.ip)
        entry = self.instance_key(service, instance.ip, instance.port)
        found = [
            *await self._range(key, prefix=False, keys_only=True),
            *await self._range(key + "/", prefix=True, keys_only=True),
        ]
        compare = [_unchanged(kv) for kv in found]
        if not any(kv.key == key for kv in found):  # absent when read: must still be absent
            compare.append({"key": _b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": "0"})
        success = [
            _delete(key),
            _delete(key + "/", prefix=True),
            {"request_put": {"key": _b64(entry), "value": _b64(entry_value(instance))}},
        ]
        data = await self._txn(compare, success, f"claim {instance.ip} for {instance.pod}")
        if data is None:
            raise self._err(
                f"etcd claim of {instance.ip}: its per-IP config changed while the previous "
                f"holder's was being removed; retrying on the next pass"
            )
        self._remember(entry, data, instance.uid)

    async def identity(self) -> str:
        if self._cluster_id is None:
            await self._call(
                "/v3/kv/range", {"key": _b64(self._prefix + "/"), "limit": 1, "keys_only": True}, "read the cluster id"
            )
        return f"etcd cluster {self._cluster_id} prefix {self._prefix or '/'}"

    async def list_instances(self, service: str) -> Listing:
        pfx = self.instances_prefix(service)
        listing = Listing()
        found = await self._range(pfx, prefix=True, keys_only=False)
        for key in [k for k in self._versions if k.startswith(pfx)]:
            self._versions.pop(key)  # what the listing shows replaces what was known of the service
        for kv in found:
            key = kv.key
            name = key[len(pfx) :]
            try:
                inst = read_entry(kv.value)
                if name != inst.address:
                    raise MalformedEntry(f"key names {name!r} but value is {inst.address}")
            except MalformedEntry as exc:
                log.debug("malformed registry entry %s: %s", key, exc)
                listing.malformed.append(key)
                continue
            listing.instances.append(inst)
            self._versions[key] = (kv.mod_revision, inst.uid)
        return listing

    async def list_config_ips(self, service: str) -> set[str]:
        pfx = self.config_prefix(service)
        ips: set[str] = set()
        for kv in await self._range(pfx, prefix=True, keys_only=True):
            ip = kv.key[len(pfx) :].split("/", 1)[0]
            if ip:
                ips.add(ip)
        return ips

    async def lookup(self, service: str, ip: str, port: int) -> Instance | Unreadable | None:
        key = self.instance_key(service, ip, port)
        found = await self._range(key, prefix=False, keys_only=False)
        if not found:
            return None
        try:
            return read_entry(found[0].value)
        except MalformedEntry as exc:
            return Unreadable(f"{ip}:{port}", str(exc))

    async def delete_config(self, service: str, ip: str) -> None:
        key = self.config_key(service, ip)
        # One transaction: the exact key and everything below "{key}/".
        await self._txn([], _config_deletes(key), f"delete config {key}")

    async def delete_configs(self, service: str, ips: Sequence[str]) -> dict[str, str]:
        """Bounded transactions of CONFIG_DELETES_PER_TXN configs each; a failed transaction
        removed none of its configs (etcd applies a transaction whole or not at all), and they
        are reported as not removed."""
        errors: dict[str, str] = {}
        keys: list[tuple[str, str]] = []
        for ip in ips:
            try:
                keys.append((ip, self.config_key(service, ip)))
            except ValueError as exc:
                errors[ip] = str(exc)
        for start in range(0, len(keys), CONFIG_DELETES_PER_TXN):
            batch = keys[start : start + CONFIG_DELETES_PER_TXN]
            operations = [op for _, key in batch for op in _config_deletes(key)]
            try:
                await self._txn([], operations, f"delete {len(batch)} per-IP config(s) of {service}")
            except RegistryError as exc:
                errors.update((ip, str(exc)) for ip, _ in batch)
        return errors

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ---- internals ---------------------------------------------------------------------------
    async def _range(self, key: str, *, prefix: bool, keys_only: bool) -> list[_KV]:
        """The key (or every key below the prefix `key`), with mod revisions."""
        body: dict[str, Any] = {"key": _b64(key)}
        if prefix:
            body["range_end"] = prefix_range_end(key)
        if keys_only:
            body["keys_only"] = True
        data = await self._call("/v3/kv/range", body, f"range {key}")
        out: list[_KV] = []
        kvs = data.get("kvs") or []
        if not isinstance(kvs, list):
            raise RegistryError(f"etcd range {key}: unexpected response shape")
        for kv in kvs:
            try:
                name = _unb64(kv["key"]).decode("utf-8", errors="replace")
                value = _unb64(kv.get("value", "")) if not keys_only else b""
                revision = int(kv.get("mod_revision", 0))
            except (KeyError, TypeError, ValueError):
                raise RegistryError(f"etcd range {key}: undecodable key/value in response") from None
            if not name.startswith(key):  # defensive: never act on keys outside what was asked
                continue
            out.append(_KV(name, value, revision))
        return out

    async def _txn(
        self, compare: list[dict[str, Any]], success: list[dict[str, Any]], what: str
    ) -> dict[str, Any] | None:
        """One transaction: its response when its comparisons held (and so its operations ran), else None."""
        data = await self._call("/v3/kv/txn", {"compare": compare, "success": success, "failure": []}, what)
        return data if data.get("succeeded") or not compare else None

    def _secrets(self) -> list[str | None]:
        return [
            self._password.reveal() if self._password else None,
            self._token.reveal() if self._token else None,
        ]

    def _err(self, msg: str) -> RegistryError:
        return RegistryError(scrub(one_line(msg, 400), self._secrets()))

    async def _call(self, path: str, body: dict[str, Any], what: str) -> dict[str, Any]:
        try:
            async with asyncio.timeout(self._timeout):
                return await self._call_endpoints(path, body, what)
        except TimeoutError:
            raise self._err(f"etcd {what}: timed out after {self._timeout:g}s ({','.join(self._endpoints)})") from None
        except aiohttp.ClientError as exc:
            raise self._err(f"etcd {what}: {type(exc).__name__}: {exc}") from None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = make_session(self._ssl_context)
        return self._session

    async def _call_endpoints(self, path: str, body: dict[str, Any], what: str) -> dict[str, Any]:
        n = len(self._endpoints)
        order = [(self._preferred + i) % n for i in range(n)]
        failures: list[str] = []
        for idx in order:
            ep = self._endpoints[idx]
            try:
                result = await self._call_one(ep, path, body, what)
            except aiohttp.ClientConnectionError as exc:
                # refused / reset / DNS / TLS handshake: try the next endpoint
                failures.append(f"{ep}: {type(exc).__name__}: {one_line(str(exc), 120)}")
                continue
            except _Unavailable as exc:
                # A member that answers but cannot serve (a learner: "rpc not supported for
                # learner"; no leader; "too many requests"): another member may. Nothing was
                # applied, and every call here is safe to repeat (puts, guarded transactions).
                failures.append(f"{ep}: {exc}")
                continue
            self._preferred = idx
            return result
        raise self._err(f"etcd {what}: no endpoint could serve it ({'; '.join(failures)})")

    async def _call_one(self, ep: str, path: str, body: dict[str, Any], what: str) -> dict[str, Any]:
        reauthed = False
        while True:
            headers = {}
            if self._password is not None:
                if self._token is None:
                    await self._authenticate(ep)
                assert self._token is not None
                headers["Authorization"] = self._token.reveal()
            status, data = await self._post(ep, path, body, headers, what)
            if status == 200:
                cluster_id = (data.get("header") or {}).get("cluster_id")
                if cluster_id:
                    self._cluster_id = str(cluster_id)
                return data
            code = data.get("code") if isinstance(data, dict) else None
            if (
                self._password is not None
                and not reauthed
                and (status == 401 or code == _GRPC_UNAUTHENTICATED or _looks_like_auth_error(data))
            ):
                reauthed = True
                self._token = None  # expired/invalid token: authenticate once more
                continue
            if status >= 500 or status == 429 or code in (_GRPC_UNAVAILABLE, _GRPC_RESOURCE_EXHAUSTED):
                raise _Unavailable(scrub(f"HTTP {status}: {_error_message(data)}", self._secrets()))
            raise self._err(f"etcd {what} at {ep}: HTTP {status}: {_error_message(data)}{_hint(status)}")

    async def _authenticate(self, ep: str) -> None:
        async with self._auth_lock:
            if self._token is not None:
                return
            assert self._password is not None
            status, data = await self._post(
                ep,
                "/v3/auth/authenticate",
                {"name": self._username, "password": self._password.reveal()},
                {},
                "authenticate",
            )
            token = data.get("token") if isinstance(data, dict) else None
            if status >= 500 or status == 429:
                raise _Unavailable(f"authenticate: HTTP {status}: {_error_message(data)}")
            if status != 200 or not isinstance(token, str) or not token:
                raise self._err(
                    f"etcd authentication as user {self._username!r} at {ep} failed: HTTP {status}: "
                    f"{_error_message(data)}"
                )
            self._token = Secret(token)

    async def _post(
        self, ep: str, path: str, body: dict[str, Any], headers: dict[str, str], what: str
    ) -> tuple[int, Any]:
        session = self._get_session()
        # With several endpoints, a black-holed one may only use its share of the call's budget.
        n = len(self._endpoints)
        share = self._timeout / n if n > 1 else None
        per_try = aiohttp.ClientTimeout(total=None, sock_connect=share, sock_read=share)
        async with session.post(ep + path, json=body, headers=headers, allow_redirects=False, timeout=per_try) as resp:
            raw = await read_capped(resp, self._max_response, f"etcd {what} at {ep}")
            status = resp.status
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            if status >= 500 or status == 429:  # a proxy's error page in front of the member
                raise _Unavailable(f"HTTP {status}: response is not JSON") from None
            raise self._err(
                f"etcd {what} at {ep}: HTTP {status}{_hint(status)}: response is not JSON: {raw[:80]!r}"
            ) from None
        if not isinstance(data, dict):
            raise self._err(f"etcd {what} at {ep}: HTTP {status}: response is not a JSON object")
        return status, data


@dataclass(frozen=True)
class _KV:
    key: str
    value: bytes
    mod_revision: int


def _unchanged(kv: _KV) -> dict[str, Any]:
    """A txn comparison: the key still has the version that was read."""
    return {"key": _b64(kv.key), "target": "MOD", "result": "EQUAL", "mod_revision": str(kv.mod_revision)}


def _delete(key: str, *, prefix: bool = False) -> dict[str, Any]:
    request: dict[str, Any] = {"key": _b64(key)}
    if prefix:
        request["range_end"] = prefix_range_end(key)
    return {"request_delete_range": request}


def _config_deletes(key: str) -> list[dict[str, Any]]:
    """A per-IP config: the exact key and everything below "{key}/" (never "{key}0")."""
    return [_delete(key), _delete(key + "/", prefix=True)]


def _names_pod(value: bytes) -> str | None:
    """The pod uid an instance entry names; None when it is not our JSON."""
    try:
        return Instance.from_json(value).uid
    except MalformedEntry:
        return None


def _hint(status: int) -> str:
    # etcd answers the paths of its JSON (gRPC) gateway; a 404 means there is no gateway there.
    if status != 404:
        return ""
    return (
        " (no etcd v3 JSON gateway at this URL: is it an etcd client URL, and is etcd's gRPC gateway "
        "enabled? It is by default; --enable-grpc-gateway=false turns it off)"
    )


def _error_message(data: Any) -> str:
    if isinstance(data, dict):
        msg = data.get("message") or data.get("error")
        if isinstance(msg, str) and msg:
            return one_line(msg, 200)
    return "unexpected response"


def _looks_like_auth_error(data: Any) -> bool:
    msg = _error_message(data).lower()
    return "invalid auth token" in msg or "user name is empty" in msg or "auth token" in msg


class EtcdRegistrySpec(Model):
    # spec.registry.etcd (no docstring: it would become the schema description)

    endpoints: list[Annotated[str, Field(pattern=r"^https?://[^\s/]+(/.*)?$")]] = Field(
        min_length=1,
        description="etcd v3 endpoints (http:// or https://), tried in order.",
    )
    prefix: str = Field(
        default="/services",
        pattern=r"^/[^\s]*$",
        description="Key prefix: instances live under {prefix}/{service}/instances/.",
    )
    credentials_secret: SecretReference | None = Field(
        default=None,
        alias="credentialsSecret",
        description=(
            "Secret with optional keys username, password, ca.crt, tls.crt, tls.key. Its values are never logged."
        ),
    )


def _connect(spec: EtcdRegistrySpec, credentials: dict[str, str], timeout: float) -> EtcdRegistry:
    username, password = login("etcd", credentials)
    return EtcdRegistry(
        spec.endpoints,
        prefix=spec.prefix,
        username=username,
        password=password,
        ssl_context=tls_context(credentials),
        timeout=timeout,
    )


BACKEND = Backend(
    type="etcd",
    summary="etcd",
    spec=EtcdRegistrySpec,
    secret_keys={"username": "username", "password": "password", **TLS_SECRET_KEYS},
    connect=_connect,
    location=lambda spec: (tuple(sorted(e.rstrip("/") for e in spec.endpoints)), normalise_prefix(spec.prefix)),
)
