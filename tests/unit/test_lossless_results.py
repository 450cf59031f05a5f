"""The README's lossless table is the one bench/results/lossless.json renders (python -m bench.lossless
table), so the front door never shows figures of another run."""

from __future__ import annotations

import json
from pathlib import Path

from bench import lossless
from devtools import lossless as lossless_events

ROOT = Path(__file__).resolve().parents[2]


def test_the_readme_table_is_the_latest_run():
    data = json.loads((ROOT / "bench" / "results" / "lossless.json").read_text())
    readme = (ROOT / "README.md").read_text()
    start, end = readme.index(lossless.TABLE_BEGIN), readme.index(lossless.TABLE_END) + len(lossless.TABLE_END)
    assert readme[start:end] == lossless.table(data), "run: python -m bench.lossless table, and paste it"


def test_the_latest_run_has_every_event_and_world():
    data = json.loads((ROOT / "bench" / "results" / "lossless.json").read_text())
    assert {e.name for e in lossless_events.EVENTS} <= set(data["events"])
    assert {"operator", "careful", "seed_script", "plain"} <= set(data["parameters"]["worlds"])
    for event, row in data["events"].items():  # every world measured it (or cannot: no operator)
        assert set(row) >= set(data["parameters"]["worlds"]), event
        assert all(not cell.get("error") for cell in row.values()), (event, row)
