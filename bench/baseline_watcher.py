"""The baseline for the deregistration benchmark: the least a controller can do.

One plain pods watch (label selector, aiohttp, no kopf), and one etcd delete of
``{prefix}/{service}/instances/{ip}:{port}`` per pod the moment it gets a deletionTimestamp (or is
DELETED). With --trace, the same stages as the operator's trace (bench/instrumented.py): when the
event arrived, when the delete was sent and when it returned. No read-back confirmation, no
per-IP config removal, no finalizer, no retries.

    python bench/baseline_watcher.py --kubeconfig K --namespace NS --selector bench=baseline \
        --etcd http://127.0.0.1:2379 --prefix /baseline --service base --port 8000
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import ssl
import time

import aiohttp
from kubernetes import config as kube_config
from kubernetes.client import Configuration


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


async def run(args: argparse.Namespace) -> None:
    cfg = Configuration()
    kube_config.load_kube_config(config_file=args.kubeconfig, client_configuration=cfg)
    context = ssl.create_default_context(cafile=cfg.ssl_ca_cert) if cfg.verify_ssl else False
    if context and cfg.cert_file:
        context.load_cert_chain(cfg.cert_file, cfg.key_file)
    token = cfg.get_api_key_with_prefix("authorization") or cfg.get_api_key_with_prefix("BearerToken")
    headers = {"Authorization": token} if token else {}
    done: set[str] = set()
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as kube,
        aiohttp.ClientSession() as etcd,
    ):
        trace = open(args.trace, "a", buffering=1) if args.trace else None

        def mark(stage: str, uid: str) -> None:
            if trace:
                trace.write(json.dumps({"stage": stage, "uid": uid, "t": time.monotonic()}) + "\n")

        async def deregister(ip: str, uid: str) -> None:
            key = f"{args.prefix}/{args.service}/instances/{ip}:{args.port}"
            mark("sent", uid)
            async with etcd.post(args.etcd + "/v3/kv/deleterange", json={"key": b64(key)}) as resp:
                await resp.read()
            mark("deleted", uid)

        rv = None
        while True:
            params = {"labelSelector": args.selector, "watch": "true", "timeoutSeconds": "3600"}
            if rv:
                params["resourceVersion"] = rv
            url = f"{cfg.host}/api/v1/namespaces/{args.namespace}/pods"
            try:
                async with kube.get(
                    url, params=params, headers=headers, timeout=aiohttp.ClientTimeout(total=None, sock_read=None)
                ) as resp:
                    async for line in resp.content:
                        if not line.strip():
                            continue
                        event = json.loads(line)
                        if event.get("type") == "ERROR":
                            rv = None
                            break
                        pod = event["object"]
                        meta = pod["metadata"]
                        rv = meta.get("resourceVersion") or rv
                        ip = (pod.get("status") or {}).get("podIP")
                        if (
                            ip
                            and (meta.get("deletionTimestamp") or event["type"] == "DELETED")
                            and meta["uid"] not in done
                        ):
                            done.add(meta["uid"])
                            mark("arrived", meta["uid"])
                            asyncio.create_task(deregister(ip, meta["uid"]))
            except (TimeoutError, aiohttp.ClientError):
                await asyncio.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--selector", required=True)
    parser.add_argument("--etcd", required=True)
    parser.add_argument("--prefix", default="/baseline")
    parser.add_argument("--service", default="base")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--trace", help="append each deletion's stages (JSON lines, monotonic clock) here")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
