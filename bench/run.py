"""`python -m bench <name> [options]` or `python bench/run.py <name>`: run one benchmark, write
bench/results/<name>.json and print a short table.

    deregistration   pod DELETE -> instance key gone in etcd, ours vs a minimal baseline watcher
    apply            InferenceService apply -> StatefulSet created / all pods role-labelled
    scale            N services x 8 pods: converge (cold, after restart), RSS, CPU, API requests, churn
    indexing         kopf's start-up indexing of N objects: kopf's own wake-ups vs the operator's patch
    sweep            10,000 stale + 4,000 live per-IP configs: time to remove the stale ones
    memory           operator RSS every 10 s under churn; growth per hour (--service-churn: services
                     created and deleted in rounds: records, clients, fds, RSS)
    realpods         sync pod deletions on the real node: deregistered / drain ended / SIGTERM times
    lossless         requests, streams and jobs lost per lifecycle event on two real nodes: the
                     operator vs a careful hand-written StatefulSet vs the seeds' script vs a plain one
    warmup           a new pod's share of real consumers' calls over registry.warmupSeconds (no
                     cluster: the registrar, etcd, CoreDNS, gRPC servers and clients on loopback)
    quick            the quick subset (`make bench`): reduced sizes of sweep, deregistration and apply

The local control plane ($INFER_OPERATOR_CLUSTER_DIR, default /tmp/bench-cluster) is started if
needed and stopped at the end unless --keep-cluster.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--keep-cluster", action="store_true", help="leave the control plane running")
    sub = p.add_subparsers(dest="name", required=True)

    d = sub.add_parser("deregistration")
    d.add_argument("--replicas", type=int, default=60)
    d.add_argument("--singles", type=int, default=200)
    d.add_argument("--bursts", type=int, default=4)
    d.add_argument("--burst", type=int, default=50)

    a = sub.add_parser("apply")
    a.add_argument("--services", type=int, default=100)
    a.add_argument("--replicas", type=int, default=2)
    a.add_argument("--concurrency", type=int, default=1, help="CRs applied at once (1: one after another)")

    s = sub.add_parser("scale")
    s.add_argument("--services", type=int, default=500)
    s.add_argument("--pods", type=int, default=8)
    s.add_argument("--churn-rate", type=float, default=20.0, help="pod deletions per second")
    s.add_argument("--churn-seconds", type=float, default=60.0)
    s.add_argument("--profile", action="store_true", help="py-spy the operator during the churn")
    s.add_argument("--scaled-down-reason", default=None)
    s.add_argument("--idle-seconds", type=float, default=60.0, help="length of the idle window")
    s.add_argument(
        "--baseline",
        default=None,
        metavar="REV",
        help="first run the same scenario with the operator of git revision REV (same control plane)",
    )
    s.add_argument("--result-name", default=None, help="write bench/results/<name>.json (default: scale)")

    w = sub.add_parser("sweep")
    w.add_argument("--stale", type=int, default=10_000)
    w.add_argument("--live", type=int, default=4_000)

    ix = sub.add_parser("indexing")
    ix.add_argument("--objects", type=int, nargs="+", default=[500, 1000, 2000, 4500])

    m = sub.add_parser("memory")
    m.add_argument("--services", type=int, default=50)
    m.add_argument("--pods", type=int, default=8)
    m.add_argument("--duration", type=float, default=600.0)
    m.add_argument("--interval", type=float, default=10.0)
    m.add_argument("--churn-rate", type=float, default=5.0)
    m.add_argument(
        "--service-churn",
        action="store_true",
        help="the service-churn case: services created and deleted in rounds (writes memory-service-churn.json)",
    )
    m.add_argument("--rounds", type=int, default=10, help="service churn: rounds")
    m.add_argument("--per-round", type=int, default=20, help="service churn: services created and deleted per round")
    m.add_argument(
        "--baseline",
        default=None,
        metavar="REV",
        help="service churn: first run the same rounds with the operator of git revision REV (same control plane)",
    )

    r = sub.add_parser("realpods")
    r.add_argument("--deletions", type=int, default=20)
    r.add_argument("--replicas", type=int, default=3)

    lo = sub.add_parser("lossless")
    lo.add_argument(
        "--worlds",
        default="operator,careful,seed_script,plain",
        help="comma-separated: operator, careful, seed_script, plain",
    )
    lo.add_argument("--events", default="", help="comma-separated event names (default: every event)")
    lo.add_argument("--rps", type=float, default=50.0, help="requests per second from each consumer")
    lo.add_argument("--jobs", type=float, default=5.0, help="jobs pushed per second")
    lo.add_argument("--stream-rps", type=float, default=1.0, help="streams started per second by each consumer")
    lo.add_argument("--long-job-seconds", type=float, default=60.0, help="a long batch job's length")
    lo.add_argument(
        "--idle-path",
        default="/idle",
        help="the operator world's lifecycle.idlePath ('' leaves it unset: the drain is drainSeconds alone)",
    )

    wu = sub.add_parser("warmup")
    wu.add_argument("--warmup", type=int, default=40, help="registry.warmupSeconds")
    wu.add_argument("--seconds", type=float, default=50.0, help="length of the measured run")
    wu.add_argument("--baseline-seconds", type=float, default=15.0)
    wu.add_argument("--rate", type=float, default=50.0, help="calls per second of each consumer")
    wu.add_argument("--bucket", type=float, default=5.0, help="seconds per point of the share curve")

    sub.add_parser("quick")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from bench import common

    try:
        if args.name == "quick":
            from bench import apply_latency, deregistration, sweep

            asyncio.run(sweep.main(argparse.Namespace(stale=2000, live=800), name="sweep-quick"))
            asyncio.run(
                deregistration.main(
                    argparse.Namespace(replicas=20, singles=30, bursts=1, burst=20), name="deregistration-quick"
                )
            )
            asyncio.run(
                apply_latency.main(argparse.Namespace(services=10, replicas=2, concurrency=1), name="apply-quick")
            )
        elif args.name == "deregistration":
            from bench import deregistration

            asyncio.run(deregistration.main(args))
        elif args.name == "apply":
            from bench import apply_latency

            asyncio.run(apply_latency.main(args))
        elif args.name == "scale":
            from bench import scale

            asyncio.run(scale.main(args))
        elif args.name == "indexing":
            from bench import indexing

            asyncio.run(indexing.main(args))
        elif args.name == "sweep":
            from bench import sweep

            asyncio.run(sweep.main(args))
        elif args.name == "realpods":
            from bench import realpods

            realpods.main(args)
        elif args.name == "lossless":
            from bench import lossless

            lossless.main(args)
        elif args.name == "warmup":
            from bench import warmup

            asyncio.run(warmup.main(args))
        elif args.name == "memory":
            from bench import memory

            asyncio.run(memory.main(args))
    finally:
        if not args.keep_cluster and args.name not in ("sweep", "indexing", "warmup"):
            common.cluster_down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
