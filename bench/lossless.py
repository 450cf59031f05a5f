"""Lossless online/offline beside the ways the field does it: the same sample-app pods and load on
two real nodes, through every lifecycle event (each on its own), four ways (devtools/lossless):
the operator, a careful hand-written StatefulSet (preStop deregistration and sleep, a budget, a
per-role Service), the seeds' shell script (a plain StatefulSet whose entrypoint picks the role,
self-registers and forwards SIGTERM), and a plain StatefulSet and Service (no preStop, no
deregistration). Per event and way: failed requests, requests and streams cut, requests with no
instance to call, jobs lost or done twice, and the capacity before, during and after the change.

    python -m bench lossless [--worlds operator,careful,seed_script,plain] [--events drain,scale-up]
                             [--rps 50] [--jobs 5] [--stream-rps 1] [--long-job-seconds 60]
                             [--idle-path /idle]

Writes bench/results/lossless.json: {"events": {EVENT: {WORLD: {...}}}, "load": ..., "sizes": ...}.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from bench.common import CLUSTER_DIR, Result, log, workdir
from devtools import lossless
from devtools.cluster import realnode
from devtools.cluster.etcd import EtcdServer
from devtools.harness import OperatorProcess, connect
from devtools.harness.redis_server import RedisServer

NAMESPACE = "bench-lossless"
COUNTS = ("failed", "cut", "no_instance", "jobs_lost", "jobs_duplicated", "capacity_short")


def main(args, name: str = "lossless") -> Result:
    from kubernetes import client

    worlds = [w.strip() for w in args.worlds.split(",") if w.strip()]
    wanted = [e.strip() for e in args.events.split(",") if e.strip()]
    events = tuple(lossless.EVENTS_BY_NAME[e] for e in wanted) if wanted else lossless.EVENTS
    load = lossless.Load(
        registry_rps=args.rps,
        service_rps=args.rps,
        jobs_per_second=args.jobs,
        stream_rps=args.stream_rps,
        long_job_seconds=args.long_job_seconds,
    )
    result = Result(
        name,
        {
            "worlds": worlds,
            "load": load.as_dict(),
            "idle_path": args.idle_path,
            "sizes": {
                "replicas": lossless.REPLICAS,
                "sync_replicas": lossless.SYNC,
                "work_seconds": lossless.WORK_SECONDS,
                "drain_seconds": lossless.DRAIN_SECONDS,
                "termination_grace_seconds": lossless.GRACE_SECONDS,
                "streams_grace_seconds": lossless.STREAM_GRACE_SECONDS,
                "streams_app_shutdown_seconds": lossless.APP_SHUTDOWN_SECONDS,
                "long_jobs_grace_seconds": lossless.LONG_JOB_GRACE_SECONDS,
                "baseline_lease_seconds": lossless.LEASE_SECONDS,
            },
            "events": {e.name: e.what for e in events},
        },
    )
    handle = connect(CLUSTER_DIR, progress=log, external_ok=False)
    node = realnode.up(handle.state_dir, progress=log)
    realnode.up_spare(handle.state_dir, progress=log)
    etcd = EtcdServer(host=realnode.POD_GATEWAY, name="bench-lossless").start()
    redis = RedisServer(host=realnode.POD_GATEWAY)
    operator = OperatorProcess(
        handle.kubeconfig, workdir() / "operator-lossless.log", "--sweep-seconds", "30", namespaces=[NAMESPACE]
    )
    api = handle.api_client()
    core = client.CoreV1Api(api)
    results: dict[str, dict[str, Any]] = {}
    seconds: dict[str, float] = {}
    env = None
    try:
        handle.kubectl("apply", "--server-side", "--force-conflicts", "-f", "crds/")
        handle.kubectl("delete", "namespace", NAMESPACE, "--ignore-not-found", "--timeout=180s")
        core.create_namespace({"metadata": {"name": NAMESPACE}})
        operator.start()
        env = lossless.Env(
            core=core,
            apps=client.AppsV1Api(api),
            custom=client.CustomObjectsApi(api),
            policy=client.PolicyV1Api(api),
            rbac=client.RbacAuthorizationV1Api(api),
            kubectl=handle.kubectl,
            node=node,
            namespace=NAMESPACE,
            etcd_url=etcd.client_url,
            redis_url=f"redis://{realnode.POD_GATEWAY}:{redis.port}/0",
            prefix=f"/lossless-{secrets.token_hex(2)}",
            operator=operator,
        )
        lossless.prepare_nodes(env)
        for kind in worlds:
            world = lossless.WORLDS[kind](env, f"ll-{kind.replace('_', '-')}")
            if isinstance(world, lossless.OperatorWorld):
                world.idle_path = args.idle_path or None
            log(f"{kind}: creating {world.name}")
            started = time.monotonic()
            try:
                world.start(load.event_timeout)

                def done(event: str, outcome: lossless.Outcome, kind: str = kind) -> None:
                    results.setdefault(event, {})[kind] = outcome.as_dict()
                    result.data["events"] = results  # what was measured so far survives a crash
                    result.write_partial()

                lossless.run_events(world, load, events, progress=log, done=done)
            finally:
                world.delete()
                seconds[kind] = round(time.monotonic() - started, 1)
        for event in events:
            for kind in worlds:
                if event.operator_only and kind != "operator":
                    results.setdefault(event.name, {})[kind] = {"n/a": "no operator to kill"}
        result.data["events"] = results
        result.data["world_seconds"] = seconds
        result.figures.update(
            {
                event: {kind: {k: v.get(k) for k in (*COUNTS, "traffic")} for kind, v in row.items()}
                for event, row in results.items()
            }
        )
    finally:
        operator.stop()
        if env is not None:
            lossless.release_nodes(env)
        handle.kubectl("delete", "namespace", NAMESPACE, "--wait=false")
        redis.stop()
        etcd.stop()
        realnode.down_spare(handle.state_dir)
        handle.release()
    rows = []
    for event, row in results.items():
        cells = []
        for kind in worlds:
            v = row.get(kind, {})
            cells.append(f"{kind}: " + ("n/a" if "n/a" in v else cell(v)))
        rows.append((event, " | ".join(cells)))
    result.write(rows)
    return result


def cell(v: dict[str, Any]) -> str:
    """One world's counts for one event, as the README's table shows them."""
    lowest = {p: c["lowest"] for p, c in v["capacity"].items() if isinstance(c, dict)}
    bounds = {p: c["bound"] for p, c in v["capacity"].items() if isinstance(c, dict)}
    return (
        f"{v['registry_consumer']['failed']}/{v['service_consumer']['failed']} failed, {v['cut']} cut, "
        f"{v['no_instance']} no-instance, {v['jobs_lost']}+{v['jobs_duplicated']} jobs, "
        f"capacity {lowest.get('during')} of >= {bounds.get('during')}"
        + (f" SHORT {v['capacity_short']}" if v["capacity_short"] else "")
        + (f" ERROR {v['error'][:80]}" if v.get("error") else "")
    )


# -- the README's table ------------------------------------------------------------------------------

TABLE_WORLDS = ("operator", "careful", "seed_script", "plain")
TABLE_BEGIN = "<!-- lossless table: python -m bench.lossless table (from bench/results/lossless.json) -->"
TABLE_END = "<!-- end of the lossless table -->"


def table_cell(v: dict[str, Any]) -> str:
    """failed from the registry / Service consumer, cut, no instance, jobs lost + done twice, the
    fewest Ready registered pods during the change and its bound (`!` when below it, in any phase)."""
    if "n/a" in v:
        return "n/a"
    during = v["capacity"].get("during") or {}
    short = "!" if v["capacity_short"] else ""
    return (
        f"{v['registry_consumer']['failed']} / {v['service_consumer']['failed']} / {v['cut']} / "
        f"{v['no_instance']} / {v['jobs_lost']}+{v['jobs_duplicated']} / "
        f"{during.get('lowest')} of {during.get('bound')}{short}" + (" (error)" if v.get("error") else "")
    )


def table(data: dict[str, Any]) -> str:
    """The README's table of a lossless.json, between its markers."""
    worlds = [w for w in TABLE_WORLDS if w in data["parameters"]["worlds"]]
    lines = [
        TABLE_BEGIN,
        "| event | " + " | ".join(worlds) + " |",
        "|---|" + "---|" * len(worlds),
    ]
    for event, row in data["events"].items():
        lines.append(f"| `{event}` | " + " | ".join(table_cell(row[w]) for w in worlds if w in row) + " |")
    lines.append(TABLE_END)
    return "\n".join(lines)


if __name__ == "__main__":
    import json
    import sys

    from bench.common import RESULTS

    if sys.argv[1:] != ["table"]:
        sys.exit("usage: python -m bench.lossless table")
    print(table(json.loads((RESULTS / "lossless.json").read_text())))
