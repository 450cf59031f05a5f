"""Operator memory over time, two cases.

Pod churn (default): RSS every `interval` s for `duration` s while random pods of `services` x
`pods` (registry etcd) are deleted at `churn_rate`/s. Every deletion makes the operator patch (role
label + finalizer on the replacement pod, finalizer removal, status): the patch-heavy load on which
kopf has leaked before. Growth per hour = least-squares slope of RSS over time, over all samples and
over the second half only (after warm-up: caches, pools and the index are full by then). Then the
operator is restarted: its RSS while it catches up, and once settled, against the idle figure.

Service churn (`--service-churn`): what a CI system does all day, services created and deleted.
`rounds` times, `per_round` InferenceServices of one sync pod each (registry etcd) are created,
registered, deleted and gone; after each round the operator's RSS, open file descriptors, TCP
connections to the registry, and its `service_records` / `registry_clients` gauges (where the
operator has them) are read. With `--baseline REV` the same rounds run first against the operator
of git revision REV, on the same control plane (a same-run baseline). Growth = least-squares slope
per 100 services over the rounds.
"""

from __future__ import annotations

import asyncio
import time

import psutil

from bench.common import Result, apply_isvc, checkout, isvc, log
from bench.scale import NS, running_fleet
from infer_operator import labels


def slope_per_hour(samples: list[tuple[float, int]]) -> float | None:
    if len(samples) < 3:
        return None
    xs = [s[0] for s in samples]
    ys = [s[1] / 2**20 for s in samples]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return round(3600 * sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den, 1) if den else None


async def main(args) -> Result:
    if getattr(args, "service_churn", False):
        return await service_churn(args)
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


def _gauge(metrics: dict[str, float], name: str) -> float | None:
    return metrics.get(name)


def _operator_facts(operator, etcd_port: int) -> dict[str, float | None]:
    ps = operator.ps()
    metrics = operator.metrics()
    sockets = sum(
        1
        for c in ps.net_connections(kind="tcp")
        if c.raddr and c.raddr.port == etcd_port and c.status != psutil.CONN_CLOSE
    )
    return {
        "rss_mb": round(ps.memory_info().rss / 2**20, 1),
        "open_fds": ps.num_fds(),
        "registry_sockets": sockets,
        "service_records": _gauge(metrics, "infer_operator_service_records"),
        "registry_clients": _gauge(metrics, "infer_operator_registry_clients"),
    }


def slope_per_hundred(points: list[tuple[int, float]]) -> float | None:
    """Least-squares slope of a figure against services created, per 100 services."""
    if len(points) < 3:
        return None
    xs, ys = [x for x, _ in points], [y for _, y in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return round(100 * sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den, 2) if den else None


async def _churn_rounds(result: Result, tag: str, rounds: int, per_round: int, source=None) -> dict:
    """One operator (this checkout's, or `source`'s) through the service-churn rounds."""
    async with running_fleet(result, 0, 1, f"service-churn-{tag}", source=source) as fleet:
        operator = fleet.operator
        etcd_port = int(fleet.etcd_url.rsplit(":", 1)[1])
        samples = [{"round": 0, "services_created": 0, **_operator_facts(operator, etcd_port)}]
        t0 = time.monotonic()
        for round_ in range(1, rounds + 1):
            names = [f"churn-{round_:03d}-{i:03d}" for i in range(per_round)]
            await asyncio.gather(*(apply_isvc(fleet.kube, isvc(n, NS, 1, 1, fleet.etcd_url)) for n in names))
            wanted = {f"/services/{n}/instances/" for n in names}

            def all_registered(wanted: set[str] = wanted) -> bool:
                return all(any(k.startswith(w) for k in fleet.etcdw.present) for w in wanted)

            registered = await fleet.etcdw.wait(all_registered, 180)
            if not registered:
                raise RuntimeError(f"{tag}: round {round_}: not every service registered its pod within 180 s")
            await asyncio.gather(
                *(
                    fleet.kube.req("DELETE", f"/apis/{labels.API_VERSION}/namespaces/{NS}/{labels.PLURAL}/{n}")
                    for n in names
                )
            )
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                left = await fleet.kube.req("GET", f"/apis/{labels.API_VERSION}/namespaces/{NS}/{labels.PLURAL}")
                if not left["items"] and not fleet.tracker.pods:
                    break
                await asyncio.sleep(0.5)
            else:
                raise RuntimeError(f"{tag}: round {round_}: services or pods left after 180 s")
            # Idle sockets close on aiohttp's keep-alive (15 s) even where a client stays open:
            # the gauges and the RSS tell a leak; the sockets are read as they are now.
            samples.append(
                {"round": round_, "services_created": round_ * per_round, **_operator_facts(operator, etcd_port)}
            )
            log(f"{tag}: round {round_}/{rounds}: {samples[-1]}")
        took = time.monotonic() - t0

    def series(key: str) -> list[tuple[int, float]]:
        return [(s["services_created"], s[key]) for s in samples if s[key] is not None]

    return {
        "samples": samples,
        "seconds": round(took, 1),
        "rss_mb_per_100_services": slope_per_hundred(series("rss_mb")),
        "fds_per_100_services": slope_per_hundred(series("open_fds")),
        "records_after": samples[-1]["service_records"],
        "registry_clients_after": samples[-1]["registry_clients"],
        "rss_mb_first_last": [samples[0]["rss_mb"], samples[-1]["rss_mb"]],
    }


async def service_churn(args) -> Result:
    params = {
        "rounds": args.rounds,
        "services_per_round": args.per_round,
        "registry": "etcd",
        "baseline": args.baseline,
    }
    result = Result("memory-service-churn", params)
    f = result.figures
    if args.baseline:
        f["baseline"] = await _churn_rounds(result, "baseline", args.rounds, args.per_round, checkout(args.baseline))
    f["current"] = await _churn_rounds(result, "current", args.rounds, args.per_round)
    rows = []
    for tag in ("baseline", "current"):
        if tag in f:
            figures = f[tag]
            rows += [
                (
                    f"{tag}: RSS first / last",
                    f"{figures['rss_mb_first_last'][0]} / {figures['rss_mb_first_last'][1]} MB "
                    f"({figures['rss_mb_per_100_services']} MB per 100 services)",
                ),
                (f"{tag}: open fds per 100 services", figures["fds_per_100_services"]),
                (
                    f"{tag}: records / registry clients after",
                    f"{figures['records_after']} / {figures['registry_clients_after']}",
                ),
            ]
    result.write(rows)
    return result
