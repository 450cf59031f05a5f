"""The two Services of an InferenceService: stable pod DNS, and traffic to sync pods only."""

from __future__ import annotations

from typing import Any

from infer_operator import kinds, labels
from infer_operator.api.v1alpha1 import InferenceServiceSpec
from infer_operator.builders.common import Owner, headless_service_name


def _sync_port(spec: InferenceServiceSpec, named_target: bool) -> dict[str, Any]:
    # A named target reaches every pod on the port it was started with, also while a changed
    # sync.port rolls out; pods made before the port was named are reached by number.
    target: int | str = labels.SYNC_PORT_NAME if named_target else spec.sync.port
    return {"name": "sync", "port": spec.sync.port, "targetPort": target, "protocol": "TCP"}


def build_headless_service(owner: Owner, spec: InferenceServiceSpec, named_target: bool = True) -> dict[str, Any]:
    """The StatefulSet's governing Service: `<pod>.<name>-headless` DNS for every pod, both roles."""
    return {
        "apiVersion": kinds.SERVICE.api_version,
        "kind": kinds.SERVICE.kind,
        "metadata": owner.metadata(headless_service_name(owner.name)),
        "spec": {
            "clusterIP": "None",
            "selector": labels.selector_labels(owner.name),
            # Pods are addressable while they load their model, before they are Ready.
            "publishNotReadyAddresses": True,
            "ports": [_sync_port(spec, named_target)],
        },
    }


def build_sync_service(owner: Owner, spec: InferenceServiceSpec, named_target: bool = True) -> dict[str, Any]:
    """ClusterIP Service `<name>`: only pods labelled role=sync, on sync.port."""
    metadata = owner.metadata(owner.name)
    # Its selector names the role label the operator sets on each pod as it appears, which the pod
    # template cannot carry (the template does not depend on the split): a linter reading the
    # manifests alone (kube-score's service-targets-pod) finds no pod it selects.
    metadata["annotations"] = {"kube-score/ignore": "service-targets-pod"}
    return {
        "apiVersion": kinds.SERVICE.api_version,
        "kind": kinds.SERVICE.kind,
        "metadata": metadata,
        "spec": {
            "type": "ClusterIP",
            "selector": {**labels.selector_labels(owner.name), labels.LABEL_ROLE: labels.ROLE_SYNC},
            "ports": [_sync_port(spec, named_target)],
        },
    }
