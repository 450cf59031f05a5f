"""The operator's Prometheus metrics as a scrape shows them, read from the one place they are
defined, `infer_operator.metrics` (module-level prometheus_client objects): the chart's alerts and
dashboard are checked against this."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client.metrics import MetricWrapperBase

# Labels Prometheus itself attaches to every scraped series (target labels of a ServiceMonitor).
TARGET_LABELS = frozenset({"job", "instance", "namespace", "pod", "service", "container", "endpoint"})


@dataclass(frozen=True)
class Series:
    metric: str  # the metric's name (without _total, _bucket, ...)
    kind: str  # counter, gauge, histogram, summary
    labels: frozenset[str]


def scraped_series() -> dict[str, Series]:
    """Every series name a scrape can show (`..._total`, `..._bucket`, ...) -> its metric."""
    from infer_operator import metrics

    suffixes = {
        "counter": ("_total",),
        "gauge": ("",),
        "histogram": ("_bucket", "_sum", "_count"),
        "summary": ("", "_sum", "_count"),
    }
    found: dict[str, Series] = {}
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            # prometheus_client keeps name, type and label names on the parent object; a counter's
            # name is stored without its _total.
            series = Series(value._name, value._type, frozenset(value._labelnames))
            for suffix in suffixes[value._type]:
                found[value._name + suffix] = series
    return found


def startup_samples() -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """What a freshly started operator exports before anything happened: a new process imports
    what `infer-operator run` imports (the handlers, which import every part of the operator), and
    its registry is read (name and labels -> value)."""
    import subprocess
    import sys

    from prometheus_client.parser import text_string_to_metric_families

    script = (
        "import infer_operator.handlers, prometheus_client, sys; "
        "sys.stdout.write(prometheus_client.generate_latest().decode())"
    )
    text = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
