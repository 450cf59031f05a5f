"""Build a Registry from plain dicts (settings from the CR, credentials from a Secret).

    make_registry("etcd", service_settings={"endpoints": [...], "prefix": "/services"},
                  credentials={"username": ..., "password": ..., "ca_data": ..., ...}, timeout=5)
    make_registry("http", service_settings={"url": "https://admin:8080/api"},
                  credentials={"token": ..., "ca_file": ...}, timeout=5)
    make_registry("none", service_settings={}, credentials=None, timeout=5)

Credential keys (all optional): username, password, token, ca_file, ca_data, cert_file, key_file,
cert_data, key_data. PEM given as data is loaded into an ssl.SSLContext (client cert/key through a
0600 temp file that is removed immediately). Credentials are never logged nor shown in repr().
"""

from __future__ import annotations

from typing import Any

from .base import DEFAULT_TIMEOUT, Registry, build_ssl_context

KINDS = ("none", "etcd", "http")

_CRED_KEYS = {"username", "password", "token", "ca_file", "ca_data", "cert_file", "key_file", "cert_data", "key_data"}


def _text(value: Any, name: str) -> str | None:
    if value is None or value == "" or value == b"":
        return None
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"credential {name!r} is not UTF-8 text") from None
    if not isinstance(value, str):
        raise ValueError(f"credential {name!r} must be a string")
    return value


def make_registry(
    kind: str,
    *,
    service_settings: dict[str, Any] | None,
    credentials: dict[str, Any] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Registry:
    kind = (kind or "none").strip().lower()
    settings = dict(service_settings or {})
    creds = {k: _text(v, k) for k, v in (credentials or {}).items()}
    unknown = set(creds) - _CRED_KEYS
    if unknown:  # names only, never values
        raise ValueError(f"unknown registry credential keys: {', '.join(sorted(unknown))}")

    if kind == "none":
        from .none import NoneRegistry

        return NoneRegistry(timeout=timeout)

    ssl_context = build_ssl_context(
        ca_file=creds.get("ca_file"),
        ca_data=creds.get("ca_data"),
        cert_file=creds.get("cert_file"),
        key_file=creds.get("key_file"),
        cert_data=creds.get("cert_data"),
        key_data=creds.get("key_data"),
    )

    if kind == "etcd":
        from .etcd import DEFAULT_PREFIX, EtcdRegistry

        endpoints = settings.get("endpoints")
        if isinstance(endpoints, str):
            endpoints = [e for e in endpoints.split(",") if e.strip()]
        if not endpoints or not isinstance(endpoints, (list, tuple)):
            raise ValueError("etcd registry needs settings.endpoints (a list of URLs)")
        username, password = creds.get("username"), creds.get("password")
        if (username is None) != (password is None):
            raise ValueError("etcd credentials need both username and password")
        return EtcdRegistry(
            [str(e) for e in endpoints],
            prefix=settings.get("prefix") or DEFAULT_PREFIX,
            username=username,
            password=password,
            ssl_context=ssl_context,
            timeout=timeout,
        )

    if kind == "http":
        from .http import HttpRegistry

        url = settings.get("url")
        if not url or not isinstance(url, str):
            raise ValueError("http registry needs settings.url")
        return HttpRegistry(url, token=creds.get("token"), ssl_context=ssl_context, timeout=timeout)

    raise ValueError(f"unknown registry kind {kind!r}; expected one of {', '.join(KINDS)}")
