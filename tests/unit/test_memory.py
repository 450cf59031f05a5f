"""memory.py: freed memory is handed back periodically, and the task stops when cancelled."""

from __future__ import annotations

import asyncio

import pytest

from infer_operator import memory


def test_trim_returns_freed_heap_pages_here():
    if memory._TRIM is None:
        pytest.skip("this libc has no malloc_trim (not glibc): the operator skips trimming there too")
    blocks = [bytearray(64 * 1024) for _ in range(512)]  # 32 MB below the mmap threshold: heap memory
    del blocks
    assert memory.trim() is True  # glibc says it released memory


async def test_periodic_trim_stops_on_cancel(monkeypatch):
    calls: list[int] = []
    monkeypatch.setattr(memory, "_TRIM", lambda pad: calls.append(pad) or 1)
    task = asyncio.create_task(memory.trim_periodically(0.001))
    async with asyncio.timeout(5):
        while len(calls) < 3:
            await asyncio.sleep(0.001)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert set(calls) == {0}
