"""Service churn: a CI system creating and deleting InferenceServices all day. Each service's record
(and its registry client, its aiohttp session and sockets) is let go once its loop, its cleanup and
its pods' releases are done: records, open registry clients and the operator's sockets to the
registry come back to where they were before the churn (records.py)."""

from __future__ import annotations

import psutil
import pytest

from devtools.harness import free_port, isvc_body, wait_for
from tests.chaos.helpers import etcd_instances, etcd_registry
from tests.chaos.test_let_go import metric

pytestmark = [pytest.mark.integration, pytest.mark.registry]

SERVICES = 12
ROUNDS = 2


def registry_sockets(pid: int, port: int) -> int:
    """The operator's TCP connections to the registry's port, in any state but closed."""
    return sum(1 for c in psutil.Process(pid).net_connections(kind="tcp")
               if c.raddr and c.raddr.port == port and c.status != psutil.CONN_CLOSE)


def test_records_clients_and_sockets_are_released_after_services_come_and_go(kube, etcd, operators, namespace):
    metrics_port = free_port()
    operator = operators("--namespace", namespace, "--metrics-port", str(metrics_port))
    etcd_port = int(etcd.client_url.rsplit(":", 1)[1])

    def counts() -> tuple[float, float, int]:
        return (metric(metrics_port, "infer_operator_service_records"),
                metric(metrics_port, "infer_operator_registry_clients"),
                registry_sockets(operator.pid, etcd_port))

    baseline = counts()
    assert baseline[:2] == (0, 0), baseline
    for round_ in range(ROUNDS):
        names = [f"churn-{round_}-{i}" for i in range(SERVICES)]
        for name in names:
            kube.custom.create_namespaced_custom_object(
                "serving.infer-operator.io", "v1alpha1", namespace, "inferenceservices",
                isvc_body(name, namespace, replicas=1, syncReplicas=1, registry=etcd_registry(etcd.client_url)))
        wait_for(lambda: all(etcd_instances(etcd, name) for name in names), timeout=120,
                 message=lambda: f"each of {SERVICES} services registered its pod "
                                 f"({sum(1 for n in names if etcd_instances(etcd, n))} did)")
        during = counts()
        assert during[0] == SERVICES and during[1] == SERVICES, during  # one record and one client each
        for name in names:
            kube.custom.delete_namespaced_custom_object("serving.infer-operator.io", "v1alpha1", namespace,
                                                        "inferenceservices", name)

        def gone() -> bool:
            left = kube.custom.list_namespaced_custom_object("serving.infer-operator.io", "v1alpha1", namespace,
                                                             "inferenceservices")["items"]
            pods = kube.core.list_namespaced_pod(namespace).items
            return not left and not pods

        wait_for(gone, timeout=120, message="the services and their pods are gone")
        assert not any(etcd_instances(etcd, name) for name in names)
        # Released as the last release ends: within seconds, not after aiohttp's 15 s keep-alive.
        wait_for(lambda: counts() == baseline, timeout=10,
                 message=lambda: f"records, registry clients and sockets back at {baseline}: {counts()}")
