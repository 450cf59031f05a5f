"""The local Kubernetes control plane for tests, demo and benchmarks, built from the Go module proxy and cached.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler and KWOK (fake nodes and pods).

    python -m devtools.cluster build|up|down|status|kubeconfig

    from devtools.cluster import up, down, status
    cluster = up()            # Cluster(kubeconfig, server, state_dir); idempotent
    down()

Pinned versions: ``versions.py``. KWOK Stage files: ``stages/``.
"""

from .launcher import READY_ANNOTATION, Cluster, ClusterError, ClusterStatus, down, status, up

__all__ = ["READY_ANNOTATION", "Cluster", "ClusterError", "ClusterStatus", "down", "status", "up"]
