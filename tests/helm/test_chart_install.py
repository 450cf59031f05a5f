"""`helm install` into a real API server, then the operator authenticated as the chart's
ServiceAccount reconciles a sample InferenceService end to end without one RBAC denial.

The operator image cannot run here (KWOK fakes pods), so the test runs the operator as a local
process with a token of the chart's ServiceAccount (TokenRequest API): same identity, same RBAC.
Both RBAC layouts are covered: all namespaces (ClusterRole) and a namespace list with peering
(Roles per namespace, KopfPeering objects).
"""

from __future__ import annotations

import json
import re
import secrets

import pytest
import yaml

from devtools.harness import OperatorProcess, isvc_body, wait_for
from infer_operator import labels
from tests.helm.conftest import CHART, Helm, can_i
from tests.support.kube import Kube, is_ready

pytestmark = [pytest.mark.integration, pytest.mark.registry]

PREFIX = "/services"
DENIAL = re.compile(r"(?<![,.:])\b403\b|forbidden|not enough permissions", re.IGNORECASE)


def sa_kubeconfig(cluster, token: str, path) -> str:
    """A kubeconfig with the cluster's server and CA and the ServiceAccount's token."""
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    context_name = admin.get("current-context") or admin["contexts"][0]["name"]
    context = next(c for c in admin["contexts"] if c["name"] == context_name)["context"]
    entry = next(c for c in admin["clusters"] if c["name"] == context["cluster"])
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [entry],
                "users": [{"name": "sa", "user": {"token": token}}],
                "contexts": [{"name": "sa", "context": {"cluster": entry["name"], "user": "sa"}}],
                "current-context": "sa",
            }
        )
    )
    return str(path)


def release_finalizers(cluster, namespace: str) -> None:
    """After a failure: let the namespace go even though no operator removes the finalizers."""
    for kind in ("inferenceservices", "pods"):
        names = cluster.kubectl("get", kind, "-n", namespace, "-o", "name").stdout.split()
        for name in names:
            cluster.kubectl("patch", name, "-n", namespace, "--type=merge", "-p", '{"metadata":{"finalizers":null}}')


