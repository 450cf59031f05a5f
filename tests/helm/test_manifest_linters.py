"""The field's own linters on what the project ships and what the operator builds:

- kube-score (a Kubernetes object linter) on the rendered chart (its defaults, two replicas, every
  option), on deploy/, and on the objects the operator builds from every example: nothing to flag,
  warnings included, but for what the user's pod template decides (USER_TEMPLATE_CHECKS, listed in
  the README), and not even that for examples/inferenceservice.yaml, which shows what a production
  service sets;
- kubeconform -strict with the schemas of Kubernetes 1.34 and of the project's CRDs, generated
  offline from Kubernetes' published OpenAPI documents (devtools/kube_schemas.py): the same
  manifests are valid, and typos in an InferenceService are refused naming the field.

Both tools are built from the Go module proxy and cached like the rest of the toolchain
(`python -m devtools.cluster build kube-score kubeconform`).
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from infer_operator.api.v1alpha1 import parse_spec
from infer_operator.builders import Owner, build_all
from tests.helm.conftest import CHART, ROOT, kube_version

pytestmark = pytest.mark.integration

EXAMPLES = sorted([*(ROOT / "examples").glob("*.yaml"), *(ROOT / "examples" / "sample-app").glob("*.yaml")])
# kube-score's checks of the pod template, which the user writes (the operator's gate init container
# copies the main container's resources, image pull policy and securityContext), and of what a
# service's spec asks for (spec.podDisruptionBudget); README.md, "Linting what the operator builds",
# lists them.
USER_TEMPLATE_CHECKS = {
    "container-resources",
    "container-ephemeral-storage-request-and-limit",
    "container-image-pull-policy",
    "container-image-tag",
    "container-security-context-user-group-id",
    "container-security-context-privileged",
    "container-security-context-readonlyrootfilesystem",
    "environment-variable-key-duplication",
    "label-values",
    "pod-networkpolicy",
    "pod-topology-spread-constraints",
    "statefulset-has-host-podantiaffinity",
    "statefulset-has-poddisruptionbudget",
}
CHART_VALUES = {
    "defaults": [],
    "replicas-2": ["--set", "replicas=2"],
    "everything": [
        "--set",
        "replicas=3",
        "--set",
        "metrics.service.enabled=true",
        "--set",
        "networkPolicy.egress.restrict=true",
        "--set",
        "networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.team=monitoring",
        "--set",
        "watch.namespaces={team-a,team-b}",
    ],
}


@pytest.fixture(scope="module")
def linters() -> dict[str, str]:
    from devtools.cluster import toolchain

    return {name: str(path) for name, path in toolchain.ensure(toolchain.LINTERS).items()}


def render_chart(helm, *args: str) -> str:
    namespace = ["--namespace", "infer-operator"]
    result = helm("template", "infer-operator", str(CHART), *namespace, "--kube-version", kube_version(), *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def built_objects(example: Path, namespace: str = "team-a") -> list[dict]:
    """An example's own documents (in the namespace it is applied to) and the objects the operator
    builds from each of its InferenceServices."""
    out = []
    for doc in yaml.safe_load_all(example.read_text()):
        if not doc:
            continue
        doc.setdefault("metadata", {})["namespace"] = namespace
        if doc["kind"] == "InferenceService":
            owner = Owner(doc["metadata"]["name"], namespace, "0a1b2c3d-uid")
            out += build_all(owner, parse_spec(doc["spec"]), release_url="http://10.96.0.20:8081")
        else:
            out.append(doc)
    return out


def kube_score(linters, manifests: str, tmp_path: Path) -> list[tuple[str, str, str, str]]:
    """kube-score's findings, warnings and criticals (grades 5 and 1; 7 is its "almost OK", such
    as a container without a livenessProbe, which it recommends only where one is needed), as
    (kind, name, check id, comment)."""
    path = tmp_path / "manifests.yaml"
    path.write_text(manifests)
    result = subprocess.run(
        [linters["kube-score"], "score", "--output-format", "json", str(path)], capture_output=True, text=True
    )
    assert result.returncode in (0, 1), result.stderr
    findings = []
    for obj in json.loads(result.stdout):
        for check in obj["checks"]:
            if check["skipped"] or check["grade"] > 5:
                continue
            comments = "; ".join(f"{c.get('path', '')} {c['summary']}".strip() for c in check.get("comments") or [])
            findings.append((obj["type_meta"]["kind"], obj["object_name"], check["check"]["id"], comments))
    return findings


@pytest.mark.parametrize("values", CHART_VALUES.values(), ids=CHART_VALUES.keys())
def test_the_chart_passes_kube_score(helm, linters, tmp_path, values):
    assert kube_score(linters, render_chart(helm, *values), tmp_path) == []


def test_deploy_passes_kube_score(linters, tmp_path):
    assert kube_score(linters, (ROOT / "deploy" / "02-infer-operator.yaml").read_text(), tmp_path) == []


def test_kube_score_flags_what_the_chart_skips_without_its_reasons(helm, linters, tmp_path):
    """The check above can fail: without the skips values.yaml gives reasons for, kube-score
    flags the missing CPU limit and the pull policy; without the NetworkPolicy, that."""
    rendered = render_chart(
        helm, "--set-json", "kubeScoreIgnore=[]", "--set", "networkPolicy.enabled=false", "--set", "replicas=2"
    )
    checks = {check for _, _, check, _ in kube_score(linters, rendered, tmp_path)}
    assert checks == {"container-resources", "container-image-pull-policy", "pod-networkpolicy"}


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: str(p.relative_to(ROOT / "examples")))
def test_what_the_operator_builds_passes_kube_score(linters, tmp_path, example):
    findings = kube_score(linters, yaml.safe_dump_all(built_objects(example)), tmp_path)
    if example.name == "inferenceservice.yaml" and example.parent.name == "examples":
        assert findings == []  # the example that shows what a production service sets
    # What the operator decides passes everywhere; what fails is the user's template's.
    assert [f for f in findings if f[0] != "StatefulSet" or f[2] not in USER_TEMPLATE_CHECKS] == []


def test_the_sync_service_would_be_flagged_without_its_reason(linters, tmp_path):
    """The Service that selects sync pods names the role label the operator sets on pods at run
    time; kube-score, reading the manifests alone, finds no pod: the builder says why it skips."""
    objects = built_objects(ROOT / "examples" / "inferenceservice.yaml")
    for obj in objects:
        if obj["kind"] == "Service" and obj["spec"].get("clusterIP") != "None":
            del obj["metadata"]["annotations"]
    findings = kube_score(linters, yaml.safe_dump_all(objects), tmp_path)
    assert [(kind, check) for kind, _, check, _ in findings] == [("Service", "service-targets-pod")]


def test_the_readme_lists_what_the_users_template_decides():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### Linting what the operator builds") :]
    listed = set(re.findall(r"`([a-z0-9-]+)`", section[: section.index("\n## ")]))
    assert USER_TEMPLATE_CHECKS <= listed, USER_TEMPLATE_CHECKS - listed


# -- kubeconform ---------------------------------------------------------------------------------

# Kinds whose schemas the offline machine does not have: prometheus-operator's CRDs (the chart's
# optional ServiceMonitor and PrometheusRule; test_chart_observability.py and promtool check them).
KUBECONFORM_SKIP = "ServiceMonitor,PrometheusRule"


@pytest.fixture(scope="module")
def schemas(tmp_path_factory) -> str:
    from devtools import kube_schemas

    source = kube_schemas.default_input()
    if not source.is_dir():
        pytest.skip(f"Kubernetes' OpenAPI documents are not in the Go module cache ({source}); `make test` gets them")
    out = tmp_path_factory.mktemp("kubeconform-schemas")
    files = sorted((ROOT / "crds").glob("*.yaml"))
    crds = [doc for path in files for doc in yaml.safe_load_all(path.read_text())]
    kube_schemas.kubeconform_schemas(source, out, [doc for doc in crds if doc])
    layout = "{{ .NormalizedKubernetesVersion }}-standalone{{ .StrictSuffix }}"
    layout += "/{{ .ResourceKind }}{{ .KindSuffix }}.json"
    return str(out / layout)


def kubeconform(linters, schemas: str, paths: list[Path]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            linters["kubeconform"],
            "-strict",
            "-kubernetes-version",
            kube_version().lstrip("v"),
            "-schema-location",
            schemas,
            "-skip",
            KUBECONFORM_SKIP,
            "-summary",
            *map(str, paths),
        ],
        capture_output=True,
        text=True,
    )


def test_everything_shipped_and_built_is_valid_under_kubeconform_strict(helm, linters, schemas, tmp_path):
    files = [*sorted((ROOT / "deploy").glob("*.yaml")), *sorted((ROOT / "crds").glob("*.yaml")), *EXAMPLES]
    for name, values in CHART_VALUES.items():
        files.append(tmp_path / f"chart-{name}.yaml")
        files[-1].write_text(render_chart(helm, *values))
    for example in EXAMPLES:
        files.append(tmp_path / f"built-{example.parent.name}-{example.name}")
        files[-1].write_text(yaml.safe_dump_all(built_objects(example)))
    result = kubeconform(linters, schemas, files)
    assert result.returncode == 0, result.stdout + result.stderr
    valid = re.search(r"Valid: (\d+), Invalid: 0, Errors: 0", result.stdout)
    assert valid and int(valid.group(1)) > 50, result.stdout


TYPOS = {
    "partition": (
        {"updateStrategy": {"rollingUpdate": {"partiton": 2}}},
        "/spec/updateStrategy/rollingUpdate",
        "partiton",
    ),
    "type": ({"updateStrategy": {"type": "Ondelete"}}, "/spec/updateStrategy/type", "RollingUpdate"),
    "probe": (
        {"sync": {"readinessProbe": {"httpGet": {"paht": "/ready", "port": 8000}}}},
        "/spec/sync/readinessProbe/httpGet",
        "paht",
    ),
    "template": (
        {"template": {"spec": {"containers": [{"name": "m", "image": "x", "resourcez": {}}]}}},
        "/spec/template/spec/containers/0",
        "resourcez",
    ),
    "spec": ({"replicaz": 2}, "/spec", "replicaz"),
}


@pytest.mark.parametrize("typo", TYPOS.values(), ids=TYPOS.keys())
def test_kubeconform_refuses_typos_in_an_inference_service(linters, schemas, tmp_path, typo):
    change, where, named = typo
    body = {
        "apiVersion": "serving.infer-operator.io/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": "typo"},
        "spec": {"template": {"spec": {"containers": [{"name": "m", "image": "x"}]}}, **change},
    }
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump(body))
    result = kubeconform(linters, schemas, [path])
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"at '{where}'" in result.stdout and named in result.stdout, result.stdout
