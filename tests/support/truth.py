"""What the registry must hold, read from the cluster: the Ready, non-terminating sync pods of an
InferenceService, as the instance entries the operator writes for them (owner included, at full
weight). A backend's value may carry more: the etcd one adds the fields real consumers read
(`Addr`, `Metadata`, `host`, `ttl`), so listings are compared with `same_entries`."""

from __future__ import annotations

from infer_operator import labels
from tests.support.kube import Kube, is_ready


def ready_sync_pods(kube: Kube, namespace: str, service: str) -> dict:
    return {
        n: p
        for n, p in kube.pods(namespace, service).items()
        if p.metadata.deletion_timestamp is None
        and is_ready(p)
        and (p.metadata.labels or {}).get(labels.LABEL_ROLE) == "sync"
    }


def expected_entries(kube: Kube, namespace: str, service: str, port: int = 8000) -> dict:
    """{"ip:port": instance JSON} for the Ready sync pods of `service` ({} when it is gone)."""
    pods = ready_sync_pods(kube, namespace, service)
    if not pods:
        return {}
    uid = kube.get_isvc(namespace, service)["metadata"]["uid"]
    owner = {"namespace": namespace, "name": service, "uid": uid}
    return {
        f"{p.status.pod_ip}:{port}": {
            "pod": n,
            "namespace": namespace,
            "uid": p.metadata.uid,
            "ip": p.status.pod_ip,
            "port": port,
            "role": "sync",
            "ordinal": int(p.metadata.labels[labels.LABEL_POD_INDEX]),
            "inferenceService": owner,
            "weight": 100,
        }
        for n, p in pods.items()
    }


def entry_matches(actual, expected: dict) -> bool:
    """Whether a listed entry holds every field of the expected one, with its value (a backend
    may add its readers' fields)."""
    return isinstance(actual, dict) and all(actual.get(k) == v for k, v in expected.items())


def same_entries(actual: dict, expected: dict) -> bool:
    """The same addresses, each entry matching (`entry_matches`)."""
    return set(actual) == set(expected) and all(entry_matches(actual[k], v) for k, v in expected.items())
