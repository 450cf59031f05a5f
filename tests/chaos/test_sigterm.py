"""Case 5: SIGTERM to the operator while deleted pods are being deregistered."""

from __future__ import annotations

import os
import signal
import time

import pytest

from devtools.harness import isvc_body, wait_for
from infer_operator import labels
from tests.chaos.helpers import assert_converged, etcd_configs, etcd_instances, etcd_registry

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.registry]

EXIT_BOUND = 15.0


def test_sigterm_during_deletions(kube, namespace, etcd, operators, figures):
    first = operators(name="first")
    kube.create_isvc(namespace, isvc_body("term", replicas=4, syncReplicas=4, registry=etcd_registry(etcd)))
    listing = lambda: etcd_instances(etcd, "term")  # noqa: E731
    wait_for(lambda: len(listing()) == 4, timeout=60, message="4 registered")
    victims = {n: p.metadata.uid for n, p in kube.pods(namespace, "term").items() if n != "term-0"}

    os.kill(etcd.proc.pid, signal.SIGSTOP)  # deregistrations hang: they are in flight at SIGTERM
    try:
        for name in victims:
            kube.core.delete_namespaced_pod(name, namespace)
        # A deregistration attempt that timed out against the stopped etcd: they are in flight now.
        # (The log's first line is the command line, which names --deregister-timeout: match the
        # releaser's own words.)
        wait_for(lambda: "attempt 1 failed" in first.log_text(), timeout=20, message="deregistrations in flight")
        sent = time.monotonic()
        first.signal(signal.SIGTERM)
        first.process.wait(60)
        exit_seconds = time.monotonic() - sent
        # In-flight work is abandoned safely: the pods are still held, nothing released unconfirmed.
        held = [
            n
            for n, uid in victims.items()
            if (p := kube.pods(namespace, "term").get(n)) is not None
            and p.metadata.uid == uid
            and labels.POD_FINALIZER in (p.metadata.finalizers or [])
        ]
    finally:
        os.kill(etcd.proc.pid, signal.SIGCONT)
    assert exit_seconds < EXIT_BOUND, f"operator took {exit_seconds:.1f}s to exit"
    assert first.process.returncode == 0, first.log_tail()
    assert held == sorted(victims), f"released without confirmed deregistration: {set(victims) - set(held)}"

    second = operators(name="second")
    assert_converged(kube, namespace, {"term": listing}, {"term": lambda: etcd_configs(etcd, "term")}, timeout=60)
    assert second.healthy()
    figures.update(sigterm_exit_s=exit_seconds, held_at_exit=len(held), completed_by_next_instance=True)
