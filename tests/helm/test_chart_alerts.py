"""The chart's alerts fire, checked by Prometheus' own rule tester (`promtool test rules`, Debian's
`prometheus` package): one case per alert, on the PrometheusRule the chart renders.

The counters' series start as a freshly started operator exports them (tests/support/
metric_catalogue.startup_samples): a series the operator exports at 0 from start-up is 0 until the
incident, one it does not is absent until then. So an alert on a counter that appears only on its
first increment (whose first incident after a restart never shows as an increase) fails here.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tests.helm.test_chart_observability import ENABLED, one, render
from tests.support.metric_catalogue import startup_samples

pytestmark = pytest.mark.integration

JOB = "rel-infer-operator-metrics"  # the job label the rendered rules select (release "rel")


@dataclass
class Series:
    name: str
    labels: dict[str, str]
    before: int  # samples (one a minute) before the incident, as the operator exports at start-up
    during: str  # promtool's expanding notation from the incident on


@dataclass
class Case:
    alert: str
    series: list[Series]
    quiet_at: str  # an evaluation time at which it must not fire yet
    fires_at: str
    labels: dict[str, str]
    value: str = ""  # $value in the annotations, as Prometheus formats it
    extra_labels: dict[str, str] = field(default_factory=dict)


def _counter(name: str, labels: dict[str, str], during: str, before: int = 5) -> Series:
    return Series(name, labels, before, during)


CASES = [
    Case(
        "InferOperatorNoActiveReplica",
        [Series("infer_operator_active", {"instance": "a"}, 0, "1x4 0x20")],
        quiet_at="4m",
        fires_at="11m",
        labels={"severity": "critical"},
    ),
    Case(
        "InferOperatorSeveralActive",
        [
            Series("infer_operator_active", {"instance": "a"}, 0, "1x20"),
            Series("infer_operator_active", {"instance": "b"}, 0, "0x4 1x20"),
        ],
        quiet_at="5m",
        fires_at="11m",
        labels={"severity": "critical"},
        value="2",
    ),
    Case(
        "InferOperatorRegistryUnreachable",
        [
            _counter("infer_operator_registry_errors_total", {"backend": "etcd", "operation": "sync"}, "0+6x30"),
            Series(
                "infer_operator_registry_request_duration_seconds_count",
                {"backend": "etcd", "operation": "put"},
                5,
                "0+6x30",
            ),
        ],
        quiet_at="10m",
        fires_at="22m",
        labels={"severity": "warning", "backend": "etcd"},
    ),
    Case(
        "InferOperatorDeregistrationTimedOut",
        [
            _counter(
                "infer_operator_incomplete_cleanups_total",
                {"kind": "Pod", "reason": "DeregistrationTimedOut"},
                "1x10",
            )
        ],
        quiet_at="4m",
        fires_at="8m",
        labels={"severity": "warning", "kind": "Pod"},
        value="1",
    ),
    Case(
        "InferOperatorPodsHeldTerminating",
        [Series("infer_operator_pods_held", {"instance": "a"}, 3, "1x30")],
        quiet_at="10m",
        fires_at="19m",
        labels={"severity": "warning", "instance": "a", "job": JOB},
        value="1",
    ),
    Case(
        "InferOperatorKopfHookFallenBack",
        [Series("infer_operator_kopf_hook_installed", {"hook": "watch-stream"}, 0, "1x2 0x20")],
        quiet_at="8m",
        fires_at="13m",
        labels={"severity": "warning", "hook": "watch-stream"},
    ),
    Case(
        "InferOperatorReconcileErrors",
        [
            _counter("infer_operator_reconciles_total", {"result": "ok"}, "0+10x40"),
            _counter("infer_operator_reconciles_total", {"result": "error"}, "0+10x40"),
        ],
        quiet_at="15m",
        fires_at="27m",
        labels={"severity": "warning"},
    ),
    Case(
        "InferOperatorIncompleteCleanup",
        [
            _counter(
                "infer_operator_incomplete_cleanups_total",
                {"kind": "InferenceService", "reason": "RegistryCleanupAbandoned"},
                "1x10",
            )
        ],
        quiet_at="4m",
        fires_at="8m",
        labels={"severity": "warning", "kind": "InferenceService", "reason": "RegistryCleanupAbandoned"},
    ),
    Case(
        "InferenceServiceReplicasNotReady",
        [
            Series("infer_operator_service_desired_replicas", {"namespace": "team-a", "service": "llm"}, 0, "2x40"),
            Series("infer_operator_service_ready_replicas", {"namespace": "team-a", "service": "llm"}, 0, "2x2 1x40"),
        ],
        quiet_at="20m",
        fires_at="34m",
        labels={"severity": "warning", "namespace": "team-a", "service": "llm"},
    ),
]


def _selector(labels: dict[str, str]) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


def _values(series: Series, exported: bool) -> str:
    """promtool's notation: the samples before the incident (0 when the operator exports the
    series from start-up, absent `_` when not), then the incident's."""
    if not series.before:
        return series.during
    return f"{'0' if exported else '_'}x{series.before - 1} {series.during}"


