"""Upgrading the CRD the way the docs say, from the previous CRD with objects in place: the
command succeeds without a conflict, every InferenceService is still there and readable at the new
schema, and one the new rules would refuse can still be patched, finalized and deleted.

The commands are taken from the chart's NOTES and from the README, so a changed instruction is
tested as written. The previous CRD is tests/helm/fixtures/inferenceservices-crd-2d59d0b.yaml.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from devtools.harness import isvc_body, wait_for
from infer_operator import labels
from tests.helm.conftest import CHART, ROOT, render_notes
from tests.support.kube import wait_crds_established

pytestmark = pytest.mark.integration

CRD_NAME = "inferenceservices.serving.infer-operator.io"
PREVIOUS_CRD = Path(__file__).parent / "fixtures" / "inferenceservices-crd-2d59d0b.yaml"
CURRENT_CRD = ROOT / "crds" / "serving.infer-operator.io_inferenceservices.yaml"


def documented_upgrade_commands(helm, tmp_path) -> dict[str, str]:
    """The CRD upgrade command of the NOTES (the published chart; run here against the chart
    directory) and of the README (a checkout)."""
    notes = render_notes(helm, tmp_path=tmp_path)
    (from_notes,) = [line.strip() for line in notes.splitlines() if line.strip().startswith("helm show crds")]
    from_notes = re.sub(r"oci://\S+ --version \S+", str(CHART), from_notes)
    readme = (ROOT / "README.md").read_text()
    (from_readme,) = {
        m.strip()
        for m in re.findall(r"^(kubectl apply --server-side .*charts/infer-operator/crds/)\s*$", readme, re.MULTILINE)
    }
    return {"notes": from_notes, "readme": from_readme}


def crd_in_cluster(cluster) -> dict | None:
    result = cluster.kubectl("get", "crd", CRD_NAME, "-o", "json")
    return json.loads(result.stdout) if result.returncode == 0 else None


def apply(cluster, body: dict, namespace: str) -> subprocess.CompletedProcess:
    return cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(body))


def install_previous_crd(cluster, installed_by: str) -> None:
    """The previous release's CRD, installed as helm installs it (a create) or with kubectl apply."""
    if installed_by == "helm":
        verb = "replace" if crd_in_cluster(cluster) else "create"  # other tests may have installed one
        result = cluster.kubectl(verb, "-f", str(PREVIOUS_CRD))
    else:
        result = cluster.kubectl("apply", "-f", str(PREVIOUS_CRD))
    assert result.returncode == 0, result.stderr
    wait_crds_established(cluster, CRD_NAME)
    previous_schema = yaml.safe_load(PREVIOUS_CRD.read_text())["spec"]["versions"][0]["schema"]
    assert crd_in_cluster(cluster)["spec"]["versions"][0]["schema"] == previous_schema


def create_under_previous_crd(cluster, body: dict, namespace: str) -> None:
    # The API server switches to a changed CRD's schema a moment after the change: poll.
    wait_for(
        lambda: apply(cluster, body, namespace).returncode == 0,
        timeout=30,
        message=lambda: f"the previous CRD accepts the object: {apply(cluster, body, namespace).stderr}",
    )


def upgrade_as_documented(cluster, helm_bin: str, command: str) -> None:
    bins = {Path(helm_bin).parent, Path(cluster.kubectl_bin).parent}
    env = {
        **os.environ,
        "KUBECONFIG": str(cluster.kubeconfig),
        "PATH": os.pathsep.join([*map(str, bins), os.environ.get("PATH", "")]),
    }
    upgraded = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
    assert "conflict" not in (upgraded.stdout + upgraded.stderr).lower()
    wait_crds_established(cluster, CRD_NAME)
    current = yaml.safe_load(CURRENT_CRD.read_text())
    assert crd_in_cluster(cluster)["spec"]["versions"][0]["schema"] == current["spec"]["versions"][0]["schema"]


