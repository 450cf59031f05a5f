"""The operator in-cluster: `helm install` of the chart with the locally built image onto the real
node, running as the chart's ServiceAccount under its RBAC, with its liveness endpoint and
metrics; the checks of the kind script (tests/e2e/checks.py, one list for both) with the sample
app registered in an etcd the pods reach; then `helm upgrade` and `helm uninstall` leave nothing
stuck. The session's host operator is stopped meanwhile: one operator per namespace."""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import urllib.request
from pathlib import Path

import pytest
import yaml

from devtools.cluster import realnode, toolchain
from devtools.cluster.etcd import EtcdServer
from devtools.harness import wait_for
from infer_operator import labels
from tests.conftest import REAL_NODE_FIGURES
from tests.e2e.checks import (
    GatewayEtcd,
    Target,
    check_deletion_removes_entries,
    check_ready,
    check_registry,
    run_checks,
)

pytestmark = [pytest.mark.integration, pytest.mark.registry, pytest.mark.realnode]

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "charts" / "infer-operator"
SAMPLE = ROOT / "examples" / "sample-app" / "inferenceservice-etcd.yaml"
SERVICE = "sample-etcd"
DENIAL = re.compile(r"(?<![,.:])\b403\b|forbidden", re.IGNORECASE)
FINALIZERS = {labels.POD_FINALIZER, "infer-operator.io/cleanup", "infer-operator.io/reconcile-loop"}


def http_get(url: str, timeout: float = 5) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.status, resp.read().decode()


def sample_isvc(node, etcd_url: str, redis_url: str) -> dict:
    """examples/sample-app/inferenceservice-etcd.yaml as the kind script applies it, with this
    machine's images, registry and queue, placed on the real node."""
    body = yaml.safe_load(SAMPLE.read_text())
    spec = body["spec"]
    container = spec["template"]["spec"]["containers"][0]
    container.update(image=node.images["sample-app"], imagePullPolicy="Never")
    container["env"] = [{"name": "REDIS_URL", "value": redis_url}]
    spec["template"]["spec"].update(tolerations=[node.toleration()], nodeSelector=node.node_selector())
    spec["registry"]["etcd"]["endpoints"] = [etcd_url]
    return body


