"""Lossless online/offline, asserted: the operator's service on real pods (two real nodes), under
load from a registry-discovering consumer, a Service consumer (a new connection per request) and
a job producer, loses nothing through each lifecycle event, each event run on its own
(devtools/lossless: the events, the worlds, the counting). The baselines' figures are the
benchmark's (bench/lossless.py), not asserted.

Counts, not times, for every event: 0 failed requests, 0 cut (requests or streams), 0 requests
with no instance to call, every job done exactly once with the queue and processing lists empty,
and the capacity (Ready, registered pods) never below its bound before, during or after the
change. `test_the_counts_see_an_emptied_registry` shows the capacity and no-instance counts
moving on real pods when the fault is injected (the other counts are shown moving in
tests/registry/test_load_generator.py).

Events here: all but `streams-rollout` (the benchmark's: four pods under 5-30 s streams take
minutes, and `streams-delete-sync-pod` already shows what a stream outliving drainSeconds costs).
The streams events rely on the operator's lifecycle.idlePath (devtools.lossless.IDLE_PATH, the
sample app's /idle): `test_without_idle_path_streams_are_cut` runs one with it unset and sees the
cut count move (streams outliving drainSeconds and the app's shutdown timeout, the field's loss).
"""

from __future__ import annotations

import secrets
import time

import pytest
from kubernetes import client

from devtools import lossless
from devtools.cluster import realnode
from devtools.cluster.etcd import EtcdServer
from tests.conftest import REAL_NODE_FIGURES, _terminal_progress

pytestmark = [pytest.mark.integration, pytest.mark.realnode]

LOAD = lossless.Load(registry_rps=50.0, service_rps=50.0, jobs_per_second=5.0, long_job_seconds=30.0)
BENCH_ONLY = {"streams-rollout"}
EVENTS = [pytest.param(event, id=event.name) for event in lossless.EVENTS if event.name not in BENCH_ONLY]


@pytest.fixture(scope="module")
def gateway_etcd(real_node):
    """The registry, on the pods' gateway (the operator and the consumers reach it from the host)."""
    server = EtcdServer(host=realnode.POD_GATEWAY, name="lossless").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def spare_node(cluster, real_node, pytestconfig):
    """The second real node, where a drain moves the pods; stopped after the module."""
    node = realnode.up_spare(cluster.state_dir, progress=_terminal_progress(pytestconfig))
    yield node
    realnode.down_spare(cluster.state_dir)


@pytest.fixture(scope="module")
def world(cluster, kube, real_node, spare_node, gateway_etcd, pod_redis, module_namespace, operator):
    api = cluster.api_client()
    env = lossless.Env(
        core=client.CoreV1Api(api),
        apps=client.AppsV1Api(api),
        custom=client.CustomObjectsApi(api),
        policy=client.PolicyV1Api(api),
        rbac=client.RbacAuthorizationV1Api(api),
        kubectl=cluster.kubectl,
        node=real_node,
        namespace=module_namespace,
        etcd_url=gateway_etcd.client_url,
        redis_url=f"redis://{realnode.POD_GATEWAY}:{pod_redis.port}/0",
        prefix=f"/lossless-{secrets.token_hex(2)}",
        operator=operator,
    )
    lossless.prepare_nodes(env)
    service = lossless.OperatorWorld(env, "ll")
    try:
        service.start(LOAD.event_timeout)
        yield service
    finally:
        service.delete()
        lossless.release_nodes(env)


def assert_nothing_lost(outcome: lossless.Outcome, streams_cut: bool = False) -> None:
    """Every count at zero and the capacity within its bounds; `streams_cut`: except the cut
    streams, which must be there (the streams events while the operator lacks idlePath)."""
    report = outcome.as_dict()
    report.pop("capacity", None)  # the timeline is long; the phases are in capacity_short
    assert outcome.error is None, report
    assert not outcome.watch_errors, report
    assert outcome.registry["sent"] > 0 and outcome.service["sent"] > 0 and outcome.jobs["pushed"] > 0, report
    assert (outcome.failed, outcome.no_instance) == (0, 0), report
    if streams_cut:
        assert outcome.cut > 0, f"streams outlived the drain and were not cut: is lifecycle.idlePath on? {report}"
    else:
        assert outcome.cut == 0, report
    assert (outcome.jobs_lost, outcome.jobs_duplicated, outcome.jobs["left_in_lists"]) == (0, 0, 0), report
    assert {"before", "during", "after"} <= set(outcome.capacity), outcome.capacity
    assert not outcome.capacity_short, (outcome.capacity_short, outcome.capacity["timeline"])


@pytest.mark.parametrize("event", EVENTS)
def test_nothing_is_lost(world, event, running_operator):
    outcome = lossless.run_event(world, event, LOAD)
    REAL_NODE_FIGURES[f"lossless {event.name}"] = (
        f"{outcome.registry['sent']}+{outcome.service['sent']} requests "
        f"({outcome.traffic['registry_achieved_rate']}+{outcome.traffic['service_achieved_rate']}/s), "
        f"{outcome.jobs['pushed']} jobs, {outcome.seconds:.0f} s: failed {outcome.failed}, cut {outcome.cut}, "
        f"no instance {outcome.no_instance}, jobs lost {outcome.jobs_lost} / twice {outcome.jobs_duplicated}, "
        f"capacity short {outcome.capacity_short or 'never'}"
    )
    print(f"\n{event.name}: {lossless.summary(outcome)}")
    assert_nothing_lost(outcome, streams_cut=event.needs_idle_path and world.idle_path is None)


def test_without_idle_path_streams_are_cut(world, running_operator):
    """The fault: lifecycle.idlePath unset, so a pod's preStop ends after drainSeconds while 5-30 s
    streams are still in flight; the cut count must see them."""
    assert world.idle_path, "the world under test drains with lifecycle.idlePath"
    # The setting reaches running pods through the scripts ConfigMap, which a kubelet refreshes in
    # its own time: a rollout makes pods that start with it.
    saved, world.idle_path = world.idle_path, None
    try:
        world.roll()
        outcome = lossless.run_event(world, lossless.EVENTS_BY_NAME["streams-delete-sync-pod"], LOAD)
    finally:
        world.idle_path = saved
        world.roll()
    assert_nothing_lost(outcome, streams_cut=True)


def test_the_counts_see_an_emptied_registry(world, running_operator):
    """The fault: right after a scale-down starts, every registry entry of the service is deleted
    behind the operator's back, again and again for 1.5 s (as an operator that deregistered
    everything would). The registry consumer then has nobody to call and the capacity drops
    below its bound until the operator's passes put the entries back: both counts must show it."""
    emptied = []

    def empty_registry(world: lossless.World) -> None:
        for _ in range(30):  # 1.5 s
            emptied.append(lossless.etcd_delete_prefix(world.env.etcd_url, world.instances_prefix))
            time.sleep(0.05)

    outcome = lossless.run_event(world, lossless.EVENTS_BY_NAME["scale-down"], LOAD, inject=empty_registry)
    assert sum(emptied) >= 1, emptied
    assert outcome.no_instance > 0, outcome.registry
    assert any(short.startswith("during") for short in outcome.capacity_short), outcome.capacity
