"""Sync pod deletions on real pods: when, after the DELETE request, the pod's instance left etcd,
its app was told to go offline, the preStop drain ended and the app received SIGTERM.

The sample app on the local control plane's real node (containerd + kubelet), one InferenceService
with every pod sync (registry etcd, offlinePath, drainSeconds 2), the operator as a subprocess on
the host. Each deletion is timed by devtools.harness.realpods.delete_and_time: the etcd watch's
DELETE event, the app's own log lines (offline, SIGTERM: the times it logged) and prestop.sh's
last line (the runtime's timestamp), then the next one waits until the successor is registered.
Figures are seconds after the DELETE request was sent (wall clock; the containers share it).

    python -m bench realpods [--deletions 20] [--replicas 3]
"""

from __future__ import annotations

import secrets
from typing import Any

import psutil

from bench.common import CLUSTER_DIR, Result, log, pct, workdir
from devtools.cluster import realnode, toolchain
from devtools.cluster.etcd import EtcdServer
from devtools.harness import OperatorProcess, connect, etcd_registry, isvc_body, wait_for
from devtools.harness.realpods import KeyWatch, delete_and_time
from infer_operator import labels

NAMESPACE = "bench-realpods"
SERVICE = "rp"
DRAIN_SECONDS = 2
GRACE_SECONDS = 10
FIELDS = ("deregistered", "offline_called", "drain_ended", "sigterm", "gone")


def figures(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out = {}
    for name in FIELDS:
        values = [r[name] for r in rows if r.get(name) is not None]
        out[name] = {
            "n": len(values),
            "p50_s": round(pct(values, 0.5), 3) if values else None,
            "max_s": round(max(values), 3) if values else None,
            "min_s": round(min(values), 3) if values else None,
        }
    out["order_held"] = sum(
        1
        for r in rows
        if None not in (r["deregistered"], r["drain_ended"], r["sigterm"])
        and r["deregistered"] < r["drain_ended"]
        and r["deregistered"] < r["sigterm"]
        and r["drain_ended"] <= r["sigterm"] + 0.05
    )
    return out


def main(args, name: str = "realpods") -> Result:
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    result = Result(
        name,
        {
            "deletions": args.deletions,
            "replicas": args.replicas,
            "drain_seconds": DRAIN_SECONDS,
            "termination_grace_seconds": GRACE_SECONDS,
            "offline_path": "/offline",
            "image": "the sample app, built here (devtools/images)",
            "registry": "etcd on the host",
        },
    )
    handle = connect(CLUSTER_DIR, progress=log, external_ok=False)
    node = realnode.up(handle.state_dir, progress=log)
    result.data["versions"]["kubernetes_node"] = "kubelet " + toolchain.component("kubelet").version
    api = handle.api_client()
    core = client.CoreV1Api(api)
    custom = client.CustomObjectsApi(api)
    etcd = EtcdServer(name="bench-realpods").start()
    prefix = f"/bench-{secrets.token_hex(2)}"
    operator = OperatorProcess(
        handle.kubeconfig, workdir() / "operator-realpods.log", "--sweep-seconds", "600", namespaces=[NAMESPACE]
    )
    watch = KeyWatch(etcd.client_url, f"{prefix}/{SERVICE}/instances/")
    rows: list[dict[str, Any]] = []
    try:
        handle.kubectl("apply", "--server-side", "--force-conflicts", "-f", "crds/")
        handle.kubectl("delete", "namespace", NAMESPACE, "--ignore-not-found", "--timeout=120s")
        core.create_namespace({"metadata": {"name": NAMESPACE}})
        operator.start()
        watch.start()
        container = {
            "name": "app",
            "image": node.images["sample-app"],
            "imagePullPolicy": "Never",
            "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}},
        }
        body = isvc_body(
            SERVICE,
            NAMESPACE,
            replicas=args.replicas,
            syncReplicas=args.replicas,
            template={
                "spec": {
                    "containers": [container],
                    "tolerations": [node.toleration()],
                    "nodeSelector": node.node_selector(),
                }
            },
            sync={
                "command": ["python", "/app/app.py"],
                "port": 8000,
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8000}, "periodSeconds": 1},
            },
            lifecycle={
                "offlinePath": "/offline",
                "drainSeconds": DRAIN_SECONDS,
                "terminationGracePeriodSeconds": GRACE_SECONDS,
            },
            registry=etcd_registry(etcd.client_url, prefix),
            **{"async": {"command": ["python", "/app/app.py"]}},
        )
        custom.create_namespaced_custom_object(labels.GROUP, labels.VERSION, NAMESPACE, labels.PLURAL, body)

        def registered() -> dict[str, str] | None:
            pods = core.list_namespaced_pod(NAMESPACE, label_selector=f"{labels.LABEL_SERVICE}={SERVICE}").items
            live = {
                p.metadata.name: p.status.pod_ip
                for p in pods
                if p.metadata.deletion_timestamp is None and p.status.pod_ip
            }
            keys = set(etcd.range_prefix(f"{prefix}/{SERVICE}/instances/"))
            want = {f"{prefix}/{SERVICE}/instances/{ip}:8000" for ip in live.values()}
            return live if len(live) == args.replicas and keys == want else None

        for i in range(args.deletions):
            live = wait_for(
                registered,
                180,
                interval=0.25,
                message="not every sync pod is registered",
                ignore=(ApiException, OSError),
            )
            pod = f"{SERVICE}-{i % args.replicas}"
            key = f"{prefix}/{SERVICE}/instances/{live[pod]}:8000"
            timeline = delete_and_time(core, NAMESPACE, pod, node.pod_logs, watch, key)
            rows.append(timeline.as_dict())
            log(f"deletion {i + 1}/{args.deletions}: {timeline.as_dict()}")
        wait_for(
            registered, 180, interval=0.25, message="not every sync pod is registered", ignore=(ApiException, OSError)
        )
        result.figures.update(figures(rows))
        result.data["deletions"] = rows
        result.data["node_rss_bytes"] = realnode.rss_bytes(handle.state_dir)
        result.data["operator_rss_bytes"] = psutil.Process(operator.pid).memory_info().rss
    finally:
        watch.stop()
        operator.stop()
        handle.kubectl("delete", "namespace", NAMESPACE, "--wait=false")
        etcd.stop()
        handle.release()
    f = result.figures
    result.write(
        [(f"{k} p50 / max (s)", f"{f[k]['p50_s']} / {f[k]['max_s']}") for k in FIELDS]
        + [("order held (deregistered < drain end <= SIGTERM)", f"{f['order_held']}/{len(rows)}")]
    )
    return result
