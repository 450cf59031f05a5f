"""ZooKeeper backend: its spec section (`registry.zookeeper`), its client and its row in the backend
table. Two layouts, chosen in the spec, each the one its consumers already read:

``dubbo`` (Apache Dubbo's ZooKeeper registry; the registry service is the Dubbo interface)::

    {root}/{interface}/providers/{url-encoded provider URL}       <- one node per instance, ours
        tri://10.0.0.7:8000/com.example.Llm?interface=com.example.Llm&side=provider&dynamic=false
            &weight=100&timestamp=<ms>&warmup=<ms>&application=...    (node data: our Instance JSON)
    {root}/{interface}/configurators/{url-encoded override URL}   <- per-IP config: Dubbo's override
        override://10.0.0.7:8000/com.example.Llm?category=configurators&weight=0&disabled=true
                                                                     rules (dubbo-admin, ops tools)

``curator`` (Apache Curator's service discovery, curator-x-discovery)::

    {root}/{service}/{ip}:{port} = ServiceInstance JSON {"name","id","address","port","payload":
        <our Instance JSON>,"registrationTimeUTC","serviceType":"STATIC","enabled":true,...}

Every node the operator writes is persistent: an ephemeral node dies with the session that made it,
so an operator restart would empty the registry. The operator deletes what it wrote itself, as it
does on every backend. Nodes are told apart from everyone else's by their data: a provider node
whose data is not our Instance JSON (Dubbo's own providers write the host's IP there) is listed as
"not ours" and never touched, and so is every configurator that is not an IP-specific override.

Per-IP config: Dubbo keeps it apart from the instance, in override rules addressed to
`override://{ip}[:{port}]/...` that outlive the provider (the stale weight=0 / disabled=true a new
pod on a reused IP would inherit). The operator lists and deletes only those whose host is one
specific IP (never `0.0.0.0`, the rule for every provider, nor another scheme's nodes); a claim
deletes the IP's rules and creates the provider node in one ZooKeeper multi, each rule checked
against the version read. Curator has no per-IP config apart from the instance: its `enabled` flag
lives in the instance node, which is the pod's and goes with it.

Warm-up: a Dubbo consumer ramps a provider's weight itself, from its `timestamp` over `warmup`
milliseconds (its load balancers' `calculateWarmupWeight`). The provider URL carries the time the
operator first listed the pod and `registry.warmupSeconds`; the operator's stepped weight is kept in
the node data only, so its re-writes never change the URL consumers see (they watch names, not data).

Client: kazoo (its asynchronous calls, bridged to asyncio without a thread per call): aiozk has no
digest authentication that survives a reconnect; kazoo sends `auth_data` again on every new session.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import Sequence
from typing import Any, Literal
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from pydantic import Field

from infer_operator.api.base import Model, SecretReference

from .base import Backend, Registry
from .model import (
    DEFAULT_TIMEOUT,
    FULL_WEIGHT,
    Instance,
    Listing,
    MalformedEntry,
    RegistryError,
    Unreadable,
    is_ip,
    login,
    one_line,
    scrub,
    validate_port,
    validate_segment,
)
from .tls import Secret

log = logging.getLogger(__name__)

DUBBO_ROOT = "/dubbo"
CURATOR_ROOT = "/services"
DUBBO_PROTOCOL = "tri"
# Dubbo's override rules ("absent" applies only where the provider has no value of its own).
CONFIGURATOR_SCHEMES = ("override", "absent")
SESSION_TIMEOUT = 10.0


def _normalise_path(path: str | None, what: str) -> str:
    """'/a//b/' -> '/a/b'; '' or '/' -> ''."""
    if path is None:
        return ""
    parts = [p for p in path.split("/") if p]
    for p in parts:
        if p in (".", "..") or any(ord(c) < 0x21 for c in p):
            raise ValueError(f"invalid zookeeper {what} {path!r}")
    return "".join("/" + p for p in parts)


def _host(ip: str) -> str:
    return f"[{ip}]" if ":" in ip else ip


def provider_url(service: str, instance: Instance, *, protocol: str, params: dict[str, str]) -> str:
    """A Dubbo provider URL for `instance` (parameters sorted, as Dubbo writes them)."""
    query = urlencode(sorted(params.items()))
    return f"{protocol}://{_host(instance.ip)}:{instance.port}/{service}?{query}"


def encode_node(url: str) -> str:
    """A URL as one ZooKeeper node name, the way Dubbo encodes it (java.net.URLEncoder, UTF-8)."""
    return quote(url, safe="*").replace("~", "%7E")


@dataclasses.dataclass(frozen=True)
class DubboUrl:
    scheme: str
    host: str
    port: int | None
    path: str
    params: dict[str, str]

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def parse_node(name: str) -> DubboUrl | None:
    """A provider or configurator node name as a URL; None when it is not one."""
    try:
        parts = urlsplit(unquote(name))
        host = parts.hostname
        port = parts.port
    except ValueError:
        return None
    if not parts.scheme or not host:
        return None
    return DubboUrl(parts.scheme, host, port, parts.path.lstrip("/"), dict(parse_qsl(parts.query)))


class DubboSettings(Model):
    # spec.registry.zookeeper.dubbo (no docstring: it would become the schema description)

    protocol: str = Field(
        default=DUBBO_PROTOCOL,
        pattern=r"^[a-z][a-z0-9+.-]*$",
        description="Protocol of the provider URL: tri (Triple, which gRPC clients speak too), dubbo, rest, ...",
    )
    application: str | None = Field(
        default=None, description="The provider's application name (default: infer-operator)."
    )
    version: str | None = Field(default=None, description="The service version consumers ask for, if any.")
    group: str | None = Field(default=None, description="The service group consumers ask for, if any.")
    parameters: dict[str, str] = Field(
        default_factory=dict,
        description="More provider URL parameters (e.g. serialization, timeout). The operator's own win.",
    )


class ZooKeeperRegistrySpec(Model):
    # spec.registry.zookeeper (no docstring: it would become the schema description)

    servers: list[str] = Field(
        min_length=1,
        json_schema_extra={"items": {"type": "string", "pattern": r"^[^\s/,]+:[0-9]{1,5}$"}},
        description="ZooKeeper servers as host:port, tried in turn (the connect string's hosts).",
    )
    chroot: str | None = Field(
        default=None,
        pattern=r"^/[^\s]*$",
        description="Every path below this node (the connect string's chroot); made when missing.",
    )
    layout: Literal["dubbo", "curator"] = Field(
        default="dubbo",
        description=(
            "dubbo: Dubbo providers at {root}/{service}/providers (service = the Dubbo interface; per-IP "
            "config = its override rules in {root}/{service}/configurators). curator: Curator service "
            "discovery, {root}/{service}/{ip}:{port} = ServiceInstance JSON."
        ),
    )
    root: str | None = Field(
        default=None,
        pattern=r"^/[^\s]*$",
        description="Root path: Dubbo's registry group (default /dubbo) or Curator's base path (default /services).",
    )
    dubbo: DubboSettings | None = Field(default=None, description="The provider URL (layout dubbo).")
    credentials_secret: SecretReference | None = Field(
        default=None,
        alias="credentialsSecret",
        description=(
            "Secret with keys username and password: ZooKeeper digest authentication. Nodes the operator "
            "writes are then readable by anyone and changed only by that identity. Values are never logged."
        ),
    )


def _to_dict(section: ZooKeeperRegistrySpec) -> dict[str, Any]:
    return section.model_dump(by_alias=True, exclude_none=True)


class _Bridge:
    """Awaits kazoo's asynchronous results on the event loop: kazoo settles them on its own thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def wait(self, result: Any) -> asyncio.Future:
        future = self.loop.create_future()

        def settle(done: Any) -> None:
            if future.done():
                return
            try:
                future.set_result(done.get_nowait())
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task
                future.set_exception(exc)

        result.rawlink(lambda done: self.loop.call_soon_threadsafe(settle, done))
        return future


