"""Steady load from the two kinds of consumers users have, and what it lost.

- `RegistryConsumer`: a registry-discovering client, as Dubbo/Nacos-style SDKs are: it keeps its
  instance list from the etcd registry by watch (`{prefix}/{service}/instances/`) and calls pod IPs
  directly, round robin, over pooled keep-alive connections.
- `ServiceConsumer`: a client of the sync ClusterIP Service (kube-proxy picks the pod).
- `JobProducer`: pushes numbered jobs onto the Redis queue the async role works, and afterwards
  reads which were done (once, twice, never).
- `CapacityWatch`: the fewest Ready sync pods that were registered at the same time.

Every loop is bounded in count and in time, and talks only to loopback and the project's own pod
and Service addresses. Outcomes are counted per request: ok, failed (refused, reset, 5xx, timeout,
other) and cut (the connection went away after the request was sent, i.e. mid-flight).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp


@dataclass
class Tally:
    """What a consumer saw, by outcome; `errors` keeps a few examples of each failure kind."""

    sent: int = 0
    ok: int = 0
    outcomes: Counter = field(default_factory=Counter)
    errors: dict[str, list[str]] = field(default_factory=dict)
    no_instance: int = 0  # moments the registry listed no instance to call (not a request)

    def failure(self, kind: str, detail: str) -> None:
        self.outcomes[kind] += 1
        examples = self.errors.setdefault(kind, [])
        if len(examples) < 5:
            examples.append(detail[:200])

    @property
    def failed(self) -> int:
        return sum(n for kind, n in self.outcomes.items() if kind != "cut")

    @property
    def cut(self) -> int:
        return self.outcomes["cut"]

    def as_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "ok": self.ok,
            "failed": self.failed,
            "cut": self.cut,
            "by_kind": dict(self.outcomes),
            "examples": self.errors,
            "no_instance": self.no_instance,
        }


def classify(exc: BaseException, sent: bool) -> str:
    """Which kind of failure an exception is; `sent`: the request had gone out whole."""
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return "timeout"
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return "cut" if sent else "reset"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "refused"
    if isinstance(exc, aiohttp.ClientOSError | ConnectionResetError):
        return "cut" if sent else "reset"
    return "other"


class _Caller:
    """One pooled HTTP session; `call(url)` records the outcome in the tally."""

    def __init__(self, tally: Tally, timeout: float):
        self.tally = tally
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> _Caller:
        self.session = aiohttp.ClientSession(
            timeout=self.timeout, trust_env=False, connector=aiohttp.TCPConnector(limit=64)
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.session is not None
        await self.session.close()

    async def call(self, url: str) -> None:
        assert self.session is not None
        self.tally.sent += 1
        sent = False
        try:
            async with self.session.get(url) as response:
                sent = True  # headers back: the request was taken
                await response.read()
                if response.status >= 500:
                    self.tally.failure("5xx", f"{url}: HTTP {response.status}")
                elif response.status >= 400:
                    self.tally.failure("other", f"{url}: HTTP {response.status}")
                else:
                    self.tally.ok += 1
        except Exception as exc:  # noqa: BLE001 - every failure is counted, by kind
            kind = classify(exc, sent or isinstance(exc, aiohttp.ServerDisconnectedError))
            self.tally.failure(kind, f"{url}: {type(exc).__name__}: {exc}")


async def _paced(rate: float, duration: float, limit: int, stop: asyncio.Event, fire: Callable[[], Any]) -> None:
    """Fire `rate` times a second (concurrently: a slow call does not slow the pace) until
    `duration` seconds or `limit` calls or `stop`; then wait for the calls in flight."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    pending: set[asyncio.Task] = set()
    for n in itertools.count():
        if n >= limit or stop.is_set() or loop.time() - started >= duration:
            break
        task = asyncio.ensure_future(fire())
        pending.add(task)
        task.add_done_callback(pending.discard)
        delay = started + (n + 1) / rate - loop.time()
        if delay > 0:
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except TimeoutError:
                pass
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)


