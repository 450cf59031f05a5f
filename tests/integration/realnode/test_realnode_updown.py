"""The real node stops without a trace and starts again warm (the last real-node test module: the
session's node comes back up for whatever runs after it)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from devtools.cluster import realnode
from tests.conftest import REAL_NODE_FIGURES

pytestmark = [pytest.mark.integration, pytest.mark.realnode]


def test_down_leaves_nothing_and_up_is_quick(cluster, real_node):
    t0 = time.monotonic()
    realnode.down(cluster.state_dir)
    down_seconds = time.monotonic() - t0
    assert realnode.leftovers(cluster.state_dir) == []
    cli = subprocess.run(
        [sys.executable, "-m", "devtools.cluster", "leftovers", "--state-dir", str(cluster.state_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cli.returncode == 0, cli.stdout + cli.stderr
    t0 = time.monotonic()
    node = realnode.up(cluster.state_dir)
    up_seconds = time.monotonic() - t0
    assert node.images.keys() >= {"pause", "sample-app"}
    REAL_NODE_FIGURES["warm down / up"] = f"{down_seconds:.1f} s / {up_seconds:.1f} s"