class ZooKeeperRegistry(Registry):
    kind = "zookeeper"

    def __init__(
        self,
        servers: Sequence[str],
        *,
        layout: str = "dubbo",
        root: str | None = None,
        chroot: str | None = None,
        dubbo: DubboSettings | None = None,
        application: str = "infer-operator",
        username: str | None = None,
        password: str | Secret | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        client_factory: Any = None,
    ) -> None:
        if isinstance(servers, str):
            servers = [s for s in servers.split(",") if s.strip()]
        if not servers:
            raise ValueError("zookeeper registry needs at least one server")
        for index, server in enumerate(servers):
            host, _, port = server.strip().rpartition(":")
            if not host or not port.isdigit() or "/" in server or "@" in server:
                raise ValueError(f"zookeeper server #{index} must be host:port")
        self._servers = [s.strip() for s in servers]
        if layout not in ("dubbo", "curator"):
            raise ValueError(f"unknown zookeeper layout {layout!r}; expected dubbo or curator")
        self.layout = layout
        self._chroot = _normalise_path(chroot, "chroot")
        default_root = DUBBO_ROOT if layout == "dubbo" else CURATOR_ROOT
        self._root = _normalise_path(root if root is not None else default_root, "root")
        self._dubbo = dubbo or DubboSettings()
        self._application = self._dubbo.application or application
        if (username is None) != (password is None):
            raise ValueError("zookeeper username and password must be given together")
        if username is not None and ":" in username:
            raise ValueError("zookeeper username must not contain ':'")
        self._username = username
        self._password = password if isinstance(password, Secret) or password is None else Secret(password)
        if not timeout or timeout <= 0:
            raise ValueError("timeout must be > 0")
        self._timeout = float(timeout)
        self._client_factory = client_factory
        self._zk: Any = None
        self._bridge: _Bridge | None = None
        self._connected: asyncio.Event | None = None
        self._ensured: set[str] = set()

    # ---- description -------------------------------------------------------------------------
    def describe(self) -> str:
        auth = f", user={self._username}" if self._username else ""
        return f"zookeeper servers={','.join(self._servers)} {self.layout} root={self._chroot}{self._root or '/'}{auth}"

    # ---- layout ------------------------------------------------------------------------------
    def service_path(self, service: str) -> str:
        validate_segment("service", service)
        return f"{self._chroot}{self._root}/{service}"

    def providers_path(self, service: str) -> str:
        return self.service_path(service) + ("/providers" if self.layout == "dubbo" else "")

    def configurators_path(self, service: str) -> str:
        return self.service_path(service) + "/configurators"

    def _provider_params(self, service: str, instance: Instance, first_listed_ms: int) -> dict[str, str]:
        warmup_ms = int(self.warmup_seconds * 1000)
        params = dict(self._dubbo.parameters)
        params.update(
            {
                "interface": service,
                "side": "provider",
                "application": self._application,
                # A persistent node: Dubbo's word for a provider the registry keeps (not its session).
                "dynamic": "false",
                "weight": str(FULL_WEIGHT),
                # Dubbo consumers ramp a new provider's weight from `timestamp` over `warmup` ms.
                "timestamp": str(first_listed_ms),
                "warmup": str(warmup_ms),
            }
        )
        if self._dubbo.version:
            params["version"] = self._dubbo.version
        if self._dubbo.group:
            params["group"] = self._dubbo.group
        return params

    def provider_node(self, service: str, instance: Instance, first_listed_ms: int) -> str:
        url = provider_url(
            service,
            instance,
            protocol=self._dubbo.protocol,
            params=self._provider_params(service, instance, first_listed_ms),
        )
        return encode_node(url)

    def curator_value(self, service: str, instance: Instance, registered_ms: int) -> bytes:
        return json.dumps(
            {
                "name": service,
                "id": instance.address,
                "address": instance.ip,
                "port": instance.port,
                "sslPort": None,
                "payload": instance.to_obj(),
                "registrationTimeUTC": registered_ms,
                # Written by an external source and kept by the registry (not the writer's session).
                "serviceType": "STATIC",
                "uriSpec": None,
                "enabled": True,
            },
            separators=(",", ":"),
        ).encode()

    # ---- Registry API ------------------------------------------------------------------------
    async def register(self, service: str, instance: Instance) -> None:
        await self._put(service, instance, configs=())

    async def claim(self, service: str, instance: Instance) -> None:
        instance.validate()
        configs = await self._configs_at(service, instance.ip) if self.layout == "dubbo" else []
        await self._put(service, instance, configs=configs)

    async def deregister(self, service: str, ip: str, port: int, uid: str | None = None) -> None:
        validate_segment("ip", ip)
        validate_port(port)
        for path, version, found in await self._ours_at(service, f"{ip}:{port}"):
            if uid is not None and (not isinstance(found, Instance) or found.uid != uid):
                continue  # another pod's entry at a reused address, or not ours
            await self._delete(path, version, f"deregister {ip}:{port}")

    async def identity(self) -> str:
        return f"zookeeper {','.join(sorted(self._servers))} {self._chroot}{self._root or '/'} {self.layout}"

    async def list_instances(self, service: str) -> Listing:
        listing = Listing()
        for name, (_, _, found) in (await self._read_entries(service)).items():
            if isinstance(found, Instance):
                listing.instances.append(found)
            else:
                listing.malformed.append(found.address if isinstance(found, Unreadable) else name)
        return listing

    async def lookup(self, service: str, ip: str, port: int) -> Instance | Unreadable | None:
        validate_segment("ip", ip)
        validate_port(port)
        address = f"{ip}:{port}"
        at = [found for _, (_, _, found) in (await self._read_entries(service)).items() if _address(found) == address]
        ours = [f for f in at if isinstance(f, Instance)]
        if at and len(ours) == len(at):
            return ours[0]
        if at:  # something not ours is listed at the address: never "gone"
            return next(f for f in at if isinstance(f, Unreadable))
        return None

    async def list_config_ips(self, service: str) -> set[str]:
        if self.layout != "dubbo":
            return set()
        return {ip for ip, _, _ in await self._configurators(service)}

    async def delete_config(self, service: str, ip: str) -> None:
        validate_segment("ip", ip)
        if self.layout != "dubbo":
            return
        for path, version in await self._configs_at(service, ip):
            await self._delete(path, version, f"delete the override rule of {ip}")

    async def delete_configs(self, service: str, ips: Sequence[str]) -> dict[str, str]:
        """One read of the configurators, then the rules of each IP deleted (a failure is that IP's)."""
        errors: dict[str, str] = {}
        if self.layout != "dubbo":
            return errors
        wanted: dict[str, list[tuple[str, int]]] = {}
        for ip in ips:
            try:
                wanted[validate_segment("ip", ip)] = []
            except ValueError as exc:
                errors[ip] = str(exc)
        for ip, path, version in await self._configurators(service):
            if ip in wanted and is_ip(ip):
                wanted[ip].append((path, version))
        for ip, rules in wanted.items():
            try:
                await asyncio.gather(*(self._delete(p, v, f"delete the override rule of {ip}") for p, v in rules))
            except RegistryError as exc:
                errors[ip] = str(exc)
        return errors

    async def close(self) -> None:
        zk, self._zk = self._zk, None
        self._connected = None
        if zk is not None:
            loop = asyncio.get_running_loop()
            # kazoo's stop joins its connection thread (not on the event loop), which may sit in a
            # connection attempt to a black hole for a session timeout: wait a call's time at most.
            stopping = loop.run_in_executor(None, _stop, zk)
            await asyncio.wait({stopping}, timeout=self._timeout)

    # ---- entries -----------------------------------------------------------------------------
    async def _read_entries(self, service: str) -> dict[str, tuple[str, int, Instance | Unreadable]]:
        """Every node under the service's providers (dubbo) or service path (curator): name ->
        (path, data version, our Instance or Unreadable)."""
        parent = self.providers_path(service)
        names = await self._children(parent)
        reads = await asyncio.gather(*(self._get(f"{parent}/{name}") for name in names))
        out: dict[str, tuple[str, int, Instance | Unreadable]] = {}
        for name, read in zip(names, reads, strict=True):
            if read is None:
                continue  # deleted between the listing and the read
            data, version = read
            out[name] = (f"{parent}/{name}", version, self._entry(name, data))
        return out

    def _entry(self, name: str, data: bytes) -> Instance | Unreadable:
        if self.layout == "dubbo":
            url = parse_node(name)
            if url is None or url.port is None:
                return Unreadable(name, "not a provider URL")
            address = url.address
        else:
            address = name
        try:
            obj = json.loads(data)
            if self.layout == "curator" and isinstance(obj, dict):
                # a ServiceInstance: at the address it names, whoever wrote it
                if isinstance(obj.get("address"), str) and isinstance(obj.get("port"), int):
                    address = f"{obj['address']}:{obj['port']}"
                obj = obj["payload"]
            instance = Instance.from_obj(obj)
        except (ValueError, KeyError, TypeError, MalformedEntry) as exc:
            return Unreadable(address, one_line(str(exc), 120))
        if instance.address != address:
            return Unreadable(address, f"the node names {address} but its data {instance.address}")
        return instance

    async def _ours_at(self, service: str, address: str) -> list[tuple[str, int, Instance | Unreadable]]:
        return [entry for entry in (await self._read_entries(service)).values() if _address(entry[2]) == address]

    async def _put(self, service: str, instance: Instance, configs: Sequence[tuple[str, int]]) -> None:
        """Write the pod's entry (and delete `configs`, the IP's override rules as read, in the same
        multi): the pod's own node at the address is kept (its URL, so its warm-up's timestamp) and
        its data updated; our nodes at the address naming another pod of the same owner go."""
        instance.validate()
        parent = self.providers_path(service)
        await self._ensure(parent)
        now_ms = int(time.time() * 1000)
        operations: list[tuple[str, Any]] = [("delete", (path, version)) for path, version in configs]
        if self.layout == "curator":
            # One node per address, named after it: written over when ours (whichever pod it
            # named: the entry at an address is its current holder's), never when not ours.
            path = f"{parent}/{instance.address}"
            value = self.curator_value(service, instance, now_ms)
            read = await self._get(path)
            if read is None:
                operations.append(("create", (path, value)))
            elif isinstance(self._entry(instance.address, read[0]), Instance):
                operations.append(("set", (path, value, read[1])))
            else:
                raise self._err(f"zookeeper register {instance.address}: {path} is not the operator's; left alone")
        else:
            existing = await self._ours_at(service, instance.address)
            own = next(((p, v, f) for p, v, f in existing if isinstance(f, Instance) and f.uid == instance.uid), None)
            value = instance.to_json().encode()
            if own is not None:
                operations.append(("set", (own[0], value, own[1])))
            else:
                # First listed now: a warm pod (full weight) is written as warmed up already.
                first_ms = now_ms if instance.weight < FULL_WEIGHT else now_ms - int(self.warmup_seconds * 1000)
                operations.append(("create", (f"{parent}/{self.provider_node(service, instance, first_ms)}", value)))
            for path, version, found in existing:
                if path == (own[0] if own else None) or not isinstance(found, Instance):
                    continue
                if found.owner is not None and instance.owner is not None and found.owner.uid != instance.owner.uid:
                    continue  # another InferenceService's entry: its owner removes it
                operations.append(("delete", (path, version)))
        await self._multi(operations, f"register {instance.pod} at {instance.address}")

    # ---- per-IP config (Dubbo override rules) ------------------------------------------------
    async def _configurators(self, service: str) -> list[tuple[str, str, int]]:
        """(host, path, version) of every override rule: its host is an IP for a per-IP config,
        `0.0.0.0` for a rule of every provider (never deleted: `is_ip` refuses it), or a name."""
        parent = self.configurators_path(service)
        names = await self._children(parent)
        out = []
        for name in names:
            url = parse_node(name)
            if url is None or url.scheme not in CONFIGURATOR_SCHEMES:
                continue
            out.append((url.host, f"{parent}/{name}"))
        stats = await asyncio.gather(*(self._version(path) for _, path in out))
        return [(host, path, version) for (host, path), version in zip(out, stats, strict=True) if version is not None]

    async def _configs_at(self, service: str, ip: str) -> list[tuple[str, int]]:
        """The override rules addressed to `ip` alone (none for a name or `0.0.0.0`)."""
        if not is_ip(ip):
            return []
        return [(path, version) for found, path, version in await self._configurators(service) if found == ip]

    # ---- kazoo -------------------------------------------------------------------------------
    def _secrets(self) -> list[str | None]:
        password = self._password.reveal() if self._password else None
        return [password, f"{self._username}:{password}" if password else None]

    def _err(self, msg: str) -> RegistryError:
        return RegistryError(scrub(one_line(msg, 400), self._secrets()))

    async def _client(self) -> Any:
        if self._zk is None:
            from kazoo.client import KazooClient
            from kazoo.protocol.states import KazooState

            loop = asyncio.get_running_loop()
            self._bridge = _Bridge(loop)
            connected = asyncio.Event()
            self._connected = connected
            auth = [("digest", f"{self._username}:{self._password.reveal()}")] if self._password else None
            factory = self._client_factory or KazooClient
            zk = factory(
                hosts=",".join(self._servers),
                timeout=SESSION_TIMEOUT,
                auth_data=auth,
                randomize_hosts=False,  # in the order given, as the other backends try theirs
                connection_retry={"max_tries": -1, "delay": 0.1, "max_delay": 2.0},
                logger=_kazoo_logger(),
            )

            def state(value: Any) -> None:
                up = value == KazooState.CONNECTED
                loop.call_soon_threadsafe(connected.set if up else connected.clear)

            zk.add_listener(state)
            self._zk = zk
            started = zk.start_async()
            if started.is_set():
                connected.set()
        assert self._connected is not None
        if not self._connected.is_set():
            await self._connected.wait()
        return self._zk

    async def _call(self, what: str, make: Any) -> Any:
        from kazoo.exceptions import KazooException

        try:
            async with asyncio.timeout(self._timeout):
                zk = await self._client()
                assert self._bridge is not None
                return await self._bridge.wait(make(zk))
        except TimeoutError:
            raise self._err(
                f"zookeeper {what}: timed out after {self._timeout:g}s (servers {','.join(self._servers)})"
            ) from None
        except (KazooException, OSError) as exc:
            raise self._err(f"zookeeper {what}: {type(exc).__name__}: {exc}") from None

    async def _children(self, path: str) -> list[str]:
        from kazoo.exceptions import NoNodeError

        try:
            return sorted(await self._call(f"list {path}", lambda zk: zk.get_children_async(path)))
        except RegistryError as exc:
            if isinstance(exc.__context__, NoNodeError) or "NoNodeError" in str(exc):
                return []
            raise

    async def _get(self, path: str) -> tuple[bytes, int] | None:
        try:
            data, stat = await self._call(f"read {path}", lambda zk: zk.get_async(path))
        except RegistryError as exc:
            if "NoNodeError" in str(exc):
                return None
            raise
        return data or b"", stat.version

    async def _version(self, path: str) -> int | None:
        stat = await self._call(f"stat {path}", lambda zk: zk.exists_async(path))
        return None if stat is None else stat.version

    async def _delete(self, path: str, version: int, what: str) -> None:
        try:
            await self._call(what, lambda zk: zk.delete_async(path, version))
        except RegistryError as exc:
            if "NoNodeError" in str(exc):
                return  # gone already
            if "BadVersionError" in str(exc):
                raise self._err(f"zookeeper {what}: the node changed while it was being deleted; retrying") from None
            raise

    def _acl(self) -> Any:
        from kazoo.security import OPEN_ACL_UNSAFE, READ_ACL_UNSAFE, make_digest_acl

        if self._password is None:
            return OPEN_ACL_UNSAFE
        # Anyone reads (consumers need no credentials); only the operator's identity changes them.
        return [make_digest_acl(self._username, self._password.reveal(), all=True), *READ_ACL_UNSAFE]

    async def _ensure(self, path: str) -> None:
        """The parent nodes (chroot, root, service, providers): made when missing, open to all as
        Dubbo makes them (its own providers register below them too)."""
        if path in self._ensured:
            return
        from kazoo.security import OPEN_ACL_UNSAFE

        current = ""
        for part in path.strip("/").split("/"):
            current += "/" + part
            if await self._version(current) is not None:
                continue
            try:
                await self._call(
                    f"create {current}", lambda zk, p=current: zk.create_async(p, b"", acl=OPEN_ACL_UNSAFE)
                )
            except RegistryError as exc:
                if "NodeExistsError" not in str(exc):
                    raise
        self._ensured.add(path)

    async def _multi(self, operations: list[tuple[str, Any]], what: str) -> None:
        """One ZooKeeper multi: all of `operations` or none."""
        acl = self._acl()

        def build(zk: Any) -> Any:
            txn = zk.transaction()
            for op, args in operations:
                if op == "create":
                    txn.create(args[0], args[1], acl=acl)
                elif op == "set":
                    txn.set_data(*args)
                else:
                    txn.delete(*args)
            return txn.commit_async()

        results = await self._call(what, build)
        failures = [r for r in results if isinstance(r, Exception)]
        if failures:
            self._ensured.clear()
            names = sorted({type(r).__name__ for r in failures if type(r).__name__ != "RolledBackError"})
            raise self._err(
                f"zookeeper {what}: not applied ({', '.join(names) or 'rolled back'}): a node changed "
                f"since it was read; retrying on the next pass"
            )


