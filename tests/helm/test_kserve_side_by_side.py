"""KServe side by side: a cluster that runs KServe has a second kind named InferenceService
(serving.kserve.io, plural inferenceservices, short name isvc, category all). Every kubectl command
the README and the chart's NOTES show must still reach OUR resource: each resource type it names
must mean ours and only ours to the API server's discovery, and `kubectl get` with it lists our
object, not KServe's. The commands are found by scanning both files, so a new line is covered."""

from __future__ import annotations

import json
import re
import shlex

import pytest

from devtools.harness import isvc_body
from infer_operator import labels
from infer_operator.api.crd import CRD_FILE
from tests.helm.conftest import ROOT, render_notes
from tests.support.kube import install_crds

pytestmark = pytest.mark.integration

KSERVE_GROUP = "serving.kserve.io"
KSERVE_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"inferenceservices.{KSERVE_GROUP}"},
    "spec": {
        "group": KSERVE_GROUP,
        "scope": "Namespaced",
        "names": {
            "kind": "InferenceService",
            "plural": "inferenceservices",
            "singular": "inferenceservice",
            "listKind": "InferenceServiceList",
            "shortNames": ["isvc"],
            "categories": ["all"],
        },
        "versions": [
            {
                "name": "v1beta1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
            }
        ],
    },
}

# Verbs whose first argument is a resource type (or type/name, or a comma-separated list of types).
TYPE_VERBS = {
    "get",
    "describe",
    "delete",
    "edit",
    "patch",
    "scale",
    "annotate",
    "label",
    "wait",
    "explain",
    "rollout",
    "top",
    "set",
}
# Flags that take a value as the next word.
VALUE_FLAGS = {
    "-n",
    "--namespace",
    "-l",
    "--selector",
    "-c",
    "--container",
    "-o",
    "--output",
    "-f",
    "--filename",
    "-L",
    "--label-columns",
    "--as",
    "-p",
    "--patch",
    "--type",
    "--field-selector",
    "--tail",
    "-k",
    "--kustomize",
    "--subresource",
    "--for",
    "--timeout",
    "--replicas",
    "--context",
    "--kubeconfig",
}


def documented_commands(helm, tmp_path) -> list[str]:
    """Every kubectl command in README.md (code blocks and inline code) and in the rendered NOTES."""
    sources = [(ROOT / "README.md").read_text(), render_notes(helm, tmp_path=tmp_path)]
    commands = []
    for text in sources:
        for line in text.splitlines():
            commands.extend(re.findall(r"`(kubectl [^`]+)`", line))
            stripped = line.strip().removeprefix("$ ")
            for part in stripped.split("|"):
                part = part.strip()
                if part.startswith("kubectl ") and "`" not in part:
                    commands.append(part)
    return [re.sub(r"\s+#.*$", "", command).strip() for command in commands]


def resource_types(command: str) -> list[str]:
    """The resource types a kubectl command names (lower-case, without /name)."""
    words = shlex.split(command)[1:]
    positional = []
    skip = False
    for word in words:
        if skip:
            skip = False
        elif word.startswith("-"):
            skip = word in VALUE_FLAGS
        else:
            positional.append(word)
    if positional[:2] == ["auth", "can-i"] and len(positional) >= 4:
        return [positional[3].split("/")[0].lower()]
    if not positional or positional[0] not in TYPE_VERBS or len(positional) < 2:
        if positional[:1] == ["logs"] and len(positional) > 1 and "/" in positional[1]:
            return [positional[1].split("/")[0].lower()]
        return []
    target = positional[2] if positional[0] in ("rollout", "set") and len(positional) > 2 else positional[1]
    if positional[0] == "explain":
        return [target.split(".")[0].lower()]
    return [t.split("/")[0].lower() for t in target.split(",")]


def discovery(cluster) -> dict[str, set[tuple[str, str]]]:
    """Every name kubectl resolves to a resource -> the (group, plural) resources it may mean."""
    result = cluster.kubectl("api-resources", "-o", "wide", "--no-headers=false")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    header = lines[0]
    columns = [(m.start(), m.group()) for m in re.finditer(r"\S+", header)]
    index: dict[str, set[tuple[str, str]]] = {}
    for line in lines[1:]:
        cells = {}
        for i, (start, name) in enumerate(columns):
            end = columns[i + 1][0] if i + 1 < len(columns) else len(line)
            cells[name] = line[start:end].strip()
        plural, version = cells["NAME"], cells["APIVERSION"]
        group = version.split("/")[0] if "/" in version else ""
        kind = cells["KIND"].lower()
        names = {plural, kind, *filter(None, cells["SHORTNAMES"].split(","))}
        if group:
            names |= {f"{plural}.{group}", f"{kind}.{group}", f"{plural}.{version.split('/')[1]}.{group}"}
        for name in names:
            index.setdefault(name, set()).add((group, plural))
    return index


@pytest.fixture
def kserve_crd(cluster, tmp_path):
    """KServe's kind next to ours."""
    kserve = tmp_path / "kserve-crd.yaml"
    kserve.write_text(json.dumps(KSERVE_CRD))
    install_crds(cluster, ROOT / CRD_FILE, kserve)
    yield
    cluster.kubectl("delete", "crd", f"inferenceservices.{KSERVE_GROUP}", "--wait=false")


def test_every_documented_command_reaches_our_inferenceservice(cluster, helm, kserve_crd, namespace, tmp_path):
    ours = (labels.GROUP, labels.PLURAL)
    result = cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(isvc_body("ours", namespace)))
    assert result.returncode == 0, result.stderr
    theirs = {
        "apiVersion": f"{KSERVE_GROUP}/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "theirs", "namespace": namespace},
        "spec": {},
    }
    result = cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(theirs))
    assert result.returncode == 0, result.stderr

    index = discovery(cluster)
    assert index["inferenceservices"] == {ours, (KSERVE_GROUP, "inferenceservices")}, "both kinds are served"
    commands = documented_commands(helm, tmp_path)
    assert len(commands) >= 10, commands
    checked = []
    problems = []
    for command in commands:
        for name in resource_types(command):
            meanings = index.get(name, set())
            if any(group == KSERVE_GROUP for group, _ in meanings) or (ours in meanings and len(meanings) > 1):
                problems.append(f"{command!r}: {name!r} may mean {sorted(meanings)}")
            elif meanings == {ours}:
                checked.append((command, name))
    assert not problems, "\n".join(problems)
    assert {name for _, name in checked} >= {"infsvc"}, checked
    assert len(checked) >= 3, checked

    # What kubectl does with each of them: our object, never KServe's.
    for command, name in checked:
        result = cluster.kubectl("get", name, "-n", namespace, "-o", "name")
        assert result.returncode == 0, (command, result.stderr)
        assert result.stdout.split() == [f"inferenceservice.{labels.GROUP}/ours"], (command, result.stdout)
