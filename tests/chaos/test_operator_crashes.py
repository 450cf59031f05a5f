"""Case 1: the operator is SIGKILLed 10 times at random moments during churn.

Churn: pod deletions, scaling, split changes, InferenceService deletions and re-creations, on two
services registered in a real etcd. After the last restart: registry == Ready sync pods exactly,
no per-IP config of a dead IP, no pod held Terminating by our finalizer, no orphaned owned object.
"""

from __future__ import annotations

import random
import time

import pytest
from kubernetes import client

from devtools.harness import isvc_body, wait_for
from tests.chaos.helpers import assert_converged, etcd_configs, etcd_instances, etcd_registry

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.registry]

CHURN_SECONDS = 90
KILLS = 10
SERVICES = ("alpha", "beta")


def test_sigkill_ten_times_during_churn(kube, namespace, etcd, operators, figures):
    rng = random.Random(8)
    operator = operators()
    specs = {name: {"replicas": 4, "syncReplicas": 2} for name in SERVICES}

    def create(name):
        kube.create_isvc(namespace, isvc_body(name, registry=etcd_registry(etcd), **specs[name]))

    for name in SERVICES:
        create(name)
    wait_for(
        lambda: all(len(etcd_instances(etcd, n)) == 2 for n in SERVICES), timeout=60, message="both services registered"
    )

    def churn_once():
        name = rng.choice(SERVICES)
        if not kube.isvc_exists(namespace, name):
            create(name)
            return f"recreate {name}"
        action = rng.choices(["delete-pod", "scale", "split", "delete-isvc", "config"], [5, 2, 2, 1, 2])[0]
        if action == "delete-pod":
            pods = list(kube.pods(namespace, name))
            if pods:
                victim = rng.choice(pods)
                try:
                    kube.core.delete_namespaced_pod(victim, namespace)
                except client.ApiException as exc:
                    if exc.status != 404:
                        raise
                return f"delete pod {victim}"
        elif action == "scale":
            specs[name]["replicas"] = rng.randint(2, 5)
            specs[name]["syncReplicas"] = min(specs[name]["syncReplicas"], specs[name]["replicas"])
        elif action == "split":
            specs[name]["syncReplicas"] = rng.randint(0, specs[name]["replicas"])
        elif action == "delete-isvc":
            try:
                kube.delete_isvc(namespace, name)
            except client.ApiException as exc:
                if exc.status != 404:
                    raise
            return f"delete {name}"
        elif action == "config":
            # An ops tool writes per-IP config for a live pod (it must go when the pod goes).
            ips = [p.status.pod_ip for p in kube.pods(namespace, name).values() if p.status.pod_ip]
            if ips:
                etcd.put(f"/services/{name}/config/{rng.choice(ips)}", '{"weight": 2}')
            return f"config {name}"
        if action in ("scale", "split"):
            try:
                kube.patch_isvc(namespace, name, {"spec": dict(specs[name])})
            except client.ApiException as exc:
                if exc.status not in (404, 409, 422):
                    raise
        return f"{action} {name} -> {specs[name]}"

    start = time.monotonic()
    kill_at = sorted(rng.uniform(3, CHURN_SECONDS - 3) for _ in range(KILLS))
    kills = 0
    log = []
    while time.monotonic() - start < CHURN_SECONDS:
        log.append(churn_once())
        elapsed = time.monotonic() - start
        while kill_at and kill_at[0] <= elapsed:
            kill_at.pop(0)
            operator.kill()  # SIGKILL
            kills += 1
            # Sometimes churn goes on while no operator runs at all.
            if rng.random() < 0.5:
                log.append(churn_once())
            operator.start()
        time.sleep(rng.uniform(0.5, 2.0))
    assert kills == KILLS

    # Let every service exist at the end, then wait for the truth.
    for name in SERVICES:
        wait_for(lambda n=name: not _deleting(kube, namespace, n), timeout=60, message=f"{name} deleted or live")
        if not kube.isvc_exists(namespace, name):
            create(name)
    for name in SERVICES:
        wait_for(
            lambda n=name: _settled(kube, namespace, n, specs[n]),
            timeout=90,
            message=lambda n=name: f"{n} settled at {specs[n]}: {kube.get_isvc(namespace, n).get('status')}",
        )
    took = assert_converged(
        kube,
        namespace,
        {n: (lambda n=n: etcd_instances(etcd, n)) for n in SERVICES},
        {n: (lambda n=n: etcd_configs(etcd, n)) for n in SERVICES},
        timeout=60,
    )
    assert operator.process.poll() is None and operator.healthy()
    figures.update(
        kills_survived=kills,
        churn_actions=len(log),
        converged_after_settle_s=took,
        stale_entries=0,
        stale_configs=0,
        stuck_terminating=0,
        orphans=0,
    )


def _deleting(kube, namespace, name) -> bool:
    try:
        return bool(kube.get_isvc(namespace, name)["metadata"].get("deletionTimestamp"))
    except client.ApiException as exc:
        if exc.status == 404:
            return False
        raise


def _settled(kube, namespace, name, spec) -> bool:
    status = kube.get_isvc(namespace, name).get("status") or {}
    sync = spec["syncReplicas"]
    pods = kube.pods(namespace, name)
    return (
        status.get("syncReady") == sync
        and status.get("asyncReady") == spec["replicas"] - sync
        and len(pods) == spec["replicas"]
        and status.get("registered") == sync
    )