def _address(found: Instance | Unreadable) -> str:
    return found.address


def _stop(zk: Any) -> None:
    try:
        zk.stop()
        zk.close()
    except Exception:  # noqa: BLE001 - closing: nothing to report to
        log.debug("closing a zookeeper client failed", exc_info=True)


def _kazoo_logger() -> logging.Logger:
    """kazoo's own logger for this client, never below INFO: at its lowest levels kazoo logs each
    request it sends, the digest authentication's credentials included."""
    logger = logging.getLogger(f"{__name__}.kazoo")
    logger.setLevel(max(logging.INFO, logger.level))
    return logger


def _connect(spec: ZooKeeperRegistrySpec, credentials: dict[str, str], timeout: float) -> ZooKeeperRegistry:
    username, password = login("zookeeper", credentials)
    return ZooKeeperRegistry(
        spec.servers,
        layout=spec.layout,
        root=spec.root,
        chroot=spec.chroot,
        dubbo=spec.dubbo,
        username=username,
        password=password,
        timeout=timeout,
    )


def _location(spec: ZooKeeperRegistrySpec) -> tuple[Any, ...]:
    root = spec.root if spec.root is not None else (DUBBO_ROOT if spec.layout == "dubbo" else CURATOR_ROOT)
    return (
        tuple(sorted(s.strip() for s in spec.servers)),
        _normalise_path(spec.chroot, "chroot") + _normalise_path(root, "root"),
        spec.layout,
    )


BACKEND = Backend(
    type="zookeeper",
    summary="zookeeper (Dubbo's or Curator's layout)",
    spec=ZooKeeperRegistrySpec,
    secret_keys={"username": "username", "password": "password"},
    connect=_connect,
    location=_location,
)
