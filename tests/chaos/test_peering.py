"""Case 4: two operator replicas with kopf peering: one acts, and stopping it hands over: at once when
it stops in order (SIGTERM: a rolling upgrade), within the peering lifetime when it is killed."""

from __future__ import annotations

import secrets
import signal
import time

import pytest
from kubernetes import client

from devtools.harness import isvc_body, wait_for
from infer_operator import labels
from tests.chaos.helpers import assert_converged, etcd_configs, etcd_instances, etcd_registry

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.registry]

LIFETIME = 15  # kopf's peering record lifetime (the operator's default; kopf's own is 60 s)
ACTING = ("takes the", "Registered ", "Deregistered ")


@pytest.mark.parametrize("stop", ["killed", "stopped"])
def test_peering_active_standby_and_hand_over(cluster, kube, namespace, etcd, operators, figures, stop):
    name = f"chaos-{secrets.token_hex(3)}"
    custom = kube.custom
    custom.create_cluster_custom_object(
        "kopf.dev",
        "v1",
        "clusterkopfpeerings",
        {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": name}},
    )
    try:
        env = {"INFER_OPERATOR_PEERING_LIFETIME": str(LIFETIME)}
        active = operators("--peering", name, "--priority", "100", name="active", env=env)
        standby = operators("--peering", name, "--priority", "50", name="standby", env=env)
        # Both start paused (peering is mandatory); only the highest priority resumes.
        wait_for(lambda: "Resuming operations" in active.log_text(), timeout=30, message="active replica resumes")

        kube.create_isvc(namespace, isvc_body("peer", replicas=3, syncReplicas=3, registry=etcd_registry(etcd)))
        listing = lambda: etcd_instances(etcd, "peer")  # noqa: E731
        wait_for(lambda: len(listing()) == 3, timeout=60, message="3 registered by the active replica")
        assert not [line for line in standby.log_text().splitlines() if any(a in line for a in ACTING)], (
            "the standby acted while the active replica was alive"
        )
        assert "Resuming operations" not in standby.log_text()

        old_uid = kube.pods(namespace, "peer")["peer-0"].metadata.uid
        if stop == "killed":
            active.kill()  # SIGKILL: no goodbye in the peering object
        else:
            active.signal(signal.SIGTERM)  # in order: kopf says goodbye (its record's lifetime 0)
        killed = time.monotonic()
        kube.core.delete_namespaced_pod("peer-0", namespace)

        def handled():
            pod = kube.pods(namespace, "peer").get("peer-0")
            return (
                pod is not None
                and pod.metadata.uid != old_uid
                and pod.metadata.deletion_timestamp is None
                and (pod.metadata.labels or {}).get(labels.LABEL_ROLE) == "sync"
            )

        # Killed: the record expires LIFETIME s after its last renewal (every 5-10 s), then the
        # standby's next look; stopped in order: at once (the record says goodbye).
        wait_for(
            lambda: "Resuming operations" in standby.log_text(),
            timeout=LIFETIME + 15 if stop == "killed" else 5,
            interval=0.1,
            message="the standby resumes",
        )
        resumed = time.monotonic() - killed
        wait_for(handled, timeout=60, interval=0.2, message="the standby takes over the deleted pod")
        hand_over = time.monotonic() - killed
        wait_for(lambda: len(listing()) == 3, timeout=60, message="3 registered after the hand-over")
        assert_converged(kube, namespace, {"peer": listing}, {"peer": lambda: etcd_configs(etcd, "peer")}, timeout=60)
        entries = listing()
        assert len({e["pod"] for e in entries.values()}) == 3
        assert standby.process.poll() is None and standby.healthy()
        figures.update(
            peering_lifetime_s=LIFETIME, **{f"resumed_when_{stop}_s": resumed, f"pod_replaced_when_{stop}_s": hand_over}
        )
    finally:
        try:
            custom.delete_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", name)
        except client.ApiException:
            pass
