"""TLS and secret hygiene for registry clients: a string that never prints, SSL contexts from PEM."""

from __future__ import annotations

import os
import ssl
import tempfile


class Secret:
    """Holds a secret string; repr/str never show it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self):  # never pickle secrets by accident
        raise TypeError("Secret is not picklable")


def _load_chain_from_data(ctx: ssl.SSLContext, cert_data: str, key_data: str | None) -> None:
    """Load a client cert/key given as PEM strings via a private (0600) temp file, deleted at once."""
    tmpdir = tempfile.mkdtemp(prefix="infer-op-tls-")
    try:
        os.chmod(tmpdir, 0o700)
        cert_path = os.path.join(tmpdir, "cert.pem")
        key_path = os.path.join(tmpdir, "key.pem")
        for path, data in ((cert_path, cert_data), (key_path, key_data)):
            if data is None:
                continue
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(data)
        ctx.load_cert_chain(cert_path, key_path if key_data is not None else None)
    finally:
        for name in ("cert.pem", "key.pem"):
            try:
                os.unlink(os.path.join(tmpdir, name))
            except FileNotFoundError:
                pass
        os.rmdir(tmpdir)


def build_ssl_context(
    *,
    ca_file: str | None = None,
    ca_data: str | None = None,
    cert_file: str | None = None,
    key_file: str | None = None,
    cert_data: str | None = None,
    key_data: str | None = None,
) -> ssl.SSLContext | None:
    """An SSLContext from files or PEM strings, or None when nothing TLS-specific is given.

    Errors raise ValueError with a message that names the problem, never the key material.
    """
    if not any((ca_file, ca_data, cert_file, key_file, cert_data, key_data)):
        return None
    if (cert_file or cert_data) is None and (key_file or key_data):
        raise ValueError("TLS client key given without a client certificate")
    try:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file or None, cadata=ca_data or None)
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise ValueError(f"cannot load TLS CA: {type(exc).__name__}") from None
    try:
        if cert_data:
            _load_chain_from_data(ctx, cert_data, key_data)
        elif cert_file:
            ctx.load_cert_chain(cert_file, key_file or None)
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise ValueError(f"cannot load TLS client certificate/key: {type(exc).__name__}") from None
    return ctx


# Secret data keys every TLS-capable backend accepts -> the credential names tls_context() reads.
TLS_SECRET_KEYS = {"ca.crt": "ca_data", "tls.crt": "cert_data", "tls.key": "key_data"}


def tls_context(credentials: dict[str, str]) -> ssl.SSLContext | None:
    """The SSL context for PEM credentials read from a Secret (`ca_data`, `cert_data`, `key_data`)."""
    return build_ssl_context(
        ca_data=credentials.get("ca_data"), cert_data=credentials.get("cert_data"), key_data=credentials.get("key_data")
    )
