"""What tests, demo and benchmarks share: bounded waits, ports, processes, the operator, the cluster, manifests.

from devtools.harness import connect, OperatorProcess, isvc_body, wait_for
cluster = connect()                       # $KUBECONFIG's cluster if it answers, else the local one
operator = OperatorProcess(cluster.kubeconfig, log_path, "--sweep-seconds", "5").start()
wait_for(lambda: ..., timeout=30, message="...")
operator.stop(); cluster.release()
"""

from .cluster import KEEP_ENV, ClusterHandle, connect, env_kubeconfig, external, local
from .operator_process import REPO_ROOT, OperatorProcess
from .processes import free_port, free_ports, terminate
from .specs import etcd_registry, isvc_body
from .waiting import assert_stays, wait_for

__all__ = [
    "KEEP_ENV",
    "REPO_ROOT",
    "ClusterHandle",
    "OperatorProcess",
    "assert_stays",
    "connect",
    "env_kubeconfig",
    "etcd_registry",
    "external",
    "free_port",
    "free_ports",
    "isvc_body",
    "local",
    "terminate",
    "wait_for",
]
