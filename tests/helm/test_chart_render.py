"""The chart renders and lints with every documented option; the schema rejects misspelt values;
the CRD copies and the plain manifests in deploy/ are up to date."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.helm.conftest import CHART, ROOT, kube_version, render_notes

pytestmark = pytest.mark.integration

# Every documented option, alone and all together.
OPTION_SETS = {
    "defaults": [],
    "namespaces": ["--set", "watch.namespaces={team-a,team-b}"],
    "peering": ["--set", "replicas=2"],
    "peering-explicit": ["--set", "peering.enabled=true", "--set", "peering.name=infer"],
    "metrics": [
        "--set",
        "metrics.service.enabled=true",
        "--set",
        "metrics.serviceMonitor.enabled=true",
        "--set",
        "metrics.serviceMonitor.labels.release=prom",
        "--set",
        "metrics.port=9191",
    ],
    "resources": ["--set", "resources.requests.cpu=100m", "--set", "resources.limits.memory=1Gi"],
    "image": [
        "--set",
        "image.repository=registry.example/infer-operator",
        "--set",
        "image.tag=dev",
        "--set",
        "image.pullPolicy=Always",
        "--set",
        "imagePullSecrets[0].name=regcred",
    ],
    "log-format": ["--set", "operator.logFormat=plain", "--set", "operator.verbose=true"],
    "timeouts": [
        "--set",
        "operator.resyncSeconds=30",
        "--set",
        "operator.auditSeconds=20",
        "--set",
        "operator.sweepSeconds=15",
        "--set",
        "operator.registryTimeoutSeconds=2.5",
        "--set",
        "operator.deregisterTimeoutSeconds=10",
    ],
    "serviceaccount": ["--set", "serviceAccount.name=infer-sa", "--set", "serviceAccount.annotations.a=b"],
    "scheduling": [
        "--set",
        "nodeSelector.role=ops",
        "--set",
        "tolerations[0].key=ops",
        "--set",
        "tolerations[0].operator=Exists",
        "--set",
        "priorityClassName=system-cluster-critical",
    ],
}
OPTION_SETS["everything"] = [arg for args in OPTION_SETS.values() for arg in args]


def render(helm, *args: str) -> list[dict]:
    result = helm(
        "template",
        "infer-operator",
        str(CHART),
        "--namespace",
        "infer-operator",
        "--kube-version",
        kube_version(),
        *args,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [doc for doc in docs if doc["kind"] == kind]


def operator_cluster_roles(docs: list[dict]) -> list[dict]:
    """The operator's own ClusterRole (not the ones aggregated into users' roles)."""
    return [doc for doc in by_kind(docs, "ClusterRole") if doc["metadata"]["name"] == "infer-operator"]


def operator_args(docs: list[dict]) -> list[str]:
    (deployment,) = by_kind(docs, "Deployment")
    return deployment["spec"]["template"]["spec"]["containers"][0]["args"]


@pytest.mark.parametrize("name", list(OPTION_SETS))
def test_lint_and_template(helm, name):
    args = OPTION_SETS[name]
    lint = helm("lint", "--strict", "--kube-version", kube_version(), str(CHART), *args)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    docs = render(helm, *args)
    for doc in docs:
        if doc["kind"] not in ("ClusterRole", "ClusterRoleBinding", "ClusterKopfPeering"):
            assert doc["metadata"].get("namespace"), f"{doc['kind']} {doc['metadata']['name']} has no namespace"
        assert doc["metadata"]["labels"]["app.kubernetes.io/instance"] == "infer-operator"


def test_defaults_deployment_is_hardened_and_watches_all_namespaces(helm):
    docs = render(helm)
    assert sorted(doc["kind"] for doc in docs) == [
        "ClusterRole",
        "ClusterRole",
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "NetworkPolicy",
        "Role",
        "RoleBinding",
        "Service",
        "ServiceAccount",
    ]
    (deployment,) = by_kind(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532  # the image's nonroot user
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert container["resources"]["requests"]["cpu"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "release"}
    assert container["resources"]["limits"]["ephemeral-storage"] and "cpu" not in container["resources"]["limits"]
    # kube-score's checks this chart departs from on purpose, each with its reason in values.yaml.
    assert deployment["metadata"]["annotations"]["kube-score/ignore"] == (
        "container-resources,container-image-pull-policy,deployment-replicas,deployment-strategy"
    )
    assert "affinity" not in pod and not by_kind(docs, "PodDisruptionBudget")
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
        "health": 8080,
        "metrics": 9090,
        "release": 8081,
    }
    args = container["args"]
    assert args[0] == "run"
    assert "--all-namespaces" in args and "--standalone" in args
    assert "--liveness=http://0.0.0.0:8080/healthz" in args and "--log-format=json" in args
    assert pod["serviceAccountName"] == "infer-operator"
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    # The pods' release checks: a Service in front, its ClusterIP read by the operator (one Service, one verb).
    (service,) = by_kind(docs, "Service")
    assert service["metadata"]["name"] == "infer-operator-release" and service["spec"]["ports"][0]["port"] == 8081
    assert "--release-service=infer-operator/infer-operator-release" in args and "--release-port=8081" in args
    (role,) = by_kind(docs, "Role")
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["services"], "resourceNames": ["infer-operator-release"], "verbs": ["get"]}
    ]


def test_the_release_endpoint_can_be_turned_off(helm):
    docs = render(helm, "--set", "releasePort=0")
    assert "--release-port=0" in operator_args(docs)
    assert not by_kind(docs, "Service") and not by_kind(docs, "Role")
    assert not any(a.startswith("--release-service") for a in operator_args(docs))


def test_options_reach_the_operator(helm):
    docs = render(helm, *OPTION_SETS["everything"])
    args = operator_args(docs)
    for expected in (
        "--namespace=team-a",
        "--namespace=team-b",
        "--peering=infer",
        "--log-format=plain",
        "--verbose",
        "--resync-seconds=30",
        "--audit-seconds=20",
        "--sweep-seconds=15",
        "--registry-timeout=2.5",
        "--deregister-timeout=10",
        "--metrics-port=9191",
    ):
        assert expected in args, (expected, args)
    assert "--all-namespaces" not in args and "--standalone" not in args
    (deployment,) = by_kind(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.example/infer-operator:dev"
    # namespace list: a Role and RoleBinding per namespace, a KopfPeering per namespace
    watched = [r for r in by_kind(docs, "Role") if not r["metadata"]["name"].endswith("-release")]
    assert sorted(r["metadata"]["namespace"] for r in watched) == ["team-a", "team-b"]
    bindings = [b for b in by_kind(docs, "RoleBinding") if not b["metadata"]["name"].endswith("-release")]
    assert sorted(r["metadata"]["namespace"] for r in bindings) == ["team-a", "team-b"]
    assert sorted(p["metadata"]["namespace"] for p in by_kind(docs, "KopfPeering")) == ["team-a", "team-b"]
    assert all(b["subjects"][0]["name"] == "infer-sa" for b in by_kind(docs, "RoleBinding"))
    (cluster_role,) = operator_cluster_roles(docs)
    cluster_resources = {res for rule in cluster_role["rules"] for res in rule["resources"]}
    # nothing namespaced cluster-wide; nodes are read (lost nodes' pods leave the registry)
    assert cluster_resources == {"customresourcedefinitions", "namespaces", "nodes"}
    (service,) = [s for s in by_kind(docs, "Service") if s["metadata"]["name"].endswith("-metrics")]
    (monitor,) = by_kind(docs, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()


def test_all_namespaces_peering_uses_a_cluster_peering(helm):
    docs = render(helm, "--set", "replicas=2")
    assert [p["metadata"]["name"] for p in by_kind(docs, "ClusterKopfPeering")] == ["infer-operator"]
    assert "--peering=infer-operator" in operator_args(docs)
    (cluster_role,) = operator_cluster_roles(docs)
    assert any("clusterkopfpeerings" in rule["resources"] for rule in cluster_role["rules"])


@pytest.mark.parametrize(
    "args, named",
    [
        (["--set", "replicaCount=2"], "replicaCount"),
        (["--set", "foo=1"], "foo"),
        (["--set", "image.tagg=v1"], "tagg"),
        (["--set", "metrics.serviceMonitor.enable=true"], "enable"),
        (["--set", "operator.logFormat=xml"], "logFormat"),
    ],
)
def test_schema_rejects_misspelt_values(helm, args, named):
    result = helm("template", "infer-operator", str(CHART), "--kube-version", kube_version(), *args)
    assert result.returncode != 0
    assert "schema" in result.stderr and named in result.stderr, result.stderr


def test_service_monitor_needs_the_service(helm):
    result = helm(
        "template", "x", str(CHART), "--kube-version", kube_version(), "--set", "metrics.serviceMonitor.enabled=true"
    )
    assert result.returncode != 0 and "metrics.service.enabled" in result.stderr


def test_every_value_is_described_in_the_schema():
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(node_schema, node_values, path):
        if node_schema.get("type") == "object" and "properties" in node_schema:
            assert node_schema.get("additionalProperties") is False, f"{path}: additionalProperties must be false"
        assert node_schema.get("description") or path == "", f"{path}: no description"
        for key, sub in node_schema.get("properties", {}).items():
            if "$ref" not in sub:
                walk(sub, (node_values or {}).get(key) if isinstance(node_values, dict) else None, f"{path}.{key}")
        if isinstance(node_values, dict) and "properties" in node_schema:
            missing = set(node_values) - set(node_schema["properties"])
            assert not missing, f"{path}: values without schema: {missing}"

    walk(schema, values, "")


def test_chart_crds_are_copies_of_the_top_level_crds():
    top = {p.name: p.read_text() for p in (ROOT / "crds").glob("*.yaml")}
    chart = {p.name: p.read_text() for p in (CHART / "crds").glob("*.yaml")}
    assert {"serving.infer-operator.io_inferenceservices.yaml", "kopf-peering.yaml"} <= set(top)
    assert chart == top, "charts/infer-operator/crds/ differs from crds/: run `make deploy`"


def test_deploy_manifests_are_fresh(helm, tmp_path):
    deploy = ROOT / "deploy"
    assert (deploy / "01-crd-inferenceservices.yaml").read_text() == (
        ROOT / "crds" / "serving.infer-operator.io_inferenceservices.yaml"
    ).read_text(), "run `make deploy`"
    assert (deploy / "01-crd-kopf-peering.yaml").read_text() == (ROOT / "crds" / "kopf-peering.yaml").read_text()
    result = helm(
        "template", "infer-operator", str(CHART), "--namespace", "infer-operator", "--kube-version", kube_version()
    )
    assert result.returncode == 0, result.stderr
    header = (
        "# Generated by 'make deploy': helm template infer-operator charts/infer-operator "
        f"--namespace infer-operator --kube-version {kube_version()}\n"
    )
    assert (deploy / "02-infer-operator.yaml").read_text() == header + result.stdout, (
        "deploy/02-infer-operator.yaml is stale: run `make deploy`"
    )
    kustomization = yaml.safe_load((deploy / "Kustomization").read_text())
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in deploy.glob("*.yaml")}, "deploy/Kustomization must list every manifest"


def test_deploy_directory_works_with_kubectl_kustomize():
    from devtools.cluster import toolchain

    kubectl = shutil.which("kubectl") or str(toolchain.binary_path("kubectl"))
    if not Path(kubectl).exists():
        pytest.skip("kubectl not built")
    result = subprocess.run([kubectl, "kustomize", str(ROOT / "deploy")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    kinds = sorted(doc["kind"] for doc in yaml.safe_load_all(result.stdout) if doc)
    assert kinds.count("CustomResourceDefinition") == 3 and "Namespace" in kinds and "Deployment" in kinds


def test_chart_refuses_clusters_older_than_its_minimum(helm):
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["kubeVersion"] == ">=1.30.0-0"
    for version, accepted in (("1.29.9", False), ("1.30.0", True), ("v1.30.4-eks-1a2b3c", True)):
        result = helm("template", "x", str(CHART), "--kube-version", version)
        assert (result.returncode == 0) == accepted, (version, result.stderr)
        if not accepted:
            assert "kubeVersion" in result.stderr


def test_uid_and_gid_can_be_left_to_the_platform(helm):
    """OpenShift's restricted-v2 assigns the uid: a fixed one is refused there."""
    docs = render(
        helm,
        "--set",
        "podSecurityContext.runAsUser=null",
        "--set",
        "podSecurityContext.runAsGroup=null",
        "--set",
        "podSecurityContext.fsGroup=null",
    )
    pod = by_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    for context in (pod["securityContext"], container["securityContext"]):
        assert not {"runAsUser", "runAsGroup", "fsGroup"} & set(context), context
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    # A typo in a security setting is refused, not dropped.
    result = helm(
        "template", "x", str(CHART), "--kube-version", kube_version(), "--set", "podSecurityContext.runAsUSer=1000"
    )
    assert result.returncode != 0 and "runAsUSer" in result.stderr


