"""Integration fixtures: the CRD installed, and the operator running as its own process."""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools.cluster.realnode import POD_GATEWAY
from devtools.harness import OperatorProcess, wait_for
from infer_operator.api.crd import CRD_FILE
from tests.support.kube import Kube, install_crds

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def kube(cluster) -> Kube:
    return Kube(cluster.api_client())


@pytest.fixture(scope="session")
def crd(cluster):
    install_crds(cluster, ROOT / CRD_FILE)


@pytest.fixture(scope="session")
def operator(cluster, crd, tmp_path_factory):
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    # Real-node pods ask it whether they left the registry before they drain, at the bridge's
    # address (where this machine is for them).
    process = OperatorProcess(
        cluster.kubeconfig,
        log,
        "--resync-seconds",
        "10",
        "--sweep-seconds",
        "5",
        "--registry-timeout",
        "2",
        "--deregister-timeout",
        "10",
        release_host=POD_GATEWAY,
    )
    process.start()
    yield process
    process.stop()


@pytest.fixture
def running_operator(operator):
    """The session's operator, restarted if an earlier test stopped or killed it."""
    if operator.process.poll() is not None:
        operator.start()
    return operator


@pytest.fixture(autouse=True)
def _show_operator_log_on_failure(request):
    yield
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed and "operator" in request.fixturenames:
        process = request.getfixturevalue("operator")
        print(f"\n--- operator log ({process.log_path}) ---\n{process.log_tail(120)}")


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


__all__ = ["wait_for"]