@pytest.mark.parametrize("mode", ["all-namespaces", "namespace-list-peering"])
def test_install_reconcile_upgrade_uninstall(
    cluster, helm_bin, namespace, release_namespace, etcd_server, tmp_path, mode
):
    helm = Helm(helm_bin, str(cluster.kubeconfig))
    release = f"io-{secrets.token_hex(2)}"
    fullname = f"{release}-infer-operator"
    sa = f"system:serviceaccount:{release_namespace}:{fullname}"
    values = ["--set", "operator.resyncSeconds=10", "--set", "operator.sweepSeconds=5"]
    if mode == "namespace-list-peering":
        values += ["--set", f"watch.namespaces={{{namespace}}}", "--set", "replicas=2"]

    installed = helm("install", release, str(CHART), "-n", release_namespace, *values)
    assert installed.returncode == 0, installed.stderr
    uninstalled = False
    operator = None
    kube = Kube(cluster.api_client())
    try:
        # -- RBAC is tight ----------------------------------------------------------------------
        allowed = [
            ("get", "inferenceservices"),
            ("watch", "inferenceservices"),
            ("patch", "inferenceservices"),
            ("patch", "inferenceservices/status"),
            ("update", "inferenceservices/finalizers"),
            ("patch", "pods"),
            ("create", "pods/eviction"),
            ("patch", "pods/status"),
            ("patch", "statefulsets.apps"),
            ("patch", "services"),
            ("patch", "configmaps"),
            ("create", "statefulsets.apps"),
            ("create", "services"),
            ("create", "configmaps"),
            ("create", "poddisruptionbudgets.policy"),
            ("delete", "poddisruptionbudgets.policy"),
            ("get", "secrets"),
            ("create", "events"),
        ]
        denied = [
            ("list", "secrets"),
            ("watch", "secrets"),
            ("create", "secrets"),
            ("delete", "secrets"),
            ("patch", "secrets"),
            ("create", "pods"),
            ("update", "pods"),
            ("delete", "pods"),
            ("delete", "statefulsets.apps"),
            ("delete", "services"),
            ("delete", "configmaps"),
            ("delete", "inferenceservices"),
            ("create", "deployments.apps"),
            ("patch", "deployments.apps"),
            ("create", "daemonsets.apps"),
            ("create", "roles.rbac.authorization.k8s.io"),
            ("create", "rolebindings.rbac.authorization.k8s.io"),
            ("create", "pods/exec"),
            ("get", "pods/log"),
            ("update", "inferenceservices/status"),
            ("create", "serviceaccounts/token"),
            ("update", "pods/status"),
        ]
        for verb, resource in allowed:
            assert can_i(cluster, sa, verb, resource, namespace), f"{sa} cannot {verb} {resource} in {namespace}"
        for verb, resource in denied:
            assert not can_i(cluster, sa, verb, resource, namespace), f"{sa} can {verb} {resource}"
        assert can_i(cluster, sa, "get", "namespaces", None), "cannot tell a namespace being deleted"
        assert can_i(cluster, sa, "watch", "nodes", None), "cannot see lost nodes"
        for verb, resource in [
            ("list", "secrets"),
            ("get", "nodes"),
            ("patch", "nodes"),
            ("delete", "namespaces"),
            ("create", "clusterroles.rbac.authorization.k8s.io"),
            ("patch", "customresourcedefinitions.apiextensions.k8s.io"),
        ]:
            assert not can_i(cluster, sa, verb, resource, None), f"{sa} can {verb} {resource} cluster-wide"
        if mode == "namespace-list-peering":
            # nothing outside the listed namespaces
            assert not can_i(cluster, sa, "patch", "pods", "default")
            assert not can_i(cluster, sa, "get", "secrets", "default")
            assert can_i(cluster, sa, "patch", "kopfpeerings.kopf.dev", namespace)

        # -- the operator as the ServiceAccount reconciles end to end ----------------------------
        token = cluster.kubectl("create", "token", fullname, "-n", release_namespace, "--duration=1h")
        assert token.returncode == 0, token.stderr
        kubeconfig = sa_kubeconfig(cluster, token.stdout.strip(), tmp_path / "sa-kubeconfig")
        args = [
            "--resync-seconds",
            "10",
            "--sweep-seconds",
            "5",
            "--registry-timeout",
            "2",
            "--deregister-timeout",
            "10",
        ]
        if mode == "namespace-list-peering":
            args += ["--namespace", namespace, "--peering", fullname]
        operator = OperatorProcess(kubeconfig, tmp_path / "operator.log", *args)
        operator.start()

        etcd_server.delete_all()
        service = f"llm-{mode[:3]}"
        kube.core.create_namespaced_secret(
            namespace, {"metadata": {"name": "etcd-creds"}, "type": "Opaque", "data": {}}
        )
        registry = {
            "type": "etcd",
            "etcd": {
                "endpoints": [etcd_server.client_url],
                "prefix": PREFIX,
                "credentialsSecret": {"name": "etcd-creds"},
            },
        }
        kube.create_isvc(namespace, isvc_body(service, replicas=2, syncReplicas=1, registry=registry))

        def entries():
            base = f"{PREFIX}/{service}/instances/"
            return {k[len(base) :]: json.loads(v) for k, v in etcd_server.range_prefix(base).items()}

        def reconciled():
            pods = kube.pods(namespace, service)
            roles = {n: (p.metadata.labels or {}).get(labels.LABEL_ROLE) for n, p in pods.items()}
            status = kube.get_isvc(namespace, service).get("status", {})
            ready = {c["type"]: c["status"] for c in status.get("conditions", [])}.get("Ready")
            sync = pods.get(f"{service}-0")
            expected = {f"{sync.status.pod_ip}:8000"} if sync and is_ready(sync) else None
            return (
                roles == {f"{service}-0": "sync", f"{service}-1": "async"}
                and ready == "True"
                and expected is not None
                and set(entries()) == expected
            )

        wait_for(reconciled, timeout=90, message=lambda: f"pods labelled, Ready, registered:\n{operator.log_tail(40)}")

        # Deleting the sync pod deregisters it (pod finalizer, events) and the new one registers again.
        old_uid = kube.core.read_namespaced_pod(f"{service}-0", namespace).metadata.uid
        kube.core.delete_namespaced_pod(f"{service}-0", namespace)
        wait_for(
            lambda: not any(e["uid"] == old_uid for e in entries().values()) and reconciled(),
            timeout=90,
            message="the deleted pod's entry is removed and its successor registered",
        )

        # Deleting the InferenceService removes its entries (CR finalizer) while we still run.
        kube.delete_isvc(namespace, service)
        wait_for(lambda: not kube.isvc_exists(namespace, service), timeout=60, message="isvc deleted")
        assert entries() == {}

        log = operator.log_text()
        denials = [line for line in log.splitlines() if DENIAL.search(line)]
        assert not denials, "RBAC denials in the operator log:\n" + "\n".join(denials[:20])
        operator.stop()
        operator = None

        # -- helm upgrade changes a value -------------------------------------------------------
        upgraded = helm(
            "upgrade",
            release,
            str(CHART),
            "-n",
            release_namespace,
            "--reuse-values",
            "--set",
            "operator.resyncSeconds=30",
        )
        assert upgraded.returncode == 0, upgraded.stderr
        deployment = kube.apps.read_namespaced_deployment(fullname, release_namespace)
        assert "--resync-seconds=30" in deployment.spec.template.spec.containers[0].args

        # -- helm uninstall leaves no operator objects behind (CRDs stay, as Helm does) ----------
        removed = helm("uninstall", release, "-n", release_namespace, "--wait", "--timeout=60s")
        assert removed.returncode == 0, removed.stderr
        uninstalled = True
        selector = f"app.kubernetes.io/instance={release}"
        kinds = "deployments,serviceaccounts,roles,rolebindings,services"
        leftovers = cluster.kubectl("get", kinds, "-A", "-l", selector, "-o", "name")
        assert leftovers.returncode == 0 and leftovers.stdout.strip() == "", leftovers.stdout + leftovers.stderr
        leftovers = cluster.kubectl(
            "get",
            "clusterroles,clusterrolebindings,clusterkopfpeerings,kopfpeerings",
            "-A",
            "-l",
            selector,
            "-o",
            "name",
        )
        assert leftovers.returncode == 0 and leftovers.stdout.strip() == "", leftovers.stdout + leftovers.stderr
        for crd in (
            "inferenceservices.serving.infer-operator.io",
            "kopfpeerings.kopf.dev",
            "clusterkopfpeerings.kopf.dev",
        ):
            assert cluster.kubectl("get", "crd", crd).returncode == 0, f"CRD {crd} should stay"
    finally:
        if operator is not None:
            print(f"--- operator log ---\n{operator.log_tail(80)}")
            operator.stop()
            release_finalizers(cluster, namespace)
        if not uninstalled:
            helm("uninstall", release, "-n", release_namespace)
