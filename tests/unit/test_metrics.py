"""The operator's own metrics that are not counted along the way: which replica acts, what runs."""

from __future__ import annotations

from infer_operator import __version__, metrics


def test_build_info_names_the_version():
    samples = [s for m in metrics.BUILD_INFO.collect() for s in m.samples]
    assert [s.labels["version"] for s in samples] == [__version__] and samples[0].value == 1
