"""The end-to-end checks of an in-cluster operator, ONE list for both places that run it:
tests/e2e/kind_e2e.sh (kind, registry etcd in a pod) calls ``python3 -m tests.e2e.checks``, and
the real-node test (tests/integration/realnode/test_realnode_incluster.py) calls ``run_checks``
with the registry etcd on the pods' gateway address.

The sample InferenceService (examples/sample-app/inferenceservice-etcd.yaml: 3 pods, 2 sync) is
applied; then, in order: 3 Ready replicas; the roles by ordinal and the async worker ready;
the registry holds exactly the Ready sync pods; a sync request through the Service; a deleted
pod's entry and per-IP config are removed and its successor registers; deleting the
InferenceService removes all its entries. Stdlib only (kubectl through subprocess), so the kind
script runs it with any python3.

    python3 -m tests.e2e.checks --namespace infer-sample --service sample-etcd \\
        --registry kubectl-exec            # etcdctl in deploy/etcd of the namespace (kind)
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

PREFIX = "/services"
PORT = 8000


class CheckFailed(AssertionError):
    pass


def log(msg: str) -> None:
    print(f"[e2e] {msg}", flush=True)


def wait_until(timeout: float, what: str, predicate: Callable[[], object], interval: float = 1.0) -> None:
    """Poll ``predicate`` every ``interval`` s for ``timeout`` s; CheckFailed naming ``what``.
    An exception in the predicate counts as "not yet" (the API or the registry may blink)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while True:
        try:
            if predicate():
                return
        except Exception as exc:  # noqa: BLE001 - see the docstring
            last = exc
        if time.monotonic() >= deadline:
            raise CheckFailed(f"timed out after {timeout:g}s: {what}" + (f" (last error: {last})" if last else ""))
        time.sleep(interval)


# --------------------------------------------------------------------------- registries


class KubectlExecEtcd:
    """The registry etcd as a Deployment ``etcd`` in the app namespace, read with its etcdctl."""

    def __init__(self, kubectl: Callable[..., subprocess.CompletedProcess], namespace: str):
        self.kubectl, self.namespace = kubectl, namespace

    def _etcdctl(self, *args: str) -> str:
        result = self.kubectl("-n", self.namespace, "exec", "deploy/etcd", "--", "etcdctl", *args)
        if result.returncode != 0:
            raise CheckFailed(f"etcdctl {' '.join(args)}: {result.stderr}")
        return result.stdout

    def keys(self, prefix: str) -> set[str]:
        return {line for line in self._etcdctl("get", "--prefix", "--keys-only", prefix).splitlines() if line}

    def get(self, key: str) -> str | None:
        lines = self._etcdctl("get", key).splitlines()
        return lines[1] if len(lines) > 1 else None

    def put(self, key: str, value: str) -> None:
        self._etcdctl("put", key, value)


