"""kopf's watch events decoded by orjson (jsonwire.py).

kopf decodes each watch event with the `json` module its API client imported
(`kopf._cogs.clients.api`). That name is given the standard module's functions with jsonwire's
`loads`: only that module's name changes; `json` stays as it is for everyone else.
"""

from __future__ import annotations

import json
import types

from infer_operator import jsonwire
from infer_operator.kopf_hooks.base import MARK, Unavailable


def install() -> None:
    """Idempotent; independent of the stream hook (either may work without the other). Raises
    Unavailable when kopf's API module has no `json` name of its own."""
    try:
        from kopf._cogs.clients import api

        current = api.json
    except (ImportError, AttributeError) as exc:
        raise Unavailable(f"kopf._cogs.clients.api.json: {exc}") from None
    if getattr(current, MARK, False):
        return
    if getattr(current, "loads", None) is not json.loads:
        raise Unavailable("kopf._cogs.clients.api.json is not the standard json module")
    decoder = types.SimpleNamespace(**{name: getattr(json, name) for name in dir(json) if not name.startswith("__")})
    decoder.loads = jsonwire.loads
    setattr(decoder, MARK, True)
    api.json = decoder
