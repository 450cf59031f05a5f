"""Real consumers read what the operator writes to etcd, with no glue: a gRPC-Go client whose only
view of the service is etcd's naming resolver, and CoreDNS's etcd plugin. Each is shown to reach
only the registered sync pods (not a server that runs but is not registered: an async pod, a pod
not ready yet) and to let go of a deregistered one. The pods are real gRPC servers on loopback
addresses of their own (127.0.0.2, ...); the registry is a real etcd; the entries are written by the
operator's own client."""

from __future__ import annotations

import dataclasses
import time

import pytest

from devtools.consumers import CoreDNS, GrpcDnsConsumer, GrpcResolverConsumer, GrpcServers
from devtools.harness import free_port, wait_for
from infer_operator.registration.actions import deregister_confirmed
from infer_operator.registry.etcd import EtcdRegistry
from infer_operator.registry.model import Instance, ServiceRef

pytestmark = pytest.mark.registry

SVC = "llm"
OWNER = ServiceRef("ns", "llm", "uid-llm")


def pod(ordinal: int, port: int) -> Instance:
    return Instance(f"llm-{ordinal}", "ns", f"u-{ordinal}", f"127.0.0.{ordinal + 2}", port, "sync", ordinal, OWNER)


@pytest.fixture
def port():
    return free_port()


@pytest.fixture
def servers(port):
    # three sync pods, and a fourth server that runs but is never registered (an async pod)
    with GrpcServers([f"127.0.0.{i}:{port}" for i in (2, 3, 4, 5)]) as running:
        yield running


@pytest.fixture
async def registry(etcd):
    client = EtcdRegistry([etcd.client_url], timeout=2.0)
    yield client
    await client.close()


async def test_a_grpc_client_through_etcds_resolver_calls_only_registered_pods_and_leaves_a_deleted_one(
    etcd, registry, servers, port
):
    pods = [pod(i, port) for i in range(3)]
    for instance in pods:
        await registry.claim(SVC, instance)
    etcd.put("/services/llm/config/127.0.0.2", b'{"weight":100}')  # per-IP config: not an instance
    with GrpcResolverConsumer(etcd.client_url, SVC, rate=100) as consumer:
        assert consumer.target == "etcd:////services/llm/instances"
        consumer.wait_for_calls(30)
        start = time.time()
        consumer.wait_for_calls(150, since=start)
        counts = consumer.counts(since=start)
        assert set(counts) == {i.address for i in pods}, counts  # never the unregistered 127.0.0.5
        assert min(counts.values()) >= 0.2 * sum(counts.values())  # round robin over the three
        assert consumer.failures(since=start) == []

        gone = pods[1]
        deregistered_at = time.time()
        assert (await deregister_confirmed(registry, SVC, gone.ip, gone.port, gone.uid)).confirmed
        # the server keeps serving (a pod draining): only the registry steers the client away

        def left_it() -> bool:
            recent = consumer.calls_since(time.time() - 0.5)
            return len(recent) >= 10 and all(c.addr != gone.address for c in recent)

        wait_for(left_it, timeout=10, message=f"the client still calls {gone.address} after its deregistration")
        last = max((c.t for c in consumer.calls_since(deregistered_at) if c.addr == gone.address), default=None)
        lag = 0.0 if last is None else last - deregistered_at
        assert lag < 2.0, f"calls to a deregistered pod went on for {lag:.2f}s"
        after = time.time()
        consumer.wait_for_calls(100, since=after)
        assert set(consumer.counts(since=after)) == {pods[0].address, pods[2].address}
        assert consumer.failures(since=deregistered_at) == []
        # its server stops now, as the pod would after its drain: nothing is lost
        servers.stop_one(gone.address)
        consumer.wait_for_calls(50, since=time.time())
        assert consumer.failures(since=deregistered_at) == []
        print(f"gRPC client left the deregistered pod {lag * 1000:.0f} ms after its deregistration")


async def test_an_entry_of_an_earlier_layout_is_not_readable_by_grpc_until_the_operator_rewrites_it(
    etcd, registry, servers, port
):
    old = pod(0, port)
    etcd.put(f"/services/llm/instances/{old.address}", old.to_json().encode())  # no "Addr"
    listed = (await registry.list_instances(SVC)).instances
    assert listed == [dataclasses.replace(old, stale_layout=True)]  # a pass writes it again
    await registry.register(SVC, old)
    with GrpcResolverConsumer(etcd.client_url, SVC, rate=50) as consumer:
        consumer.wait_for_calls(20)
        assert set(consumer.counts()) == {old.address}


async def test_coredns_answers_a_and_srv_for_registered_pods_only_with_their_weights(etcd, registry, port):
    pods = [pod(i, port) for i in range(3)]
    for instance in pods:
        await registry.claim(SVC, instance)
    warming = dataclasses.replace(pods[2], weight=12)  # in its warm-up's first step
    await registry.register(SVC, warming)
    etcd.put("/services/llm/config/127.0.0.2", b"not json")  # per-IP config: outside the name's keys
    with CoreDNS(etcd.client_url, prefix="/services") as dns:
        name = f"instances.{SVC}."
        assert {r.address for r in dns.answer(name, "A")} == {i.ip for i in pods}
        srv = dns.answer(name, "SRV")
        assert {r.port for r in srv} == {port} and len(srv) == 3
        weights = sorted(r.weight for r in srv)  # CoreDNS gives each its percent of the total weight
        assert weights == [5, 47, 47], weights  # 12 / 212 and 100 / 212
        assert dns.resolver().resolve(name, "A").rrset.ttl == 5  # the entry's ttl, not CoreDNS's 300
        gone = pods[1]
        assert (await deregister_confirmed(registry, SVC, gone.ip, gone.port, gone.uid)).confirmed
        # no cache in front: the next answer leaves it out
        assert {r.address for r in dns.answer(name, "A")} == {pods[0].ip, pods[2].ip}
        assert len(dns.answer(name, "SRV")) == 2


async def test_a_grpc_client_on_grpcs_dns_resolver_through_coredns_calls_only_registered_pods(
    etcd, registry, servers, port
):
    pods = [pod(i, port) for i in range(3)]
    for instance in pods:
        await registry.claim(SVC, instance)
    with CoreDNS(etcd.client_url) as dns, GrpcDnsConsumer(dns.address, f"instances.{SVC}.", port, rate=100) as consumer:
        consumer.wait_for_calls(30)
        start = time.time()
        consumer.wait_for_calls(90, since=start)
        assert set(consumer.counts(since=start)) == {i.address for i in pods}  # never 127.0.0.5
        assert consumer.failures(since=start) == []
