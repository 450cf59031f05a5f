"""HTTP backend, the admin-controller contract (see docs/registry-http-api.yaml): its spec section
(`registry.http`), its client and its row in the backend table.

    PUT    {url}/services/{service}/instances/{ip}:{port}   body = Instance JSON
    DELETE {url}/services/{service}/instances/{ip}:{port}[?uid=POD_UID]   (409/412: names another pod)
    GET    {url}/services/{service}/instances               -> JSON list of Instance objects
    GET    {url}/services/{service}/configs                 -> JSON list of IP strings
    DELETE {url}/services/{service}/configs/{ip}

2xx is success, 404 on DELETE is success, anything else is a RegistryError. Every call is
idempotent, so one answered 5xx or 429, or cut by a connection error (an admin controller behind a
load balancer, restarting, rate limiting), is tried again within the call's timeout (at most
`ATTEMPTS` times, `Retry-After` honoured up to what is left). Redirects are not
followed (the bearer token must not travel elsewhere). Responses above ``max_response_bytes``
(default 16 MiB) are a RegistryError.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
from typing import Any

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
    one_line,
    scrub,
    validate_port,
    validate_segment,
)
from .tls import TLS_SECRET_KEYS, Secret, tls_context

log = logging.getLogger(__name__)

ATTEMPTS = 3  # per call, within its timeout: a 5xx/429 answer or a connection error is tried again
RETRY_WAIT = 0.1  # first wait between attempts, doubling


class HttpRegistry(Registry):
    kind = "http"

    def __init__(
        self,
        url: str,
        *,
        token: str | Secret | None = None,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        if not isinstance(url, str) or not url.strip():
            raise ValueError("http registry needs a url")
        base = URL(url.strip())
        if base.scheme not in ("http", "https") or not base.host:
            raise ValueError("http registry url must be http(s)://host[:port][/path]")
        if base.user or base.password:
            raise ValueError("http registry url must not contain credentials; use a token")
        self._base = base.with_query(None).with_fragment(None)
        self._token = token if isinstance(token, Secret) or token is None else Secret(token)
        if self._token is not None and not self._token:
            self._token = None
        self._ssl_context = ssl_context
        if not timeout or timeout <= 0:
            raise ValueError("timeout must be > 0")
        self._timeout = float(timeout)
        self._max_response = int(max_response_bytes)
        self._session: aiohttp.ClientSession | None = None

    def describe(self) -> str:
        auth = ", bearer-token" if self._token else ""
        tls = ", custom-tls" if self._ssl_context is not None else ""
        return f"http url={self._base}{auth}{tls}"

    # ---- URLs --------------------------------------------------------------------------------
    def _service_url(self, service: str) -> URL:
        validate_segment("service", service)
        return self._base / "services" / service  # yarl percent-quotes each segment

    def instance_url(self, service: str, ip: str, port: int) -> URL:
        validate_segment("ip", ip)
        validate_port(port)
        return self._service_url(service) / "instances" / f"{ip}:{port}"

    def config_url(self, service: str, ip: str) -> URL:
        validate_segment("ip", ip)
        return self._service_url(service) / "configs" / ip

    # ---- Registry API ------------------------------------------------------------------------
    async def register(self, service: str, instance: Instance) -> None:
        instance.validate()
        url = self.instance_url(service, instance.ip, instance.port)
        await self._request("PUT", url, data=instance.to_json().encode("utf-8"))

    async def deregister(self, service: str, ip: str, port: int, uid: str | None = None) -> None:
        url = self.instance_url(service, ip, port)
        if uid is not None:
            # The contract's conditional delete is `?uid=`: an admin controller that ignores it
            # deletes whatever is there, so look first (a window of one round trip remains). An
            # entry we cannot read is left to the controller's own uid check.
            current = await self.lookup(service, ip, port)
            if current is None or (isinstance(current, Instance) and current.uid != uid):
                return
            url = url.with_query(uid=uid)
        await self._request("DELETE", url, ok_404=True, ok_conflict=uid is not None)

    async def claim(self, service: str, instance: Instance) -> None:
        # No revisions over HTTP: remove whatever config the IP has, then register. A config
        # written between the two calls is kept (it could be the new holder's).
        await self.delete_config(service, instance.ip)
        await self.register(service, instance)

    async def identity(self) -> str:
        return f"http {self._base}"

    async def list_instances(self, service: str) -> Listing:
        url = self._service_url(service) / "instances"
        items = await self._get_list(url)
        listing = Listing()
        for item in items:
            try:
                listing.instances.append(Instance.from_obj(item))
            except MalformedEntry:
                listing.malformed.append(_entry_id(item))
        return listing

    async def lookup(self, service: str, ip: str, port: int) -> Instance | Unreadable | None:
        """The listed item at ip:port (by its `ip` and `port`, whatever else it holds or leaves out)."""
        validate_segment("ip", ip)
        validate_port(port)
        for item in await self._get_list(self._service_url(service) / "instances"):
            if not isinstance(item, dict) or str(item.get("ip")) != ip or str(item.get("port")) != str(port):
                continue
            try:
                return Instance.from_obj(item)
            except MalformedEntry as exc:
                return Unreadable(f"{ip}:{port}", str(exc))
        return None

    async def list_config_ips(self, service: str) -> set[str]:
        url = self._service_url(service) / "configs"
        items = await self._get_list(url)
        ips: set[str] = set()
        for item in items:
            try:
                ips.add(validate_segment("ip", item))
            except ValueError:
                log.warning("ignoring unusable config id from %s: %s", self._base, one_line(repr(item), 80))
        return ips

    async def delete_config(self, service: str, ip: str) -> None:
        await self._request("DELETE", self.config_url(service, ip), ok_404=True)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ---- internals ---------------------------------------------------------------------------
    def _err(self, msg: str) -> RegistryError:
        return RegistryError(scrub(one_line(msg, 400), [self._token.reveal() if self._token else None]))

    async def _get_list(self, url: URL) -> list[Any]:
        raw = await self._request("GET", url)
        try:
            data = json.loads(raw)
        except ValueError:
            raise self._err(f"GET {url}: response is not JSON: {raw[:80]!r}") from None
        if not isinstance(data, list):
            raise self._err(f"GET {url}: expected a JSON list, got {type(data).__name__}")
        return data

    async def _request(
        self, method: str, url: URL, *, data: bytes | None = None, ok_404: bool = False, ok_conflict: bool = False
    ) -> bytes:
        what = f"{method} {url}"
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self._token:
            headers["Authorization"] = f"Bearer {self._token.reveal()}"
        deadline = time.monotonic() + self._timeout
        wait = RETRY_WAIT
        for attempt in range(1, ATTEMPTS + 1):
            retry_after: float | None = None
            try:
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    if self._session is None or self._session.closed:
                        self._session = make_session(self._ssl_context)
                    async with self._session.request(
                        method, url, data=data, headers=headers, allow_redirects=False
                    ) as resp:
                        body = await read_capped(resp, self._max_response, what)
                        status = resp.status
                        retry_after = _seconds(resp.headers.get("Retry-After"))
            except TimeoutError:
                raise self._err(f"{what}: timed out after {self._timeout:g}s") from None
            except aiohttp.ClientConnectionError as exc:
                failure = self._err(f"{what}: {type(exc).__name__}: {exc}")
            except aiohttp.ClientError as exc:
                raise self._err(f"{what}: {type(exc).__name__}: {exc}") from None
            else:
                if not (status >= 500 or status == 429):
                    break
                failure = self._status_error(what, status, body)
            pause = min(retry_after if retry_after is not None else wait, deadline - time.monotonic())
            if attempt == ATTEMPTS or pause <= 0 or time.monotonic() + pause >= deadline:
                raise failure
            log.debug("%s: %s; trying again in %.2fs", what, failure, pause)
            await asyncio.sleep(pause)
            wait *= 2
        if 200 <= status < 300:
            return body
        if (status == 404 and ok_404) or (status in (409, 412) and ok_conflict):
            return b""
        raise self._status_error(what, status, body)

    def _status_error(self, what: str, status: int, body: bytes) -> RegistryError:
        hint = " (unauthorized: check the registry token)" if status in (401, 403) else ""
        snippet = one_line(body[:200].decode("utf-8", errors="replace"), 120)
        return self._err(f"{what}: HTTP {status}{hint}{': ' + snippet if snippet else ''}")


def _seconds(value: str | None) -> float | None:
    """A Retry-After given in seconds (an HTTP date is ignored: the doubling wait applies)."""
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def _entry_id(item: Any) -> str:
    if isinstance(item, dict) and "ip" in item and "port" in item:
        return one_line(f"{item.get('ip')}:{item.get('port')}", 120)
    try:
        text = json.dumps(item, separators=(",", ":"))
    except (TypeError, ValueError):
        text = repr(item)
    return one_line(text, 120)


class HttpRegistrySpec(Model):
    # spec.registry.http (no docstring: it would become the schema description)

    url: str = Field(
        pattern=r"^https?://[^\s/]+(/.*)?$",
        description="Base URL of the admin controller (see docs/registry-http-api.yaml).",
    )
    credentials_secret: SecretReference | None = Field(
        default=None,
        alias="credentialsSecret",
        description="Secret with optional keys token (bearer), ca.crt, tls.crt, tls.key.",
    )


def _connect(spec: HttpRegistrySpec, credentials: dict[str, str], timeout: float) -> HttpRegistry:
    return HttpRegistry(spec.url, token=credentials.get("token"), ssl_context=tls_context(credentials), timeout=timeout)


BACKEND = Backend(
    type="http",
    summary="http",
    spec=HttpRegistrySpec,
    secret_keys={"token": "token", **TLS_SECRET_KEYS},
    connect=_connect,
    location=lambda spec: (spec.url.rstrip("/"),),
)
