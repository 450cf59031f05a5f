"""Case 2: etcd unreachable (SIGSTOP) for 60 s while 10 sync pods are deleted.

With --deregister-timeout 10 every deleted pod is held, then released with an event, well inside
the outage; the rest of it shows the operator stays up, healthy and honest in its status.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from devtools.harness import isvc_body, wait_for
from tests.chaos.helpers import LiveEntryWatch, assert_converged, etcd_configs, etcd_instances, etcd_registry
from tests.support.kube import condition

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.registry]

OUTAGE_SECONDS = 60
SWEEP_SECONDS = 5


def test_etcd_outage_during_deletions(kube, namespace, etcd, operators, figures):
    operator = operators()
    kube.create_isvc(namespace, isvc_body("big", replicas=10, syncReplicas=10, registry=etcd_registry(etcd)))
    listing = lambda: etcd_instances(etcd, "big")  # noqa: E731
    wait_for(lambda: len(listing()) == 10, timeout=90, message=lambda: f"10 registered: {sorted(listing())}")
    pods = kube.pods(namespace, "big")
    old = {p.metadata.uid: p.status.pod_ip for p in pods.values()}
    for ip in old.values():
        etcd.put(f"/services/big/config/{ip}", '{"weight": 1}')
    # Entries that are not ours survive everything: a value that is not our JSON, a key outside
    # our prefix, and a neighbour's key.
    etcd.put("/services/big/instances/garbage", "not json at all")
    etcd.put("/elsewhere/big/instances/10.9.9.9:8000", "{}")

    with LiveEntryWatch(kube, namespace, "big", listing) as watch:
        os.kill(etcd.proc.pid, signal.SIGSTOP)
        stopped_at = time.monotonic()
        try:
            for name in pods:
                kube.core.delete_namespaced_pod(name, namespace)
            healthy_samples = []
            release_times = {}
            while time.monotonic() - stopped_at < OUTAGE_SECONDS:
                healthy_samples.append(operator.healthy())
                current = {p.metadata.uid for p in kube.pods(namespace, "big").values()}
                for uid in old:
                    if uid not in current and uid not in release_times:
                        release_times[uid] = time.monotonic() - stopped_at
                time.sleep(0.5)
            assert operator.process.poll() is None, "operator died during the outage"
            assert all(healthy_samples), f"liveness failed {healthy_samples.count(False)} times"
            assert set(release_times) == set(old), "not every deleted pod was released during the outage"
            assert min(release_times.values()) >= 8.0, f"released before the timeout: {sorted(release_times.values())}"
            timed_out = {
                e.involved_object.uid
                for e in kube.core.list_namespaced_event(namespace).items
                if e.reason == "DeregistrationTimedOut"
            }
            assert set(old) <= timed_out, f"{len(set(old) - timed_out)} deleted pods without DeregistrationTimedOut"
            synced = condition(kube.get_isvc(namespace, "big"), "RegistrySynced")
            assert synced and synced["status"] == "False" and synced["reason"] == "RegistryUnreachable", synced
        finally:
            os.kill(etcd.proc.pid, signal.SIGCONT)
        resumed = time.monotonic()

        def stale():
            entries = listing()
            dead_uid = [k for k, v in entries.items() if isinstance(v, dict) and v.get("uid") in old]
            live = {
                p.status.pod_ip for p in kube.pods(namespace, "big").values() if p.metadata.deletion_timestamp is None
            }
            dead_cfg = [ip for ip in etcd_configs(etcd, "big") if ip not in live]
            return dead_uid + dead_cfg

        wait_for(
            lambda: not stale(),
            timeout=2 * SWEEP_SECONDS + 5,
            interval=0.25,
            message=lambda: f"stale keys after two sweeps: {stale()}",
        )
        stale_gone = time.monotonic() - resumed
        assert_converged(
            kube,
            namespace,
            {"big": lambda: {k: v for k, v in listing().items() if k != "garbage"}},
            {"big": lambda: etcd_configs(etcd, "big")},
            timeout=60,
        )
    assert not watch.missing, f"live entries removed: {watch.missing[:5]}"
    assert etcd.get("/services/big/instances/garbage") == b"not json at all"
    assert etcd.get("/elsewhere/big/instances/10.9.9.9:8000") == b"{}"
    assert operator.healthy()
    figures.update(
        outage_s=OUTAGE_SECONDS,
        pods_deleted=len(old),
        released_after_s=f"{min(release_times.values()):.1f}..{max(release_times.values()):.1f}",
        stale_keys_gone_after_resume_s=stale_gone,
        live_entries_wrongly_removed=len(watch.missing),
        watch_samples_failed=watch.errors,
    )
