"""Case 3: the kube-apiserver is stopped and restarted during churn.

The operator's watches must recover (measured: from the API being ready again until a new pod is
handled, i.e. labelled with its role and registered), later events must be handled, and nothing
is registered twice or lost.
"""

from __future__ import annotations

import threading
import time

import pytest
from kubernetes import client

from infer_operator import labels
from infer_operator.devcluster import launcher
from tests.chaos.helpers import assert_converged, etcd_configs, etcd_instances, etcd_registry
from tests.support.specs import isvc_body
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.registry]


def test_apiserver_restart_during_churn(cluster, kube, namespace, etcd, operators, figures):
    if cluster.external or cluster.state_dir is None:
        pytest.skip("needs the local control plane (restarts its kube-apiserver)")
    operator = operators()
    kube.create_isvc(namespace, isvc_body("api", replicas=4, syncReplicas=3, registry=etcd_registry(etcd)))
    listing = lambda: etcd_instances(etcd, "api")  # noqa: E731
    wait_for(lambda: len(listing()) == 3, timeout=60, message="3 registered")

    # Churn right before the outage: a deletion and a scale-up in flight when the API goes away.
    kube.core.delete_namespaced_pod("api-1", namespace)
    kube.patch_isvc(namespace, "api", {"spec": {"replicas": 5, "syncReplicas": 4}})
    down = {}
    thread = threading.Thread(target=lambda: down.update(
        s=launcher.restart_component("kube-apiserver", cluster.state_dir, down_seconds=5)))
    thread.start()
    thread.join(120)
    assert "s" in down, "kube-apiserver did not come back"
    back = time.monotonic()
    assert operator.process.poll() is None, "operator died while the API server was down"

    # A new pod event after the restart: delete a sync pod; its successor must be handled.
    old_uid = _wait_pod(kube, namespace, "api-0").metadata.uid
    _retry(lambda: kube.core.delete_namespaced_pod("api-0", namespace))

    def successor_handled():
        pod = kube.pods(namespace, "api").get("api-0")
        if pod is None or pod.metadata.uid == old_uid or pod.metadata.deletion_timestamp:
            return False
        return (pod.metadata.labels or {}).get(labels.LABEL_ROLE) == "sync"

    wait_for(successor_handled, timeout=120, interval=0.2, message="new pod labelled after the API restart")
    recovery = time.monotonic() - back
    # Later events are handled too: a split change after the restart.
    _retry(lambda: kube.patch_isvc(namespace, "api", {"spec": {"syncReplicas": 2}}))
    wait_for(lambda: len(listing()) == 2 and (kube.get_isvc(namespace, "api").get("status") or {}).get(
        "syncReady") == 2, timeout=90, message=lambda: f"split change handled: {sorted(listing())}")
    assert_converged(kube, namespace, {"api": listing}, {"api": lambda: etcd_configs(etcd, "api")}, timeout=60)
    entries = listing()
    assert len({e["pod"] for e in entries.values()}) == len(entries), f"registered twice: {entries}"
    assert operator.process.poll() is None and operator.healthy()
    figures.update(apiserver_down_s=down["s"], watch_recovery_s=recovery)


def _retry(call, timeout=30):
    def attempt():
        try:
            call()
            return True
        except client.ApiException as exc:
            if exc.status in (404,):
                return True
            if exc.status >= 500 or exc.status == 429:
                return False
            raise
        except Exception:  # noqa: BLE001 - connection refused while the API settles
            return False
    wait_for(attempt, timeout=timeout, message="API call after restart")


def _wait_pod(kube, namespace, name):
    return wait_for(lambda: kube.pods(namespace, "api").get(name), timeout=60, message=f"pod {name}")
