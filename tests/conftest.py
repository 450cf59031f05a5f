"""Shared, generic fixtures: a Kubernetes API to test against and a throwaway namespace per test.

- ``cluster`` (session): if ``$KUBECONFIG`` names a reachable cluster, that one is used; otherwise
  the local control plane (etcd, kube-apiserver, controller-manager, scheduler, KWOK) is started
  with ``devtools.cluster.launcher.up()`` (building cached binaries on first use; progress
  goes to the terminal) and stopped at session end unless ``INFER_OPERATOR_KEEP_CLUSTER=1`` or it was
  already running before the session.
- ``namespace`` (function): a unique namespace ``t-<test>-<random>``, deleted afterwards.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.waiting import wait_for

KEEP_ENV = "INFER_OPERATOR_KEEP_CLUSTER"


@dataclass
class ClusterHandle:
    kubeconfig: Path
    server: str
    kubectl_bin: str
    external: bool
    state_dir: Path | None = None
    _clients: list = field(default_factory=list, repr=False)

    def configuration(self):
        from kubernetes import client, config

        cfg = client.Configuration()
        config.load_kube_config(config_file=str(self.kubeconfig), client_configuration=cfg)
        return cfg

    def api_client(self):
        """A new ``kubernetes.client.ApiClient`` for this cluster (closed at session end)."""
        from kubernetes import client

        api = client.ApiClient(self.configuration())
        self._clients.append(api)
        return api

    def env(self, **extra: str) -> dict[str, str]:
        """``os.environ`` plus KUBECONFIG pointing at this cluster (for subprocesses)."""
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig), **extra}

    def kubectl(self, *args: str, check: bool = False, input: str | None = None,
                timeout: float = 60) -> subprocess.CompletedProcess:
        """Run kubectl against this cluster; returns the CompletedProcess (text output)."""
        return subprocess.run([self.kubectl_bin, f"--kubeconfig={self.kubeconfig}", *args],
                              capture_output=True, text=True, input=input, timeout=timeout,
                              check=check)

    def close(self) -> None:
        for api in self._clients:
            try:
                api.close()
            except Exception:  # noqa: BLE001 - best effort at teardown
                pass
        self._clients.clear()


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
    kubeconfig_env = os.environ.get("KUBECONFIG")
    if kubeconfig_env:
        from devtools.cluster.launcher import reachable

        first = kubeconfig_env.split(os.pathsep)[0]
        server = reachable(first)
        if server:
            from devtools.cluster import toolchain

            kubectl = shutil.which("kubectl") or str(toolchain.binary_path("kubectl"))
            handle = ClusterHandle(Path(first), server, kubectl, external=True)
            yield handle
            handle.close()
            return

    from devtools.cluster import launcher, toolchain

    progress = _terminal_progress(pytestconfig)
    already_up = launcher.status().healthy
    info = launcher.up(progress=progress)
    toolchain.ensure(["kubectl"], progress=progress)
    handle = ClusterHandle(info.kubeconfig, info.server, str(toolchain.binary_path("kubectl")),
                           external=False, state_dir=info.state_dir)
    try:
        yield handle
    finally:
        handle.close()
        if already_up or os.environ.get(KEEP_ENV) == "1":
            progress(f"leaving the control plane running ({info.state_dir}); "
                     f"export KUBECONFIG={info.kubeconfig}")
        else:
            launcher.down(info.state_dir)


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
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(
        name=name, labels={"infer-operator.io/test": "true"})))
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
            wait_for(gone, timeout=60, interval=0.25,
                     message=f"namespace {name} still exists 60s after deletion")
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