def test_chart_runs_the_operator_on_the_real_node(cluster, kube, crd, operator, real_node, pod_redis, tmp_path):
    helm_bin = str(toolchain.ensure(["helm"])["helm"])
    images = realnode.load_images(["operator"], cluster.state_dir)
    repository, tag = images["operator"].rsplit(":", 1)
    suffix = secrets.token_hex(2)
    op_ns, app_ns, release = f"rn-op-{suffix}", f"rn-app-{suffix}", "infer-operator"

    def helm(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
        return subprocess.run(
            [helm_bin, f"--kubeconfig={cluster.kubeconfig}", *args], capture_output=True, text=True, timeout=timeout
        )

    values = tmp_path / "values.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
                "operator": {"sweepSeconds": 5, "logFormat": "plain", "resyncSeconds": 10},
                "tolerations": [real_node.toleration()],
                "nodeSelector": real_node.node_selector(),
            }
        )
    )

    def operator_pod() -> dict | None:
        out = cluster.kubectl("get", "pods", "-n", op_ns, "-l", "app.kubernetes.io/name=infer-operator", "-o", "json")
        pods = [
            p for p in json.loads(out.stdout or '{"items": []}')["items"] if not p["metadata"].get("deletionTimestamp")
        ]
        return pods[0] if len(pods) == 1 else None

    def operator_log() -> str:
        return cluster.kubectl("logs", "-n", op_ns, "deploy/infer-operator", "--tail=-1").stdout

    etcd = EtcdServer(host=realnode.POD_GATEWAY, name="incluster").start()
    operator.stop()
    installed = False
    try:
        result = helm(
            "install",
            release,
            str(CHART),
            "-n",
            op_ns,
            "--create-namespace",
            "-f",
            str(values),
            "--wait",
            "--timeout",
            "180s",
        )
        assert result.returncode == 0, result.stderr + "\n" + operator_log()
        installed = True
        pod = operator_pod()
        assert pod and pod["spec"]["nodeName"] == realnode.NODE_NAME, pod and pod["spec"].get("nodeName")
        assert pod["spec"]["serviceAccountName"] == "infer-operator"
        container = pod["spec"]["containers"][0]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        ip = pod["status"]["podIP"]
        assert http_get(f"http://{ip}:8080/healthz")[0] == 200
        uid = cluster.kubectl("exec", "-n", op_ns, "deploy/infer-operator", "--", "id", "-u").stdout.strip()
        assert uid == "65532", uid

        # -- the kind script's checks ------------------------------------------------------------
        assert cluster.kubectl("create", "namespace", app_ns).returncode == 0
        body = sample_isvc(real_node, etcd.client_url, pod_redis.url)
        applied = cluster.kubectl("apply", "-n", app_ns, "-f", "-", input=json.dumps(body))
        assert applied.returncode == 0, applied.stderr

        def request_sync(service_ip: str, port: int) -> str:
            return http_get(f"http://{service_ip}:{port}/")[1]  # kube-proxy routes the host's traffic

        target = Target(
            lambda *a: cluster.kubectl(*a, timeout=180), app_ns, SERVICE, GatewayEtcd(etcd.client_url), request_sync
        )
        run_checks(target)
        metrics = http_get(f"http://{ip}:9090/metrics")[1]
        assert "infer_operator_" in metrics and "infer_operator_registry" in metrics, metrics[:500]
        rss = cluster.kubectl("exec", "-n", op_ns, "deploy/infer-operator", "--", "grep", "VmRSS", "/proc/1/status")
        REAL_NODE_FIGURES["in-cluster operator RSS after the checks"] = " ".join(rss.stdout.split()[1:])
        assert not [line for line in operator_log().splitlines() if DENIAL.search(line)], "RBAC denials in the log"

        # -- helm upgrade: a new operator pod takes over the same objects ----------------------------
        cluster.kubectl("apply", "-n", app_ns, "-f", "-", input=json.dumps(body))
        check_ready(target)
        old_uid = operator_pod()["metadata"]["uid"]
        result = helm(
            "upgrade",
            release,
            str(CHART),
            "-n",
            op_ns,
            "-f",
            str(values),
            "--set",
            "operator.resyncSeconds=20",
            "--wait",
            "--timeout",
            "180s",
        )
        assert result.returncode == 0, result.stderr
        wait_for(
            lambda: (p := operator_pod()) and p["metadata"]["uid"] != old_uid and p["status"].get("podIP"),
            60,
            message="no new operator pod after the upgrade",
        )
        check_registry(target)
        check_deletion_removes_entries(target)

        # -- helm uninstall: nothing is left held by a finalizer -----------------------------------
        result = helm("uninstall", release, "-n", op_ns, "--wait", "--timeout", "120s")
        assert result.returncode == 0, result.stderr
        installed = False
        wait_for(
            lambda: (
                operator_pod() is None and not cluster.kubectl("get", "pods", "-n", op_ns, "-o", "name").stdout.strip()
            ),
            60,
            message="operator pods left after uninstall",
        )
        held = []
        for kind in ("pods", labels.PLURAL):
            out = json.loads(cluster.kubectl("get", kind, "-A", "-o", "json").stdout)
            held += [
                f"{kind} {o['metadata']['namespace']}/{o['metadata']['name']}"
                for o in out["items"]
                if FINALIZERS & set(o["metadata"].get("finalizers") or [])
                and o["metadata"]["namespace"] in (app_ns, op_ns)
            ]
        assert held == [], f"held by the operator's finalizers after uninstall: {held}"
        deleted = cluster.kubectl("delete", "namespace", app_ns, op_ns, "--timeout=90s")
        assert deleted.returncode == 0, f"a namespace did not go: {deleted.stderr}"
    finally:
        if installed:
            print(operator_log()[-6000:])
            helm("uninstall", release, "-n", op_ns, "--wait", "--timeout", "60s")
            cluster.kubectl("delete", "namespace", app_ns, op_ns, "--wait=false")
        etcd.stop()
        operator.start()
