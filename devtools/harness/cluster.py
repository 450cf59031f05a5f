"""The cluster tests, demo and benchmarks run against: $KUBECONFIG's if it answers, else the local control plane."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# Set to "1": the test session leaves the local control plane it started running.
KEEP_ENV = "INFER_OPERATOR_KEEP_CLUSTER"

ProgressFn = Callable[[str], None]


@dataclass
class ClusterHandle:
    """One cluster: its kubeconfig, API server URL and a kubectl for it.

    ``external``: not the local control plane. ``state_dir``: the local control plane's state dir.
    ``started``: this handle started the local control plane (it was not running before), so
    ``release()`` stops it.
    """

    kubeconfig: Path
    server: str
    kubectl_bin: str
    external: bool
    state_dir: Path | None = None
    started: bool = False
    _clients: list = field(default_factory=list, repr=False)

    def configuration(self):
        from kubernetes import client, config

        cfg = client.Configuration()
        config.load_kube_config(config_file=str(self.kubeconfig), client_configuration=cfg)
        return cfg

    def api_client(self):
        """A new ``kubernetes.client.ApiClient`` for this cluster (closed by ``close()``)."""
        from kubernetes import client

        api = client.ApiClient(self.configuration())
        self._clients.append(api)
        return api

    def env(self, **extra: str) -> dict[str, str]:
        """``os.environ`` plus KUBECONFIG pointing at this cluster (for subprocesses)."""
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig), **extra}

    def kubectl(
        self, *args: str, check: bool = False, input: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess:
        """Run kubectl against this cluster; returns the CompletedProcess (text output)."""
        return subprocess.run(
            [self.kubectl_bin, f"--kubeconfig={self.kubeconfig}", *args],
            capture_output=True,
            text=True,
            input=input,
            timeout=timeout,
            check=check,
        )

    def close(self) -> None:
        for api in self._clients:
            try:
                api.close()
            except Exception:  # noqa: BLE001 - best effort at teardown
                pass
        self._clients.clear()

    def release(self, keep: bool = False) -> bool:
        """``close()``, then stop the local control plane if this handle started it, unless
        ``keep``. True when it was stopped."""
        self.close()
        if self.external or not self.started or keep:
            return False
        from devtools.cluster import launcher

        launcher.down(self.state_dir)
        return True


def env_kubeconfig() -> Path | None:
    """The first file $KUBECONFIG names, if it is set."""
    value = os.environ.get("KUBECONFIG")
    return Path(value.split(os.pathsep)[0]) if value else None


def external(kubeconfig: Path) -> ClusterHandle | None:
    """A handle on the cluster of ``kubeconfig`` if it answers within a few seconds, else None.
    kubectl: the one on PATH, else the toolchain's (built if missing)."""
    from devtools.cluster import launcher, toolchain

    server = launcher.reachable(str(kubeconfig))
    if not server:
        return None
    kubectl = shutil.which("kubectl")
    if not kubectl:
        kubectl = str(toolchain.ensure(["kubectl"])["kubectl"])
    return ClusterHandle(kubeconfig, server, kubectl, external=True)


def local(
    state_dir: str | os.PathLike | None = None, *, nodes: int | None = None, progress: ProgressFn | None = None
) -> ClusterHandle:
    """A handle on the local control plane in ``state_dir`` (default: $INFER_OPERATOR_CLUSTER_DIR,
    else ~/.cache/infer-operator/cluster), started (and its binaries built) unless it already runs.
    ``nodes``: KWOK nodes (default: the launcher's); ``progress`` gets one line at a time."""
    from devtools.cluster import launcher, toolchain

    already_up = launcher.status(state_dir).healthy
    info = launcher.up(state_dir, nodes=launcher.DEFAULT_NODE_COUNT if nodes is None else nodes, progress=progress)
    kubectl = toolchain.ensure(["kubectl"], progress=progress)["kubectl"]
    return ClusterHandle(
        info.kubeconfig, info.server, str(kubectl), external=False, state_dir=info.state_dir, started=not already_up
    )


def connect(
    state_dir: str | os.PathLike | None = None,
    *,
    nodes: int | None = None,
    progress: ProgressFn | None = None,
    external_ok: bool = True,
) -> ClusterHandle:
    """$KUBECONFIG's cluster if it answers (and ``external_ok``), else ``local(state_dir, ...)``.
    Stop what it started with ``handle.release()``."""
    kubeconfig = env_kubeconfig() if external_ok else None
    handle = external(kubeconfig) if kubeconfig else None
    return handle or local(state_dir, nodes=nodes, progress=progress)
