"""Day two on a real API server: typos the API refuses naming the field, kubectl explain's
descriptions, and a status that tells the truth when a pod loses a label of ours or the Eviction
API refuses a restart for a reason other than a budget."""

from __future__ import annotations

import json

import pytest
import yaml
from kubernetes import client

from devtools.harness import isvc_body, wait_for
from infer_operator import labels
from tests.integration.test_inferenceservice import wait_settled
from tests.support.kube import condition

pytestmark = [pytest.mark.integration]

# Typos that were accepted and carried out as something else (every pod rolled, OnDelete rolled
# like RollingUpdate, a probe checking `/`), and what the API server now says.
TYPOS = {
    "partition": (
        {"updateStrategy": {"rollingUpdate": {"partiton": 2}}},
        'unknown field "spec.updateStrategy.rollingUpdate.partiton"',
    ),
    "type": ({"updateStrategy": {"type": "Ondelete"}}, 'spec.updateStrategy.type: Unsupported value: "Ondelete"'),
    "probe": (
        {"sync": {"readinessProbe": {"httpGet": {"paht": "/ready", "port": 8000}}}},
        'unknown field "spec.sync.readinessProbe.httpGet.paht"',
    ),
    "async-probe": (
        {"async": {"readinessProbe": {"exec": {"comand": ["true"]}}}},
        'unknown field "spec.async.readinessProbe.exec.comand"',
    ),
    "negative-partition": (
        {"updateStrategy": {"rollingUpdate": {"partition": -1}}},
        "spec.updateStrategy.rollingUpdate.partition: Invalid value: -1",
    ),
}


@pytest.mark.parametrize("typo", TYPOS.values(), ids=TYPOS.keys())
def test_the_api_server_refuses_typos_naming_the_field(cluster, crd, namespace, typo):
    change, said = typo
    body = isvc_body("typo", namespace, **change)
    result = cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(body))
    assert result.returncode != 0, result.stdout
    assert said in result.stderr, result.stderr


def test_kubectl_explain_describes_the_templates_fields(cluster, crd):
    result = cluster.kubectl("explain", "inferenceservices.spec.template.spec.containers.resources.limits")
    assert result.returncode == 0, result.stderr
    assert "Limits describes the maximum amount of compute resources allowed" in result.stdout
    result = cluster.kubectl("explain", "inferenceservices.spec.updateStrategy.type")
    assert "OnDelete" in result.stdout and "RollingUpdate" in result.stdout


def _pod_events(kube, namespace: str, pod: str, reason: str) -> list:
    events = kube.core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={pod},reason={reason}")
    return events.items


@pytest.mark.parametrize("label", [labels.LABEL_MANAGED_BY, labels.LABEL_SERVICE, labels.LABEL_NAME])
def test_a_pod_that_lost_a_label_of_ours_gets_it_back_and_still_counts(kube, namespace, running_operator, label):
    kube.create_isvc(namespace, isvc_body("web", replicas=2, syncReplicas=2))
    wait_settled(kube, namespace, "web", 2, 2)
    kube.core.patch_namespaced_pod("web-1", namespace, {"metadata": {"labels": {label: None}}})

    def relabelled():
        pod = kube.core.read_namespaced_pod("web-1", namespace)
        return (pod.metadata.labels or {}).get(label) == labels.common_labels("web")[label] and _pod_events(
            kube, namespace, "web-1", "Relabelled"
        )

    (event,) = wait_for(relabelled, timeout=30, message=f"{label} put back on web-1, with an event")
    assert label in event.message
    # The same pod: not deleted, not replaced; counted, Ready.
    wait_settled(kube, namespace, "web", 2, 2, timeout=30)
    status = kube.get_isvc(namespace, "web")["status"]
    assert (status["replicas"], status["readyReplicas"]) == (2, 2)


def test_a_second_disruption_budget_is_named_in_the_status_and_an_event(kube, namespace, running_operator):
    """The user's own PodDisruptionBudget beside the one the spec asks for: the Eviction API answers
    500 for every restart (it supports one budget per pod). The split change waits, and says why."""
    kube.create_isvc(namespace, isvc_body("web", replicas=2, syncReplicas=2, podDisruptionBudget={}))
    wait_settled(kube, namespace, "web", 2, 2)
    mine = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "mine"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {labels.LABEL_SERVICE: "web"}}},
    }
    client.PolicyV1Api(kube.api_client).create_namespaced_pod_disruption_budget(namespace, mine)
    kube.patch_isvc(namespace, "web", {"spec": {"syncReplicas": 1}})

    def said():
        progressing = condition(kube.get_isvc(namespace, "web"), "Progressing")
        if progressing and "more than one PodDisruptionBudget" in progressing["message"]:
            return progressing
        return None

    progressing = wait_for(said, timeout=45, message="Progressing names the refused restart")
    assert progressing["status"] == "True" and "the Eviction API refuses evicting pod web-1" in progressing["message"]
    events = [e for e in kube.events(namespace, "web") if e.reason == "RestartBlocked"]
    assert events and "more than one PodDisruptionBudget" in events[0].message, json.dumps([e.message for e in events])
    assert kube.core.read_namespaced_pod("web-1", namespace).metadata.labels[labels.LABEL_ROLE] == "sync"
