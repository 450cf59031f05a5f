"""Lossless online/offline, asserted: the operator's service on real pods, under steady load from
a registry-discovering consumer, a Service consumer and a job producer, loses nothing through any
lifecycle event (devtools/lossless: the events, the worlds, the counting). The baselines' figures
are the benchmark's (bench/lossless.py), not asserted.

Counts, not times: 0 failed requests, 0 cut mid-flight, 0 jobs lost or done twice, and never fewer
registered Ready sync pods than desired minus maxUnavailable.
"""

from __future__ import annotations

import secrets

import pytest
from kubernetes import client

from devtools import lossless
from devtools.cluster import realnode
from devtools.cluster.etcd import EtcdServer

pytestmark = [pytest.mark.integration, pytest.mark.realnode]

LOAD = lossless.Load(registry_rps=8.0, service_rps=8.0, jobs_per_second=3.0)


@pytest.fixture(scope="module")
def gateway_etcd(real_node):
    """The registry, on the pods' gateway (the operator and the consumers reach it from the host)."""
    server = EtcdServer(host=realnode.POD_GATEWAY, name="lossless").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def world(cluster, kube, real_node, gateway_etcd, pod_redis, module_namespace, operator):
    api = cluster.api_client()
    env = lossless.Env(
        core=client.CoreV1Api(api),
        apps=client.AppsV1Api(api),
        custom=client.CustomObjectsApi(api),
        kubectl=cluster.kubectl,
        node=real_node,
        node_name=realnode.NODE_NAME,
        namespace=module_namespace,
        etcd_url=gateway_etcd.client_url,
        redis_url=f"redis://{realnode.POD_GATEWAY}:{pod_redis.port}/0",
        prefix=f"/lossless-{secrets.token_hex(2)}",
        operator=operator,
    )
    service = lossless.OperatorWorld(env, "ll")
    service.create()
    service.wait_settled(LOAD.event_timeout)
    yield service
    service.delete()


@pytest.mark.parametrize("event", lossless.EVENTS, ids=[e.name for e in lossless.EVENTS])
def test_nothing_is_lost(world, event, running_operator):
    outcome = lossless.run_events(world, LOAD, (event,))[event.name]
    report = outcome.as_dict()
    print(f"\n{event.name}: {report}")
    assert outcome.error is None, report
    assert outcome.registry["sent"] > 0 and outcome.service["sent"] > 0 and outcome.jobs["pushed"] > 0, report
    assert (outcome.failed, outcome.cut) == (0, 0), report
    assert (outcome.jobs_lost, outcome.jobs_duplicated) == (0, 0), report
    assert (
        outcome.lowest_capacity is not None and outcome.lowest_capacity >= outcome.desired - outcome.max_unavailable
    ), report
