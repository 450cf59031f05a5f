"""The gate init container on a real pod holds the main container until the pod carries its role
label. The operator is stopped for this test: the objects it would build are applied as they are,
and the test labels the pod as the operator would (the same patch, `roles.role_patch`)."""

from __future__ import annotations

import json
import time

import pytest

from devtools.harness import assert_stays, isvc_body, wait_for
from infer_operator import labels
from infer_operator.api.v1alpha1 import parse_spec
from infer_operator.builders import Owner, build_all
from infer_operator.podview import PodView
from infer_operator.reconcile.roles import role_patch
from tests.support.realnode import exec_in, sample_template

pytestmark = [pytest.mark.integration, pytest.mark.realnode]

NAME = "gated"


def main_started(kube, namespace: str) -> bool:
    pod = kube.core.read_namespaced_pod(f"{NAME}-0", namespace)
    statuses = pod.status.container_statuses or []
    return bool(statuses and statuses[0].state.running)


def test_gate_holds_the_pod_until_the_role_label_is_set(cluster, kube, operator, real_node, module_namespace):
    spec = parse_spec(
        isvc_body(
            NAME,
            replicas=1,
            syncReplicas=1,
            template=sample_template(real_node),
            sync={"command": ["python", "/app/app.py"], "port": 8000},
            **{"async": {"command": ["python", "/app/app.py"]}},
        )["spec"]
    )
    objects = [
        o for o in build_all(Owner(NAME, module_namespace, "none"), spec) if o["kind"] in ("ConfigMap", "StatefulSet")
    ]
    for obj in objects:
        obj["metadata"].pop("ownerReferences", None)  # no owner: the garbage collector would take them
    operator.stop()
    try:
        applied = cluster.kubectl(
            "apply",
            "-n",
            module_namespace,
            "-f",
            "-",
            input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}),
        )
        assert applied.returncode == 0, applied.stderr

        def gate_running() -> bool:
            try:
                pod = kube.core.read_namespaced_pod(f"{NAME}-0", module_namespace)
            except Exception:  # noqa: BLE001 - not created yet
                return False
            init = pod.status.init_container_statuses or []
            return bool(init and init[0].state.running)

        wait_for(gate_running, 60, message="the gate init container never ran")
        assert_stays(
            lambda: not main_started(kube, module_namespace),
            4,
            message="the main container started without a role label",
        )
        pod = kube.core.read_namespaced_pod(f"{NAME}-0", module_namespace)
        assert labels.LABEL_ROLE not in (pod.metadata.labels or {})
        patch = role_patch(
            PodView.from_body(kube.api_client.sanitize_for_serialization(pod)), spec, with_finalizer=False
        )
        t0 = time.monotonic()
        kube.core.patch_namespaced_pod(f"{NAME}-0", module_namespace, patch)
        wait_for(lambda: main_started(kube, module_namespace), 60, message="the main container did not start")
        print(f"main container started {time.monotonic() - t0:.1f}s after the role label was set")
        gate_log = cluster.kubectl("logs", "-n", module_namespace, f"{NAME}-0", "-c", "infer-operator-gate").stdout
        assert 'labelled (infer-operator.io/role="sync")' in gate_log, gate_log
        env = exec_in(cluster, module_namespace, f"{NAME}-0", "sh", "-c", "cat /proc/[0-9]*/environ | tr '\\0' '\\n'")
        assert "INFER_ROLE=sync" in env.splitlines() and "INFER_SYNC_REPLICAS=1" in env.splitlines()
    finally:
        cluster.kubectl(
            "delete",
            "-n",
            module_namespace,
            "statefulset,configmap",
            "-l",
            f"{labels.LABEL_SERVICE}={NAME}",
            "--wait=true",
            "--timeout=60s",
        )
        cluster.kubectl(
            "delete", "-n", module_namespace, "pod", f"{NAME}-0", "--ignore-not-found", "--wait=true", "--timeout=60s"
        )
        operator.start()
