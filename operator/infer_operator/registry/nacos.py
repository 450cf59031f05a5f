"""Nacos backend over its HTTP OpenAPI: its spec section (`registry.nacos`), its client and its row
in the backend table.

Each sync pod is one **persistent** instance (`ephemeral=false`): an ephemeral instance lives by
the heartbeats (or the gRPC connection) of whoever registered it, and an operator is not the pod.
The operator deletes what it wrote itself, as on every backend.

    POST   {server}/nacos/v1/ns/instance        register (ip, port, serviceName, groupName,
                                                 namespaceId, clusterName, weight, metadata,
                                                 ephemeral=false; enabled only when claiming)
    PUT    {server}/nacos/v1/ns/instance        update (the ops fields: weight, enabled, metadata)
    DELETE {server}/nacos/v1/ns/instance        deregister
    GET    {server}/nacos/v1/ns/instance        one instance, disabled or not
    GET    {server}/nacos/v1/ns/instance/list   the enabled instances (healthyOnly=false)
    POST   {server}/nacos/v1/auth/login         username, password -> accessToken (sent as a
                                                 query parameter, renewed before its tokenTtl)

`apiVersion: v3` uses Nacos 3's paths where they differ (`/nacos/v3/client/ns/instance`,
`.../list`, `/nacos/v3/admin/ns/instance` for the update, `/nacos/v3/auth/user/login`) and
unwraps their `{"code": 0, "data": ...}` bodies.

An instance names its owner in its metadata (`infer-operator.io/instance`: our Instance JSON);
an instance without it is someone else's (an application registering itself) and never touched.
Its weight is the Instance's weight (1..100, 100 once warm): Nacos's clients choose by relative
weight, so a warming pod's 12 is 12 % of a warm pod's share (a weight of exactly 1.0 cannot be
written back through some servers' update, which take 1.0 for "not given").

Per-IP config: Nacos keeps an instance's ops metadata (weight, enabled, metadata written by the
console or an ops tool) per ip:port:cluster, and may hand it to the next instance registered at
that address (alibaba/nacos#12027, #14606, #13027, #8717; r-nacos for 60 s). So:
- a deregistration first writes the entry's own weight and a metadata that names no pod
  (`infer-operator.io/released`) over whatever an ops tool set, then deletes it: what the server
  keeps of it is neutral (an `enabled=false` is left as it was: a dying pod is never enabled again);
- a claim (a pod registered at an address for the first time) registers with `enabled=true`, its
  weight and its own metadata, reads the instance back and, when the server put a previous holder's
  ops metadata on it, writes its own again: the new pod never serves under a dead one's weight=0;
- `list_config_ips` are the IPs of our instances whose weight, enabled flag or metadata differ from
  what the operator wrote, and `delete_config` writes the operator's weight and metadata back.

What the listing cannot show: Nacos leaves disabled instances out of `instance/list`. The client
reads the addresses it wrote or listed before one by one, so a pod an ops tool disabled stays
listed for the operator; after an operator restart, a disabled instance of a pod deleted meanwhile
is found by the pod's deregistration (which reads its address) and otherwise stays.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import aiohttp
from pydantic import Field
from yarl import URL

from infer_operator.api.base import Model, SecretReference

from ._aio import make_session, read_capped
from .base import Backend, Registry
from .model import (
    DEFAULT_MAX_RESPONSE_BYTES,
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

OWNER_KEY = "infer-operator.io/instance"
RELEASED_KEY = "infer-operator.io/released"
DEFAULT_GROUP = "DEFAULT_GROUP"
DEFAULT_CLUSTER = "DEFAULT"
PATHS = {
    "v1": {
        "login": "/v1/auth/login",
        "register": "/v1/ns/instance",
        "update": "/v1/ns/instance",
        "deregister": "/v1/ns/instance",
        "instance": "/v1/ns/instance",
        "list": "/v1/ns/instance/list",
    },
    "v3": {
        "login": "/v3/auth/user/login",
        "register": "/v3/client/ns/instance",
        "update": "/v3/admin/ns/instance",
        "deregister": "/v3/client/ns/instance",
        "instance": "/v3/admin/ns/instance",
        "list": "/v3/client/ns/instance/list",
    },
}
TOKEN_RENEW_FRACTION = 0.8  # a token is renewed after this share of its tokenTtl


class _Unavailable(Exception):
    """A server answered that it cannot serve the call now (5xx, 429): the next one is tried."""


class _NotFound(Exception):
    """The server says there is no such instance."""


def metadata_of(instance: Instance) -> dict[str, str]:
    return {OWNER_KEY: instance.to_json()}


class NacosRegistry(Registry):
    kind = "nacos"

    def __init__(
        self,
        servers: Sequence[str],
        *,
        context_path: str = "/nacos",
        namespace_id: str = "",
        group_name: str = DEFAULT_GROUP,
        cluster_name: str = DEFAULT_CLUSTER,
        api_version: str = "v1",
        username: str | None = None,
        password: str | Secret | None = None,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        if isinstance(servers, str):
            servers = [s for s in servers.split(",") if s.strip()]
        if not servers:
            raise ValueError("nacos registry needs at least one server")
        self._servers = []
        for index, server in enumerate(servers):
            server = server.strip()
            url = URL(server if "://" in server else f"http://{server}")
            if url.scheme not in ("http", "https") or not url.host:
                raise ValueError(f"nacos server #{index} must be http(s)://host:port")
            if url.user or url.password:
                raise ValueError(f"nacos server #{index} must not contain credentials; use username/password")
            self._servers.append(url.with_path("").with_query(None).with_fragment(None))
        self._context = "/" + context_path.strip("/") if context_path.strip("/") else ""
        if api_version not in PATHS:
            raise ValueError(f"unknown nacos apiVersion {api_version!r}; expected v1 or v3")
        self._paths = PATHS[api_version]
        self._api = api_version
        self._namespace = namespace_id
        self._group = group_name
        self._cluster = cluster_name
        if (username is None) != (password is None):
            raise ValueError("nacos username and password must be given together")
        self._username = username
        self._password = password if isinstance(password, Secret) or password is None else Secret(password)
        self._ssl_context = ssl_context
        if not timeout or timeout <= 0:
            raise ValueError("timeout must be > 0")
        self._timeout = float(timeout)
        self._max_response = int(max_response_bytes)
        self._session: aiohttp.ClientSession | None = None
        self._token: Secret | None = None
        self._token_expires = 0.0
        self._auth_lock = asyncio.Lock()
        self._preferred = 0
        # Addresses written or listed before, per service: read one by one when the listing leaves
        # them out, since Nacos's list shows only enabled instances.
        self._known: dict[str, set[tuple[str, int]]] = {}

    def describe(self) -> str:
        auth = f", user={self._username}" if self._username else ""
        tls = ", tls" if self._ssl_context is not None else ""
        servers = ",".join(str(s) for s in self._servers)
        return (
            f"nacos servers={servers} api={self._api} namespace={self._namespace or 'public'} "
            f"group={self._group} cluster={self._cluster}{auth}{tls}"
        )

    # ---- Registry API ------------------------------------------------------------------------
    async def register(self, service: str, instance: Instance) -> None:
        instance.validate()
        current = await self._read(service, instance.ip, instance.port)
        self._refuse_foreign(current, instance)
        params = self._instance_params(service, instance.ip, instance.port)
        params["metadata"] = json.dumps(metadata_of(instance), separators=(",", ":"))
        if isinstance(current, dict):
            # The pod's own instance: keep what an ops tool set on it (weight, enabled, its own
            # metadata keys) for the pod's life; the weight follows the warm-up while it is ours.
            written = _ours(current)
            same_pod = isinstance(written, Instance) and written.uid == instance.uid
            extra = {k: v for k, v in (current.get("metadata") or {}).items() if k not in (OWNER_KEY, RELEASED_KEY)}
            if same_pod:
                params["metadata"] = json.dumps({**extra, **metadata_of(instance)}, separators=(",", ":"))
            if not same_pod or _weight(current) == float(written.weight):
                params["weight"] = str(float(instance.weight))
            await self._send("update", "PUT", params, f"update {instance.address}")
        else:
            params["weight"] = str(float(instance.weight))
            await self._send("register", "POST", params, f"register {instance.address}")
        self._known.setdefault(service, set()).add((instance.ip, instance.port))

    async def claim(self, service: str, instance: Instance) -> None:
        """A new holder of the address: its own weight, enabled and metadata, whatever the server
        kept of the previous holder's (read back, and written again when the server kept it)."""
        instance.validate()
        current = await self._read(service, instance.ip, instance.port)
        self._refuse_foreign(current, instance)
        params = {
            **self._instance_params(service, instance.ip, instance.port),
            "weight": str(float(instance.weight)),
            "enabled": "true",
            "metadata": json.dumps(metadata_of(instance), separators=(",", ":")),
        }
        self._known.setdefault(service, set()).add((instance.ip, instance.port))
        await self._send(
            "register" if current is None else "update",
            "POST" if current is None else "PUT",
            params,
            f"register {instance.address}",
        )
        for _attempt in range(2):
            now = await self._read(service, instance.ip, instance.port)
            if isinstance(now, dict) and not _differs(now, instance):
                return
            # The server gave the new instance what it kept of the previous holder's (its ops
            # metadata): an update of the instance that exists now replaces it.
            await self._send("update", "PUT", params, f"reset {instance.address} for its new holder")
        raise self._err(
            f"nacos claim of {instance.address}: the server keeps putting a previous holder's weight, enabled "
            f"flag or metadata on it; retrying on the next pass"
        )

    async def deregister(self, service: str, ip: str, port: int, uid: str | None = None) -> None:
        validate_segment("ip", ip)
        validate_port(port)
        current = await self._read(service, ip, port)
        if current is None:
            self._known.get(service, set()).discard((ip, port))
            return
        written = _ours(current)
        if uid is not None and (not isinstance(written, Instance) or written.uid != uid):
            return  # another pod's entry at a reused address, or not ours
        if not isinstance(written, Instance) and uid is None:
            return  # not ours: never touched
        # Neutral ops metadata first: what the server keeps of the address names no pod and carries
        # the entry's own weight (enabled is left alone: a dying pod is never enabled again).
        params = self._instance_params(service, ip, port)
        if isinstance(written, Instance):
            await self._send(
                "update",
                "PUT",
                {**params, "weight": str(float(written.weight)), "metadata": json.dumps({RELEASED_KEY: written.uid})},
                f"reset the ops metadata of {ip}:{port}",
            )
        await self._send("deregister", "DELETE", params, f"deregister {ip}:{port}", ok_not_found=True)
        self._known.get(service, set()).discard((ip, port))

    async def identity(self) -> str:
        servers = ",".join(sorted(str(s) for s in self._servers))
        return f"nacos {servers}{self._context} {self._namespace or 'public'} {self._group} {self._cluster}"

    async def list_instances(self, service: str) -> Listing:
        listing = Listing()
        for address, host in (await self._all(service)).items():
            found = _ours(host)
            if isinstance(found, Instance):
                listing.instances.append(found)
            else:
                listing.malformed.append(address)
        return listing

    async def lookup(self, service: str, ip: str, port: int) -> Instance | Unreadable | None:
        validate_segment("ip", ip)
        validate_port(port)
        current = await self._read(service, ip, port)
        if current is None:
            return None
        found = _ours(current)
        return found if isinstance(found, Instance) else Unreadable(f"{ip}:{port}", found)

    async def list_config_ips(self, service: str) -> set[str]:
        ips = set()
        for host in (await self._all(service)).values():
            written = _ours(host)
            if isinstance(written, Instance) and _differs(host, written):
                ips.add(written.ip)
        return ips

    async def delete_config(self, service: str, ip: str) -> None:
        validate_segment("ip", ip)
        for host in (await self._all(service)).values():
            written = _ours(host)
            if isinstance(written, Instance) and written.ip == ip and _differs(host, written):
                params = {
                    **self._instance_params(service, written.ip, written.port),
                    "weight": str(float(written.weight)),
                    "metadata": json.dumps(metadata_of(written), separators=(",", ":")),
                }
                await self._send("update", "PUT", params, f"reset the ops metadata of {written.address}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ---- reads -------------------------------------------------------------------------------
    def _instance_params(self, service: str, ip: str, port: int) -> dict[str, str]:
        validate_segment("service", service)
        return {
            "serviceName": service,
            "groupName": self._group,
            "namespaceId": self._namespace,
            "clusterName": self._cluster,
            "ip": ip,
            "port": str(port),
            "ephemeral": "false",
        }

    async def _read(self, service: str, ip: str, port: int) -> dict[str, Any] | None:
        """The instance at ip:port (disabled ones too); None when the server says there is none."""
        params = self._instance_params(service, ip, port)
        params.pop("ephemeral")
        params["cluster"] = self._cluster
        try:
            data = await self._send("instance", "GET", params, f"read {ip}:{port}")
        except _NotFound:
            return None
        if not isinstance(data, dict) or str(data.get("ip")) != ip or int(data.get("port", -1)) != port:
            # Some servers answer an absent instance with an empty body or another shape: the
            # listing decides (something listed there is never "gone").
            hosts = await self._list(service)
            return hosts.get(f"{ip}:{port}")
        return data

    async def _list(self, service: str) -> dict[str, dict[str, Any]]:
        params = {
            "serviceName": service,
            "groupName": self._group,
            "namespaceId": self._namespace,
            "clusters": self._cluster,
            "clusterName": self._cluster,
            "healthyOnly": "false",
        }
        validate_segment("service", service)
        try:
            data = await self._send("list", "GET", params, f"list {service}")
        except _NotFound:
            return {}
        hosts = data.get("hosts") if isinstance(data, dict) else data
        if hosts is None:
            hosts = []
        if not isinstance(hosts, list):
            raise self._err(f"nacos list {service}: unexpected response shape")
        out = {}
        for host in hosts:
            if isinstance(host, dict) and "ip" in host and "port" in host:
                if host.get("clusterName", self._cluster) not in (self._cluster, None):
                    continue
                out[f"{host['ip']}:{host['port']}"] = host
        return out

    async def _all(self, service: str) -> dict[str, dict[str, Any]]:
        """The listing, and the addresses known before that it leaves out (disabled instances)."""
        hosts = await self._list(service)
        known = self._known.setdefault(service, set())
        missing = [(ip, port) for ip, port in known if f"{ip}:{port}" not in hosts]
        reads = await asyncio.gather(*(self._read(service, ip, port) for ip, port in missing))
        for (ip, port), found in zip(missing, reads, strict=True):
            if found is None:
                known.discard((ip, port))
            else:
                hosts[f"{ip}:{port}"] = found
        known.update((str(h["ip"]), int(h["port"])) for h in hosts.values() if isinstance(_ours(h), Instance))
        return hosts

    def _refuse_foreign(self, current: dict[str, Any] | None, instance: Instance) -> None:
        if current is not None and not isinstance(_ours(current), Instance) and not _released(current):
            raise self._err(
                f"nacos register {instance.address}: an instance the operator did not write is registered "
                f"there (no {OWNER_KEY} metadata); left alone"
            )

    # ---- HTTP --------------------------------------------------------------------------------
    def _secrets(self) -> list[str | None]:
        return [self._password.reveal() if self._password else None, self._token.reveal() if self._token else None]

    def _err(self, msg: str) -> RegistryError:
        return RegistryError(scrub(one_line(msg, 400), self._secrets()))

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = make_session(self._ssl_context)
        return self._session

    async def _send(
        self, op: str, method: str, params: dict[str, str], what: str, *, ok_not_found: bool = False
    ) -> Any:
        try:
            async with asyncio.timeout(self._timeout):
                return await self._on_servers(op, method, params, what, ok_not_found)
        except TimeoutError:
            servers = ",".join(str(s) for s in self._servers)
            raise self._err(f"nacos {what}: timed out after {self._timeout:g}s ({servers})") from None
        except aiohttp.ClientError as exc:
            raise self._err(f"nacos {what}: {type(exc).__name__}: {exc}") from None

    async def _on_servers(self, op: str, method: str, params: dict[str, str], what: str, ok_not_found: bool) -> Any:
        n = len(self._servers)
        failures = []
        for index in [(self._preferred + i) % n for i in range(n)]:
            server = self._servers[index]
            try:
                result = await self._one(server, op, method, params, what, ok_not_found)
            except aiohttp.ClientConnectionError as exc:
                failures.append(f"{server}: {type(exc).__name__}: {one_line(str(exc), 120)}")
                continue
            except _Unavailable as exc:
                failures.append(f"{server}: {exc}")
                continue
            self._preferred = index
            return result
        raise self._err(f"nacos {what}: no server could serve it ({'; '.join(failures)})")

    async def _one(
        self, server: URL, op: str, method: str, params: dict[str, str], what: str, ok_not_found: bool
    ) -> Any:
        reauthed = False
        while True:
            query = dict(params) if method in ("GET", "DELETE") else {}
            form = None if method in ("GET", "DELETE") else dict(params)
            if self._password is not None:
                token = await self._login(server)
                query["accessToken"] = token.reveal()
            status, body = await self._http(server, self._paths[op], method, query, form, what)
            if status in (401, 403) and self._password is not None and not reauthed:
                reauthed = True
                self._token = None  # expired or revoked: log in once more
                continue
            if status >= 500 and _says_not_found(body):
                if ok_not_found:
                    return None
                raise _NotFound()
            if status >= 500 or status == 429:
                raise _Unavailable(scrub(f"HTTP {status}: {_message(body)}", self._secrets()))
            if status == 404:
                if ok_not_found:
                    return None
                raise _NotFound()
            if not 200 <= status < 300:
                hint = " (unauthorized: check the registry credentials)" if status in (401, 403) else ""
                raise self._err(f"nacos {what} at {server}: HTTP {status}{hint}: {_message(body)}")
            return self._unwrap(body, what)

    def _unwrap(self, body: bytes, what: str) -> Any:
        text = body.decode("utf-8", errors="replace").strip()
        if not text or text == "ok":
            return None
        try:
            data = json.loads(text)
        except ValueError:
            return text
        if self._api == "v3" and isinstance(data, dict) and "code" in data and "data" in data:
            if data.get("code") not in (0, 200):
                raise self._err(f"nacos {what}: code {data.get('code')}: {one_line(str(data.get('message')), 200)}")
            return data["data"]
        return data

    async def _login(self, server: URL) -> Secret:
        async with self._auth_lock:
            if self._token is not None and time.monotonic() < self._token_expires:
                return self._token
            assert self._password is not None
            status, body = await self._http(
                server,
                self._paths["login"],
                "POST",
                {},
                {"username": self._username or "", "password": self._password.reveal()},
                "log in",
            )
            if status >= 500 or status == 429:
                raise _Unavailable(f"log in: HTTP {status}")
            try:
                data = json.loads(body)
                if self._api == "v3" and isinstance(data, dict) and "data" in data:
                    data = data["data"]
                token = data["accessToken"]
                ttl = float(data.get("tokenTtl", 18000))
            except (ValueError, KeyError, TypeError):
                raise self._err(
                    f"nacos log in as user {self._username!r} at {server} failed: HTTP {status}: {_message(body)}"
                ) from None
            if not isinstance(token, str) or not token:
                raise self._err(f"nacos log in as user {self._username!r} at {server} failed: no token")
            self._token = Secret(token)
            self._token_expires = time.monotonic() + ttl * TOKEN_RENEW_FRACTION
            return self._token

    async def _http(
        self, server: URL, path: str, method: str, query: dict[str, str], form: dict[str, str] | None, what: str
    ) -> tuple[int, bytes]:
        url = (server / (self._context + path).lstrip("/")).with_query(query or None)
        session = self._get_session()
        n = len(self._servers)
        share = self._timeout / n if n > 1 else None
        per_try = aiohttp.ClientTimeout(total=None, sock_connect=share, sock_read=share)
        try:
            async with session.request(
                method, url, data=form, allow_redirects=False, timeout=per_try, headers={"Accept": "application/json"}
            ) as resp:
                return resp.status, await read_capped(resp, self._max_response, f"nacos {what} at {server}")
        except aiohttp.ClientResponseError as exc:  # never shows the URL: it carries the token
            raise self._err(f"nacos {what} at {server}: {type(exc).__name__}: {exc.status}") from None


def _ours(host: dict[str, Any]) -> Instance | str:
    """The Instance an instance's metadata names (checked against its address); else why not ours."""
    metadata = host.get("metadata") or {}
    if isinstance(metadata, str):
        try:
            metadata = json.loads(metadata)
        except ValueError:
            return "metadata is not JSON"
    raw = metadata.get(OWNER_KEY) if isinstance(metadata, dict) else None
    if not isinstance(raw, str):
        return f"no {OWNER_KEY} metadata"
    try:
        instance = Instance.from_json(raw)
    except MalformedEntry as exc:
        return str(exc)
    if instance.ip != str(host.get("ip")) or instance.port != int(host.get("port", -1)):
        return f"its metadata names {instance.address}"
    return instance


def _released(host: dict[str, Any]) -> bool:
    metadata = host.get("metadata") or {}
    return isinstance(metadata, dict) and RELEASED_KEY in metadata and OWNER_KEY not in metadata


def _weight(host: dict[str, Any]) -> float:
    try:
        return float(host.get("weight", 1.0))
    except (TypeError, ValueError):
        return -1.0


def _differs(host: dict[str, Any], written: Instance) -> bool:
    """Whether an instance's ops fields differ from what the operator wrote for `written`."""
    metadata = host.get("metadata") or {}
    if not isinstance(metadata, dict):
        return True
    return bool(
        host.get("enabled") is False
        or _weight(host) != float(written.weight)
        or set(metadata) != {OWNER_KEY}
        or metadata.get(OWNER_KEY) != written.to_json()
    )


def _says_not_found(body: bytes) -> bool:
    # r-nacos answers an absent instance with 500 "error"; Nacos with "no ips found" / "not found".
    text = body.decode("utf-8", errors="replace").strip().lower()
    return text == "error" or "no ips found" in text or "not found" in text or "no matched ip" in text


def _message(body: bytes) -> str:
    return one_line(body[:200].decode("utf-8", errors="replace"), 160) or "empty response"


class NacosRegistrySpec(Model):
    # spec.registry.nacos (no docstring: it would become the schema description)

    server_addr: list[Annotated[str, Field(pattern=r"^(https?://)?[^\s/]+(:[0-9]+)?/?$")]] = Field(
        min_length=1,
        alias="serverAddr",
        description="Nacos servers, http(s)://host:port (or host:port), tried in turn.",
    )
    context_path: str = Field(
        default="/nacos", alias="contextPath", pattern=r"^/[^\s]*$", description="The servers' context path."
    )
    namespace_id: str = Field(
        default="", alias="namespaceId", max_length=128, description="Namespace id (default: public)."
    )
    group_name: str = Field(default=DEFAULT_GROUP, alias="groupName", min_length=1, max_length=128)
    cluster_name: str = Field(default=DEFAULT_CLUSTER, alias="clusterName", min_length=1, max_length=64)
    api_version: Literal["v1", "v3"] = Field(
        default="v1",
        alias="apiVersion",
        description="The OpenAPI's paths: v1 (Nacos 1.x and 2.x, r-nacos) or v3 (Nacos 3.x).",
    )
    credentials_secret: SecretReference | None = Field(
        default=None,
        alias="credentialsSecret",
        description=(
            "Secret with keys username and password (logged in for an access token), and optional ca.crt, "
            "tls.crt, tls.key. Its values are never logged."
        ),
    )


def _connect(spec: NacosRegistrySpec, credentials: dict[str, str], timeout: float) -> NacosRegistry:
    username, password = login("nacos", credentials)
    return NacosRegistry(
        spec.server_addr,
        context_path=spec.context_path,
        namespace_id=spec.namespace_id,
        group_name=spec.group_name,
        cluster_name=spec.cluster_name,
        api_version=spec.api_version,
        username=username,
        password=password,
        ssl_context=tls_context(credentials),
        timeout=timeout,
    )


def _location(spec: NacosRegistrySpec) -> tuple[Any, ...]:
    servers = tuple(sorted(s.rstrip("/") if "://" in s else f"http://{s.rstrip('/')}" for s in spec.server_addr))
    return (servers, spec.context_path.rstrip("/"), spec.namespace_id, spec.group_name, spec.cluster_name)


BACKEND = Backend(
    type="nacos",
    summary="nacos (persistent instances over the HTTP OpenAPI)",
    spec=NacosRegistrySpec,
    secret_keys={"username": "username", "password": "password", **TLS_SECRET_KEYS},
    connect=_connect,
    location=_location,
)
