"""The lossless harness's capacity count (devtools/load.CapacityWatch) moves with every fault that
takes a pod out of what registry consumers can call: its entry deleted, the pod NotReady, the pod
terminating. A real API server (pods on KWOK, Ready with IPs, held NotReady by annotation) and a
real etcd; the timeline is built from both watches, so each dip shows however short."""

from __future__ import annotations

import asyncio
import json

import pytest
from kubernetes import client

from devtools.harness import wait_for
from devtools.load import CapacityWatch, InstanceWatch, PodWatch

pytestmark = pytest.mark.integration

PREFIX = "/capacity/svc/instances/"
HOLD_NOT_READY = "devcluster.infer-operator.io/ready"


def pod_body(name: str) -> dict:
    return {
        "metadata": {"name": name, "labels": {"capacity-test": "yes"}},
        "spec": {
            "containers": [{"name": "app", "image": "registry.example/app:1"}],
            "terminationGracePeriodSeconds": 3,
        },
    }


async def until(predicate, timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_each_fault_shows_as_a_dip_in_the_capacity(cluster, namespace, etcd):
    api = cluster.api_client()
    core = client.CoreV1Api(api)
    for name in ("cap-0", "cap-1"):
        core.create_namespaced_pod(namespace, pod_body(name))

    def ips() -> dict[str, str] | None:
        pods = core.list_namespaced_pod(namespace, label_selector="capacity-test=yes").items
        ready = {
            p.metadata.name: p.status.pod_ip
            for p in pods
            if p.status.pod_ip and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
        }
        return ready if len(ready) == 2 else None

    addresses = wait_for(ips, 60, interval=0.2, message="the KWOK pods did not turn Ready")
    for ip in addresses.values():
        etcd.put(f"{PREFIX}{ip}:8000", json.dumps({"ip": ip}))

    watch = CapacityWatch(
        PodWatch(api.configuration, namespace, "capacity-test=yes"), InstanceWatch(etcd.client_url, PREFIX), 8000
    )
    stop = asyncio.Event()
    running = asyncio.create_task(watch.run(120, stop))
    try:
        assert await watch.started()
        loop = asyncio.get_running_loop()
        start = loop.time()
        assert watch.current() == 2

        # 1. an entry deleted, then put back
        etcd.delete(f"{PREFIX}{addresses['cap-0']}:8000")
        await until(lambda: watch.current() == 1)
        etcd.put(f"{PREFIX}{addresses['cap-0']}:8000", "{}")
        await until(lambda: watch.current() == 2)
        # 2. a pod NotReady
        core.patch_namespaced_pod("cap-1", namespace, {"metadata": {"annotations": {HOLD_NOT_READY: "false"}}})
        await until(lambda: watch.current() == 1)
        # 3. a pod terminating, besides
        core.delete_namespaced_pod("cap-0", namespace)
        await until(lambda: watch.current() == 0)
        end = loop.time()
    finally:
        stop.set()
        await running
    assert watch.error is None
    values = [v for _, v in watch.timeline]
    assert values[0] == 2 and values[1:] == [1, 2, 1, 0], watch.timeline
    assert watch.lowest(start, end) == 0
    assert 0 < watch.seconds_below(2, start, end) <= end - start
    assert watch.lowest(watch.timeline[0][0], watch.timeline[1][0] - 1e-6) == 2