class GatewayEtcd:
    """The registry etcd through its JSON gateway at ``url`` (reachable from where the checks run)."""

    def __init__(self, url: str):
        self.url = url

    def _call(self, path: str, body: dict) -> dict:
        req = urllib.request.Request(
            self.url + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(req, timeout=5) as resp:
            return json.loads(resp.read() or b"{}")

    @staticmethod
    def _b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    def keys(self, prefix: str) -> set[str]:
        end = bytearray(prefix.encode())
        end[-1] += 1
        body = {"key": self._b64(prefix), "range_end": base64.b64encode(bytes(end)).decode(), "keys_only": True}
        return {base64.b64decode(kv["key"]).decode() for kv in self._call("/v3/kv/range", body).get("kvs") or []}

    def get(self, key: str) -> str | None:
        kvs = self._call("/v3/kv/range", {"key": self._b64(key)}).get("kvs") or []
        return base64.b64decode(kvs[0].get("value", "")).decode() if kvs else None

    def put(self, key: str, value: str) -> None:
        self._call("/v3/kv/put", {"key": self._b64(key), "value": self._b64(value)})


# --------------------------------------------------------------------------- the checks


@dataclass
class Target:
    """Where the checks run: kubectl for the cluster, the app namespace and service, the registry,
    and how to send one request to the sync Service (its cluster IP, its port) -> the body."""

    kubectl: Callable[..., subprocess.CompletedProcess]
    namespace: str
    service: str
    registry: KubectlExecEtcd | GatewayEtcd
    request_sync: Callable[[str, int], str]
    replicas: int = 3

    def jsonpath(self, *args: str) -> str:
        result = self.kubectl("-n", self.namespace, "get", *args)
        if result.returncode != 0:
            raise CheckFailed(f"kubectl get {' '.join(args)}: {result.stderr}")
        return result.stdout.strip()

    def pod_ip(self, pod: str) -> str:
        return self.jsonpath("pod", pod, "-o", "jsonpath={.status.podIP}")

    def role_of(self, pod: str) -> str:
        return self.jsonpath("pod", pod, "-o", "jsonpath={.metadata.labels.infer-operator\\.io/role}")

    def instances(self) -> set[str]:
        return self.registry.keys(f"{PREFIX}/{self.service}/instances/")

    def expected(self) -> set[str]:
        return {f"{PREFIX}/{self.service}/instances/{self.pod_ip(f'{self.service}-{i}')}:{PORT}" for i in (0, 1)}


def check_ready(t: Target) -> None:
    log(f"{t.replicas} Ready replicas")
    wait_until(
        240,
        f"{t.replicas} Ready replicas",
        lambda: t.jsonpath("inferenceservice", t.service, "-o", "jsonpath={.status.readyReplicas}") == str(t.replicas),
    )
    wait_until(
        60,
        "the InferenceService's Ready condition",
        lambda: (
            t.jsonpath("inferenceservice", t.service, "-o", "jsonpath={.status.conditions[?(@.type=='Ready')].status}")
            == "True"
        ),
    )


def check_roles(t: Target) -> None:
    log("roles")
    for ordinal, role in ((0, "sync"), (1, "sync"), (2, "async")):
        got = t.role_of(f"{t.service}-{ordinal}")
        if got != role:
            raise CheckFailed(f"{t.service}-{ordinal} is {got!r}, not {role}")
    ready = t.kubectl("-n", t.namespace, "exec", f"{t.service}-2", "--", "test", "-f", "/tmp/worker-ready")
    if ready.returncode != 0:
        raise CheckFailed(f"the async worker is not ready: {ready.stderr}")


def check_registry(t: Target) -> None:
    log("registry entries == Ready sync pods")
    wait_until(60, "etcd holds exactly the sync pods", lambda: t.instances() == t.expected())


def check_service(t: Target) -> None:
    log("a sync request through the Service")
    ip = t.jsonpath("service", t.service, "-o", "jsonpath={.spec.clusterIP}")
    holder: list[str] = []
    wait_until(30, "the sync Service answers", lambda: holder.append(t.request_sync(ip, PORT)) or True)
    body = json.loads(holder[-1])
    if body.get("role") != "sync":
        raise CheckFailed(f"the Service reached a non-sync pod: {body}")


def check_cleanup_on_pod_deletion(t: Target) -> None:
    log("cleanup on pod deletion")
    old_ip = t.pod_ip(f"{t.service}-0")
    config = f"{PREFIX}/{t.service}/config/{old_ip}"
    t.registry.put(config, '{"weight":1}')
    deleted = t.kubectl("-n", t.namespace, "delete", "pod", f"{t.service}-0", "--wait=false")
    if deleted.returncode != 0:
        raise CheckFailed(deleted.stderr)
    wait_until(
        60,
        "the deleted pod's entry is removed",
        lambda: not any(k.endswith(f"/{old_ip}:{PORT}") for k in t.instances()),
        interval=0.5,
    )
    wait_until(60, "the deleted pod's per-IP config is removed", lambda: t.registry.get(config) is None, interval=0.5)
    wait_until(180, "the successor registers", lambda: t.instances() == t.expected())


def check_deletion_removes_entries(t: Target) -> None:
    log("deleting the InferenceService removes all its entries")
    deleted = t.kubectl("-n", t.namespace, "delete", "inferenceservice", t.service, "--timeout=120s")
    if deleted.returncode != 0:
        raise CheckFailed(f"deleting the InferenceService: {deleted.stderr}")
    left = t.instances()
    if left:
        raise CheckFailed(f"entries left after deleting the InferenceService: {sorted(left)}")


CHECKS = (
    check_ready,
    check_roles,
    check_registry,
    check_service,
    check_cleanup_on_pod_deletion,
    check_deletion_removes_entries,
)


def run_checks(t: Target) -> None:
    """Every check, in order; CheckFailed at the first that fails."""
    for check in CHECKS:
        check(t)
    log("checks passed")


# --------------------------------------------------------------------------- the kind script's way


def _kubectl(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [os.environ.get("KUBECTL", "kubectl"), *args], capture_output=True, text=True, timeout=timeout
    )


def _request_with_curl_pod(namespace: str, service: str) -> Callable[[str, int], str]:
    def request(_ip: str, port: int) -> str:
        result = _kubectl(
            "-n",
            namespace,
            "run",
            "curl",
            "--rm",
            "-i",
            "--restart=Never",
            "--image=curlimages/curl:8.11.1",
            "--quiet",
            "--",
            "curl",
            "-fsS",
            f"http://{service}.{namespace}.svc:{port}/",
        )
        if result.returncode != 0:
            raise CheckFailed(f"the sync Service does not answer: {result.stderr}")
        return result.stdout

    return request


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m tests.e2e.checks", description=__doc__.splitlines()[0])
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--service", required=True)
    parser.add_argument(
        "--registry",
        choices=["kubectl-exec"],
        default="kubectl-exec",
        help="how to read the registry etcd: etcdctl in deploy/etcd of the namespace",
    )
    args = parser.parse_args(argv)
    target = Target(
        _kubectl,
        args.namespace,
        args.service,
        KubectlExecEtcd(_kubectl, args.namespace),
        _request_with_curl_pod(args.namespace, args.service),
    )
    try:
        run_checks(target)
    except CheckFailed as exc:
        print(f"[e2e] FAIL: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
