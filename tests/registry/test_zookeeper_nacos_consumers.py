"""Real consumers read what the operator writes to ZooKeeper and Nacos, and the IP-reuse case on both.

- Curator's service discovery (Java, a ServiceCache) reads the zookeeper backend's curator layout:
  only the registered pods, and a deregistered one leaves its view;
- nacos-sdk-python (gRPC subscription) reads the nacos backend's persistent instances on r-nacos;
- a dead pod's weight=0 / disabled never reaches the next holder of its address: on Nacos, the
  consumer's own view of the new pod; on Dubbo's layout, the override rules Dubbo consumers apply
  (none left for the address). Both after a confirmed release, and after the dead pod's instance
  went while the operator was away (no reset: the claim must do it).

Each prints how long the consumer took to drop a deregistered pod (bench/README.md collects them).
"""

from __future__ import annotations

import dataclasses
import json
import time

import pytest

from devtools.consumers import CuratorConsumer, NacosConsumer
from infer_operator.registration.actions import deregister_confirmed
from infer_operator.registry.backends import connect
from infer_operator.registry.model import Instance, ServiceRef
from infer_operator.registry.nacos import OWNER_KEY
from infer_operator.registry.zookeeper import encode_node, parse_node
from tests.support.registry_backends import NacosHarness

pytestmark = pytest.mark.registry

SVC = "llm"
OWNER = ServiceRef("ns", "llm", "uid-llm")


def pod(ordinal: int, uid: str | None = None, ip: str | None = None) -> Instance:
    return Instance(
        f"llm-{ordinal}", "ns", uid or f"u-{ordinal}", ip or f"10.0.0.{ordinal + 1}", 8080, "sync", ordinal, OWNER
    )


async def release(registry, instance: Instance) -> None:
    """What the operator does for a deleted pod: deregister, confirm, then the IP's config."""
    result = await deregister_confirmed(registry, SVC, instance.ip, instance.port, instance.uid, backoff=0.05)
    assert result.confirmed, result
    assert await registry.delete_configs(SVC, [instance.ip]) == {}


# ----------------------------------------------------------------------------------- ZooKeeper


async def test_curator_reads_the_registered_pods_and_drops_a_deregistered_one(zookeeper_server, zookeeper):
    registry = connect("zookeeper", {"servers": [zookeeper_server.address], "layout": "curator"}, None, timeout=3)
    async with registry:
        pods = [pod(i) for i in range(3)]
        for instance in pods:
            await registry.claim(SVC, instance)
        zookeeper.create("/services/other/10.0.0.9:8080", b"{}", makepath=True)  # another service
        with CuratorConsumer(zookeeper_server.address, SVC) as consumer:
            consumer.wait_for(lambda seen: len(seen) == 3, message="Curator sees the three pods")
            seen = {f"{i['address']}:{i['port']}": i for i in consumer.current()}
            assert set(seen) == {p.address for p in pods}
            assert all(i["enabled"] and i["payload"]["pod"].startswith("llm-") for i in seen.values())
            gone = pods[1]
            started = time.time()
            assert (await deregister_confirmed(registry, SVC, gone.ip, gone.port, gone.uid)).confirmed
            dropped = consumer.wait_for(lambda seen: len(seen) == 2, message="Curator drops the deregistered pod")
            assert consumer.addresses() == {pods[0].address, pods[2].address}
            print(f"Curator dropped the deregistered pod {max(0.0, dropped - started) * 1000:.0f} ms after the call")


def _rules(zk, service: str) -> dict[str, dict[str, str]]:
    parent = f"/dubbo/{service}/configurators"
    names = zk.get_children(parent) if zk.exists(parent) else []
    return {name: parse_node(name).params | {"host": parse_node(name).host} for name in names}


def _ops_disables(zk, service: str, ip: str) -> None:
    """dubbo-admin's per-IP override: weight 0 and disabled for the provider at ip:8080."""
    rule = f"override://{ip}:8080/{service}?category=configurators&dynamic=false&enabled=true&weight=0&disabled=true"
    zk.create(f"/dubbo/{service}/configurators/{encode_node(rule)}", b"", makepath=True)


@pytest.mark.parametrize("operator_was_away", [False, True], ids=["released", "operator-away"])
async def test_dubbo_a_dead_pods_override_never_reaches_the_next_holder_of_its_address(
    zookeeper_server, zookeeper, operator_was_away
):
    registry = connect("zookeeper", {"servers": [zookeeper_server.address]}, None, timeout=3)
    async with registry:
        dead, new = pod(0), pod(0, uid="u-new")  # the same address, a new pod (KWOK reuses freed IPs)
        await registry.claim(SVC, dead)
        _ops_disables(zookeeper, SVC, dead.ip)
        everyone = "override://0.0.0.0/llm?category=configurators&dynamic=false&timeout=2000"
        zookeeper.create(f"/dubbo/{SVC}/configurators/{encode_node(everyone)}", b"")  # not per-IP: kept
        if operator_was_away:  # the pod's node went without the operator: its override stays behind
            for name in zookeeper.get_children(f"/dubbo/{SVC}/providers"):
                zookeeper.delete(f"/dubbo/{SVC}/providers/{name}")
            assert any(r["host"] == dead.ip for r in _rules(zookeeper, SVC).values())
        else:
            await release(registry, dead)
            assert not any(r["host"] == dead.ip for r in _rules(zookeeper, SVC).values())
        await registry.claim(SVC, new)
        # what a Dubbo consumer applies to the new provider: no rule for its address, the global one kept
        rules = _rules(zookeeper, SVC)
        assert [r["host"] for r in rules.values()] == ["0.0.0.0"]
        providers = zookeeper.get_children(f"/dubbo/{SVC}/providers")
        assert len(providers) == 1
        url = parse_node(providers[0])
        assert url.address == new.address and url.params["weight"] == "100" and "disabled" not in url.params
        data, _ = zookeeper.get(f"/dubbo/{SVC}/providers/{providers[0]}")
        assert json.loads(data)["uid"] == "u-new"


