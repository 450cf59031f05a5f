"""Lossless online/offline beside the seeds' way: the same sample-app pods and load on the real node,
through every lifecycle event, three ways (devtools/lossless): the operator, the seeds' shell script
(a plain StatefulSet whose entrypoint picks the role, self-registers and forwards SIGTERM), and a
plain StatefulSet and Service (no preStop, no deregistration). Per event and way: failed requests,
requests cut mid-flight, jobs lost or done twice, and the fewest registered Ready sync pods.

    python -m bench lossless [--worlds operator,seed_script,plain] [--rps 10] [--jobs 4]

Writes bench/results/lossless.json: {"events": {EVENT: {"operator": {...}, "seed_script": {...},
"plain": {...}}}, "load": ..., "sizes": ...}.
"""

from __future__ import annotations

import secrets
from typing import Any

from bench.common import CLUSTER_DIR, Result, log, workdir
from devtools import lossless
from devtools.cluster import realnode
from devtools.cluster.etcd import EtcdServer
from devtools.harness import OperatorProcess, connect
from devtools.harness.redis_server import RedisServer

NAMESPACE = "bench-lossless"


def main(args, name: str = "lossless") -> Result:
    from kubernetes import client

    worlds = [w.strip() for w in args.worlds.split(",") if w.strip()]
    load = lossless.Load(registry_rps=args.rps, service_rps=args.rps, jobs_per_second=args.jobs)
    result = Result(
        name,
        {
            "worlds": worlds,
            "load": load.as_dict(),
            "sizes": {
                "replicas": lossless.REPLICAS,
                "sync_replicas": lossless.SYNC,
                "work_seconds": lossless.WORK_SECONDS,
                "drain_seconds": lossless.DRAIN_SECONDS,
                "termination_grace_seconds": lossless.GRACE_SECONDS,
                "baseline_lease_seconds": lossless.LEASE_SECONDS,
            },
            "events": {e.name: e.what for e in lossless.EVENTS},
        },
    )
    handle = connect(CLUSTER_DIR, progress=log, external_ok=False)
    node = realnode.up(handle.state_dir, progress=log)
    etcd = EtcdServer(host=realnode.POD_GATEWAY, name="bench-lossless").start()
    redis = RedisServer(host=realnode.POD_GATEWAY)
    operator = OperatorProcess(
        handle.kubeconfig, workdir() / "operator-lossless.log", "--sweep-seconds", "30", namespaces=[NAMESPACE]
    )
    api = handle.api_client()
    core = client.CoreV1Api(api)
    events: dict[str, dict[str, Any]] = {}
    try:
        handle.kubectl("apply", "--server-side", "--force-conflicts", "-f", "crds/")
        handle.kubectl("delete", "namespace", NAMESPACE, "--ignore-not-found", "--timeout=180s")
        core.create_namespace({"metadata": {"name": NAMESPACE}})
        operator.start()
        env = lossless.Env(
            core=core,
            apps=client.AppsV1Api(api),
            custom=client.CustomObjectsApi(api),
            kubectl=handle.kubectl,
            node=node,
            node_name=realnode.NODE_NAME,
            namespace=NAMESPACE,
            etcd_url=etcd.client_url,
            redis_url=f"redis://{realnode.POD_GATEWAY}:{redis.port}/0",
            prefix=f"/lossless-{secrets.token_hex(2)}",
            operator=operator,
        )
        for kind in worlds:
            world = lossless.WORLDS[kind](env, f"ll-{kind.replace('_', '-')}")
            log(f"{kind}: creating {world.name}")
            world.create()
            try:
                world.wait_settled(load.event_timeout)
                for event, outcome in lossless.run_events(world, load, progress=log).items():
                    events.setdefault(event, {})[kind] = outcome.as_dict()
            finally:
                world.delete()
        for event in lossless.EVENTS:
            for kind in worlds:
                if event.operator_only and kind != "operator":
                    events.setdefault(event.name, {})[kind] = {"n/a": "no operator to kill"}
        result.data["events"] = events
        result.figures.update(
            {
                event: {
                    kind: {
                        k: v.get(k)
                        for k in (
                            "failed",
                            "cut",
                            "jobs_lost",
                            "jobs_duplicated",
                            "lowest_registered_ready_sync",
                            "desired_sync",
                        )
                    }
                    for kind, v in row.items()
                }
                for event, row in events.items()
            }
        )
    finally:
        operator.stop()
        handle.kubectl("delete", "namespace", NAMESPACE, "--wait=false")
        redis.stop()
        etcd.stop()
        handle.release()
    rows = []
    for event, row in events.items():
        cells = []
        for kind in worlds:
            v = row.get(kind, {})
            cells.append(
                f"{kind}: "
                + (
                    "n/a"
                    if "n/a" in v
                    else f"{v['failed']} failed, {v['cut']} cut, {v['jobs_lost']} lost, "
                    f"{v['jobs_duplicated']} dup, cap {v['lowest_registered_ready_sync']}/"
                    f"{v['desired_sync']}"
                )
            )
        rows.append((event, " | ".join(cells)))
    result.write(rows)
    return result
