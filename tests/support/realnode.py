"""Helpers of the real-node tests: the node or a skip, pod templates placed on the real node,
exec, settled pods."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from devtools.cluster import realnode
from devtools.harness import wait_for

# Why this machine cannot run the real-node tests, once a fixture found out (None: it can). The
# session's end (tests/conftest.py) fails a run in which none ran and nothing said why.
CANNOT: dict[str, str | None] = {"reason": None}


def start_or_skip(cluster: Any, start: Callable[..., realnode.RealNode], **kwargs: Any) -> realnode.RealNode:
    """``start(cluster.state_dir, **kwargs)`` (``realnode.up``), or ``pytest.skip`` where this
    machine cannot run a real node: $KUBECONFIG names another cluster, or RealNodeUnavailable
    (not root, a package missing, the kernel's br_netfilter missing, another control plane's node
    running). Anything else, a set-up failure (RealNodeError: a host command failed, containerd or
    the kubelet exited, a wait timed out, an image import failed), propagates: the tests then
    error with the reason, and the run fails."""
    if cluster.external:
        CANNOT["reason"] = "$KUBECONFIG names another cluster"
        pytest.skip("the real node runs beside the local control plane; $KUBECONFIG names another cluster")
    try:
        return start(cluster.state_dir, **kwargs)
    except realnode.RealNodeUnavailable as exc:
        CANNOT["reason"] = str(exc)
        pytest.skip(f"no real node on this machine: {exc}")


def on_real_node(node: realnode.RealNode, template: dict[str, Any]) -> dict[str, Any]:
    """``template`` (a pod template) scheduled onto the real node: its toleration and selector,
    the locally loaded image never pulled."""
    out = copy.deepcopy(template)
    spec = out.setdefault("spec", {})
    spec.setdefault("tolerations", []).append(node.toleration())
    spec.setdefault("nodeSelector", {}).update(node.node_selector())
    for container in spec["containers"]:
        container["imagePullPolicy"] = "Never"
    return out


def sample_template(
    node: realnode.RealNode, env: dict[str, str] | None = None, gpus: int = 0, **container: Any
) -> dict[str, Any]:
    """A pod template running the sample app image on the real node."""
    main = {
        "name": "app",
        "image": node.images["sample-app"],
        "env": [{"name": k, "value": v} for k, v in (env or {}).items()],
        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}},
        **container,
    }
    if gpus:
        main["resources"]["limits"] = {"nvidia.com/gpu": gpus}
    return on_real_node(node, {"spec": {"containers": [main]}})


def exec_in(cluster, namespace: str, pod: str, *argv: str, container: str = "app") -> str:
    """Run argv in a container (kubectl exec through the node's kubelet); its stdout.
    AssertionError with stderr when it fails."""
    result = cluster.kubectl("exec", "-n", namespace, pod, "-c", container, "--", *argv, timeout=30)
    assert result.returncode == 0, f"kubectl exec {pod} {argv}: {result.stderr}"
    return result.stdout


def wait_pods(kube, namespace: str, service: str, count: int, ready: bool = True, timeout: float = 90):
    """The service's ``count`` live pods once they are (Ready and) on the real node."""
    from tests.support.kube import is_ready

    def settled():
        pods = {n: p for n, p in kube.pods(namespace, service).items() if p.metadata.deletion_timestamp is None}
        if len(pods) != count or any(p.spec.node_name != realnode.NODE_NAME for p in pods.values()):
            return None
        if ready and not all(is_ready(p) for p in pods.values()):
            return None
        return pods

    return wait_for(
        settled,
        timeout,
        interval=0.25,
        message=lambda: (
            f"{service}: pods {[(n, p.status.phase, is_ready(p)) for n, p in kube.pods(namespace, service).items()]}"
        ),
    )
