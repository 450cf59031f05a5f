"""Shared plumbing of the benchmarks: the control plane, the registry etcd, the operator process
(devtools.harness's, instrumented), watches (Kubernetes and etcd), machine facts and the result files.

Nothing here asserts a time: benchmarks measure and write JSON under bench/results/.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import importlib.metadata
import json
import os
import platform
import statistics
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import yaml

from devtools.cluster.etcd import EtcdServer, b64, prefix_end
from devtools.harness import OperatorProcess, connect, etcd_registry, isvc_body

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
CLUSTER_DIR = os.environ.get("INFER_OPERATOR_CLUSTER_DIR") or "/tmp/bench-cluster"

from infer_operator import __version__ as OPERATOR_VERSION  # noqa: E402
from infer_operator import labels  # noqa: E402
from infer_operator.clients.kube import KubeClient, KubeError  # noqa: E402

PORT = 8000
PREFIX = "/bench"


# --------------------------------------------------------------------------- facts and results


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_facts() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "mem_total_bytes": psutil.virtual_memory().total,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "note": "2 cores shared with other jobs (tests, other sessions) while this ran: see load averages",
    }


def versions(server_version: str | None = None) -> dict[str, Any]:
    def dist(name: str) -> str | None:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    out = {
        "operator": OPERATOR_VERSION,
        "kopf": dist("kopf"),
        "kubernetes": dist("kubernetes"),
        "aiohttp": dist("aiohttp"),
    }
    if server_version:
        out["kube_apiserver"] = server_version
    return out


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summary(values: list[float], unit_scale: float = 1000.0) -> dict[str, Any]:
    """p50/p90/p99/mean/max in milliseconds (values in seconds)."""
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50_ms": round(pct(values, 0.5) * unit_scale, 1),
        "p90_ms": round(pct(values, 0.9) * unit_scale, 1),
        "p99_ms": round(pct(values, 0.99) * unit_scale, 1),
        "mean_ms": round(statistics.fmean(values) * unit_scale, 1),
        "max_ms": round(max(values) * unit_scale, 1),
    }


class Result:
    def __init__(self, name: str, parameters: dict[str, Any]):
        self.name = name
        self.started = time.time()
        self.data: dict[str, Any] = {
            "benchmark": name,
            "started_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "machine": machine_facts(),
            "load_average_start": [round(x, 2) for x in os.getloadavg()],
            "versions": versions(),
            "parameters": parameters,
            "figures": {},
        }

    @property
    def figures(self) -> dict[str, Any]:
        return self.data["figures"]

    def write_partial(self) -> Path:
        """The results so far, to `<name>.partial.json` (a long run keeps what it measured)."""
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / f"{self.name}.partial.json"
        path.write_text(json.dumps(self.data, indent=2, sort_keys=False) + "\n")
        return path

    def write(self, rows: list[tuple[str, Any]]) -> Path:
        self.data["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
        self.data["duration_s"] = round(time.time() - self.started, 1)
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / f"{self.name}.json"
        path.write_text(json.dumps(self.data, indent=2, sort_keys=False) + "\n")
        (RESULTS / f"{self.name}.partial.json").unlink(missing_ok=True)
        print_table(
            f"{self.name} (load {self.data['load_average_start'][0]} -> "
            f"{self.data['load_average_end'][0]}, {self.data['duration_s']}s)",
            rows,
        )
        print(f"wrote {path.relative_to(ROOT)}")
        return path


def print_table(title: str, rows: list[tuple[str, Any]]) -> None:
    width = max([len(k) for k, _ in rows] + [10])
    print(f"\n== {title}")
    for key, value in rows:
        print(f"  {key.ljust(width)}  {value}")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------------- cluster


def cluster_up(nodes: int = 2) -> Path:
    """The bench's own local control plane (never $KUBECONFIG's cluster: the benchmarks add KWOK
    nodes and run pods no kubelet could start); its kubeconfig."""
    return connect(CLUSTER_DIR, nodes=nodes, progress=lambda m: None, external_ok=False).kubeconfig


def cluster_down() -> None:
    from devtools.cluster import launcher

    launcher.down(CLUSTER_DIR)


class Kube:
    """The bench's API client: the operator's KubeClient plus raw paths and streaming watches."""

    def __init__(self, kubeconfig: Path):
        self.kubeconfig = kubeconfig
        self.client = KubeClient.from_environment(str(kubeconfig))

    async def close(self) -> None:
        await self.client.close()

    async def req(self, method: str, path: str, **kw: Any) -> Any:
        return await self.client.request(method, path, **kw)

    async def server_version(self) -> str:
        return (await self.req("GET", "/version")).get("gitVersion", "?")

    async def ensure_namespace(self, name: str) -> None:
        try:
            await self.req(
                "POST", "/api/v1/namespaces", body={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
            )
        except KubeError as exc:
            if exc.status != 409:
                raise

    async def strip_finalizers(self, namespace: str) -> None:
        """Drop finalizers from the namespace's pods and InferenceServices (the operator may be gone)."""
        for path in (
            f"/api/v1/namespaces/{namespace}/pods",
            f"/apis/{labels.API_VERSION}/namespaces/{namespace}/{labels.PLURAL}",
        ):
            try:
                items = (await self.req("GET", path)).get("items") or []
            except KubeError:
                continue
            for item in items:
                if item["metadata"].get("finalizers"):
                    try:
                        await self.req(
                            "PATCH",
                            f"{path}/{item['metadata']['name']}",
                            body={"metadata": {"finalizers": None}},
                            content_type="application/merge-patch+json",
                        )
                    except KubeError:
                        pass

    async def delete_namespace(self, name: str, wait: float = 180.0) -> None:
        try:
            await self.req("DELETE", f"/api/v1/namespaces/{name}")
        except KubeError as exc:
            if exc.not_found:
                return
            raise
        await self.strip_finalizers(name)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                await self.req("GET", f"/api/v1/namespaces/{name}")
            except KubeError as exc:
                if exc.not_found:
                    return
            await asyncio.sleep(1)
            await self.strip_finalizers(name)
        if wait:
            log(f"namespace {name} still terminating after {wait:.0f}s")

    async def install_crd(self) -> None:
        crd = yaml.safe_load((ROOT / "crds" / f"{labels.GROUP}_{labels.PLURAL}.yaml").read_text())
        name = crd["metadata"]["name"]
        await self.req(
            "PATCH",
            f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}",
            body=crd,
            content_type="application/apply-patch+yaml",
            params={"fieldManager": "bench", "force": "true"},
        )
        for _ in range(120):
            try:
                await self.req("GET", f"/apis/{labels.API_VERSION}/{labels.PLURAL}")
                return
            except KubeError:
                await asyncio.sleep(0.5)
        raise RuntimeError("CRD not served")

    async def ensure_capacity(self, pods: int) -> None:
        """Add KWOK nodes (type=kwok) with a large pods capacity until `pods` more pods fit."""
        from devtools.cluster import launcher

        per_node = 1000
        needed = -(-pods // per_node)
        for i in range(needed):
            node = launcher.node_manifest(f"bench-node-{i}")
            for key in ("capacity", "allocatable"):
                node["status"][key]["pods"] = str(per_node)
                node["status"][key]["cpu"] = "1000"
                node["status"][key]["memory"] = "4Ti"
            try:
                await self.req("POST", "/api/v1/nodes", body=node)
            except KubeError as exc:
                if exc.status != 409:
                    raise

    async def watch(self, path: str, params: dict[str, str] | None = None) -> AsyncIterator[tuple[float, dict]]:
        """(receive time, event) forever, re-listing from scratch on 410; restarts on disconnect."""
        client = self.client
        rv = None
        while True:
            query = {**(params or {}), "watch": "true", "allowWatchBookmarks": "false", "timeoutSeconds": "3600"}
            if rv:
                query["resourceVersion"] = rv
            try:
                session = client._session_now()
                async with session.get(
                    path,
                    params=query,
                    headers=client._auth_headers(),
                    timeout=aiohttp.ClientTimeout(total=None, sock_read=None),
                ) as resp:
                    async for line in resp.content:
                        if not line.strip():
                            continue
                        now = time.monotonic()
                        event = json.loads(line)
                        if event.get("type") == "ERROR":
                            rv = None
                            break
                        rv = event["object"]["metadata"].get("resourceVersion") or rv
                        yield now, event
            except (TimeoutError, aiohttp.ClientError):
                await asyncio.sleep(0.2)


class PodTracker:
    """Pods of a namespace (label-selected) kept current by a watch; counts the events."""

    def __init__(self, kube: Kube, namespace: str, selector: str):
        self.kube = kube
        self.namespace = namespace
        self.selector = selector
        self.pods: dict[str, dict] = {}
        self.events = 0
        self.task: asyncio.Task | None = None
        self.listeners: list[Callable[[float, dict], None]] = []

    async def start(self) -> None:
        self.task = asyncio.create_task(self._run())
        await asyncio.sleep(0.3)

    async def _run(self) -> None:
        async for now, event in self.kube.watch(
            f"/api/v1/namespaces/{self.namespace}/pods", {"labelSelector": self.selector}
        ):
            self.events += 1
            obj = event["object"]
            name = obj["metadata"]["name"]
            if event["type"] == "DELETED":
                if self.pods.get(name, {}).get("metadata", {}).get("uid") == obj["metadata"]["uid"]:
                    self.pods.pop(name, None)
            else:
                self.pods[name] = obj
            for listener in self.listeners:
                listener(now, event)

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


def pod_ip(pod: dict) -> str | None:
    return (pod.get("status") or {}).get("podIP")


def pod_ready(pod: dict) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


def parse_ts(value: str) -> float:
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


# --------------------------------------------------------------------------- etcd


class EtcdWatch:
    """Keys under a prefix, kept current by etcd's watch (gateway POST /v3/watch, streamed)."""

    def __init__(self, url: str, prefix: str):
        self.url = url
        self.prefix = prefix
        self.present: set[str] = set()
        self.deleted_at: dict[str, list[float]] = {}
        self.put_at: dict[str, list[float]] = {}
        self.session: aiohttp.ClientSession | None = None
        self.task: asyncio.Task | None = None
        self.changed = asyncio.Event()

    async def start(self) -> None:
        self.session = aiohttp.ClientSession()
        async with self.session.post(
            self.url + "/v3/kv/range", json={"key": b64(self.prefix), "range_end": prefix_end(self.prefix)}
        ) as r:
            body = await r.json()
        for kv in body.get("kvs") or []:
            self.present.add(base64.b64decode(kv["key"]).decode())
        revision = int(body["header"]["revision"])
        ready = asyncio.Event()
        self.task = asyncio.create_task(self._run(revision + 1, ready))
        await asyncio.wait_for(ready.wait(), 10)

    async def _run(self, start_revision: int, ready: asyncio.Event) -> None:
        body = {
            "create_request": {
                "key": b64(self.prefix),
                "range_end": prefix_end(self.prefix),
                "start_revision": str(start_revision),
            }
        }
        async with self.session.post(
            self.url + "/v3/watch", json=body, timeout=aiohttp.ClientTimeout(total=None, sock_read=None)
        ) as resp:
            async for line in resp.content:
                if not line.strip():
                    continue
                now = time.monotonic()
                msg = json.loads(line).get("result") or {}
                if msg.get("created"):
                    ready.set()
                for ev in msg.get("events") or []:
                    key = base64.b64decode(ev["kv"]["key"]).decode()
                    if ev.get("type") == "DELETE":
                        self.present.discard(key)
                        self.deleted_at.setdefault(key, []).append(now)
                    else:
                        self.present.add(key)
                        self.put_at.setdefault(key, []).append(now)
                self.changed.set()

    async def wait(self, predicate: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), min(remaining, 0.5))
            except TimeoutError:
                pass
        return True

    async def put(self, key: str, value: str) -> None:
        async with self.session.post(self.url + "/v3/kv/put", json={"key": b64(key), "value": b64(value)}) as r:
            await r.read()

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        if self.session:
            await self.session.close()


