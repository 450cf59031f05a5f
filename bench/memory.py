"""Operator memory over time under churn: RSS every `interval` s for `duration` s while random pods
of `services` x `pods` (registry etcd) are deleted at `churn_rate`/s. Every deletion makes the operator
patch (role label + finalizer on the replacement pod, finalizer removal, status): the patch-heavy load
on which kopf has leaked before. Growth per hour = least-squares slope of RSS over time, over all
samples and over the second half only (after warm-up: caches, pools and the index are full by then).
Then the operator is restarted: its RSS while it catches up, and once settled, against the idle figure.
"""

from __future__ import annotations

import asyncio
import time

from bench.common import Result, log
from bench.scale import running_fleet


def slope_per_hour(samples: list[tuple[float, int]]) -> float | None:
    if len(samples) < 3:
        return None
    xs = [s[0] for s in samples]
    ys = [s[1] / 2**20 for s in samples]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return round(3600 * sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den, 1) if den else None


async def main(args) -> Result:
    params = {
        "services": args.services,
        "pods_per_service": args.pods,
        "duration_s": args.duration,
        "interval_s": args.interval,
        "churn_rate_per_s": args.churn_rate,
        "registry": "etcd",
    }
    result = Result("memory", params)
    f = result.figures
    async with running_fleet(result, args.services, args.pods, "memory") as fleet:
        await fleet.apply_all()
        await fleet.wait_converged(timeout=900)
        op = fleet.operator
        f["rss_mb_before_churn"] = round(op.rss() / 2**20, 1)
        c0, cpu0 = op.counters(), op.cpu_seconds()
        samples: list[tuple[float, int]] = []
        t0 = time.monotonic()
        deleted = await fleet.churn(args.churn_rate, args.duration, samples, sample_every=args.interval)
        log(f"churn done: {deleted} pods deleted in {time.monotonic() - t0:.0f}s")
        c1 = op.counters()
        half = [s for s in samples if s[0] >= args.duration / 2]
        f.update(
            {
                "pods_deleted": deleted,
                "rss_mb_samples": [[t, round(r / 2**20, 1)] for t, r in samples],
                "rss_mb_first": round(samples[0][1] / 2**20, 1),
                "rss_mb_last": round(samples[-1][1] / 2**20, 1),
                "rss_mb_max": round(max(s[1] for s in samples) / 2**20, 1),
                "growth_mb_per_hour_all": slope_per_hour(samples),
                "growth_mb_per_hour_second_half": slope_per_hour(half),
                "cpu_seconds": round(op.cpu_seconds() - cpu0, 1),
                "kube_requests": round(c1["kube_requests"] - c0["kube_requests"]),
                "etcd_requests": round(c1["etcd_requests"] - c0["etcd_requests"]),
                "reconcile_passes": round(c1["reconcile_passes"] - c0["reconcile_passes"]),
            }
        )
        # Restart: the memory a restarted operator settles at, after it has caught up with everything.
        await fleet.wait_converged(timeout=900)
        await asyncio.sleep(args.interval)
        f["rss_mb_idle_before_restart"] = round(op.rss() / 2**20, 1)
        op.stop()
        t0 = time.monotonic()
        fleet.start_operator()
        op = fleet.operator
        rss: list[int] = []
        took = await fleet.wait_converged(timeout=900, rss=rss)
        f["restart_converge_seconds"] = round(time.monotonic() - t0, 1) if took is not None else None
        f["rss_mb_restart_max"] = round(max(rss) / 2**20, 1)
        await asyncio.sleep(args.interval)
        f["rss_mb_after_restart"] = round(op.rss() / 2**20, 1)
        f["rss_after_restart_over_idle"] = round(f["rss_mb_after_restart"] / f["rss_mb_idle_before_restart"], 2)
    result.write(
        [
            (
                "run",
                f"{args.duration:.0f} s churn at {args.churn_rate}/s over {args.services}x{args.pods} pods "
                f"({f.get('pods_deleted')} deleted)",
            ),
            ("RSS first / last / max", f"{f.get('rss_mb_first')} / {f.get('rss_mb_last')} / {f.get('rss_mb_max')} MB"),
            (
                "growth per hour (all / 2nd half)",
                f"{f.get('growth_mb_per_hour_all')} / {f.get('growth_mb_per_hour_second_half')} MB/h",
            ),
            (
                "RSS idle / restart max / after restart",
                f"{f.get('rss_mb_idle_before_restart')} / "
                f"{f.get('rss_mb_restart_max')} / {f.get('rss_mb_after_restart')} MB "
                f"({f.get('rss_after_restart_over_idle')} x idle)",
            ),
        ]
    )
    return result
