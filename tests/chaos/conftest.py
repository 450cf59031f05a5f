"""Chaos fixtures: the CRDs, a real etcd, operators started per test (killed at teardown)."""

from __future__ import annotations

import pytest

from infer_operator.api.crd import CRD_FILE
from infer_operator.cleanup import run as cleanup_run
from tests.chaos.helpers import ROOT, new_operator
from tests.support.kube import Kube, install_crds

PEERING_CRDS = ROOT / "crds" / "kopf-peering.yaml"


@pytest.fixture(scope="session")
def kube(cluster) -> Kube:
    return Kube(cluster.api_client())


@pytest.fixture(scope="session")
def crd(cluster):
    install_crds(cluster, ROOT / CRD_FILE, PEERING_CRDS)


@pytest.fixture
def operators(cluster, crd, namespace, tmp_path, request):
    """A factory of operator processes for this test; every one still running is killed afterwards,
    and the logs of all of them are printed when the test fails. Then `infer-operator cleanup`
    releases whatever the killed operator left in the namespace, so its deletion does not hang."""
    started = []

    def make(*extra: str, name: str = "operator", env: dict | None = None, start: bool = True):
        process = new_operator(cluster, tmp_path, *extra, name=name, env=env)
        started.append(process)
        if start:
            process.start()
        return process

    yield make
    report = getattr(request.node, "rep_call", None)
    for process in started:
        if report is not None and report.failed:
            print(f"\n--- {process.log_path} ---\n{process.log_tail(80)}")
        process.kill()
    cleanup_run(namespace, kubeconfig=str(cluster.kubeconfig))


FIGURES: dict[str, dict] = {}


@pytest.fixture
def figures(request):
    """Measured figures of this case, printed in the terminal summary (and kept in FIGURES)."""
    out = FIGURES.setdefault(request.node.name, {})
    return out


def pytest_terminal_summary(terminalreporter):
    if not FIGURES:
        return
    terminalreporter.section("chaos figures")
    for case, values in FIGURES.items():
        text = ", ".join(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())
        terminalreporter.write_line(f"{case}: {text}")


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
