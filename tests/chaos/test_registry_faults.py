"""Case 7b: a misbehaving HTTP registry: 500s, 404 on PUT, garbage, huge and slow responses.

The operator never crashes (process alive, liveness OK), says what is wrong (RegistrySynced=False
and a log line, no traceback), retries, and deletes nothing it cannot prove stale.
"""

from __future__ import annotations

import time

import pytest

from devtools.harness import isvc_body, wait_for
from tests.chaos.helpers import assert_converged
from tests.support.admin_process import AdminControllerProcess
from tests.support.kube import condition

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.registry]

FAULTS = [
    ("http-500", {"fail_next": [{"status": 500, "count": 40}]}),
    ("404-on-put", {"fail_next": [{"status": 404, "count": 40, "method": "PUT"}]}),
    ("garbage-text", {"garbage": "text"}),
    ("garbage-object", {"garbage": "object"}),
    ("garbage-null", {"garbage": "null"}),
    ("huge-streamed", {"garbage": "huge"}),
    ("huge-content-length", {"garbage": "huge-cl"}),
    ("slower-than-timeout", {"delay": 3.0}),
]


@pytest.fixture
def admin():
    controller = AdminControllerProcess()
    yield controller
    controller.stop()


def test_http_registry_misbehaves(kube, namespace, admin, operators, figures):
    operator = operators()
    kube.create_isvc(
        namespace, isvc_body("flaky", replicas=3, syncReplicas=2, registry={"type": "http", "http": {"url": admin.url}})
    )
    listing = lambda: admin.instances("flaky")  # noqa: E731
    wait_for(lambda: len(listing()) == 2, timeout=60, message="2 registered")
    live = {p.status.pod_ip for p in kube.pods(namespace, "flaky").values()}
    for ip in live:
        admin.seed_config("flaky", ip)
    before = listing()
    seen_unreachable = []
    replaced: set[str] = set()
    for fault_id, spec in FAULTS:
        admin.faults(reset=True)
        admin.faults(**spec)
        if fault_id == "404-on-put":
            # A registration is due during this fault: a pod is replaced. Its IP's config goes
            # with it, even when the replacement gets the same IP back (KWOK reuses IPs).
            replaced.add(kube.pods(namespace, "flaky")["flaky-1"].status.pod_ip)
            kube.core.delete_namespaced_pod("flaky-1", namespace)
        deadline = time.monotonic() + 7
        while time.monotonic() < deadline:
            assert operator.process.poll() is None, f"{fault_id}: operator died"
            assert operator.healthy(), f"{fault_id}: liveness failed"
            cond = condition(kube.get_isvc(namespace, "flaky"), "RegistrySynced")
            if cond and cond["status"] == "False":
                seen_unreachable.append(fault_id)
            time.sleep(0.5)
        state = admin.state()
        # Nothing it cannot prove stale was deleted: every live pod's config is still there.
        kept = set(state["configs"].get("flaky", []))
        assert live - replaced <= kept | _replaced(kube, namespace, live), fault_id
        if fault_id != "404-on-put":
            gone_with_their_pod = {a for a in before if a.split(":")[0] in replaced}
            assert set(before) - set(state["instances"].get("flaky", {})) <= (
                _dead(kube, namespace, before) | gone_with_their_pod
            ), f"{fault_id}: live entries removed"
    admin.faults(reset=True)
    assert_converged(kube, namespace, {"flaky": listing}, {"flaky": lambda: admin.configs("flaky")}, timeout=60)
    log = operator.log_text()
    assert "Traceback" not in log, log[log.index("Traceback") - 500 :][:3000]
    unique = sorted(set(seen_unreachable))
    assert len(unique) >= 6, f"RegistrySynced=False seen only during {unique}"
    figures.update(faults=len(FAULTS), reported_not_synced=len(unique), crashes=0, tracebacks=0)


def _dead(kube, namespace, entries):
    live = {p.status.pod_ip for p in kube.pods(namespace, "flaky").values() if p.metadata.deletion_timestamp is None}
    return {address for address in entries if address.split(":")[0] not in live}


def _replaced(kube, namespace, ips):
    live = {p.status.pod_ip for p in kube.pods(namespace, "flaky").values() if p.metadata.deletion_timestamp is None}
    return {ip for ip in ips if ip not in live}
