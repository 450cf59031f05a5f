"""The chart's README is generated from values.yaml's comments (devtools/chart_readme.py): it is up
to date, and every value is documented there."""

from __future__ import annotations

import yaml

from devtools import chart_readme


def test_the_chart_readme_is_up_to_date():
    committed = (chart_readme.CHART / "README.md").read_text()
    assert committed == chart_readme.render(), "charts/infer-operator/README.md is stale: run `make deploy`"


def _leaves(node, path=""):
    if isinstance(node, dict) and node:
        for key, value in node.items():
            yield from _leaves(value, f"{path}.{key}" if path else key)
    else:
        yield path


def test_every_value_is_documented():
    text = (chart_readme.CHART / "values.yaml").read_text()
    keys = [key for key, _ in chart_readme.documented(text)]
    undocumented = [
        leaf
        for leaf in _leaves(yaml.safe_load(text))
        if not any(leaf == key or leaf.startswith(key + ".") for key in keys)
    ]
    assert undocumented == []


def test_a_comment_without_the_marker_documents_nothing():
    text = "# a note\nplain: 1\nsection:\n  # -- The child.\n  child: 2\n"
    assert chart_readme.documented(text) == [("section.child", "The child.")]
