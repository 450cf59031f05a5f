"""Tenants: with the chart installed, a user bound to the built-in `edit` role in a namespace can
create, scale and delete InferenceServices there, a `view` user can only read them, and neither
reaches another namespace. Uninstalling the chart takes the grants away again."""

from __future__ import annotations

import json
import secrets

import pytest

from devtools.harness import isvc_body, wait_for
from tests.helm.conftest import CHART, Helm, can_i

pytestmark = pytest.mark.integration

RESOURCE = "inferenceservices.serving.infer-operator.io"


def test_edit_users_write_and_view_users_read_inferenceservices(cluster, helm_bin, namespace, release_namespace):
    helm = Helm(helm_bin, str(cluster.kubeconfig))
    release = f"tn-{secrets.token_hex(2)}"
    edit_user, view_user = f"alice-{release}", f"bob-{release}"
    for user, role in ((edit_user, "edit"), (view_user, "view")):
        result = cluster.kubectl(
            "create", "rolebinding", f"{user}-{role}", f"--clusterrole={role}", f"--user={user}", "-n", namespace
        )
        assert result.returncode == 0, result.stderr
    assert not can_i(cluster, edit_user, "create", RESOURCE, namespace), "granted before the chart is installed"

    # No operator pod is needed for RBAC: replicas=0.
    installed = helm("install", release, str(CHART), "-n", release_namespace, "--set", "replicas=0")
    assert installed.returncode == 0, installed.stderr
    uninstalled = False
    try:
        # The clusterrole-aggregation controller copies the rules into edit/view shortly after.
        wait_for(
            lambda: (
                can_i(cluster, edit_user, "create", RESOURCE, namespace)
                and can_i(cluster, view_user, "list", RESOURCE, namespace)
            ),
            timeout=60,
            message="the aggregated rules reach the built-in edit and view roles",
        )

        for verb in ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"):
            assert can_i(cluster, edit_user, verb, RESOURCE, namespace), f"edit cannot {verb}"
        for verb in ("get", "update", "patch"):
            assert can_i(cluster, edit_user, verb, f"{RESOURCE}/scale", namespace), f"edit cannot {verb} scale"
        assert not can_i(cluster, edit_user, "patch", f"{RESOURCE}/status", namespace), "status is the operator's"
        for verb in ("get", "list", "watch"):
            assert can_i(cluster, view_user, verb, RESOURCE, namespace), f"view cannot {verb}"
        for verb in ("create", "update", "patch", "delete"):
            assert not can_i(cluster, view_user, verb, RESOURCE, namespace), f"view can {verb}"
        assert not can_i(cluster, view_user, "patch", f"{RESOURCE}/scale", namespace)
        for user in (edit_user, view_user):
            assert not can_i(cluster, user, "get", RESOURCE, "default"), f"{user} reaches another namespace"

        # What the users would actually type.
        body = json.dumps(isvc_body("tenant-llm", namespace, replicas=1))
        as_edit, as_view = f"--as={edit_user}", f"--as={view_user}"
        result = cluster.kubectl(as_edit, "apply", "-n", namespace, "-f", "-", input=body)
        assert result.returncode == 0, result.stderr
        result = cluster.kubectl(as_edit, "scale", "infsvc", "tenant-llm", "-n", namespace, "--replicas=2")
        assert result.returncode == 0, result.stderr
        result = cluster.kubectl(
            as_view, "get", "infsvc", "tenant-llm", "-n", namespace, "-o", "jsonpath={.spec.replicas}"
        )
        assert (result.returncode, result.stdout) == (0, "2"), result.stderr
        result = cluster.kubectl(as_view, "delete", "infsvc", "tenant-llm", "-n", namespace)
        assert result.returncode != 0 and "forbidden" in result.stderr.lower()
        result = cluster.kubectl(as_edit, "delete", "infsvc", "tenant-llm", "-n", namespace, "--wait=false")
        assert result.returncode == 0, result.stderr

        removed = helm("uninstall", release, "-n", release_namespace, "--wait", "--timeout=60s")
        assert removed.returncode == 0, removed.stderr
        uninstalled = True
        wait_for(
            lambda: (
                not can_i(cluster, edit_user, "create", RESOURCE, namespace)
                and not can_i(cluster, view_user, "get", RESOURCE, namespace)
            ),
            timeout=60,
            message="uninstalling the chart takes the grants away",
        )
    finally:
        if not uninstalled:
            helm("uninstall", release, "-n", release_namespace)
