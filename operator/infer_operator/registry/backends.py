"""The registry backends, one row each: adding a backend is one module and one line here.

A backend module (`etcd.py`, `http.py`, `none.py`) declares its `BACKEND`: the value of
`spec.registry.type` that selects it, the pydantic model of its spec section
(`spec.registry.<type>`, None when it has none), the Secret keys it reads and how it connects.
The API's `RegistrySpec` (type enum, one section per backend, the "section required" rules),
the CRD, the reference docs and the registrar all derive from `BACKENDS`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .base import Backend, Registry

def _rows() -> tuple[Backend, ...]:
    from . import etcd, http, none

    return (none.BACKEND, etcd.BACKEND, http.BACKEND)


BACKENDS: dict[str, Backend] = {backend.type: backend for backend in _rows()}


def connect(type_: str, section: Any, credentials: Mapping[str, Any] | None = None,
            timeout: float = 5.0) -> Registry:
    """A client for one backend. `section` is its spec section (a model, or a mapping in the
    spec's camelCase), `credentials` the credential names of `Backend.secret_keys` (values are
    never shown in errors). Raises ValueError (naming no secret) when unusable."""
    backend = BACKENDS.get(type_)
    if backend is None:
        raise ValueError(f"unknown registry type {type_!r}; expected one of {', '.join(BACKENDS)}")
    if backend.spec is not None:
        if section is None:
            raise ValueError(f"the {type_} registry needs its settings (spec.registry.{type_})")
        if not isinstance(section, backend.spec):
            section = backend.spec.model_validate(section)
    allowed = set(backend.secret_keys.values())
    unknown = set(credentials or {}) - allowed
    if unknown:  # names only, never values
        raise ValueError(f"unknown {type_} registry credential keys: {', '.join(sorted(unknown))}")
    return backend.connect(section, {k: _text(v, k) for k, v in (credentials or {}).items() if _text(v, k)}, timeout)


def _text(value: Any, name: str) -> str | None:
    if value is None or value in ("", b""):
        return None
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"credential {name!r} is not UTF-8 text") from None
    if not isinstance(value, str):
        raise ValueError(f"credential {name!r} must be a string")
    return value
