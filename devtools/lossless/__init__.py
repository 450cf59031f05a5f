"""Lossless online/offline, measured: one inference service on the real node under steady load from
both kinds of consumers, through its lifecycle events, counting what each event lost.

Three ways to run the same pods (the sample app image) and the same load:

- ``operator``: an InferenceService (preStop with offlinePath and drain, deregistration before the
  drain, the readiness gate, restarts through the Eviction API, a PodDisruptionBudget);
- ``seed_script``: the seeds' way (SEEDS.md report 1): a plain StatefulSet whose shell entrypoint
  picks the role by ordinal, runs the app and a self-registering sidecar process, and forwards
  SIGTERM to both (``baseline/seed.sh``, ``baseline/register.py``);
- ``plain``: a plain StatefulSet and Service, the app self-registering under an etcd lease, with no
  preStop, no signal forwarding and no deregistration (``baseline/plain.sh``).

The baselines have one pod template for both roles, so their Service selects every pod: requests
the Service sends to an async pod are refused in steady state too (the ``steady`` row shows it).

Used by ``tests/integration/realnode/test_lossless.py`` (the operator's counts, asserted) and
``bench/lossless.py`` (all three, in ``bench/results/lossless.json``).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import dataclasses
import json
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from devtools.harness import isvc_body, wait_for
from devtools.load import CapacityWatch, JobProducer, RegistryConsumer, ServiceConsumer
from infer_operator import labels

PORT = 8000
REPLICAS = 4
SYNC = 2
DRAIN_SECONDS = 3  # > kube-proxy's rule sync and the consumers' watch latency
GRACE_SECONDS = 20
WORK_SECONDS = 0.2  # one "inference"
SLOW_LOAD_SECONDS = 4  # the slow-model-load event's model load
REGISTER_DELAY_SECONDS = 2
LEASE_SECONDS = 6  # the baselines' registry lease
APP = ["python3", "/app/app.py"]
STEADY_SECONDS = 10  # the steady row's window (a measurement window, not a wait)


@dataclass(frozen=True)
class Load:
    """Requests per second from each consumer, jobs per second, and the bounds of one event."""

    registry_rps: float = 10.0
    service_rps: float = 10.0
    jobs_per_second: float = 4.0
    event_timeout: float = 240.0  # an event's changes must have settled by then
    drain_timeout: float = 90.0  # then the jobs pushed must be done by then

    def as_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)


@dataclass
class Env:
    """What a world runs in: API clients, the real node, one namespace, the registry and queue
    (both bound on the pods' gateway: reachable from pods and from this host)."""

    core: Any
    apps: Any
    custom: Any
    kubectl: Callable[..., Any]  # ClusterHandle.kubectl
    node: Any  # devtools.cluster.realnode.RealNode
    node_name: str
    namespace: str
    etcd_url: str
    redis_url: str
    prefix: str
    operator: Any = None  # the OperatorProcess managing the namespace (the operator world)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def etcd_keys(etcd_url: str, prefix: str) -> set[str]:
    end = bytearray(prefix.encode())
    end[-1] += 1
    body = json.dumps(
        {"key": b64(prefix), "range_end": base64.b64encode(bytes(end)).decode(), "keys_only": True}
    ).encode()
    request = urllib.request.Request(f"{etcd_url}/v3/kv/range", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        data = json.loads(response.read())
    return {base64.b64decode(kv["key"]).decode() for kv in data.get("kvs") or []}


def _ready(pod: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))


class World:
    """One service: made, changed, observed. Subclasses say how (InferenceService or StatefulSet)."""

    kind = ""

    def __init__(self, env: Env, name: str):
        self.env = env
        self.name = name
        self.replicas = REPLICAS
        self.sync = SYNC
        self.revision = 0
        self.model_load_seconds = 0.0

    # -- what the consumers need -----------------------------------------------------------------
    @property
    def instances_prefix(self) -> str:
        return f"{self.env.prefix}/{self.name}/instances/"

    @property
    def queue(self) -> str:
        return f"jobs-{self.name}"

    def service_url(self) -> str:
        service = self.env.core.read_namespaced_service(self.service_name, self.env.namespace)
        return f"http://{service.spec.cluster_ip}:{PORT}/"

    service_name = property(lambda self: self.name)

    def app_env(self) -> dict[str, str]:
        return {
            "REDIS_URL": self.env.redis_url,
            "QUEUE": self.queue,
            "WORK_SECONDS": str(WORK_SECONDS),
            "MODEL_LOAD_SECONDS": str(self.model_load_seconds),
            "PORT": str(PORT),
            "ROLLOUT": str(self.revision),
        }

    # -- observation ------------------------------------------------------------------------------
    def pods(self) -> dict[str, Any]:
        items = self.env.core.list_namespaced_pod(self.env.namespace, label_selector=self.selector).items
        return {p.metadata.name: p for p in items}

    @property
    def selector(self) -> str:
        return f"{labels.LABEL_SERVICE}={self.name}"

    def is_sync(self, pod_name: str) -> bool:
        return int(pod_name.rsplit("-", 1)[1]) < min(self.sync, self.replicas)

    def registered_ready(self) -> int:
        """Sync pods that are Ready and listed in the registry at their address (the capacity
        registry consumers and the Service have in common)."""
        keys = etcd_keys(self.env.etcd_url, self.instances_prefix)
        return sum(
            1
            for name, pod in self.pods().items()
            if pod.metadata.deletion_timestamp is None
            and self.is_sync(name)
            and _ready(pod)
            and pod.status.pod_ip
            and f"{self.instances_prefix}{pod.status.pod_ip}:{PORT}" in keys
        )

    def settled(self) -> bool:
        pods = self.pods()
        live = {n: p for n, p in pods.items() if p.metadata.deletion_timestamp is None}
        if len(pods) != self.replicas or len(live) != self.replicas:
            return False
        if not all(_ready(p) and p.spec.node_name == self.env.node_name for p in live.values()):
            return False
        if not self.up_to_date(live):
            return False
        want = {f"{self.instances_prefix}{p.status.pod_ip}:{PORT}" for n, p in live.items() if self.is_sync(n)}
        return etcd_keys(self.env.etcd_url, self.instances_prefix) == want

    def up_to_date(self, live: dict[str, Any]) -> bool:
        return True

    def wait_settled(self, timeout: float) -> None:
        wait_for(
            self.settled,
            timeout,
            interval=0.5,
            message=lambda: (
                f"{self.kind} {self.name} did not settle: "
                f"{[(n, p.status.phase, _ready(p)) for n, p in self.pods().items()]}"
            ),
            ignore=(OSError,),
        )

    # -- changes (subclasses) ---------------------------------------------------------------------
    def create(self) -> None:
        raise NotImplementedError

    def delete(self) -> None:
        raise NotImplementedError

    def _patch(self) -> None:
        """Write the world's current sizes, split and template to its object."""
        raise NotImplementedError

    def set_replicas(self, replicas: int) -> None:
        self.replicas = replicas
        self._patch()

    def set_sync(self, sync: int) -> None:
        # In the StatefulSet worlds the split lives in the template's env: every pod rolls.
        self.sync = sync
        self._patch()

    def roll(self, *, model_load_seconds: float | None = None) -> None:
        """A template change: every pod restarts (optionally with a slower model load)."""
        self.revision += 1
        if model_load_seconds is not None:
            self.model_load_seconds = model_load_seconds
        self._patch()

    def delete_pod(self, name: str) -> None:
        self.env.core.delete_namespaced_pod(name, self.env.namespace)

    def drain(self, timeout: float) -> None:
        """kubectl drain of the real node, for this world's pods; the node is uncordoned after."""
        try:
            self.env.kubectl(
                "drain",
                self.env.node_name,
                "--pod-selector",
                self.selector,
                "--ignore-daemonsets",
                "--delete-emptydir-data",
                f"--timeout={int(timeout)}s",
                timeout=timeout + 30,
            )
        finally:
            self.env.kubectl("uncordon", self.env.node_name, timeout=60)


class OperatorWorld(World):
    """An InferenceService on the real node, managed by the operator process in ``env.operator``."""

    kind = "operator"

    def body(self) -> dict[str, Any]:
        env = [{"name": k, "value": v} for k, v in self.app_env().items()]
        container = {
            "name": "app",
            "image": self.env.node.images["sample-app"],
            "imagePullPolicy": "Never",
            "env": env,
            "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}},
        }
        registry: dict[str, Any] = {
            "type": "etcd",
            "etcd": {"endpoints": [self.env.etcd_url], "prefix": self.env.prefix},
        }
        if self.model_load_seconds:
            registry["registerDelaySeconds"] = REGISTER_DELAY_SECONDS
        return isvc_body(
            self.name,
            self.env.namespace,
            replicas=self.replicas,
            syncReplicas=self.sync,
            template={
                "spec": {
                    "containers": [container],
                    "tolerations": [self.env.node.toleration()],
                    "nodeSelector": self.env.node.node_selector(),
                }
            },
            sync={
                "command": APP,
                "port": PORT,
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": PORT}, "periodSeconds": 1},
            },
            lifecycle={
                "offlinePath": "/offline",
                "drainSeconds": DRAIN_SECONDS,
                "terminationGracePeriodSeconds": GRACE_SECONDS,
            },
            registry=registry,
            podDisruptionBudget={},
            **{"async": {"command": APP}},
        )

    def create(self) -> None:
        self.env.custom.create_namespaced_custom_object(
            labels.GROUP, labels.VERSION, self.env.namespace, labels.PLURAL, self.body()
        )

    def delete(self) -> None:
        self.env.custom.delete_namespaced_custom_object(
            labels.GROUP, labels.VERSION, self.env.namespace, labels.PLURAL, self.name
        )

    def _patch(self) -> None:
        spec = self.body()["spec"]
        self.env.custom.patch_namespaced_custom_object(
            labels.GROUP,
            labels.VERSION,
            self.env.namespace,
            labels.PLURAL,
            self.name,
            {
                "spec": {
                    "replicas": spec["replicas"],
                    "syncReplicas": spec["syncReplicas"],
                    "template": spec["template"],
                    "registry": spec["registry"],
                }
            },
        )

    def up_to_date(self, live: dict[str, Any]) -> bool:
        body = self.env.custom.get_namespaced_custom_object(
            labels.GROUP, labels.VERSION, self.env.namespace, labels.PLURAL, self.name
        )
        status = body.get("status") or {}
        return (
            status.get("observedGeneration") == body["metadata"]["generation"]
            and status.get("updatedReplicas") == self.replicas
            and all(
                p.metadata.labels.get(labels.LABEL_ROLE) == ("sync" if self.is_sync(n) else "async")
                for n, p in live.items()
            )
        )


class StatefulSetWorld(World):
    """A plain StatefulSet and Service running the sample app through a baseline entrypoint."""

    kind = ""
    entrypoint = ""

    @property
    def selector(self) -> str:
        return f"lossless-baseline={self.name}"

    @property
    def config_map(self) -> str:
        return f"{self.name}-baseline"

    def pod_env(self) -> list[dict[str, Any]]:
        fixed = {
            **self.app_env(),
            "SYNC_INSTANCE": str(self.sync),
            "ETCD_URL": self.env.etcd_url,
            "REGISTRY_PREFIX": self.env.prefix,
            "REGISTRY_SERVICE": self.name,
            "LEASE_SECONDS": str(LEASE_SECONDS),
        }
        env = [{"name": k, "value": v} for k, v in fixed.items()]
        for name, path in (
            ("POD_NAME", "metadata.name"),
            ("POD_NAMESPACE", "metadata.namespace"),
            ("POD_IP", "status.podIP"),
        ):
            env.append({"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}})
        return env

    def statefulset(self) -> dict[str, Any]:
        pod_labels = {"lossless-baseline": self.name}
        container = {
            "name": "app",
            "image": self.env.node.images["sample-app"],
            "imagePullPolicy": "Never",
            "command": ["/bin/sh", f"/baseline/{self.entrypoint}"],
            "env": self.pod_env(),
            "ports": [{"containerPort": PORT, "name": "http"}],
            "readinessProbe": {
                "exec": {"command": ["/bin/sh", "/baseline/ready.sh"]},
                "periodSeconds": 1,
                "timeoutSeconds": 3,
            },
            "volumeMounts": [{"name": "baseline", "mountPath": "/baseline"}],
            "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}},
        }
        return {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": self.name, "namespace": self.env.namespace},
            "spec": {
                "replicas": self.replicas,
                "serviceName": self.name,
                "podManagementPolicy": "Parallel",
                "selector": {"matchLabels": pod_labels},
                "template": {
                    "metadata": {"labels": pod_labels},
                    "spec": {
                        "containers": [container],
                        "terminationGracePeriodSeconds": GRACE_SECONDS,
                        "tolerations": [self.env.node.toleration()],
                        "nodeSelector": self.env.node.node_selector(),
                        "volumes": [{"name": "baseline", "configMap": {"name": self.config_map}}],
                    },
                },
            },
        }

    def create(self) -> None:
        scripts = resources.files(__package__).joinpath("baseline")
        data = {name: scripts.joinpath(name).read_text() for name in ("seed.sh", "plain.sh", "ready.sh", "register.py")}
        self.env.core.create_namespaced_config_map(
            self.env.namespace, {"metadata": {"name": self.config_map}, "data": data}
        )
        self.env.core.create_namespaced_service(
            self.env.namespace,
            {
                "metadata": {"name": self.name},
                "spec": {"selector": {"lossless-baseline": self.name}, "ports": [{"port": PORT, "targetPort": PORT}]},
            },
        )
        self.env.apps.create_namespaced_stateful_set(self.env.namespace, self.statefulset())

    def delete(self) -> None:
        self.env.apps.delete_namespaced_stateful_set(self.name, self.env.namespace)
        self.env.core.delete_namespaced_service(self.name, self.env.namespace)
        self.env.core.delete_namespaced_config_map(self.config_map, self.env.namespace)
        # The StatefulSet's pods go with it (garbage collection); wait, so the next world starts clean.
        wait_for(lambda: not self.pods(), GRACE_SECONDS + 60, interval=0.5, message=f"{self.name}'s pods are gone")

    def _patch(self) -> None:
        sts = self.statefulset()
        self.env.apps.patch_namespaced_stateful_set(
            self.name,
            self.env.namespace,
            {"spec": {"replicas": sts["spec"]["replicas"], "template": sts["spec"]["template"]}},
        )

    def up_to_date(self, live: dict[str, Any]) -> bool:
        sts = self.env.apps.read_namespaced_stateful_set(self.name, self.env.namespace)
        status = sts.status
        return (
            status.observed_generation == sts.metadata.generation
            and status.update_revision is not None
            and all(p.metadata.labels.get("controller-revision-hash") == status.update_revision for p in live.values())
        )


class SeedScriptWorld(StatefulSetWorld):
    kind = "seed_script"
    entrypoint = "seed.sh"


class PlainWorld(StatefulSetWorld):
    kind = "plain"
    entrypoint = "plain.sh"


WORLDS: dict[str, type[World]] = {"operator": OperatorWorld, "seed_script": SeedScriptWorld, "plain": PlainWorld}


# -- events ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    name: str
    what: str
    act: Callable[[World, Load], None]  # start the change (and, for some, carry it through)
    restore: Callable[[World], None] | None = None  # undone afterwards, outside the measurement
    operator_only: bool = False


def _delete_sync_pod(world: World, load: Load) -> None:
    world.delete_pod(f"{world.name}-0")


def _scale_down(world: World, load: Load) -> None:
    world.set_replicas(1)  # through sync ordinal 1


def _scale_up(world: World, load: Load) -> None:
    world.set_replicas(REPLICAS)


def _split_change(world: World, load: Load) -> None:
    world.set_sync(SYNC + 1)  # ordinal 2 flips async -> sync


def _split_back(world: World, load: Load) -> None:
    world.set_sync(SYNC)  # and back


def _rollout(world: World, load: Load) -> None:
    world.roll()


def _drain(world: World, load: Load) -> None:
    world.drain(timeout=30)


def _operator_killed_mid_rollout(world: World, load: Load) -> None:
    operator = world.env.operator
    first = {n: p.metadata.uid for n, p in world.pods().items()}
    world.roll()

    # Killed once the rollout is under way: the first pod restarted and let go (deregistered, our
    # finalizer removed: tens of milliseconds after its eviction), its successor not yet Ready.
    # Killed before it let go, the pod would wait for the operator, and so would its successor.
    def under_way() -> bool:
        return any(
            p.metadata.uid != first.get(n)
            or (p.metadata.deletion_timestamp is not None and labels.POD_FINALIZER not in (p.metadata.finalizers or []))
            for n, p in world.pods().items()
        )

    wait_for(under_way, 60, interval=0.05, message="the rollout did not start")
    operator.kill()
    # While it is down the StatefulSet makes the successor, which waits in its init container for
    # a role nobody gives it (and would get no registration and no open gate): the rollout must
    # not go on without the operator, and nothing may be lost meanwhile.
    wait_for(
        lambda: any(p.metadata.uid != first.get(n) for n, p in world.pods().items()),
        90,
        interval=0.2,
        message="the StatefulSet did not make the restarted pod's successor",
    )
    operator.start()


def _slow_model_load(world: World, load: Load) -> None:
    world.roll(model_load_seconds=SLOW_LOAD_SECONDS)


def _fast_model_load(world: World) -> None:
    world.roll(model_load_seconds=0)


EVENTS: tuple[Event, ...] = (
    Event("steady", f"no change: {STEADY_SECONDS} s of the load alone", lambda world, load: time.sleep(STEADY_SECONDS)),
    Event("delete-sync-pod", "kubectl delete of sync pod 0", _delete_sync_pod),
    Event("scale-down", f"replicas {REPLICAS} -> 1, through sync ordinal 1", _scale_down),
    Event("scale-up", f"replicas 1 -> {REPLICAS}", _scale_up),
    Event("split-change", f"syncReplicas {SYNC} -> {SYNC + 1} (a pod flips to sync)", _split_change),
    Event("split-change-back", f"syncReplicas {SYNC + 1} -> {SYNC} (it flips back)", _split_back),
    Event("rollout", "a template change: every pod restarts", _rollout),
    Event("drain", "kubectl drain of the real node (eviction), then uncordon", _drain),
    Event(
        "operator-killed-mid-rollout",
        "a rollout; the operator SIGKILLed once it is under way, started again "
        "once the StatefulSet has made the restarted pod's successor",
        _operator_killed_mid_rollout,
        operator_only=True,
    ),
    Event(
        "slow-model-load",
        f"a rollout to a {SLOW_LOAD_SECONDS} s model load (the operator: with "
        f"registerDelaySeconds {REGISTER_DELAY_SECONDS})",
        _slow_model_load,
        restore=_fast_model_load,
    ),
)


@dataclass
class Outcome:
    """What one event cost: per consumer, the jobs, and the capacity."""

    registry: dict[str, Any] = field(default_factory=dict)
    service: dict[str, Any] = field(default_factory=dict)
    jobs: dict[str, int] = field(default_factory=dict)
    lowest_capacity: int | None = None
    desired: int = 0
    max_unavailable: int = 1
    seconds: float = 0.0
    error: str | None = None

    @property
    def failed(self) -> int:
        return self.registry.get("failed", 0) + self.service.get("failed", 0)

    @property
    def cut(self) -> int:
        return self.registry.get("cut", 0) + self.service.get("cut", 0)

    @property
    def jobs_lost(self) -> int:
        return self.jobs.get("lost", 0)

    @property
    def jobs_duplicated(self) -> int:
        return self.jobs.get("done_twice_or_more", 0)

    def as_dict(self) -> dict[str, Any]:
        return {
            "failed": self.failed,
            "cut": self.cut,
            "jobs_lost": self.jobs_lost,
            "jobs_duplicated": self.jobs_duplicated,
            "lowest_registered_ready_sync": self.lowest_capacity,
            "desired_sync": self.desired,
            "max_unavailable": self.max_unavailable,
            "seconds": round(self.seconds, 1),
            "registry_consumer": self.registry,
            "service_consumer": self.service,
            "jobs": self.jobs,
            **({"error": self.error} if self.error else {}),
        }


async def _measure(world: World, event: Event, load: Load) -> Outcome:
    """Load starts, the event runs and settles, the load stops; then the jobs pushed are awaited."""
    outcome = Outcome(desired=min(world.sync, world.replicas), max_unavailable=1)
    stop = asyncio.Event()
    limit = int(load.event_timeout * 4 * max(load.registry_rps, load.service_rps, load.jobs_per_second)) + 1
    registry = RegistryConsumer(world.env.etcd_url, world.env.prefix, world.name, timeout=10.0)
    service = ServiceConsumer(world.service_url(), timeout=10.0)
    jobs = JobProducer(world.env.redis_url, queue=world.queue, name=f"{event.name}")
    capacity = CapacityWatch(world.registered_ready, interval=0.25)
    started = time.monotonic()
    tasks = [
        asyncio.create_task(registry.run(load.registry_rps, load.event_timeout * 2, limit, stop)),
        asyncio.create_task(service.run(load.service_rps, load.event_timeout * 2, limit, stop)),
        asyncio.create_task(jobs.run(load.jobs_per_second, load.event_timeout * 2, limit, stop)),
        asyncio.create_task(capacity.run(load.event_timeout * 2, stop)),
    ]
    try:
        await asyncio.sleep(1.0)  # a second of load before the change: the consumers have warmed up
        await asyncio.to_thread(event.act, world, load)
        outcome.desired = min(outcome.desired, min(world.sync, world.replicas))
        await asyncio.to_thread(world.wait_settled, load.event_timeout)
        await asyncio.sleep(1.0)  # and a second after it settled
    except AssertionError as exc:
        outcome.error = str(exc)[:500]
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        outcome.seconds = time.monotonic() - started
    # Jobs pushed are awaited while async pods remain to work them (with none, they wait queued).
    deadline = time.monotonic() + (load.drain_timeout if world.replicas > world.sync else 0)
    while time.monotonic() < deadline and not await jobs.drained():
        await asyncio.sleep(0.5)
    outcome.jobs = (await jobs.report()).as_dict()
    await jobs.close()
    outcome.registry, outcome.service = registry.tally.as_dict(), service.tally.as_dict()
    if registry.watch_error:
        outcome.registry["watch_error"] = registry.watch_error
    outcome.lowest_capacity = capacity.lowest
    return outcome


def run_events(
    world: World, load: Load, events: tuple[Event, ...] = EVENTS, progress: Callable[[str], None] = print
) -> dict[str, Outcome]:
    """Every event in turn on a settled world; {event name: Outcome}."""
    results: dict[str, Outcome] = {}
    for event in events:
        if event.operator_only and world.kind != "operator":
            continue
        world.wait_settled(load.event_timeout)
        progress(f"{world.kind}: {event.name} ({event.what})")
        results[event.name] = asyncio.run(_measure(world, event, load))
        progress(f"{world.kind}: {event.name}: {json.dumps(results[event.name].as_dict())[:300]}")
        if event.restore is not None:
            event.restore(world)
            world.wait_settled(load.event_timeout)
    return results


def copy_env(env: Env, **changes: Any) -> Env:
    return dataclasses.replace(copy.copy(env), **changes)
