"""Load from the kinds of consumers users have, and what it lost: every count here can move.

- `RegistryConsumer`: a registry-discovering client, as Dubbo/Nacos-style SDKs are: it keeps its
  instance list from the etcd registry by watch (`{prefix}/{service}/instances/`) and calls pod IPs
  directly, round robin, over pooled keep-alive connections. A request with no instance listed to
  call is counted as `no_instance`, a failure of its own kind.
- `ServiceConsumer`: a client of the sync ClusterIP Service. By default it opens a new connection
  per request, so every request is a fresh kube-proxy choice of pod (a pooled connection would
  stay on one pod and hardly see an endpoint change).
- Either consumer sends one `Request` shape: a short inference (POST /) or an LLM-style stream
  (POST /stream?seconds=S: tokens as server-sent events, then `data: [DONE]`).
- `JobProducer`: pushes numbered jobs (`ID` or, for long batch jobs, `ID@S`) onto the Redis queue
  the async role works; afterwards every job must be done exactly once and the queue and the
  processing lists empty.
- `CapacityWatch`: the Ready, not terminating pods whose address the registry lists, as a
  timeline built from a pods watch and an etcd watch (every change, not samples).

Requests are POSTs, as completions are, and nothing is sent twice: aiohttp re-sends an idempotent
request once when a kept-alive connection drops, which would turn a request the server read and
then lost into an ok; it never re-sends a POST. Outcomes per request: ok, cut (the connection
went away after the request was written: the server may have read it; for a stream, before its
`[DONE]`), no_instance, or failed, by kind (refused, reset before the request was written, 5xx,
timeout, other).

Every loop is bounded in count and in time, and talks only to loopback and the project's own pod,
Service and API server addresses.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import random
import ssl
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

FAILURE_KINDS = ("refused", "reset", "5xx", "timeout", "other")


@dataclass
class Tally:
    """What a consumer saw. `sent` counts every request it meant to send:
    sent == ok + failed + cut + no_instance. `errors` keeps a few examples of each kind."""

    sent: int = 0
    ok: int = 0
    outcomes: Counter = field(default_factory=Counter)
    errors: dict[str, list[str]] = field(default_factory=dict)

    def failure(self, kind: str, detail: str) -> None:
        self.outcomes[kind] += 1
        examples = self.errors.setdefault(kind, [])
        if len(examples) < 5:
            examples.append(detail[:200])

    @property
    def failed(self) -> int:
        return sum(n for kind, n in self.outcomes.items() if kind not in ("cut", "no_instance"))

    @property
    def cut(self) -> int:
        return self.outcomes["cut"]

    @property
    def no_instance(self) -> int:
        return self.outcomes["no_instance"]

    def as_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "ok": self.ok,
            "failed": self.failed,
            "cut": self.cut,
            "no_instance": self.no_instance,
            "by_kind": dict(self.outcomes),
            "examples": self.errors,
        }


def classify(exc: BaseException, written: bool) -> str:
    """Which kind of failure an exception is; `written`: the request had been written whole."""
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return "timeout"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "refused"  # no connection: refused, unreachable
    if isinstance(
        exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError | aiohttp.ClientOSError | ConnectionError
    ):
        return "cut" if written else "reset"
    return "other"


@dataclass(frozen=True)
class Request:
    """What a consumer sends: `path` "/" (one inference, POST with a small prompt) or "/stream"
    (a stream lasting a uniformly drawn `stream_seconds` range, in seconds); `timeout`: seconds a
    request (a stream: beyond its own length) may take before it counts as a timeout."""

    path: str = "/"
    stream_seconds: tuple[float, float] | None = None
    timeout: float = 10.0

    @property
    def streaming(self) -> bool:
        return self.stream_seconds is not None

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "stream_seconds": self.stream_seconds, "timeout": self.timeout}


INFERENCE = Request()
PROMPT = {"prompt": "Why is the sky blue?", "max_tokens": 64}


class _Caller:
    """One HTTP session that records each request's outcome in the tally. `new_connections`: one
    TCP connection per request (closed after it), else pooled keep-alive connections."""

    def __init__(self, tally: Tally, request: Request, new_connections: bool = False, seed: int = 0):
        self.tally = tally
        self.request = request
        self.new_connections = new_connections
        self.random = random.Random(seed)
        self.session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> _Caller:
        trace = aiohttp.TraceConfig()

        async def written(_session: Any, context: Any, _params: Any) -> None:
            # Headers out means the request was written: its small body goes in the same write.
            if isinstance(context.trace_request_ctx, dict):
                context.trace_request_ctx["written"] = True

        trace.on_request_headers_sent.append(written)
        self.session = aiohttp.ClientSession(
            trust_env=False,
            trace_configs=[trace],
            connector=aiohttp.TCPConnector(limit=0, force_close=self.new_connections),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.session is not None
        await self.session.close()

    async def call(self, base: str) -> None:
        """One request to `base` (``http://host:port``), counted."""
        assert self.session is not None
        self.tally.sent += 1
        context: dict[str, bool] = {"written": False}
        url = base.rstrip("/") + self.request.path
        timeout = self.request.timeout
        if self.request.streaming:
            low, high = self.request.stream_seconds
            seconds = round(self.random.uniform(low, high), 1)
            url += f"?seconds={seconds}"
            timeout += seconds
        try:
            async with self.session.post(
                url, json=PROMPT, timeout=aiohttp.ClientTimeout(total=timeout), trace_request_ctx=context
            ) as response:
                context["written"] = True
                if response.status >= 500:
                    await response.read()
                    self.tally.failure("5xx", f"{url}: HTTP {response.status}")
                elif response.status >= 400:
                    await response.read()
                    self.tally.failure("other", f"{url}: HTTP {response.status}")
                elif self.request.streaming:
                    tokens, done = 0, False
                    async for line in response.content:
                        if line.startswith(b"data: [DONE]"):
                            done = True
                        elif line.startswith(b"data: "):
                            tokens += 1
                    if done:
                        self.tally.ok += 1
                    else:
                        self.tally.failure("cut", f"{url}: the stream ended after {tokens} token(s), before [DONE]")
                else:
                    await response.read()
                    self.tally.ok += 1
        except Exception as exc:  # noqa: BLE001 - every failure is counted, by kind
            self.tally.failure(classify(exc, context["written"]), f"{url}: {type(exc).__name__}: {exc}")


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


def _prefix_range(prefix: str) -> dict[str, str]:
    end = bytearray(prefix.encode())
    end[-1] += 1
    return {"key": base64.b64encode(prefix.encode()).decode(), "range_end": base64.b64encode(bytes(end)).decode()}


class _Watch:
    """A list-then-watch kept in memory: `ready` is set after the first listing, `on_change()` is
    called after each change, an error ends it and is kept in `error`."""

    def __init__(self, on_change: Callable[[], None] | None = None):
        self.on_change = on_change or (lambda: None)
        self.error: str | None = None
        self.ready = asyncio.Event()

    def _session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(trust_env=False)

    async def _watch(self, session: aiohttp.ClientSession) -> None:
        raise NotImplementedError

    async def run(self, duration: float) -> None:
        """Watch for at most `duration` seconds (cancel to stop sooner); an error is kept in
        `error`, not raised."""
        try:
            async with self._session() as session:
                await asyncio.wait_for(self._watch(session), duration)
        except (asyncio.CancelledError, TimeoutError):
            pass
        except Exception as exc:  # noqa: BLE001 - reported with the counts
            self.error = f"{type(exc).__name__}: {exc}"


class InstanceWatch(_Watch):
    """The keys under `prefix` in etcd (JSON gateway), kept by a range read and a watch from its
    revision. `addresses`: the key tails ("ip:port")."""

    def __init__(self, etcd_url: str, prefix: str, on_change: Callable[[], None] | None = None):
        super().__init__(on_change)
        self.etcd_url = etcd_url.rstrip("/")
        self.prefix = prefix
        self.keys: set[str] = set()

    @property
    def addresses(self) -> list[str]:
        return sorted(key[len(self.prefix) :] for key in self.keys)

    async def _watch(self, session: aiohttp.ClientSession) -> None:
        async with session.post(f"{self.etcd_url}/v3/kv/range", json=_prefix_range(self.prefix)) as response:
            data = await response.json()
        for kv in data.get("kvs") or []:
            self.keys.add(base64.b64decode(kv["key"]).decode())
        self.on_change()
        revision = int(data["header"]["revision"])
        body = {"create_request": {**_prefix_range(self.prefix), "start_revision": str(revision + 1)}}
        async with session.post(
            f"{self.etcd_url}/v3/watch", json=body, timeout=aiohttp.ClientTimeout(total=None)
        ) as response:
            self.ready.set()
            async for line in response.content:
                if not line.strip():
                    continue
                result = json.loads(line).get("result") or {}
                for event in result.get("events") or []:
                    key = base64.b64decode(event["kv"]["key"]).decode()
                    if event.get("type") == "DELETE":
                        self.keys.discard(key)
                    else:
                        self.keys.add(key)
                if result.get("events"):
                    self.on_change()


class RegistryConsumer:
    """Calls the instances the etcd registry lists for `service`, learning changes by watch."""

    def __init__(
        self,
        etcd_url: str,
        prefix: str,
        service: str,
        request: Request = INFERENCE,
        timeout: float | None = None,
        seed: int = 1,
    ):
        self.watch = InstanceWatch(etcd_url, f"{prefix.rstrip('/')}/{service}/instances/")
        self.request = request if timeout is None else Request(request.path, request.stream_seconds, timeout)
        self.tally = Tally()
        self.seed = seed
        self._round = itertools.count()

    @property
    def instances(self) -> list[str]:
        return self.watch.addresses

    @property
    def watch_error(self) -> str | None:
        return self.watch.error

    async def run(self, rate: float, duration: float, limit: int, stop: asyncio.Event) -> Tally:
        watcher = asyncio.create_task(self.watch.run(duration + 30))
        ready = asyncio.ensure_future(self.watch.ready.wait())
        await asyncio.wait([watcher, ready], timeout=10, return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        async with _Caller(self.tally, self.request, seed=self.seed) as caller:

            async def fire() -> None:
                addresses = self.instances
                if not addresses:
                    self.tally.sent += 1
                    self.tally.failure("no_instance", "the registry listed no instance to call")
                    return
                await caller.call(f"http://{addresses[next(self._round) % len(addresses)]}")

            try:
                await _paced(rate, duration, limit, stop, fire)
            finally:
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)
        return self.tally


class ServiceConsumer:
    """Calls one URL (the sync ClusterIP Service): kube-proxy picks the pod, per connection."""

    def __init__(
        self,
        url: str,
        request: Request = INFERENCE,
        timeout: float | None = None,
        new_connections: bool = True,
        seed: int = 2,
    ):
        self.url = url
        self.request = request if timeout is None else Request(request.path, request.stream_seconds, timeout)
        self.new_connections = new_connections
        self.tally = Tally()
        self.seed = seed

    async def run(self, rate: float, duration: float, limit: int, stop: asyncio.Event) -> Tally:
        async with _Caller(self.tally, self.request, self.new_connections, seed=self.seed) as caller:
            await _paced(rate, duration, limit, stop, lambda: caller.call(self.url))
        return self.tally


@dataclass
class JobReport:
    """What became of the jobs one producer pushed, once they were given time to be done:
    `lost` were never done (of them `queued` still wait in the queue and `in_hand` sit in a
    processing list, by pod), `done_twice_or_more` were finished by more than one attempt (`twice`:
    up to 10 of them, job -> the attempts "POD:TAKEN_AT:ID" that finished it). `left_in_lists`
    counts every entry still in the queue or a processing list, this producer's or not;
    `push_errors`: pushes that erred (up to 10; never re-sent)."""

    pushed: int
    done_once: int
    done_twice_or_more: int
    lost: int
    queued: int
    in_hand: dict[str, int]
    left_in_lists: int
    twice: dict[str, list[str]] = field(default_factory=dict)
    push_errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


class JobProducer:
    """Pushes `name-N` jobs (`name-N@S` when `job_seconds` is set) onto the Redis list `queue`."""

    def __init__(self, redis_url: str, queue: str = "jobs", name: str = "job", job_seconds: float | None = None):
        import redis.asyncio
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self.client = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
        # Pushes are never sent twice: redis-py re-sends a command after a connection error or a
        # timeout (3 times by default since 6.0), which may come after the server ran it, and a
        # job pushed twice would show as done twice. A push that errs is counted instead.
        self.pusher = redis.asyncio.Redis.from_url(redis_url, decode_responses=True, retry=Retry(NoBackoff(), 0))
        self.queue = queue
        self.name = name
        self.job_seconds = job_seconds
        self.pushed: list[str] = []
        self.push_errors: list[str] = []

    def _processing_pattern(self) -> str:
        return f"{self.queue}:processing:*"

    async def run(self, rate: float, duration: float, limit: int, stop: asyncio.Event) -> None:
        async def push() -> None:
            job = f"{self.name}-{len(self.pushed)}"
            if self.job_seconds is not None:
                job += f"@{self.job_seconds:g}"
            self.pushed.append(job)
            try:
                await self.pusher.lpush(self.queue, job)
            except Exception as exc:  # noqa: BLE001 - counted: the job may or may not be queued
                self.push_errors.append(f"{job}: {type(exc).__name__}: {exc}"[:200])

        await _paced(rate, duration, limit, stop, push)

    async def lists(self) -> dict[str, list[str]]:
        """The queue and every processing list: name -> entries."""
        out = {self.queue: await self.client.lrange(self.queue, 0, -1)}
        async for key in self.client.scan_iter(self._processing_pattern()):
            out[key] = await self.client.lrange(key, 0, -1)
        return out

    async def purge(self) -> int:
        """Empty the queue and the processing lists (what earlier runs left there); how many
        entries they held."""
        held = sum(len(entries) for entries in (await self.lists()).values())
        keys = [self.queue] + [key async for key in self.client.scan_iter(self._processing_pattern())]
        await self.client.delete(*keys)
        return held

    async def finished(self) -> bool:
        """Every job pushed was done, and the queue and the processing lists are empty."""
        done = await self.client.hgetall(f"{self.queue}:done")
        if any(int(done.get(job, 0)) == 0 for job in self.pushed):
            return False
        return not any((await self.lists()).values())

    async def wait_finished(self, timeout: float, interval: float = 0.5) -> bool:
        """Wait up to `timeout` seconds for `finished()`; whether it came."""
        deadline = time.monotonic() + timeout
        while not await self.finished():
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(interval)
        return True

    async def report(self) -> JobReport:
        done = await self.client.hgetall(f"{self.queue}:done")
        counts = {job: int(done.get(job, 0)) for job in self.pushed}
        lists = await self.lists()
        left = sum(len(entries) for entries in lists.values())
        ours = set(self.pushed)
        queued = set(lists.pop(self.queue)) & ours
        in_hand = {key.rsplit(":", 1)[-1]: len(set(entries) & ours) for key, entries in lists.items()}
        doubled = [job for job, c in counts.items() if c > 1][:10]
        by = await self.client.hmget(f"{self.queue}:done-by", doubled) if doubled else []
        return JobReport(
            pushed=len(self.pushed),
            done_once=sum(1 for c in counts.values() if c == 1),
            done_twice_or_more=sum(1 for c in counts.values() if c > 1),
            lost=sum(1 for c in counts.values() if c == 0),
            queued=len(queued),
            in_hand={pod: n for pod, n in in_hand.items() if n},
            left_in_lists=left,
            twice={job: (who or "").split() for job, who in zip(doubled, by, strict=True)},
            push_errors=self.push_errors[:10],
        )

    async def close(self) -> None:
        await self.client.aclose()
        await self.pusher.aclose()


class PodWatch(_Watch):
    """The pods matching `selector` in `namespace`, kept by a list and a watch of the API server
    (the kubernetes client's `configuration`: host, bearer token, CA): name -> (ready,
    terminating, ip)."""

    def __init__(self, configuration: Any, namespace: str, selector: str, on_change: Callable[[], None] | None = None):
        super().__init__(on_change)
        self.configuration = configuration
        self.namespace = namespace
        self.selector = selector
        self.pods: dict[str, tuple[bool, bool, str | None]] = {}

    def _session(self) -> aiohttp.ClientSession:
        cfg = self.configuration
        context = ssl.create_default_context(cafile=cfg.ssl_ca_cert) if cfg.ssl_ca_cert else None
        if context is not None and not cfg.verify_ssl:
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        if context is not None and cfg.cert_file:
            context.load_cert_chain(cfg.cert_file, cfg.key_file)
        token = cfg.api_key.get("authorization") or cfg.api_key.get("BearerToken") or ""
        if token and not token.lower().startswith("bearer "):
            token = f"Bearer {token}"
        headers = {"Authorization": token} if token else {}
        return aiohttp.ClientSession(
            base_url=cfg.host, headers=headers, connector=aiohttp.TCPConnector(ssl=context), trust_env=False
        )

    @staticmethod
    def _state(pod: dict) -> tuple[bool, bool, str | None]:
        conditions = (pod.get("status") or {}).get("conditions") or []
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
        return ready, pod["metadata"].get("deletionTimestamp") is not None, (pod.get("status") or {}).get("podIP")

    async def _watch(self, session: aiohttp.ClientSession) -> None:
        path = f"/api/v1/namespaces/{self.namespace}/pods"
        async with session.get(path, params={"labelSelector": self.selector}) as response:
            response.raise_for_status()
            listing = await response.json()
        self.pods = {p["metadata"]["name"]: self._state(p) for p in listing["items"]}
        version = listing["metadata"]["resourceVersion"]
        self.on_change()
        self.ready.set()
        while True:  # each watch ends after the server's timeout; the next goes on from its version
            params = {"labelSelector": self.selector, "watch": "1", "resourceVersion": version, "timeoutSeconds": "60"}
            async with session.get(path, params=params, timeout=aiohttp.ClientTimeout(total=None)) as response:
                response.raise_for_status()
                async for line in response.content:
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    obj = event["object"]
                    if event["type"] == "ERROR":
                        raise RuntimeError(f"pods watch: {obj.get('message')}")
                    version = obj["metadata"]["resourceVersion"]
                    name = obj["metadata"]["name"]
                    if event["type"] == "DELETED":
                        self.pods.pop(name, None)
                    elif event["type"] in ("ADDED", "MODIFIED"):
                        self.pods[name] = self._state(obj)
                    else:
                        continue
                    self.on_change()


class CapacityWatch:
    """How many pods could take a registry consumer's request at each moment: Ready, not
    terminating, and listed in the registry at `ip:port`. Built from a pods watch and an etcd watch,
    re-computed on every change of either: `timeline` holds (loop time, capacity) each time the
    value changed, so a dip of any length shows."""

    def __init__(self, pods: PodWatch, instances: InstanceWatch, port: int):
        self.pods = pods
        self.instances = instances
        self.port = port
        self.timeline: list[tuple[float, int]] = []
        pods.on_change = instances.on_change = self._update

    def current(self) -> int:
        listed = set(self.instances.addresses)
        return sum(
            1
            for ready, terminating, ip in self.pods.pods.values()
            if ready and not terminating and ip and f"{ip}:{self.port}" in listed
        )

    def _update(self) -> None:
        if not (self.pods.ready.is_set() and self.instances.ready.is_set()):
            return
        value = self.current()
        if not self.timeline or self.timeline[-1][1] != value:
            self.timeline.append((asyncio.get_running_loop().time(), value))

    async def run(self, duration: float, stop: asyncio.Event) -> None:
        """Both watches, until `stop` or `duration` seconds."""
        tasks = [asyncio.create_task(self.pods.run(duration)), asyncio.create_task(self.instances.run(duration))]
        try:
            await asyncio.wait_for(stop.wait(), duration)
        except TimeoutError:
            pass
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def started(self, timeout: float = 15.0) -> bool:
        """Whether both watches had their first listing within `timeout` seconds."""
        try:
            await asyncio.wait_for(asyncio.gather(self.pods.ready.wait(), self.instances.ready.wait()), timeout)
        except TimeoutError:
            return False
        self._update()
        return True

    @property
    def error(self) -> str | None:
        return self.pods.error or self.instances.error

    def lowest(self, start: float, end: float) -> int | None:
        """The fewest over [start, end] (loop times): the value in force at `start` and every
        change up to `end`; None before the first value."""
        values = [v for t, v in self.timeline if start < t <= end]
        before = [v for t, v in self.timeline if t <= start]
        if before:
            values.append(before[-1])
        return min(values) if values else None

    def seconds_below(self, bound: int, start: float, end: float) -> float:
        """How long, within [start, end], the capacity was below `bound`."""
        total = 0.0
        points = self.timeline + [(end, None)]
        for (t, value), (t_next, _) in itertools.pairwise(points):
            lo, hi = max(t, start), min(t_next, end)
            if hi > lo and value < bound:
                total += hi - lo
        return total


def now() -> float:
    return time.time()