class RegistryConsumer:
    """Calls the instances the etcd registry lists for `service`, learning changes by watch."""

    def __init__(self, etcd_url: str, prefix: str, service: str, path: str = "/", timeout: float = 10.0):
        self.etcd_url = etcd_url.rstrip("/")
        self.base = f"{prefix.rstrip('/')}/{service}/instances/"
        self.path = path
        self.timeout = timeout
        self.instances: dict[str, str] = {}  # key -> "ip:port"
        self.tally = Tally()
        self.watch_error: str | None = None
        self._round = itertools.count()

    def _range(self) -> dict[str, str]:
        end = bytearray(self.base.encode())
        end[-1] += 1
        return {
            "key": base64.b64encode(self.base.encode()).decode(),
            "range_end": base64.b64encode(bytes(end)).decode(),
        }

    async def _watch(self, session: aiohttp.ClientSession, ready: asyncio.Event) -> None:
        async with session.post(f"{self.etcd_url}/v3/kv/range", json=self._range()) as response:
            data = await response.json()
        for kv in data.get("kvs") or []:
            self._apply("PUT", kv)
        revision = int(data["header"]["revision"])
        body = {"create_request": {**self._range(), "start_revision": str(revision + 1)}}
        async with session.post(
            f"{self.etcd_url}/v3/watch", json=body, timeout=aiohttp.ClientTimeout(total=None)
        ) as response:
            ready.set()
            async for line in response.content:
                if not line.strip():
                    continue
                result = json.loads(line).get("result") or {}
                for event in result.get("events") or []:
                    self._apply(event.get("type", "PUT"), event["kv"])

    def _apply(self, kind: str, kv: dict[str, Any]) -> None:
        key = base64.b64decode(kv["key"]).decode()
        if kind == "DELETE":
            self.instances.pop(key, None)
        else:
            self.instances[key] = key[len(self.base) :]

    async def run(self, rate: float, duration: float, limit: int, stop: asyncio.Event) -> Tally:
        async with aiohttp.ClientSession(trust_env=False) as watch_session, _Caller(self.tally, self.timeout) as caller:
            ready = asyncio.Event()
            watcher = asyncio.create_task(self._watch(watch_session, ready))
            await asyncio.wait(
                [watcher, asyncio.ensure_future(ready.wait())], timeout=10, return_when=asyncio.FIRST_COMPLETED
            )

            async def fire() -> None:
                addresses = sorted(self.instances.values())
                if not addresses:
                    self.tally.no_instance += 1
                    return
                await caller.call(f"http://{addresses[next(self._round) % len(addresses)]}{self.path}")

            try:
                await _paced(rate, duration, limit, stop, fire)
            finally:
                watcher.cancel()
                try:
                    await watcher
                except (asyncio.CancelledError, Exception) as exc:  # noqa: BLE001 - reported, not raised
                    if not isinstance(exc, asyncio.CancelledError):
                        self.watch_error = f"{type(exc).__name__}: {exc}"
        return self.tally


class ServiceConsumer:
    """Calls one URL (the sync ClusterIP Service): kube-proxy spreads the connections."""

    def __init__(self, url: str, timeout: float = 10.0):
        self.url = url
        self.timeout = timeout
        self.tally = Tally()

    async def run(self, rate: float, duration: float, limit: int, stop: asyncio.Event) -> Tally:
        async with _Caller(self.tally, self.timeout) as caller:
            await _paced(rate, duration, limit, stop, lambda: caller.call(self.url))
        return self.tally


@dataclass
class JobReport:
    pushed: int
    done_once: int
    done_twice_or_more: int
    lost: int
    queued: int
    in_hand: int

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


class JobProducer:
    """Pushes `name-N` jobs onto the Redis list `queue` the async role works."""

    def __init__(self, redis_url: str, queue: str = "jobs", name: str = "job"):
        import redis.asyncio

        self.client = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
        self.queue = queue
        self.name = name
        self.pushed: list[str] = []

    async def run(self, rate: float, duration: float, limit: int, stop: asyncio.Event) -> None:
        async def push() -> None:
            job = f"{self.name}-{len(self.pushed)}"
            self.pushed.append(job)
            await self.client.lpush(self.queue, job)

        await _paced(rate, duration, limit, stop, push)

    async def drained(self) -> bool:
        """Whether nothing is queued or in hand any more."""
        return await self.client.llen(self.queue) == 0 and not await self._in_hand()

    async def _in_hand(self) -> int:
        total = 0
        async for key in self.client.scan_iter(f"{self.queue}:processing:*"):
            total += await self.client.llen(key)
        return total

    async def report(self) -> JobReport:
        """What became of the jobs pushed: a job not done is lost unless it is still queued or
        in a worker's hand (a service with no async pod left keeps its jobs queued, not lost)."""
        done = await self.client.hgetall(f"{self.queue}:done")
        pushed = set(self.pushed)
        counts = {job: int(done.get(job, 0)) for job in pushed}
        queued = set(await self.client.lrange(self.queue, 0, -1)) & pushed
        in_hand: set[str] = set()
        async for key in self.client.scan_iter(f"{self.queue}:processing:*"):
            in_hand |= set(await self.client.lrange(key, 0, -1)) & pushed
        return JobReport(
            pushed=len(pushed),
            done_once=sum(1 for c in counts.values() if c == 1),
            done_twice_or_more=sum(1 for c in counts.values() if c > 1),
            lost=sum(1 for job, c in counts.items() if c == 0 and job not in queued | in_hand),
            queued=len(queued),
            in_hand=len(in_hand),
        )

    async def close(self) -> None:
        await self.client.aclose()


class CapacityWatch:
    """Samples `registered_ready()` (the Ready sync pods that are registered) every `interval`
    seconds and keeps the fewest; bounded by `duration`."""

    def __init__(self, registered_ready: Callable[[], int], interval: float = 0.2):
        self.registered_ready = registered_ready
        self.interval = interval
        self.lowest: int | None = None
        self.samples = 0

    async def run(self, duration: float, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        while not stop.is_set() and loop.time() - started < duration:
            value = await asyncio.to_thread(self.registered_ready)
            self.samples += 1
            self.lowest = value if self.lowest is None else min(self.lowest, value)
            try:
                await asyncio.wait_for(stop.wait(), self.interval)
            except TimeoutError:
                pass


def now() -> float:
    return time.time()
