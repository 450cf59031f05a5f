"""Small aiohttp helpers shared by the etcd and http backends."""

from __future__ import annotations

import ssl

import aiohttp

from .model import RegistryError


async def read_capped(resp: aiohttp.ClientResponse, cap: int, what: str) -> bytes:
    """Read the whole body, failing with RegistryError once it exceeds ``cap`` bytes."""
    if resp.content_length is not None and resp.content_length > cap:
        raise RegistryError(f"{what}: response too large ({resp.content_length} bytes > limit {cap})")
    chunks: list[bytes] = []
    total = 0
    while True:
        chunk = await resp.content.read(65536)
        if not chunk:
            break
        total += len(chunk)
        if total > cap:
            raise RegistryError(f"{what}: response too large (> limit {cap} bytes)")
        chunks.append(chunk)
    return b"".join(chunks)


def make_session(ssl_context: ssl.SSLContext | None) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(ssl=ssl_context if ssl_context is not None else True, limit=32)
    # Per-call deadlines are applied by the callers (asyncio.timeout); no session-wide timeout.
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=None),
        trust_env=False,
        raise_for_status=False,
    )
