"""The load generator counts what users would lose, and every count moves when its fault is
injected: real sample-app processes on loopback, a real etcd registry, a real Redis queue, and a
small server of the test's own for faults no real server makes on cue (a reset mid-response).

A graceful exit done in the operator's order (deregister, drain, SIGTERM) loses nothing; each of
these shows in its own count: a reset after the request was written (cut, never re-sent), a
reset mid-response (cut), a stream ended before its last token (cut), an entry left registered
for a dead instance (failed), no instance listed (no_instance), a refused Service call (failed),
a worker killed with a job in hand that nobody puts back (lost), a job finished by two attempts
(done twice). The capacity count is shown moving in tests/integration/test_capacity_watch.py and
on real pods in tests/integration/realnode/test_lossless.py."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from devtools.load import JobProducer, RegistryConsumer, Request, ServiceConsumer
from tests.support.redis_server import RedisServer, RedisUnavailable

pytestmark = pytest.mark.registry

APP = Path(__file__).resolve().parents[2] / "examples" / "sample-app" / "app.py"
PREFIX, SERVICE = "/services", "load"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def app(role: str, **env: str) -> subprocess.Popen:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("INFER_")}
    return subprocess.Popen(
        [sys.executable, str(APP)],
        env={**clean, "INFER_ROLE": role, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


async def until(predicate, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(predicate):
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def register(etcd, port: int, ordinal: int = 0) -> None:
    etcd.put(
        f"{PREFIX}/{SERVICE}/instances/127.0.0.1:{port}",
        json.dumps(
            {
                "pod": f"load-{ordinal}",
                "namespace": "t",
                "uid": f"u{ordinal}",
                "ip": "127.0.0.1",
                "port": port,
                "role": "sync",
                "ordinal": ordinal,
            }
        ),
    )


@pytest.fixture
def redis_server():
    try:
        server = RedisServer()
    except RedisUnavailable as exc:
        pytest.fail(str(exc))
    yield server
    server.stop()


def stop_all(*procs: subprocess.Popen) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


@pytest.fixture
def two_instances(etcd):
    ports = [free_port(), free_port()]
    procs = [app("sync", PORT=str(port), WORK_SECONDS="0.1", POD_NAME=f"load-{i}") for i, port in enumerate(ports)]
    deadline = time.monotonic() + 15
    while not all(healthy(port) for port in ports):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "apps did not start"
        time.sleep(0.05)
    for i, port in enumerate(ports):
        register(etcd, port, i)
    yield ports, procs
    stop_all(*procs)


class FaultServer:
    """An HTTP/1.1 server on loopback that answers requests with a short JSON body, except that
    the requests numbered in `faults` (1-based, counted over all connections) get `fault`:
    "reset-after-read" (the request is read whole, then the connection is reset: RST, no byte of a
    response) or "reset-mid-response" (headers and half the body, then a reset). `received`
    counts the requests read, so a client that re-sends shows."""

    BODY = b'{"ok": true, "pad": "' + b"x" * 200 + b'"}'

    def __init__(self, fault: str, faults: set[int]):
        self.fault = fault
        self.faults = faults
        self.received = 0
        self.lock = threading.Lock()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.stopped = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._connection, args=(conn,), daemon=True).start()

    @staticmethod
    def _reset(conn: socket.socket) -> None:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()

    def _connection(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        reader = conn.makefile("rb")
        try:
            while True:
                line = reader.readline()
                if not line:
                    return
                length = 0
                while (header := reader.readline()) not in (b"\r\n", b""):
                    name, _, value = header.decode().partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                reader.read(length)
                with self.lock:
                    self.received += 1
                    number = self.received
                head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(self.BODY)}\r\n\r\n"
                if number in self.faults and self.fault == "reset-after-read":
                    self._reset(conn)
                    return
                if number in self.faults and self.fault == "reset-mid-response":
                    conn.sendall(head.encode() + self.BODY[: len(self.BODY) // 2])
                    self._reset(conn)
                    return
                conn.sendall(head.encode() + self.BODY)
        except OSError:
            return
        finally:
            reader.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.stopped.set()
        self.sock.close()


# -- requests --------------------------------------------------------------------------------------


async def test_the_operators_order_loses_nothing(etcd, two_instances):
    (_, port_b), (_, proc_b) = two_instances
    consumer = RegistryConsumer(etcd.client_url, PREFIX, SERVICE)
    stop = asyncio.Event()
    load = asyncio.create_task(consumer.run(rate=40, duration=6, limit=400, stop=stop))
    await until(lambda: consumer.tally.ok >= 20)
    etcd.delete(f"{PREFIX}/{SERVICE}/instances/127.0.0.1:{port_b}")  # deregistered first,
    await until(lambda: len(consumer.instances) == 1)  # seen by the consumer,
    await asyncio.sleep(0.5)  # the drain (a preStop's sleep: what is measured is what happens in it)
    proc_b.send_signal(signal.SIGTERM)  # then SIGTERM
    tally = await load
    assert proc_b.wait(10) == 0
    assert tally.sent >= 200 and tally.ok == tally.sent, tally.as_dict()
    assert (tally.failed, tally.cut, tally.no_instance) == (0, 0, 0)


async def test_an_entry_left_registered_for_a_dead_instance_counts_as_failed(etcd, two_instances):
    (_, _), (proc_a, _) = two_instances
    consumer = RegistryConsumer(etcd.client_url, PREFIX, SERVICE)
    stop = asyncio.Event()
    load = asyncio.create_task(consumer.run(rate=40, duration=4, limit=400, stop=stop))
    await until(lambda: consumer.tally.ok >= 20)
    proc_a.kill()  # its entry stays: no deregistration, no drain (what the seeds' field reports describe)
    tally = await load
    assert tally.failed > 0 and tally.outcomes["refused"] + tally.outcomes["reset"] > 0, tally.as_dict()
    assert tally.sent == tally.ok + tally.failed + tally.cut + tally.no_instance


async def test_a_registry_listing_no_instance_counts_as_no_instance(etcd):
    consumer = RegistryConsumer(etcd.client_url, PREFIX, SERVICE)
    tally = await consumer.run(rate=50, duration=0.5, limit=100, stop=asyncio.Event())
    assert tally.sent > 0 and tally.no_instance == tally.sent and tally.ok == 0, tally.as_dict()
    assert tally.failed == 0  # a kind of its own, asserted on its own


async def test_a_service_call_refused_counts_as_failed(two_instances):
    ports, procs = two_instances
    consumer = ServiceConsumer(f"http://127.0.0.1:{ports[0]}")
    stop = asyncio.Event()
    load = asyncio.create_task(consumer.run(rate=20, duration=3, limit=100, stop=stop))
    await until(lambda: consumer.tally.ok >= 10)
    procs[0].kill()
    tally = await load
    assert tally.ok >= 10 and tally.outcomes["refused"] > 0, tally.as_dict()


async def test_a_reset_after_the_request_was_read_is_cut_and_never_sent_again():
    """The server reads the second request on a kept-alive connection, then resets it: counted as
    cut, and the server received exactly the requests sent (aiohttp re-sends a GET here; a POST it
    never re-sends)."""
    server = FaultServer("reset-after-read", faults={2})
    try:
        consumer = ServiceConsumer(server.url, new_connections=False)
        tally = await consumer.run(rate=5, duration=10, limit=3, stop=asyncio.Event())
    finally:
        server.close()
    assert (tally.sent, tally.ok, tally.cut, tally.failed) == (3, 2, 1, 0), tally.as_dict()
    assert server.received == 3, "a request was sent twice"


async def test_a_reset_mid_response_is_cut():
    server = FaultServer("reset-mid-response", faults={1, 3})
    try:
        consumer = ServiceConsumer(server.url)  # a new connection per request
        tally = await consumer.run(rate=5, duration=10, limit=4, stop=asyncio.Event())
    finally:
        server.close()
    assert (tally.sent, tally.ok, tally.cut, tally.failed) == (4, 2, 2, 0), tally.as_dict()
    assert server.received == 4


async def test_a_stream_cut_before_its_last_token_is_counted_and_a_whole_one_is_ok(etcd):
    """Streams of 2-3 s from the sample app; SIGTERM with a 0.5 s shutdown timeout cuts those in
    flight; the ones before it ended with [DONE]."""
    port = free_port()
    proc = app("sync", PORT=str(port), SHUTDOWN_SECONDS="0.5", STREAM_TOKENS_PER_SECOND="20")
    try:
        await until(lambda: healthy(port))
        register(etcd, port)
        consumer = RegistryConsumer(etcd.client_url, PREFIX, SERVICE, request=Request("/stream", (2.0, 3.0)))
        stop = asyncio.Event()
        load = asyncio.create_task(consumer.run(rate=2, duration=5, limit=10, stop=stop))
        await until(lambda: consumer.tally.ok >= 1, timeout=10)
        proc.send_signal(signal.SIGTERM)
        tally = await load
        assert proc.wait(10) == 0
    finally:
        stop_all(proc)
    assert tally.ok >= 1 and tally.cut >= 1, tally.as_dict()
    assert any("before [DONE]" in e or "Payload" in e for e in tally.errors["cut"]), tally.errors
    output = proc.stdout.read()
    assert "shutdown timeout of 0.5 s: exiting with" in output, output


# -- jobs ------------------------------------------------------------------------------------------


async def test_jobs_are_done_once_when_workers_exit_gracefully(redis_server, tmp_path):
    env = dict(REDIS_URL=redis_server.url, WORK_SECONDS="0.05")
    first = app("async", POD_NAME="load-2", READY_FILE=str(tmp_path / "a"), **env)
    producer = JobProducer(redis_server.url)
    second = None
    try:
        await until(lambda: (tmp_path / "a").exists())
        stop = asyncio.Event()
        pushing = asyncio.create_task(producer.run(rate=50, duration=3, limit=150, stop=stop))
        await until(lambda: len(producer.pushed) >= 50)
        first.send_signal(signal.SIGTERM)  # a rollout: the worker goes, its successor comes
        assert first.wait(10) == 0
        second = app("async", POD_NAME="load-2", READY_FILE=str(tmp_path / "b"), **env)
        await pushing
        assert await producer.wait_finished(20), await producer.report()
        report = await producer.report()
        second.send_signal(signal.SIGTERM)
        assert second.wait(10) == 0
    finally:
        stop_all(first, *([second] if second else []))
        await producer.close()
    assert report.pushed == 150 and report.done_once == 150, report.as_dict()
    assert (report.lost, report.done_twice_or_more, report.left_in_lists) == (0, 0, 0)


async def test_a_job_in_the_hand_of_a_killed_worker_nobody_puts_back_is_lost(redis_server, tmp_path):
    """A scale-down's worker SIGKILLed mid-job: its processing list keeps the job, and no pod of
    its name comes back to put it back."""
    worker = app("async", POD_NAME="load-3", READY_FILE=str(tmp_path / "r"), REDIS_URL=redis_server.url)
    producer = JobProducer(redis_server.url, name="long", job_seconds=30)
    try:
        await until(lambda: (tmp_path / "r").exists())
        await producer.run(rate=10, duration=1, limit=1, stop=asyncio.Event())
        await until(lambda: redis_server.client().llen("jobs:processing:load-3") == 1)
        worker.kill()
        worker.wait(10)
        assert not await producer.wait_finished(1.0)
        report = await producer.report()
    finally:
        stop_all(worker)
        await producer.close()
    assert (report.pushed, report.lost, report.in_hand, report.left_in_lists) == (1, 1, {"load-3": 1}, 1), report


async def test_jobs_nobody_works_are_lost_while_queued(redis_server):
    """With no async pod left (a service scaled down to its sync pods) jobs wait in the queue: not
    done when scored, so lost, and the queue is not empty."""
    producer = JobProducer(redis_server.url, queue="idle")
    try:
        await producer.run(rate=100, duration=1, limit=5, stop=asyncio.Event())
        assert not await producer.wait_finished(0.5)
        report = await producer.report()
    finally:
        await producer.close()
    assert (report.pushed, report.queued, report.lost, report.left_in_lists) == (5, 5, 5, 5), report.as_dict()


async def test_a_job_finished_by_two_attempts_is_done_twice(redis_server, tmp_path):
    """The fault: a job put back on the queue while a worker holds it (as a pod of the same name
    started while the old one still ran would do). Two workers finish it: done twice."""
    env = dict(REDIS_URL=redis_server.url, WORK_SECONDS="0.05")
    first = app("async", POD_NAME="load-4", READY_FILE=str(tmp_path / "a"), **env)
    second = None
    producer = JobProducer(redis_server.url, name="twice", job_seconds=1.5)
    client = redis_server.client()
    try:
        await until(lambda: (tmp_path / "a").exists())
        await producer.run(rate=10, duration=1, limit=1, stop=asyncio.Event())
        await until(lambda: client.llen("jobs:processing:load-4") == 1)
        client.lpush("jobs", producer.pushed[0])
        second = app("async", POD_NAME="load-5", READY_FILE=str(tmp_path / "b"), **env)
        assert await producer.wait_finished(15), await producer.report()
        report = await producer.report()
    finally:
        stop_all(first, *([second] if second else []))
        await producer.close()
    assert (report.pushed, report.done_once, report.done_twice_or_more, report.lost) == (1, 0, 1, 0), report
    (attempts,) = report.twice.values()
    assert [a.split(":")[0] for a in attempts] == ["load-4", "load-5"], report.twice


async def test_an_acknowledgement_sent_again_records_the_attempt_once(redis_server):
    """redis-py sends a command again after a connection error or a timeout, which may come after
    the server ran it: the same attempt's acknowledgement records the job once however often it
    arrives; another attempt of the same job records it again (that is a job done twice)."""
    import importlib.util

    import redis

    spec = importlib.util.spec_from_file_location("sample_app", Path(APP))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    keys = ["q:processing:p-0", "q:done", "q:attempts", "q:done-by"]
    try:
        acknowledge = client.register_script(module.ACKNOWLEDGE)
        client.lpush("q:processing:p-0", "job-1")
        assert [acknowledge(keys=keys, args=["job-1", "p-0:a1"]) for _ in range(2)] == [1, 0]
        assert client.hgetall("q:done") == {"job-1": "1"} and client.llen("q:processing:p-0") == 0
        assert acknowledge(keys=keys, args=["job-1", "p-0:a2"]) == 2
        assert client.hget("q:done-by", "job-1") == "p-0:a1 p-0:a2"
    finally:
        client.close()


def test_a_long_job_takes_its_own_seconds():
    import importlib.util

    spec = importlib.util.spec_from_file_location("sample_app", Path(APP))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.job_seconds("long-3@60", 0.2) == 60.0
    assert module.job_seconds("job-3", 0.2) == 0.2
    assert module.job_seconds("odd@x", 0.2) == 0.2
