"""Service churn: a CI system creating and deleting InferenceServices all day. Each service's record
(and its registry client, its aiohttp session and sockets) is let go once its loop, its cleanup and
its pods' releases are done: records, open registry clients and the operator's sockets to the
registry come back to where they were before the churn (records.py)."""

from __future__ import annotations

import psutil
import pytest

from devtools.harness import free_port, isvc_body, wait_for
from infer_operator import labels
from tests.chaos.helpers import etcd_instances, etcd_registry
from tests.chaos.test_let_go import metric

pytestmark = [pytest.mark.integration, pytest.mark.registry]

SERVICES = 12
ROUNDS = 2


def registry_sockets(pid: int, port: int) -> int:
    """The operator's TCP connections to the registry's port, in any state but closed."""
    return sum(
        1
        for c in psutil.Process(pid).net_connections(kind="tcp")
        if c.raddr and c.raddr.port == port and c.status != psutil.CONN_CLOSE
    )


def test_records_clients_and_sockets_are_released_after_services_come_and_go(kube, etcd, operators, namespace):
    metrics_port = free_port()
    operator = operators("--namespace", namespace, "--metrics-port", str(metrics_port))
    etcd_port = int(etcd.client_url.rsplit(":", 1)[1])

    def counts() -> tuple[float, float, int]:
        return (
            metric(metrics_port, "infer_operator_service_records"),
            metric(metrics_port, "infer_operator_registry_clients"),
            registry_sockets(operator.pid, etcd_port),
        )

    baseline = counts()
    assert baseline[:2] == (0, 0), baseline
    for round_ in range(ROUNDS):
        names = [f"churn-{round_}-{i}" for i in range(SERVICES)]
        during = churn(kube, etcd, namespace, names, counts)
        assert during[0] == SERVICES and during[1] == SERVICES, during  # one record and one client each
        # Released as the last release ends: within seconds, not after aiohttp's 15 s keep-alive.
        wait_for(
            lambda: counts() == baseline,
            timeout=10,
            message=lambda: f"records, registry clients and sockets back at {baseline}: {counts()}",
        )


def churn(kube, etcd, namespace: str, names: list[str], counts) -> tuple[float, float, int]:
    """Create the services, wait until each registered its pod, read `counts()`, delete them all
    and wait until they and their pods are gone and nothing of theirs is registered."""
    for name in names:
        kube.create_isvc(
            namespace, isvc_body(name, namespace, replicas=1, syncReplicas=1, registry=etcd_registry(etcd))
        )

    def registered() -> int:
        return sum(1 for name in names if etcd_instances(etcd, name))

    wait_for(
        lambda: registered() == len(names),
        timeout=120,
        message=lambda: f"each of {len(names)} services registered its pod ({registered()} did)",
    )
    during = counts()
    for name in names:
        kube.delete_isvc(namespace, name)

    def gone() -> bool:
        left = kube.custom.list_namespaced_custom_object(labels.GROUP, labels.VERSION, namespace, labels.PLURAL)
        return not left["items"] and not kube.core.list_namespaced_pod(namespace).items

    wait_for(gone, timeout=120, message="the services and their pods are gone")
    assert registered() == 0
    return during
