"""Shared, generic fixtures: a Kubernetes API to test against and a throwaway namespace per test.

- ``cluster`` (session): if ``$KUBECONFIG`` names a reachable cluster, that one is used; otherwise
  the local control plane (etcd, kube-apiserver, controller-manager, scheduler, KWOK) is started
  (``devtools.harness.connect()``; cached binaries are built on first use, progress goes to the
  terminal) and stopped at session end unless ``INFER_OPERATOR_KEEP_CLUSTER=1`` or it was already
  running before the session.
- ``namespace`` (function): a unique namespace ``t-<test>-<random>``, deleted afterwards.
"""

from __future__ import annotations

import os
import re
import secrets
import sys
import warnings

import pytest

from devtools.harness import KEEP_ENV, ClusterHandle, connect, wait_for


def _terminal_progress(config: pytest.Config):
    capman = config.pluginmanager.getplugin("capturemanager")

    def progress(msg: str) -> None:
        line = f"[devcluster] {msg}\n"
        if capman is not None:
            with capman.global_and_fixture_disabled():
                sys.stderr.write(line)
                sys.stderr.flush()
        else:
            sys.stderr.write(line)
            sys.stderr.flush()

    return progress


@pytest.fixture(scope="session")
def cluster(pytestconfig: pytest.Config):
    progress = _terminal_progress(pytestconfig)
    handle = connect(progress=progress)
    try:
        yield handle
    finally:
        if not handle.release(keep=os.environ.get(KEEP_ENV) == "1") and not handle.external:
            progress(f"leaving the control plane running ({handle.state_dir}); export KUBECONFIG={handle.kubeconfig}")


def _short_name(nodename: str, limit: int = 30) -> str:
    base = re.sub(r"^test_?", "", nodename.split("[")[0].lower())
    base = re.sub(r"[^a-z0-9]+", "-", base).strip("-")[:limit].strip("-")
    return base or "x"


@pytest.fixture
def namespace(cluster: ClusterHandle, request: pytest.FixtureRequest):
    """A fresh namespace for one test (its name is yielded); deleted, with a bounded wait, after."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    name = f"t-{_short_name(request.node.name)}-{secrets.token_hex(3)}"
    api = cluster.api_client()
    core = client.CoreV1Api(api)
    core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={"infer-operator.io/test": "true"}))
    )
    try:
        yield name
    finally:
        try:
            core.delete_namespace(name)  # no new pods from here on
            # Pods honour their grace period under KWOK; don't make every teardown wait for it
            # (finalizers are left alone: a pod held by one keeps the namespace, with a warning).
            core.delete_collection_namespaced_pod(name, grace_period_seconds=0)
        except ApiException as e:
            if e.status != 404:
                raise

        def gone() -> bool:
            try:
                core.read_namespace(name)
                return False
            except ApiException as e:
                if e.status == 404:
                    return True
                raise

        try:
            wait_for(gone, timeout=60, interval=0.25, message=f"namespace {name} still exists 60s after deletion")
        except AssertionError as e:
            warnings.warn(str(e), stacklevel=1)


@pytest.fixture(scope="session")
def etcd_server():
    """One real etcd for the session (the registry's etcd; Debian's etcd-server, see `make test`)."""
    from tests.support.etcd_server import EtcdServer, EtcdUnavailable

    try:
        server = EtcdServer()
    except EtcdUnavailable as exc:
        pytest.fail(f"{exc} (`make test` installs Debian's etcd-server)")
    with server:
        yield server


@pytest.fixture
def etcd(etcd_server):
    """The session etcd with an empty keyspace at the start of each test."""
    etcd_server.delete_all()
    return etcd_server


# --------------------------------------------------------------------------- the real node's count

REAL_NODE_TESTS = {"collected": 0, "ran": 0, "failed": 0, "skipped": 0, "reason": ""}
# Figures measured on the real node (name -> text), printed in the summary.
REAL_NODE_FIGURES: dict[str, str] = {}
# Set (to anything) by .ci/run: a machine that can run a real node must run the real-node tests,
# whatever a fixture said (another control plane's node, $KUBECONFIG).
REQUIRE_ENV = "INFER_OPERATOR_REQUIRE_REAL_NODE"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The real-node tests run last, in their own order: they share the integration tests'
    session operator, which must not be running yet while the integration tests that drive the
    reconciler themselves (test_index_audit) run first."""
    real = [item for item in items if "realnode" in item.keywords]
    if real:
        items[:] = [item for item in items if "realnode" not in item.keywords] + real


def pytest_collection_finish(session: pytest.Session) -> None:
    REAL_NODE_TESTS["collected"] = sum(1 for item in session.items if "realnode" in item.keywords)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Counts the tests marked `realnode`: those whose body ran on real pods, and those skipped."""
    if "realnode" not in report.keywords:
        return
    if report.when == "call":
        REAL_NODE_TESTS["ran"] += 1
        REAL_NODE_TESTS["failed"] += int(report.failed)
    elif report.when == "setup" and report.skipped:
        REAL_NODE_TESTS["skipped"] += 1
        REAL_NODE_TESTS["reason"] = str(report.longrepr[2]) if isinstance(report.longrepr, tuple) else ""
    elif report.when == "setup" and report.failed:
        REAL_NODE_TESTS["failed"] += 1


def none_ran_verdict(counts: dict, cannot: str | None, host_reason: str | None, required: bool) -> str | None:
    """Why a run must fail although no test failed, else None: real-node tests were collected and
    none ran, on a machine that could run them. `cannot`: why a fixture found this machine cannot
    (None: nothing said so); `host_reason`: realnode.host_reason(); `required`: CI's stricter rule,
    where only the host's own reason (not root, packages missing) excuses it."""
    if not counts["collected"] or counts["ran"]:
        return None
    if host_reason is not None:
        return None
    if cannot is not None and not required:
        return None
    why = f"a fixture said: {cannot}" if cannot else "nothing said this machine cannot run them"
    return (
        f"{counts['collected']} real-node test(s) were collected and none ran on a machine that can run a "
        f"real node ({why}; ${REQUIRE_ENV} is {'set' if required else 'not set'})"
    )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    from devtools.cluster import realnode
    from tests.support.realnode import CANNOT

    verdict = none_ran_verdict(
        REAL_NODE_TESTS, CANNOT["reason"], realnode.host_reason(), bool(os.environ.get(REQUIRE_ENV))
    )
    REAL_NODE_TESTS["verdict"] = verdict
    if verdict and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter) -> None:
    counts = REAL_NODE_TESTS
    if not counts["collected"]:
        return
    line = f"real node: {counts['ran']} test(s) ran on real pods ({counts['failed']} failed)"
    if counts["skipped"]:
        line += f", {counts['skipped']} skipped: {counts['reason']}"
    terminalreporter.write_sep("-", line)
    if counts.get("verdict"):
        terminalreporter.write_line(f"real node: FAILED: {counts['verdict']}", red=True)
    for name, value in REAL_NODE_FIGURES.items():
        terminalreporter.write_line(f"real node: {name}: {value}")