async def test_dubbo_provider_url_carries_dubbos_own_warm_up(zookeeper_server, zookeeper):
    registry = connect("zookeeper", {"servers": [zookeeper_server.address]}, None, timeout=3)
    registry.warmup_seconds = 40
    async with registry:
        before = int(time.time() * 1000)
        warming = dataclasses.replace(pod(0), weight=12)
        await registry.claim(SVC, warming)
        await registry.register(SVC, dataclasses.replace(warming, weight=38))  # the next step: data only
        (name,) = zookeeper.get_children(f"/dubbo/{SVC}/providers")
        url = parse_node(name)
        assert url.params["warmup"] == "40000" and before <= int(url.params["timestamp"]) <= before + 5000
        assert json.loads(zookeeper.get(f"/dubbo/{SVC}/providers/{name}")[0])["weight"] == 38
        await registry.claim(SVC, pod(1))  # a warm pod written anew: warmed up already for Dubbo
        url = next(parse_node(n) for n in zookeeper.get_children(f"/dubbo/{SVC}/providers") if n != name)
        assert int(url.params["timestamp"]) <= int(time.time() * 1000) - 40000


# ---------------------------------------------------------------------------------------- Nacos


@pytest.fixture
def nacos_harness(nacos):
    return NacosHarness(nacos)


def _nacos_consumer(harness: NacosHarness) -> NacosConsumer:
    return NacosConsumer(
        harness.server.url, SVC, group=harness.group, credentials=(harness.server.username, harness.server.password)
    )


async def test_nacos_sdk_reads_the_registered_pods_and_drops_a_deregistered_one(nacos_harness):
    async with nacos_harness.connect(timeout=3) as registry:
        pods = [pod(i) for i in range(3)]
        for instance in pods:
            await registry.claim(SVC, instance)
        with _nacos_consumer(nacos_harness) as consumer:
            consumer.wait_for(lambda seen: len(seen) == 3, message="nacos-sdk-python sees the three pods")
            assert consumer.addresses() == {p.address for p in pods}
            assert all(i["weight"] == 100 and i["enabled"] for i in consumer.current())
            gone = pods[1]
            started = time.time()
            assert (await deregister_confirmed(registry, SVC, gone.ip, gone.port, gone.uid)).confirmed
            dropped = consumer.wait_for(lambda seen: len(seen) == 2, message="the SDK drops the deregistered pod")
            assert consumer.addresses() == {pods[0].address, pods[2].address}
            lag = max(0.0, dropped - started) * 1000
            print(f"nacos-sdk-python dropped the deregistered pod {lag:.0f} ms after the call")


@pytest.mark.parametrize("operator_was_away", [False, True], ids=["released", "operator-away"])
async def test_nacos_a_dead_pods_weight_zero_never_reaches_the_next_holder_of_its_address(
    nacos_harness, operator_was_away
):
    h = nacos_harness
    async with h.connect(timeout=3) as registry:
        dead, new = pod(0), pod(0, uid="u-new")
        await registry.claim(SVC, dead)
        common = {"serviceName": SVC, "ip": dead.ip, "port": "8080", "ephemeral": "false"}
        # the console drains the pod: weight 0 (as near as r-nacos takes it), disabled, a tag
        h.call(
            "PUT",
            "/v1/ns/instance",
            **common,
            weight="0.0001",
            enabled="false",
            metadata=json.dumps({OWNER_KEY: dead.to_json(), "ops": "drained"}),
        )
        if operator_was_away:  # the instance removed by someone else: no reset
            h.call("DELETE", "/v1/ns/instance", **common)
        else:
            await release(registry, dead)
        with _nacos_consumer(h) as consumer:
            await registry.claim(SVC, new)

            def clean(seen: list[dict]) -> bool:
                return len(seen) == 1 and seen[0]["ip"] == new.ip

            consumer.wait_for(clean, message="the SDK sees the new holder")
            (seen,) = consumer.current()
            assert seen["weight"] == 100 and seen["enabled"] is True, seen
            assert seen["metadata"] == {OWNER_KEY: new.to_json()}, seen  # nothing of the dead pod's
        assert await registry.list_config_ips(SVC) == set()
