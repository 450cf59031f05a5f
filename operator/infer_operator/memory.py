"""Giving freed memory back to the operating system.

glibc keeps the memory Python frees for reuse instead of returning it: a process keeps its peak.
The operator's peak is its catch-up after a restart (every watched object is listed and processed
at once, every service's loop runs its first pass), and it would hold that peak for good. So every
`TRIM_SECONDS` the operator asks glibc to return its free pages (`malloc_trim(0)`; a few
milliseconds). Elsewhere than glibc this is a no-op.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

TRIM_SECONDS = 30.0


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):
        return None


_TRIM = _malloc_trim()


def trim() -> bool:
    """Return free heap pages to the OS; whether anything was returned (False where unsupported)."""
    return bool(_TRIM(0)) if _TRIM is not None else False


async def trim_periodically(interval: float = TRIM_SECONDS) -> None:
    """Trim every `interval` seconds until cancelled."""
    if _TRIM is None:
        log.debug("malloc_trim is not available here; freed memory stays with the process.")
        return
    while True:
        await asyncio.sleep(interval)
        trim()
