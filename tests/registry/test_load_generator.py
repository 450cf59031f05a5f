"""The load generator counts what users would lose: real sample-app processes on loopback, a real
etcd registry and a real Redis queue. A graceful exit done in the operator's order (deregister,
drain, SIGTERM) loses nothing; an abrupt one shows up in the counts."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from devtools.load import JobProducer, RegistryConsumer, ServiceConsumer
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


@pytest.fixture
def redis_server():
    try:
        server = RedisServer()
    except RedisUnavailable as exc:
        pytest.fail(str(exc))
    yield server
    server.stop()


@pytest.fixture
def two_instances(etcd):
    ports = [free_port(), free_port()]
    procs = [app("sync", PORT=str(port), WORK_SECONDS="0.1", POD_NAME=f"load-{i}") for i, port in enumerate(ports)]
    deadline = time.monotonic() + 15
    while not all(healthy(port) for port in ports):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "apps did not start"
        time.sleep(0.05)
    for i, port in enumerate(ports):
        etcd.put(
            f"{PREFIX}/{SERVICE}/instances/127.0.0.1:{port}",
            json.dumps(
                {
                    "pod": f"load-{i}",
                    "namespace": "t",
                    "uid": f"u{i}",
                    "ip": "127.0.0.1",
                    "port": port,
                    "role": "sync",
                    "ordinal": i,
                }
            ),
        )
    yield ports, procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


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
    assert (tally.failed, tally.cut) == (0, 0)


async def test_an_instance_killed_while_registered_shows_in_the_counts(etcd, two_instances):
    (_, _), (proc_a, _) = two_instances
    consumer = RegistryConsumer(etcd.client_url, PREFIX, SERVICE)
    stop = asyncio.Event()
    load = asyncio.create_task(consumer.run(rate=40, duration=4, limit=400, stop=stop))
    await until(lambda: consumer.tally.ok >= 20)
    proc_a.kill()  # no deregistration, no drain: what the seeds' field reports describe
    tally = await load
    assert tally.failed > 0 and tally.outcomes["refused"] + tally.outcomes["reset"] + tally.cut > 0, tally.as_dict()


async def test_a_direct_url_consumer_counts_refusals(two_instances):
    ports, procs = two_instances
    consumer = ServiceConsumer(f"http://127.0.0.1:{ports[0]}/")
    stop = asyncio.Event()
    load = asyncio.create_task(consumer.run(rate=20, duration=3, limit=100, stop=stop))
    await until(lambda: consumer.tally.ok >= 10)
    procs[0].kill()
    tally = await load
    assert tally.ok >= 10 and tally.outcomes["refused"] > 0, tally.as_dict()


async def test_jobs_are_counted_once_when_workers_exit_gracefully_and_lost_nowhere(redis_server, tmp_path):
    env = dict(REDIS_URL=redis_server.url, WORK_SECONDS="0.05")
    first = app("async", POD_NAME="load-2", READY_FILE=str(tmp_path / "a"), **env)
    producer = JobProducer(redis_server.url)
    try:
        await until(lambda: (tmp_path / "a").exists())
        stop = asyncio.Event()
        pushing = asyncio.create_task(producer.run(rate=50, duration=3, limit=150, stop=stop))
        await until(lambda: len(producer.pushed) >= 50)
        first.send_signal(signal.SIGTERM)  # a rollout: the worker goes, its successor comes
        assert first.wait(10) == 0
        second = app("async", POD_NAME="load-2", READY_FILE=str(tmp_path / "b"), **env)
        try:
            await pushing
            deadline = time.monotonic() + 20
            while not await producer.drained():
                assert time.monotonic() < deadline, "queue not drained"
                await asyncio.sleep(0.1)
            report = await producer.report()
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
        await producer.close()
    assert report.pushed == 150 and report.done_once == 150, report.as_dict()
    assert (report.lost, report.done_twice_or_more) == (0, 0)


async def test_jobs_waiting_for_a_worker_are_queued_not_lost(redis_server):
    """With no async pod (a service scaled down to its sync pods) jobs wait in the queue; only a
    job neither done, queued nor in a worker's hand counts as lost."""
    producer = JobProducer(redis_server.url, queue="idle")
    try:
        await producer.run(rate=100, duration=1, limit=5, stop=asyncio.Event())
        await producer.client.lrem("idle", 1, producer.pushed[0])  # one vanishes: taken and dropped
        report = await producer.report()
    finally:
        await producer.close()
    assert (report.pushed, report.queued, report.lost, report.done_once) == (5, 4, 1, 0), report.as_dict()


async def test_an_acknowledgement_sent_twice_records_the_job_once(redis_server):
    """redis-py sends a command again after a connection error or a timeout, which may come after
    the server executed it: the app's acknowledgement must record a job once however often it
    arrives, and a job it no longer holds not at all."""
    import importlib.util

    import redis

    spec = importlib.util.spec_from_file_location("sample_app", Path(APP))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        acknowledge = client.register_script(module.ACKNOWLEDGE)
        client.lpush("q:processing:p-0", "job-1")
        assert [acknowledge(keys=["q:processing:p-0", "q:done"], args=["job-1"]) for _ in range(2)] == [1, 0]
        assert acknowledge(keys=["q:processing:p-0", "q:done"], args=["job-2"]) == 0
        assert client.hgetall("q:done") == {"job-1": "1"} and client.llen("q:processing:p-0") == 0
    finally:
        client.close()
