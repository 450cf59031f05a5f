"""The chart's dashboard and alerts (off by default) render, and every metric and label their
queries name exists in the operator (infer_operator.metrics): a renamed metric fails here instead
of leaving a silent panel or an alert that can never fire."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from tests.helm.conftest import CHART, kube_version
from tests.support.metric_catalogue import TARGET_LABELS, scraped_series

pytestmark = pytest.mark.integration

ENABLED = [
    "--set",
    "metrics.service.enabled=true",
    "--set",
    "metrics.serviceMonitor.enabled=true",
    "--set",
    "metrics.prometheusRule.enabled=true",
    "--set",
    "metrics.grafanaDashboard.enabled=true",
]
ALERTS = {
    "InferOperatorRegistryUnreachable",
    "InferOperatorDeregistrationTimedOut",
    "InferOperatorPodsHeldTerminating",
    "InferOperatorReconcileErrors",
    "InferOperatorNoActiveReplica",
}


def render(helm, *args: str) -> list[dict]:
    result = helm("template", "rel", str(CHART), "--namespace", "ops", "--kube-version", kube_version(), *args)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def one(docs: list[dict], kind: str) -> dict:
    (doc,) = [d for d in docs if d["kind"] == kind]
    return doc


def dashboard_queries(dashboard: dict) -> list[str]:
    queries = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        if variable["type"] == "query":
            queries.append(query["query"] if isinstance(query, dict) else query)
    return queries


def unknown_names(expr: str) -> list[str]:
    """Problems with the metrics and labels one PromQL expression names (empty: none)."""
    series = scraped_series()
    problems = []
    used = re.findall(r"\b(infer_\w+)", expr)
    if not used:
        problems.append(f"names no operator metric: {expr}")
    labels_in_scope = set(TARGET_LABELS)
    for name in used:
        if name not in series:
            problems.append(f"{name} is not a metric of the operator")
        else:
            labels_in_scope |= series[name].labels | ({"le"} if name.endswith("_bucket") else set())
    # Label matchers right after a metric: {label="x", ...}
    for name, matchers in re.findall(r"\b(infer_\w+)\{([^}]*)\}", expr):
        allowed = set(TARGET_LABELS) | (series[name].labels if name in series else set())
        allowed |= {"le"} if name.endswith("_bucket") else set()
        for label in re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", matchers):
            if label not in allowed:
                problems.append(f"{name} has no label {label}")
    # Grouping: by (...) / without (...), and label_values(..., label)
    grouping = re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr)
    grouping += re.findall(r"label_values\([^,]*,\s*(\w+)\)", expr)
    for group in grouping:
        for label in filter(None, (part.strip() for part in group.split(","))):
            if label not in labels_in_scope:
                problems.append(f"grouping by {label}, which none of {used} has")
    return problems


def test_off_by_default(helm):
    kinds = {doc["kind"] for doc in render(helm)}
    assert "PrometheusRule" not in kinds and "ConfigMap" not in kinds


def test_alerts_name_only_metrics_and_labels_the_operator_exports(helm):
    rule = one(render(helm, *ENABLED), "PrometheusRule")
    rules = [r for group in rule["spec"]["groups"] for r in group["rules"]]
    assert ALERTS <= {r["alert"] for r in rules}
    problems = {r["alert"]: unknown_names(r["expr"]) for r in rules}
    assert not any(problems.values()), problems
    for r in rules:
        assert r["labels"]["severity"] in ("warning", "critical")
        assert r["annotations"]["summary"] and r["annotations"]["description"]
        # Each alert watches this release's operator only.
        assert 'job="rel-infer-operator-metrics"' in r["expr"], r["expr"]


def test_dashboard_queries_name_only_metrics_and_labels_the_operator_exports(helm):
    configmap = one(render(helm, *ENABLED), "ConfigMap")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["namespace"] == "ops"
    dashboard = json.loads(configmap["data"]["infer-operator.json"])
    queries = dashboard_queries(dashboard)
    problems = {query: unknown_names(query) for query in queries}
    assert not any(problems.values()), {q: p for q, p in problems.items() if p}
    # Every metric the operator exports is shown somewhere (a new metric gets a panel).
    shown = {scraped_series()[name].metric for query in queries for name in re.findall(r"\b(infer_\w+)", query)}
    assert shown == {series.metric for series in scraped_series().values()}


def test_the_checker_catches_a_misspelt_metric_or_label():
    assert unknown_names('rate(infer_operator_reconcile_total{job="x"}[5m])')
    assert unknown_names('rate(infer_operator_reconciles_total{reslt="error"}[5m])')
    assert unknown_names("sum by (backend) (rate(infer_operator_reconciles_total[5m]))")
    assert not unknown_names('sum by (result) (rate(infer_operator_reconciles_total{job="x",result="error"}[5m]))')


def test_dashboard_and_rule_options(helm):
    docs = render(
        helm,
        *ENABLED,
        "--set",
        "metrics.grafanaDashboard.namespace=grafana",
        "--set",
        "metrics.grafanaDashboard.annotations.grafana_folder=Operators",
        "--set",
        "metrics.prometheusRule.labels.release=prom",
        "--set",
        "metrics.prometheusRule.alertLabels.team=ml",
        "--set",
        "metrics.prometheusRule.job=infer",
    )
    configmap = one(docs, "ConfigMap")
    assert configmap["metadata"]["namespace"] == "grafana"
    assert configmap["metadata"]["annotations"] == {"grafana_folder": "Operators"}
    rule = one(docs, "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "prom"
    rules = [r for group in rule["spec"]["groups"] for r in group["rules"]]
    assert all(r["labels"]["team"] == "ml" and 'job="infer"' in r["expr"] for r in rules)
    # The per-service gauges carry the InferenceService's namespace and service as labels: the
    # ServiceMonitor keeps them rather than renaming them exported_*.
    (endpoint,) = one(docs, "ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["honorLabels"] is True