def _expand(template: str, labels: dict[str, str], value: str) -> str:
    """The two template forms the chart's annotations use: {{ $value }} and {{ $labels.NAME }}."""
    text = re.sub(r"\{\{\s*\$value\s*\}\}", value, template)
    return re.sub(r"\{\{\s*\$labels\.(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), text)


def promtool_tests(rules: dict, exported: set[tuple[str, frozenset]]) -> dict:
    by_alert = {r["alert"]: r for group in rules["groups"] for r in group["rules"]}
    tests = []
    for case in CASES:
        rule = by_alert[case.alert]
        input_series = []
        for series in case.series:
            labels = {**series.labels, "job": JOB}
            known = (series.name, frozenset(series.labels.items())) in exported
            # A gauge is whatever it is set to; only the counters' start-up presence is in question.
            is_counter = series.name.endswith("_total") or series.name.endswith("_count")
            input_series.append(
                {
                    "series": series.name + _selector(labels),
                    "values": _values(series, exported=known or not is_counter),
                }
            )
        annotations = {k: _expand(v, case.labels, case.value) for k, v in rule["annotations"].items()}
        tests.append(
            {
                "interval": "1m",
                "input_series": input_series,
                "alert_rule_test": [
                    {"alertname": case.alert, "eval_time": case.quiet_at, "exp_alerts": []},
                    {
                        "alertname": case.alert,
                        "eval_time": case.fires_at,
                        "exp_alerts": [{"exp_labels": case.labels, "exp_annotations": annotations}],
                    },
                ],
            }
        )
    return {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": tests}


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool is not installed (Debian's prometheus package; `make setup` installs it)")
    return path


def _exported() -> set[tuple[str, frozenset]]:
    return set(startup_samples())


def _run(promtool: str, rules: dict, exported: set, tmp_path: Path) -> subprocess.CompletedProcess:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules, sort_keys=False))
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(promtool_tests(rules, exported), sort_keys=False))
    return subprocess.run(
        [promtool, "test", "rules", "tests.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )


def _rules(helm) -> dict:
    return one(render(helm, *ENABLED), "PrometheusRule")["spec"]


def test_every_alert_has_a_case():
    from tests.helm.conftest import CHART

    text = (CHART / "templates" / "prometheusrule.yaml").read_text()
    assert set(re.findall(r"- alert: (\w+)", text)) == {case.alert for case in CASES}


def test_every_alert_fires_under_promtool(helm, promtool, tmp_path):
    rules = _rules(helm)
    check = subprocess.run([promtool, "check", "rules", "/dev/stdin"], input=yaml.safe_dump(rules), text=True)
    assert check.returncode == 0
    result = _run(promtool, rules, _exported(), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_an_incomplete_cleanup_counter_missing_at_start_up_would_never_alert(helm, promtool, tmp_path):
    """The check above can fail: without the start-up series, the first incident is no increase."""
    exported = {key for key in _exported() if key[0] != "infer_operator_incomplete_cleanups_total"}
    result = _run(promtool, _rules(helm), exported, tmp_path)
    assert result.returncode != 0
    failed = set(re.findall(r"alertname: (\w+)", result.stdout + result.stderr))
    assert failed == {"InferOperatorDeregistrationTimedOut", "InferOperatorIncompleteCleanup"}, result.stdout
