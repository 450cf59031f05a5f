"""Case 6: uninstall paths, and the way out: `infer-operator cleanup`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from devtools.harness import assert_stays, isvc_body, wait_for
from infer_operator import labels
from tests.chaos.helpers import etcd_instances, etcd_registry, stuck_terminating

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.registry]


def cleanup_cli(cluster, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "infer_operator", "cleanup", "--kubeconfig", str(cluster.kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cr_deleted_while_etcd_down_waits_then_cleans(cluster, kube, namespace, etcd, operators, figures):
    operators()
    for name in ("keep", "out"):
        kube.create_isvc(namespace, isvc_body(name, replicas=1, syncReplicas=1, registry=etcd_registry(etcd)))
    wait_for(
        lambda: all(len(etcd_instances(etcd, n)) == 1 for n in ("keep", "out")), timeout=60, message="both registered"
    )
    os.kill(etcd.proc.pid, signal.SIGSTOP)
    try:
        kube.delete_isvc(namespace, "keep")
        kube.delete_isvc(namespace, "out")
        # The CR stays (finalizer infer-operator.io/cleanup) while its registry entries can't be removed.
        assert_stays(
            lambda: kube.isvc_exists(namespace, "keep") and kube.isvc_exists(namespace, "out"),
            duration=8,
            message="InferenceService went away with its entries still registered",
        )
        # The way out for one of them: release it without waiting for the registry.
        result = cleanup_cli(cluster, "--namespace", namespace)
        assert result.returncode == 0, result.stderr
        assert f"inferenceservice {namespace}/out (Terminating)" in result.stdout, result.stdout
        wait_for(lambda: not kube.isvc_exists(namespace, "out"), timeout=30, message="released CR is gone")
    finally:
        os.kill(etcd.proc.pid, signal.SIGCONT)
    # The other one... was released by the same cleanup (it covers the whole namespace).
    wait_for(lambda: not kube.isvc_exists(namespace, "keep"), timeout=60, message="CR gone")
    wait_for(
        lambda: (
            not stuck_terminating(kube, namespace)
            and not kube.pods(namespace, "keep")
            and not kube.pods(namespace, "out")
        ),
        timeout=60,
        message="pods released",
    )
    figures.update(cr_held_while_etcd_down=True, cleanup_released_cr=True)


def test_cr_deleted_while_etcd_down_completes_when_etcd_returns(kube, namespace, etcd, operators, figures):
    operators()
    kube.create_isvc(namespace, isvc_body("wait", replicas=2, syncReplicas=2, registry=etcd_registry(etcd)))
    wait_for(lambda: len(etcd_instances(etcd, "wait")) == 2, timeout=60, message="registered")
    os.kill(etcd.proc.pid, signal.SIGSTOP)
    try:
        kube.delete_isvc(namespace, "wait")
        assert_stays(lambda: kube.isvc_exists(namespace, "wait"), duration=8, message="CR went away early")
    finally:
        os.kill(etcd.proc.pid, signal.SIGCONT)
    back = time.monotonic()
    wait_for(lambda: not kube.isvc_exists(namespace, "wait"), timeout=60, message="CR gone after etcd returned")
    gone = time.monotonic() - back
    wait_for(lambda: not etcd.range_prefix("/services/wait/"), timeout=30, message="entries removed")
    wait_for(
        lambda: not stuck_terminating(kube, namespace) and not kube.pods(namespace, "wait"),
        timeout=60,
        message="pods released",
    )
    figures.update(cr_gone_after_etcd_back_s=gone)


def test_operator_removed_while_pods_carry_its_finalizer(cluster, kube, namespace, etcd, operators, figures):
    operator = operators()
    kube.create_isvc(namespace, isvc_body("orphan", replicas=3, syncReplicas=3, registry=etcd_registry(etcd)))
    wait_for(lambda: len(etcd_instances(etcd, "orphan")) == 3, timeout=60, message="registered")
    operator.kill()  # uninstalled without draining
    for name in kube.pods(namespace, "orphan"):
        kube.core.delete_namespaced_pod(name, namespace)
    assert_stays(
        lambda: len(stuck_terminating(kube, namespace)) == 3,
        duration=5,
        message="pods should be held by the finalizer while no operator runs",
    )
    dry = cleanup_cli(cluster, "--namespace", namespace, "--dry-run")
    assert dry.returncode == 0 and "would release 4 object(s)" in dry.stdout, dry.stdout  # 3 pods + the CR
    assert len(stuck_terminating(kube, namespace)) == 3, "dry run changed something"
    result = cleanup_cli(cluster, "--namespace", namespace)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(f"removed finalizer {labels.POD_FINALIZER}") >= 3, result.stdout
    wait_for(lambda: not stuck_terminating(kube, namespace), timeout=30, message="nothing stuck Terminating")
    usage = cleanup_cli(cluster)
    assert usage.returncode == 2 and "--namespace" in usage.stderr
    figures.update(stuck_after_cleanup=0)