def test_memory_limit_leaves_room_for_the_measured_peak(helm):
    """476 MB after a restart at 500 x 8 pods (bench/results/scale.json): the limit is twice that."""
    peak_mb = json.loads((ROOT / "bench" / "results" / "scale.json").read_text())["figures"]["rss_mb_after_restart"]
    container = by_kind(render(helm), "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]
    limit = container["resources"]["limits"]["memory"]
    assert limit == "1Gi" and 1024 >= 2 * peak_mb


def test_aggregated_roles_give_edit_write_and_view_read(helm):
    roles = {doc["metadata"]["name"]: doc for doc in by_kind(render(helm), "ClusterRole")}
    edit, view = roles["infer-operator-edit"], roles["infer-operator-view"]
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-admin"] == "true"
    assert view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    view_verbs = {verb for rule in view["rules"] for verb in rule["verbs"]}
    assert view_verbs == {"get", "list", "watch"}
    off = render(helm, "--set", "rbac.aggregateClusterRoles=false")
    assert [doc["metadata"]["name"] for doc in by_kind(off, "ClusterRole")] == ["infer-operator"]


def test_notes_give_the_crd_upgrade_command_and_reach_our_kind(helm, tmp_path):
    notes = render_notes(helm, tmp_path=tmp_path)
    version = yaml.safe_load((CHART / "Chart.yaml").read_text())["version"]
    assert (
        f"helm show crds oci://ghcr.io/infer-operator/charts/infer-operator --version {version} "
        "| kubectl apply --server-side --force-conflicts -f -"
    ) in notes
    assert "kubectl get infsvc -A" in notes
    assert "kubectl get inferenceservices" not in notes  # ambiguous next to KServe
    # The logs of every replica, not one picked by the Deployment (often the standby).
    assert "logs -l app.kubernetes.io/instance=infer-operator --prefix" in notes
    private = render_notes(helm, "--set", "image.repository=registry.example/infer-operator", tmp_path=tmp_path / "p")
    assert "helm show crds CHART --version" in private
    # Uninstalling: the InferenceServices first, while the operator can still release them.
    assert "kubectl delete infsvc --all -A --wait=true\n  helm uninstall infer-operator" in notes
    assert "release: <its release name>" not in notes  # nothing about Prometheus when it is off


def test_notes_say_the_label_kube_prometheus_stack_selects_until_it_is_set(helm, tmp_path):
    monitored = ["--set", "metrics.service.enabled=true", "--set", "metrics.serviceMonitor.enabled=true"]
    monitored += ["--set", "metrics.prometheusRule.enabled=true"]
    notes = render_notes(helm, *monitored, tmp_path=tmp_path / "a")
    assert "--set metrics.serviceMonitor.labels.release=" in notes
    assert "--set metrics.prometheusRule.labels.release=" in notes
    labelled = ["--set", "metrics.serviceMonitor.labels.release=kps"]
    labelled += ["--set", "metrics.prometheusRule.labels.release=kps"]
    notes = render_notes(helm, *monitored, *labelled, tmp_path=tmp_path / "b")
    assert "labels.release=" not in notes


def test_several_replicas_get_a_disruption_budget_and_spread_over_nodes(helm):
    docs = render(helm, "--set", "replicas=2")
    (budget,) = by_kind(docs, "PodDisruptionBudget")
    (deployment,) = by_kind(docs, "Deployment")
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert budget["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": selector}}
    (term,) = deployment["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"
    ]
    hostname = {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": selector}}
    assert term["podAffinityTerm"] == hostname
    skipped = deployment["metadata"]["annotations"]["kube-score/ignore"]
    assert skipped == "container-resources,container-image-pull-policy"
    # An anti-affinity of the user's own is kept as it is.
    mine = {"requiredDuringSchedulingIgnoredDuringExecution": [{"topologyKey": "zone", "labelSelector": {}}]}
    docs = render(helm, "--set", "replicas=2", "--set-json", f"affinity={json.dumps({'podAntiAffinity': mine})}")
    (deployment,) = by_kind(docs, "Deployment")
    assert deployment["spec"]["template"]["spec"]["affinity"] == {"podAntiAffinity": mine}


def test_the_network_policy_lets_in_what_the_operator_serves(helm):
    (policy,) = by_kind(render(helm), "NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    ports = [rule["ports"][0]["port"] for rule in policy["spec"]["ingress"]]
    assert ports == ["health", "metrics", "release"]
    assert not any("from" in rule for rule in policy["spec"]["ingress"])  # release checks come from any namespace
    assert policy["spec"]["egress"] == [{}]  # registries are named by InferenceServices: all egress
    monitoring = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    extra = {"to": [{"ipBlock": {"cidr": "10.0.5.0/24"}}], "ports": [{"port": 2379}]}
    (policy,) = by_kind(
        render(
            helm,
            "--set",
            "networkPolicy.egress.restrict=true",
            "--set-json",
            f"networkPolicy.metricsFrom=[{json.dumps(monitoring)}]",
            "--set-json",
            f"networkPolicy.egress.extraRules=[{json.dumps(extra)}]",
            "--set",
            "releasePort=0",
        ),
        "NetworkPolicy",
    )
    assert [rule["ports"][0]["port"] for rule in policy["spec"]["ingress"]] == ["health", "metrics"]
    assert policy["spec"]["ingress"][1]["from"] == [monitoring]
    assert policy["spec"]["egress"] == [
        {"ports": [{"port": 443, "protocol": "TCP"}, {"port": 6443, "protocol": "TCP"}]},
        {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]},
        extra,
    ]
    assert not by_kind(render(helm, "--set", "networkPolicy.enabled=false"), "NetworkPolicy")