@pytest.mark.parametrize("installed_by", ["helm", "kubectl-apply"])
@pytest.mark.parametrize("documented_in", ["notes", "readme"])
def test_upgrade_from_the_previous_crd_keeps_every_object(
    cluster, helm, helm_bin, namespace, tmp_path, installed_by, documented_in
):
    command = documented_upgrade_commands(helm, tmp_path)[documented_in]
    assert "--server-side" in command and "--force-conflicts" in command

    install_previous_crd(cluster, installed_by)

    # -- objects written under it: one that is valid under both, and one that the new rules refuse
    # (a pod template setting its own grace period: the previous CRD did not look into templates)
    kept = isvc_body(
        "kept",
        namespace,
        replicas=3,
        syncReplicas=1,
        sync={"command": ["python", "-m", "http.server", "8000"], "port": 8000},
        registry={"type": "etcd", "etcd": {"endpoints": ["http://etcd.example:2379"]}},
    )
    refused = isvc_body("refused-now", namespace, replicas=1, syncReplicas=1)
    refused["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 5
    create_under_previous_crd(cluster, refused, namespace)
    result = apply(cluster, kept, namespace)
    assert result.returncode == 0, result.stderr
    before = {
        name: json.loads(cluster.kubectl("get", f"{CRD_NAME}/{name}", "-n", namespace, "-o", "json").stdout)
        for name in ("kept", "refused-now")
    }

    # -- the upgrade, as documented
    upgrade_as_documented(cluster, helm_bin, command)
    crd = crd_in_cluster(cluster)
    # Server-side apply keeps no copy of the CRD in an annotation (client-side apply's
    # last-applied-configuration counts against the 256 KiB limit on an object's annotations).
    annotation = "kubectl.kubernetes.io/last-applied-configuration"
    if installed_by == "helm":
        assert annotation not in (crd["metadata"].get("annotations") or {})

    # -- every object is still there, unchanged, and readable at the new schema
    listed = cluster.kubectl("get", "infsvc", "-n", namespace, "-o", "json")
    assert listed.returncode == 0, listed.stderr
    after = {item["metadata"]["name"]: item for item in json.loads(listed.stdout)["items"]}
    assert set(after) == {"kept", "refused-now"}
    for name, old in before.items():
        assert after[name]["metadata"]["uid"] == old["metadata"]["uid"]
        assert after[name]["spec"]["template"] == old["spec"]["template"]
        assert after[name]["spec"]["replicas"] == old["spec"]["replicas"]
    assert after["kept"]["spec"]["sync"]["port"] == 8000
    assert after["kept"]["spec"]["registry"]["etcd"]["endpoints"] == ["http://etcd.example:2379"]

    # The new rules apply to new writes of the spec...
    again = isvc_body("refused-again", namespace, replicas=1, syncReplicas=1)
    again["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 5

    def refused_now() -> bool:
        result = cluster.kubectl("create", "--dry-run=server", "-n", namespace, "-f", "-", input=json.dumps(again))
        return result.returncode != 0 and "terminationGracePeriodSeconds" in result.stderr

    wait_for(refused_now, timeout=30, message="the new CRD refuses a template that sets its grace period")

    # ...but an object accepted before the upgrade is not stranded: what the operator and its
    # users do to it without touching the spec still works (CRD validation ratcheting), so its
    # finalizers can be removed and it can be deleted.
    for name in ("kept", "refused-now"):
        resource = f"{CRD_NAME}/{name}"
        patch = {"metadata": {"labels": {"team": "ml"}, "finalizers": [labels.CR_FINALIZER]}}
        result = cluster.kubectl("patch", resource, "-n", namespace, "--type=merge", "-p", json.dumps(patch))
        assert result.returncode == 0, f"{name}: {result.stderr}"
        result = cluster.kubectl(
            "patch",
            resource,
            "-n",
            namespace,
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps({"status": {"observedGeneration": 1}}),
        )
        assert result.returncode == 0, f"{name}: {result.stderr}"
        assert cluster.kubectl("delete", resource, "-n", namespace, "--wait=false").returncode == 0
        result = cluster.kubectl(
            "patch",
            resource,
            "-n",
            namespace,
            "--type=json",
            "-p",
            '[{"op": "remove", "path": "/metadata/finalizers"}]',
        )
        assert result.returncode == 0, f"{name}: {result.stderr}"
    result = cluster.kubectl(
        "wait", "--for=delete", "--timeout=30s", "-n", namespace, f"{CRD_NAME}/kept", f"{CRD_NAME}/refused-now"
    )
    assert result.returncode == 0, result.stderr


def test_an_object_whose_name_the_new_rules_refuse_can_still_be_deleted(cluster, helm, helm_bin, namespace, tmp_path):
    command = documented_upgrade_commands(helm, tmp_path)["readme"]
    install_previous_crd(cluster, "helm")
    name = "an-inference-service-named-longer-than-fifty-two-chars"
    assert len(name) > 52
    body = isvc_body(name, namespace, replicas=1, syncReplicas=1)
    body["metadata"]["finalizers"] = [labels.CR_FINALIZER]  # what the operator puts on every one
    create_under_previous_crd(cluster, body, namespace)
    upgrade_as_documented(cluster, helm_bin, command)

    resource = f"{CRD_NAME}/{name}"
    assert cluster.kubectl("delete", resource, "-n", namespace, "--wait=false").returncode == 0
    # What the operator does once the registry is clean: drop its finalizer.
    result = cluster.kubectl(
        "patch", resource, "-n", namespace, "--type=json", "-p", '[{"op": "remove", "path": "/metadata/finalizers"}]'
    )
    if result.returncode != 0:
        # Let the namespace go (the test's own cleanup) with the rule that blocks it out of the way.
        install_previous_crd(cluster, "helm")
        wait_for(
            lambda: (
                cluster.kubectl(
                    "patch",
                    resource,
                    "-n",
                    namespace,
                    "--type=json",
                    "-p",
                    '[{"op": "remove", "path": "/metadata/finalizers"}]',
                ).returncode
                == 0
            ),
            timeout=30,
            message="finalizer removed under the previous CRD",
        )
        upgrade_as_documented(cluster, helm_bin, command)
    assert result.returncode == 0, result.stderr
