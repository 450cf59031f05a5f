"""kopf's start-up indexing: time until every listed object's worker may run its handlers, for N
objects, with kopf's own ToggleSet (the baseline, measured first in the same run) and after
`infer_operator.handlers.indexing.install()`.

What runs: kopf's real `aiotoggles.ToggleSet` in the pattern of its reactor at start-up
(`kopf._core.reactor.queueing.watcher` and `processing.process_resource_event`): a blocker toggle
and one for the listing; per listed object a toggle and a worker that indexes its object (one
turn of the loop here), drops its toggle and waits until the whole set is off; the watcher yields
to the loop between objects (as it does reading the listing), and drops the listing's toggle at
its end. No API server: this isolates the wake-ups from everything else a restart does (the scale
benchmark's restart phase measures the whole).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from bench.common import Result, log


async def start_up(n: int) -> dict[str, Any]:
    from kopf._cogs.aiokits import aiotoggles

    indexed = aiotoggles.ToggleSet(all)
    blocker = await indexed.make_toggle(name="orchestration blocker")
    listing = await indexed.make_toggle(name="pods listing")
    released = 0

    async def worker(own: Any) -> None:
        nonlocal released
        await asyncio.sleep(0)  # the index handler
        await indexed.drop_toggle(own)
        await indexed.wait_for(True)
        released += 1

    wall, cpu = time.perf_counter(), time.process_time()
    workers = []
    await indexed.drop_toggle(blocker)
    for i in range(n):
        own = await indexed.make_toggle(name=f"pod {i}")
        workers.append(asyncio.create_task(worker(own)))
        await asyncio.sleep(0)  # the watcher reads the next object off the listing
    await indexed.drop_toggle(listing)
    await asyncio.gather(*workers)
    assert released == n
    return {
        "objects": n,
        "seconds": round(time.perf_counter() - wall, 3),
        "cpu_seconds": round(time.process_time() - cpu, 3),
    }


async def main(args: argparse.Namespace, name: str = "indexing") -> None:
    from infer_operator.handlers import indexing

    sizes = sorted(set(args.objects))
    result = Result(name, {"objects": sizes})
    rows: list[tuple[str, Any]] = []
    # kopf's own ToggleSet first: install() patches the class for the rest of the process.
    for label, patch in (("kopf", False), ("operator", True)):
        if patch and not indexing.install():
            raise SystemExit("this kopf version could not be patched")
        runs = []
        for n in sizes:
            log(f"{label}: start-up indexing of {n} objects")
            runs.append(await start_up(n))
        result.figures[label] = runs
        rows += [(f"{label} {r['objects']} objects", f"{r['seconds']} s ({r['cpu_seconds']} CPU-s)") for r in runs]
    largest = sizes[-1]
    before = result.figures["kopf"][-1]["seconds"]
    after = result.figures["operator"][-1]["seconds"]
    result.figures["speedup_at_largest"] = round(before / after, 1) if after else None
    rows.append((f"speed-up at {largest}", result.figures["speedup_at_largest"]))
    result.write(rows)
