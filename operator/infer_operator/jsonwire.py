"""Decoding the Kubernetes API's JSON (watch streams and responses).

orjson decodes a whole pod several times faster than the standard library, and decoding the pods
watch's events was a sizeable share of the operator's CPU under churn (bench/README.md).

Only for the API server's output: orjson reads an integer beyond 64 bits as a float, and the API
server never sends one (its JSON numbers are int64 or float64). Registry responses are anyone's,
and keep `json`. A document orjson refuses but `json` accepts (an escaped lone surrogate) is
decoded by `json`; what neither accepts raises `json.JSONDecodeError`, a ValueError, as before.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def loads(data: str | bytes) -> Any:
    """The value of one JSON document from the API server; ValueError when it is not JSON."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)
