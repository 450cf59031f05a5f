"""Case 8: registry credentials come from Secrets and never appear in logs, events or status."""

from __future__ import annotations

import base64
import json
import secrets

import pytest

from devtools.harness import isvc_body, wait_for
from tests.chaos.helpers import PREFIX
from tests.support.admin_process import AdminControllerProcess
from tests.support.etcd_server import EtcdServer

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.registry]


def _secret(kube, namespace, name, data):
    kube.core.create_namespaced_secret(
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
        },
    )


def test_credentials_from_secrets_never_leak(kube, namespace, operators, figures):
    password = "pw-" + secrets.token_hex(8)
    token = "tok-" + secrets.token_hex(8)
    operator = operators()
    with EtcdServer() as etcd:
        etcd.enable_auth("root", password)
        admin = AdminControllerProcess(token=token)
        try:
            _secret(kube, namespace, "etcd-creds", {"username": "root", "password": password})
            _secret(kube, namespace, "http-creds", {"token": token})
            kube.create_isvc(
                namespace,
                isvc_body(
                    "sec-etcd",
                    replicas=2,
                    syncReplicas=2,
                    registry={
                        "type": "etcd",
                        "etcd": {
                            "endpoints": [etcd.client_url],
                            "prefix": PREFIX,
                            "credentialsSecret": {"name": "etcd-creds"},
                        },
                    },
                ),
            )
            kube.create_isvc(
                namespace,
                isvc_body(
                    "sec-http",
                    replicas=2,
                    syncReplicas=2,
                    registry={"type": "http", "http": {"url": admin.url, "credentialsSecret": {"name": "http-creds"}}},
                ),
            )
            # A wrong password too: the failure must be reported without the password.
            _secret(kube, namespace, "bad-creds", {"username": "root", "password": password + "-wrong"})
            kube.create_isvc(
                namespace,
                isvc_body(
                    "sec-bad",
                    replicas=1,
                    syncReplicas=1,
                    registry={
                        "type": "etcd",
                        "etcd": {
                            "endpoints": [etcd.client_url],
                            "prefix": PREFIX,
                            "credentialsSecret": {"name": "bad-creds"},
                        },
                    },
                ),
            )
            wait_for(
                lambda: len(etcd.range_prefix(f"{PREFIX}/sec-etcd/instances/")) == 2,
                timeout=60,
                message="registered in etcd with auth",
            )
            wait_for(
                lambda: len(admin.instances("sec-http")) == 2, timeout=60, message="registered over http with a token"
            )
            wait_for(
                lambda: any(
                    c["type"] == "RegistrySynced" and c["status"] == "False"
                    for c in (kube.get_isvc(namespace, "sec-bad").get("status") or {}).get("conditions", [])
                ),
                timeout=60,
                message="wrong password reported",
            )
            # Delete a pod: the releaser uses the credentials too.
            kube.core.delete_namespaced_pod("sec-etcd-0", namespace)
            kube.core.delete_namespaced_pod("sec-http-0", namespace)
            wait_for(
                lambda: (
                    len(etcd.range_prefix(f"{PREFIX}/sec-etcd/instances/")) == 2
                    and len(admin.instances("sec-http")) == 2
                ),
                timeout=60,
                message="re-registered",
            )
        finally:
            admin.stop()
    places = {
        "operator log": operator.log_text(),
        "events": json.dumps([e.to_dict() for e in kube.core.list_namespaced_event(namespace).items], default=str),
        "status": json.dumps([kube.get_isvc(namespace, n) for n in ("sec-etcd", "sec-http", "sec-bad")], default=str),
    }
    for where, text in places.items():
        for value in (password, token):
            assert value not in text, f"a credential leaked into the {where}"
    figures.update(credentials_leaked=0, places_checked=",".join(places))