def start_etcd() -> EtcdServer:
    return EtcdServer(name="bench-registry").start()


def etcd_version(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url + "/version", timeout=3) as resp:
            return json.loads(resp.read()).get("etcdserver")
    except OSError:
        return None


# --------------------------------------------------------------------------- the operator


class InstrumentedOperator(OperatorProcess):
    """`infer-operator run` under bench.instrumented (counts its HTTP requests, served on its metrics
    port), as a subprocess; sampled with psutil."""

    def __init__(
        self,
        kubeconfig: Path,
        namespaces: list[str],
        log_path: Path,
        *extra: str,
        source: Path | None = None,
        env: dict[str, str] | None = None,
    ):
        # `source`: a checkout of another version whose operator/ is run instead of this one's (a
        # same-run baseline); its package shadows the installed one on PYTHONPATH.
        env = dict(env or {})
        if source is not None:
            env["PYTHONPATH"] = os.pathsep.join([str(source / "operator"), str(ROOT)])
        super().__init__(
            kubeconfig, log_path, *extra, namespaces=namespaces, metrics=True, module="bench.instrumented", env=env
        )

    def start(self, timeout: float = 90.0) -> InstrumentedOperator:
        super().start(timeout)
        return self

    def ps(self) -> psutil.Process:
        return psutil.Process(self.pid)

    def rss(self) -> int:
        return self.ps().memory_info().rss

    def cpu_seconds(self) -> float:
        t = self.ps().cpu_times()
        return t.user + t.system

    def counters(self) -> dict[str, float]:
        """Requests (kube / etcd) by verb and resource, reconcile passes, deregistrations."""
        m = self.metrics()
        out: dict[str, float] = {"kube_requests": 0.0, "etcd_requests": 0.0, "kube_watch_requests": 0.0}
        for key, value in m.items():
            if key.startswith("bench_http_requests_total{"):
                target = "kube" if 'target="kube"' in key else "etcd"
                out[f"{target}_requests"] += value
                if 'verb="WATCH"' in key:
                    out["kube_watch_requests"] += value
                lab = dict(part.split("=", 1) for part in key[key.index("{") + 1 : -1].split(","))
                name = f"{target}:{lab['verb'].strip(chr(34))}:{lab['resource'].strip(chr(34))}"
                out[name] = out.get(name, 0.0) + value
        out["reconcile_passes"] = m.get("bench_reconcile_passes_total", 0.0)
        out["deregistrations"] = sum(v for k, v in m.items() if k.startswith("infer_operator_deregistrations_total{"))
        return out

    def stop(self, timeout: float = 30.0) -> int | None:
        return super().stop(timeout)


