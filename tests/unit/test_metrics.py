"""The operator's own metrics that are not counted along the way: which replica acts, what runs."""

from __future__ import annotations

from infer_operator import __version__, metrics


def test_build_info_names_the_version():
    samples = [s for m in metrics.BUILD_INFO.collect() for s in m.samples]
    assert [s.labels["version"] for s in samples] == [__version__] and samples[0].value == 1


def test_every_labelled_counter_an_alert_reads_exists_from_start_up():
    from tests.support.metric_catalogue import startup_samples

    samples = startup_samples()
    for kind, reasons in metrics.INCOMPLETE_CLEANUP_REASONS.items():
        for reason in reasons:
            key = ("infer_operator_incomplete_cleanups_total", frozenset({("kind", kind), ("reason", reason)}))
            assert samples.get(key) == 0, key
    for result in metrics.RECONCILE_RESULTS:
        assert samples.get(("infer_operator_reconciles_total", frozenset({("result", result)}))) == 0
    for backend in ("etcd", "http"):
        for operation in metrics.REGISTRY_ERROR_OPERATIONS:
            key = ("infer_operator_registry_errors_total", frozenset({("backend", backend), ("operation", operation)}))
            assert samples.get(key) == 0, key


def test_every_cleanup_the_releaser_counts_as_incomplete_is_declared():
    """The releaser counts its Warning outcomes under their reasons: each one must be a series
    that exists from start-up (metrics.INCOMPLETE_CLEANUP_REASONS)."""
    import re
    from pathlib import Path

    from infer_operator.registration import releaser

    source = Path(releaser.__file__).read_text()
    warned = set(re.findall(r'Note\(\s*"Warning",\s*"(\w+)"', source)) | {"FinalizerNotRemoved"}
    declared = {reason for reasons in metrics.INCOMPLETE_CLEANUP_REASONS.values() for reason in reasons}
    assert warned and warned <= declared, warned - declared
