"""What the registry must hold, read from the cluster: the Ready, non-terminating sync pods of an
InferenceService, as the instance entries the operator writes for them (owner included)."""

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
        }
        for n, p in pods.items()
    }
