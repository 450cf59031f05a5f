"""jsonwire.py: the same values as `json` (its use for kopf's watch events: test_kopf_hooks.py)."""

from __future__ import annotations

import json

import pytest

from infer_operator import jsonwire

POD = {
    "kind": "Pod",
    "apiVersion": "v1",
    "metadata": {
        "name": "llm-0",
        "namespace": "ns",
        "uid": "5f1c",
        "resourceVersion": "912",
        "labels": {"infer-operator.io/role": "sync"},
        "annotations": {"note": "caf\u00e9 \u2713 \U0001f680"},
        "finalizers": ["infer-operator.io/registry"],
        "generation": 9223372036854775807,
    },
    "spec": {"terminationGracePeriodSeconds": 30, "containers": [{"name": "app", "ports": [{"containerPort": 8080}]}]},
    "status": {
        "phase": "Running",
        "podIP": "10.244.0.7",
        "conditions": [{"type": "Ready", "status": "True"}],
        "ratio": 0.25,
        "none": None,
        "flag": False,
        "empty": [],
        "min": -9223372036854775808,
    },
}


@pytest.mark.parametrize(
    "text",
    [
        json.dumps(POD),
        json.dumps(POD, ensure_ascii=False),
        '{"type": "MODIFIED", "object": ' + json.dumps(POD) + "}",
        '"\\ud800"',  # an escaped lone surrogate: orjson refuses it, json does not
        "[]",
        "0",
        "1e3",
        '"\\u00e9\\n"',
    ],
)
def test_decodes_what_json_decodes_to_the_same_value(text: str) -> None:
    assert jsonwire.loads(text) == json.loads(text)
    assert jsonwire.loads(text.encode("utf-8", "surrogatepass")) == json.loads(text)


@pytest.mark.parametrize("text", ["", "{", "nope", '{"a": 1,}', "[1] [2]"])
def test_what_is_not_json_raises_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        jsonwire.loads(text)
