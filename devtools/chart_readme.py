"""The chart's README, generated from the comments of its values.yaml (`make deploy` writes it; a
unit test fails when it is stale).

    python -m devtools.chart_readme > charts/infer-operator/README.md

A value is documented by the comment block right above its key that starts with `# --` (the
convention of helm-docs, which this follows without needing it); a key without one that holds
documented keys is a section. The table lists every documented value with its default as
values.yaml has it.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parents[1] / "charts" / "infer-operator"

HEADER = """\
<!-- GENERATED from values.yaml by `python -m devtools.chart_readme` (`make deploy`); do not edit. -->
# infer-operator chart

{description}

Needs Kubernetes {kube_version} (the chart's `kubeVersion`). `helm template` renders for
Kubernetes v1.20 unless told otherwise, which the chart refuses: give `--kube-version` (e.g.
`helm template infer-operator charts/infer-operator --kube-version 1.34.0`); `helm install` and
`helm upgrade` read the cluster's version themselves.

Installing, upgrading (the CRDs first), uninstalling (the InferenceServices first), monitoring
with kube-prometheus-stack and the operator's RBAC: the project's
[README](../../README.md#install-with-helm). `values.schema.json` rejects unknown keys: a
misspelt value fails the install naming it.

## Values

| Key | Default | Description |
|---|---|---|
"""

_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.-]+):(?P<rest>.*)$")


def documented(values_text: str) -> list[tuple[str, str]]:
    """(dotted key, description) for every key whose comment block starts with `# --`, in file order."""
    out: list[tuple[str, str]] = []
    comment: list[str] = []
    path: list[tuple[int, str]] = []  # (indent, key) of the keys enclosing the current line
    for line in values_text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            text = stripped[1:].strip()
            if text.startswith("--"):
                comment = [text[2:].strip()]
            elif comment:
                comment.append(text)
            continue
        match = _KEY.match(line)
        if not match or stripped.startswith("-"):
            comment = [] if not stripped else comment
            continue
        indent = len(match["indent"])
        while path and path[-1][0] >= indent:
            path.pop()
        path.append((indent, match["key"]))
        if comment:
            out.append((".".join(key for _, key in path), " ".join(comment)))
        comment = []
    return out


def _lookup(values: dict[str, Any], dotted: str) -> Any:
    node: Any = values
    for part in dotted.split("."):
        node = node[part]
    return node


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render() -> str:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    text = (CHART / "values.yaml").read_text()
    values = yaml.safe_load(text)
    rows = []
    for key, description in documented(text):
        default = json.dumps(_lookup(values, key), sort_keys=False)
        rows.append(f"| `{key}` | `{_cell(default)}` | {_cell(description)} |")
    head = HEADER.format(description=" ".join(chart["description"].split()), kube_version=chart["kubeVersion"])
    return head + "\n".join(rows) + "\n"


def main() -> int:
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
