"""Case 3: the kube-apiserver is stopped and restarted during churn.

The operator's watches must recover, later events must be handled, and nothing is registered
twice or lost. A restarted API server answers the old watches with "410 Gone"; kopf relists, and
pods deleted in between stay in its index as ghosts until the reconcile loop's audit sets them
aside (without it, a ghost once stalled the split change below for good).

Two recoveries are measured apart, because they are not ours alike:
- the operator's: from the API being ready again until a spec change made after the restart is
  observed (status.observedGeneration), which needs only our own watch and status write;
- the cluster's: the controller-manager and KWOK (client-go) back off for 30-110 s here before
  they act again, so everything that needs a pod created or made Ready gets a generous bound.
"""

from __future__ import annotations

import threading
import time

import pytest
from kubernetes import client

from devtools.cluster import launcher
from devtools.harness import isvc_body, wait_for
from infer_operator import labels
from tests.chaos.helpers import assert_converged, etcd_configs, etcd_instances, etcd_registry
from tests.support.kube import is_ready

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.registry]

# The controller-manager's and KWOK's informers retry with client-go's backoff (up to a minute
# between attempts, jittered): pods are recreated and made Ready again only after that.
CONTROLLERS_RECOVER = 240


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
    thread = threading.Thread(
        target=lambda: down.update(s=launcher.restart_component("kube-apiserver", cluster.state_dir, down_seconds=5))
    )
    thread.start()
    thread.join(120)
    assert "s" in down, "kube-apiserver did not come back"
    back = time.monotonic()
    assert operator.process.poll() is None, "operator died while the API server was down"

    # The operator's own recovery: a split change made after the restart is observed.
    _retry(lambda: kube.patch_isvc(namespace, "api", {"spec": {"syncReplicas": 2}}))
    generation = kube.get_isvc(namespace, "api")["metadata"]["generation"]
    wait_for(
        lambda: (kube.get_isvc(namespace, "api").get("status") or {}).get("observedGeneration") == generation,
        timeout=60,
        interval=0.2,
        message="spec change after the restart observed",
    )
    recovery = time.monotonic() - back

    # ... and carried out once the cluster's controllers are back: api-2 and api-3 restart as async.
    def split_carried_out():
        pods = kube.pods(namespace, "api")
        roles = {
            name: (pod.metadata.labels or {}).get(labels.LABEL_ROLE)
            for name, pod in pods.items()
            if is_ready(pod) and not pod.metadata.deletion_timestamp
        }
        return roles == {"api-0": "sync", "api-1": "sync", "api-2": "async", "api-3": "async", "api-4": "async"} and {
            e["pod"] for e in listing().values()
        } == {"api-0", "api-1"}

    wait_for(
        split_carried_out,
        timeout=CONTROLLERS_RECOVER,
        message=lambda: f"split change carried out: registry {sorted(listing())}",
    )
    settled = time.monotonic() - back

    # A later pod event: delete a sync pod; its successor must be labelled and registered.
    old_uid = _wait_pod(kube, namespace, "api-0").metadata.uid
    _retry(lambda: kube.core.delete_namespaced_pod("api-0", namespace))

    def successor_handled():
        pod = kube.pods(namespace, "api").get("api-0")
        if pod is None or pod.metadata.uid == old_uid or pod.metadata.deletion_timestamp:
            return False
        return (pod.metadata.labels or {}).get(labels.LABEL_ROLE) == "sync"

    wait_for(successor_handled, timeout=120, interval=0.2, message="new pod labelled after the API restart")
    wait_for(
        lambda: (
            {e["pod"] for e in listing().values()} == {"api-0", "api-1"}
            and old_uid not in {e["uid"] for e in listing().values()}
        ),
        timeout=120,
        message=lambda: f"successor registered: {listing()}",
    )
    assert_converged(kube, namespace, {"api": listing}, {"api": lambda: etcd_configs(etcd, "api")}, timeout=60)
    entries = listing()
    assert len({e["pod"] for e in entries.values()}) == len(entries), f"registered twice: {entries}"
    assert operator.process.poll() is None and operator.healthy()
    ghosts = operator.log_text().count("still in the watch cache")
    figures.update(
        apiserver_down_s=down["s"],
        operator_recovery_s=recovery,
        split_carried_out_s=settled,
        index_ghosts_set_aside=ghosts,
    )


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