def checkout(rev: str) -> Path:
    """The operator of git revision `rev` in a directory of its own (for a same-run baseline)."""
    import subprocess

    sha = subprocess.run(
        ["git", "rev-parse", "--short", rev], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.strip()
    target = workdir() / f"baseline-{sha}"
    if not (target / "operator").exists():
        target.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", sha, "operator"], cwd=ROOT, check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    return target


def diff(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: round(v - before.get(k, 0.0), 3) for k, v in after.items() if v - before.get(k, 0.0)}


def workdir() -> Path:
    path = Path(tempfile.gettempdir()) / "bench-work"
    path.mkdir(exist_ok=True)
    return path


# --------------------------------------------------------------------------- manifests


def isvc(
    name: str, namespace: str, replicas: int, sync: int, etcd_url: str | None, drain: int = 1, grace: int = 2
) -> dict[str, Any]:
    # A template of its own: the default one asks for a GPU per pod, and the bench's KWOK nodes
    # take 1,000 pods but have 8 GPUs.
    return isvc_body(
        name,
        namespace,
        replicas=replicas,
        syncReplicas=sync,
        sync={"command": ["serve"], "port": PORT},
        **{"async": {"command": ["work"]}},
        lifecycle={"drainSeconds": drain, "terminationGracePeriodSeconds": grace},
        registry=etcd_registry(etcd_url, PREFIX) if etcd_url else {"type": "none"},
        template={"spec": {"containers": [{"name": "model", "image": "bench:none"}]}},
    )


async def apply_isvc(kube: Kube, manifest: dict) -> Any:
    return await kube.client.apply(manifest, field_manager="bench")


async def gather_limited(limit: int, coros: list) -> list:
    sem = asyncio.Semaphore(limit)

    async def one(coro):
        async with sem:
            return await coro

    return await asyncio.gather(*(one(c) for c in coros))
