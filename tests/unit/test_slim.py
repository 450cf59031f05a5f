"""Objects cut down as they leave the watch stream still give the operator everything it reads."""

from __future__ import annotations

import copy
import json

from infer_operator import labels
from infer_operator import slim as shapes
from infer_operator.podview import PodView
from infer_operator.slim import slim

POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {
        "name": "llm-1",
        "namespace": "team",
        "uid": "u-1",
        "resourceVersion": "42",
        "deletionTimestamp": "2026-01-01T00:01:00Z",
        "finalizers": [labels.POD_FINALIZER],
        "labels": {
            **labels.common_labels("llm"),
            labels.LABEL_ROLE: "sync",
            labels.LABEL_POD_INDEX: "1",
            labels.LABEL_REVISION: "llm-5d9",
        },
        "annotations": {labels.ANNOTATION_SYNC_REPLICAS: "2"},
        "ownerReferences": [{"kind": "StatefulSet", "name": "llm", "uid": "s", "controller": True}],
        "managedFields": [
            {"manager": "kube-controller-manager", "operation": "Update", "fieldsV1": {"f:metadata": {"f:labels": {}}}}
            for _ in range(6)
        ],
    },
    "spec": {
        "terminationGracePeriodSeconds": 90,
        "readinessGates": [{"conditionType": labels.CONDITION_READY}],
        "containers": [
            {
                "name": "model",
                "image": "registry.example/llm:1",
                "command": ["serve"],
                "ports": [{"name": labels.SYNC_PORT_NAME, "containerPort": 8000}],
                "env": [{"name": "INFER_ROLE", "value": "sync"}] * 10,
                "readinessProbe": {"exec": {"command": ["/bin/sh", "/infer-operator/probe.sh"]}},
            },
            {"name": "sidecar", "image": "sidecar:1", "ports": [{"name": labels.SYNC_PORT_NAME, "containerPort": 1}]},
        ],
        "volumes": [{"name": "scripts", "configMap": {"name": "llm-scripts"}}],
    },
    "status": {
        "phase": "Running",
        "podIP": "10.0.0.11",
        "hostIP": "10.1.0.1",
        "podIPs": [{"ip": "10.0.0.11"}],
        "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:05Z"},
            {"type": "ContainersReady", "status": "True", "lastTransitionTime": "2026-01-01T00:00:03Z"},
            {"type": labels.CONDITION_REGISTERED, "status": "True"},
            {"type": labels.CONDITION_READY, "status": "True"},
        ],
        "containerStatuses": [{"name": "model", "ready": True, "restartCount": 0, "image": "x"}],
    },
}


def test_a_slimmed_pod_gives_the_same_view_and_keeps_its_metadata():
    body = copy.deepcopy(POD)
    slim(body, shapes.POD)
    assert PodView.from_body(body) == PodView.from_body(POD)
    assert "managedFields" not in body["metadata"]
    assert {k: v for k, v in body["metadata"].items()} == {
        k: v for k, v in POD["metadata"].items() if k != "managedFields"
    }
    assert len(json.dumps(body)) < len(json.dumps(POD)) / 2


def test_owned_objects_keep_their_metadata_and_a_statefulsets_revisions():
    statefulset = {
        "metadata": {
            "name": "llm",
            "generation": 3,
            "managedFields": [{}],
            "ownerReferences": [{"uid": "s", "controller": True}],
        },
        "spec": {"replicas": 2, "template": {}},
        "status": {"observedGeneration": 3, "updateRevision": "llm-1", "replicas": 2},
    }
    slim(statefulset, shapes.OWNED)
    assert statefulset == {
        "metadata": {"name": "llm", "generation": 3, "ownerReferences": [{"uid": "s", "controller": True}]},
        "status": {"observedGeneration": 3, "updateRevision": "llm-1"},
    }
    configmap = {"metadata": {"name": "llm-scripts", "resourceVersion": "5"}, "data": {"launch.sh": "..."}}
    slim(configmap, shapes.OWNED)
    assert configmap == {"metadata": {"name": "llm-scripts", "resourceVersion": "5"}}


def test_inferenceservices_lose_only_their_managed_fields():
    body = {"metadata": {"name": "llm", "managedFields": [{}]}, "spec": {"replicas": 2}, "status": {"registered": 1}}
    slim(body, shapes.WHOLE)
    assert body == {"metadata": {"name": "llm"}, "spec": {"replicas": 2}, "status": {"registered": 1}}


def test_odd_shapes_are_left_alone():
    for odd in (None, "x", {"metadata": None, "spec": [], "status": "?"}, {"spec": {"containers": []}}):
        before = copy.deepcopy(odd)
        slim(odd, shapes.POD)
        assert odd == before or odd == {"spec": {}}
