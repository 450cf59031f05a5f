"""The operator's own metrics that are not counted along the way: which replica acts, what runs."""

from __future__ import annotations

import logging

from infer_operator import __version__, metrics


def test_the_active_gauge_follows_kopfs_peering_pauses():
    logger = logging.getLogger(metrics.PEERING_LOGGER)
    level = logger.level
    metrics.follow_peering()
    state = logger.filters[-1]
    try:
        logger.info("Pausing operations in favour of [Peer(...)].")
        assert metrics.ACTIVE._value.get() == 0
        logger.info("Resuming operations after the pause. Conflicting operators with the same priority are gone.")
        assert metrics.ACTIVE._value.get() == 1
        logger.warning("Pausing all operators, including self: [...]")
        assert metrics.ACTIVE._value.get() == 0
    finally:
        logger.removeFilter(state)
        logger.setLevel(level)
        metrics.ACTIVE.set(1)


def test_build_info_names_the_version():
    samples = [s for m in metrics.BUILD_INFO.collect() for s in m.samples]
    assert [s.labels["version"] for s in samples] == [__version__] and samples[0].value == 1
