"""Lossless online/offline, measured: one inference service on the real node under load from the
kinds of consumers users have, through its lifecycle events, counting what each event lost.

Four ways to run the same pods (the sample app image) and the same load:

- ``operator``: an InferenceService (preStop with offlinePath and drain, deregistration before the
  drain, the readiness gate, restarts through the Eviction API, a PodDisruptionBudget);
- ``careful``: what a careful team writes by hand: a plain StatefulSet whose pods label themselves
  with their role for a per-role Service, self-register, deregister in a preStop hook that then
  sleeps ``DRAIN_SECONDS``, forward SIGTERM, with a PodDisruptionBudget (``baseline/careful.sh``,
  ``prestop.sh``, ``label.py``, ``register.py``);
- ``seed_script``: the seeds' way (SEEDS.md report 1): a plain StatefulSet whose shell entrypoint
  picks the role by ordinal, runs the app and a self-registering sidecar process, and forwards
  SIGTERM to both (``baseline/seed.sh``, ``register.py``);
- ``plain``: a plain StatefulSet and Service, the app self-registering under an etcd lease, with no
  preStop, no signal forwarding and no deregistration (``baseline/plain.sh``).

The seed_script and plain worlds have one Service over every pod: requests it sends to an async
pod are refused in steady state too (the ``steady`` row shows it).

Each event stands alone: it first brings the world to its own starting point (``Event.start``,
outside the measurement), so any event runs by name and in any order. Counted per event: failed
requests, requests (and streams) cut, requests with no instance to call, jobs lost or done twice
once every job was given time to be done (the queue and processing lists must be empty), and the
capacity (Ready, registered pods) at every moment before, during and after the change against the
desired number minus what the event may take down (``Event.allowance``: the real maxUnavailable
for restarts, the deleted pod for a deletion, nothing for a scale or a split change).

The service runs on two real nodes: ``real-node-0`` and the spare ``real-node-1``; at every
moment one of them is cordoned and holds none of the service's pods, so a drain has room to move
them while a budget is honoured (``prepare_nodes``, ``World.drain``).

Used by ``tests/integration/realnode/test_lossless.py`` (the operator's counts, asserted) and
``bench/lossless.py`` (all four, in ``bench/results/lossless.json``).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import dataclasses
import json
import secrets
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from devtools.cluster import realnode
from devtools.harness import isvc_body, wait_for
from devtools.load import (
    CapacityWatch,
    InstanceWatch,
    JobProducer,
    PodWatch,
    RegistryConsumer,
    Request,
    ServiceConsumer,
)
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
# LLM-shaped traffic: streams outlive drainSeconds by far; the app gives what is in flight at most
# APP_SHUTDOWN_SECONDS after SIGTERM (a graceful-shutdown timeout, as most servers have), and the
# grace period covers the longest stream plus the drain.
STREAM_GRACE_SECONDS = 60
APP_SHUTDOWN_SECONDS = 5
TOKENS_PER_SECOND = 10
# Long batch jobs: the grace period covers one (the worker finishes the job in hand on SIGTERM).
LONG_JOB_GRACE_SECONDS = 90
# The operator's drain for long requests (lifecycle.idlePath: after drainSeconds, wait until the app
# answers 2xx there, bounded by the grace period): the sample app's /idle. Without it, a stream that
# outlives drainSeconds is cut (tests/integration/realnode/test_lossless.py shows the count move).
IDLE_PATH: str | None = "/idle"
SPARE_TOLERATION = {"key": realnode.SPARE_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}


@dataclass(frozen=True)
class Load:
    """Rates (per second, each consumer) and bounds (seconds) of one event's load."""

    registry_rps: float = 50.0
    service_rps: float = 50.0
    jobs_per_second: float = 5.0
    stream_rps: float = 1.0  # streams started per second by each consumer, in the streams events
    stream_seconds: tuple[float, float] = (5.0, 30.0)
    long_job_seconds: float = 60.0
    long_jobs: int = 3  # pushed in the long-jobs event: one for each async pod, one waiting
    event_timeout: float = 240.0  # an event's changes must have settled by then (plus, where pods roll,
    # a grace period per pod: a world that never sends SIGTERM waits it out for each)
    jobs_timeout: float = 120.0  # then the jobs pushed must be done by then (plus long jobs' own time)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Env:
    """What a world runs in: API clients, the real nodes, one namespace, the registry and queue
    (both bound on the pods' gateway: reachable from pods and from this host)."""

    core: Any
    apps: Any
    custom: Any
    kubectl: Callable[..., Any]  # ClusterHandle.kubectl
    node: Any  # devtools.cluster.realnode.RealNode
    namespace: str
    etcd_url: str
    redis_url: str
    prefix: str
    operator: Any = None  # the OperatorProcess managing the namespace (the operator world)
    node_names: tuple[str, ...] = (realnode.NODE_NAME, realnode.SPARE_NAME)
    policy: Any = None  # PolicyV1Api (the baselines' budgets)
    rbac: Any = None  # RbacAuthorizationV1Api (the careful baseline's labeller)


def copy_env(env: Env, **changes: Any) -> Env:
    return dataclasses.replace(copy.copy(env), **changes)


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


def etcd_delete_prefix(etcd_url: str, prefix: str) -> int:
    """Delete every key under `prefix`; how many went."""
    end = bytearray(prefix.encode())
    end[-1] += 1
    body = json.dumps({"key": b64(prefix), "range_end": base64.b64encode(bytes(end)).decode()}).encode()
    request = urllib.request.Request(
        f"{etcd_url}/v3/kv/deleterange", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return int(json.loads(response.read()).get("deleted", 0))


def _ready(pod: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))


def _checked(result: Any, what: str) -> Any:
    if result.returncode != 0:
        raise AssertionError(f"{what} failed (exit {result.returncode}): {(result.stderr or result.stdout)[-800:]}")
    return result


def prepare_nodes(env: Env) -> None:
    """The real node schedulable, the spare cordoned: the service's pods start on the real node
    and a drain has somewhere to move them."""
    _checked(env.kubectl("uncordon", env.node_names[0], timeout=60), f"kubectl uncordon {env.node_names[0]}")
    for name in env.node_names[1:]:
        _checked(env.kubectl("cordon", name, timeout=60), f"kubectl cordon {name}")


def release_nodes(env: Env) -> None:
    """The real node schedulable again for whatever runs next (the spare is the caller's)."""
    env.kubectl("uncordon", env.node_names[0], timeout=60)


@dataclass(frozen=True)
class Shape:
    """What an event starts from: sizes and the settings that live in the pod template."""

    replicas: int = REPLICAS
    sync: int = SYNC
    model_load_seconds: float = 0.0
    grace_seconds: int = GRACE_SECONDS
    app_shutdown_seconds: float | None = None  # the app's graceful-shutdown timeout ($SHUTDOWN_SECONDS)

    @property
    def desired(self) -> int:
        """Sync pods wanted."""
        return min(self.sync, self.replicas)

    @property
    def workers(self) -> int:
        """Async pods wanted."""
        return self.replicas - self.desired

    def template_differs(self, other: Shape) -> bool:
        return (self.model_load_seconds, self.grace_seconds, self.app_shutdown_seconds) != (
            other.model_load_seconds,
            other.grace_seconds,
            other.app_shutdown_seconds,
        )


class World:
    """One service: made, changed, observed. Subclasses say how (InferenceService or StatefulSet)."""

    kind = ""

    def __init__(self, env: Env, name: str):
        self.env = env
        self.name = name
        self.shape = Shape()
        self.revision = 0

    # -- what the consumers need -----------------------------------------------------------------
    @property
    def instances_prefix(self) -> str:
        return f"{self.env.prefix}/{self.name}/instances/"

    @property
    def queue(self) -> str:
        return f"jobs-{self.name}"

    def service_url(self) -> str:
        service = self.env.core.read_namespaced_service(self.service_name, self.env.namespace)
        return f"http://{service.spec.cluster_ip}:{PORT}"

    service_name = property(lambda self: self.name)

    def app_env(self) -> dict[str, str]:
        env = {
            "REDIS_URL": self.env.redis_url,
            "QUEUE": self.queue,
            "WORK_SECONDS": str(WORK_SECONDS),
            "MODEL_LOAD_SECONDS": str(self.shape.model_load_seconds),
            "STREAM_TOKENS_PER_SECOND": str(TOKENS_PER_SECOND),
            "PORT": str(PORT),
            "ROLLOUT": str(self.revision),
        }
        if self.shape.app_shutdown_seconds is not None:
            env["SHUTDOWN_SECONDS"] = str(self.shape.app_shutdown_seconds)
        return env

    def tolerations(self) -> list[dict[str, Any]]:
        return [self.env.node.toleration(), SPARE_TOLERATION]

    @property
    def max_unavailable(self) -> int:
        """Pods a restart may take down at once: the object's own rolling-update setting."""
        return 1

    # -- observation ------------------------------------------------------------------------------
    def pods(self) -> dict[str, Any]:
        items = self.env.core.list_namespaced_pod(self.env.namespace, label_selector=self.selector).items
        return {p.metadata.name: p for p in items}

    @property
    def selector(self) -> str:
        return f"{labels.LABEL_SERVICE}={self.name}"

    def is_sync(self, pod_name: str) -> bool:
        return int(pod_name.rsplit("-", 1)[1]) < self.shape.desired

    def capacity_watch(self) -> CapacityWatch:
        pods = PodWatch(self.env.core.api_client.configuration, self.env.namespace, self.selector)
        return CapacityWatch(pods, InstanceWatch(self.env.etcd_url, self.instances_prefix), PORT)

    def settled(self) -> bool:
        pods = self.pods()
        live = {n: p for n, p in pods.items() if p.metadata.deletion_timestamp is None}
        if len(pods) != self.shape.replicas or len(live) != self.shape.replicas:
            return False
        if not all(_ready(p) and p.spec.node_name in self.env.node_names for p in live.values()):
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
                f"{[(n, p.status.phase, _ready(p), p.spec.node_name) for n, p in self.pods().items()]}"
            ),
            ignore=(OSError,),
        )

    def serves(self) -> bool:
        """Whether a request through the Service was answered (kube-proxy has the Service's rules)."""
        request = urllib.request.Request(self.service_url() + "/", data=b"{}", method="POST")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status == 200
        except OSError:
            return False

    def start(self, timeout: float) -> None:
        """Create the world and wait until it settled and its Service answers (a new Service's
        rules reach kube-proxy a moment after its endpoints)."""
        self.create()
        self.wait_settled(timeout)
        wait_for(self.serves, 60, interval=0.2, message=f"{self.kind} {self.name}'s Service never answered")

    # -- changes (subclasses) ---------------------------------------------------------------------
    def create(self) -> None:
        raise NotImplementedError

    def delete(self) -> None:
        raise NotImplementedError

    def _patch(self) -> None:
        """Write the world's current shape and revision to its object."""
        raise NotImplementedError

    def converge(self, shape: Shape, timeout: float) -> None:
        """Bring the world to `shape` (a template change restarts every pod) and wait until it
        settled; nothing happens when it is there already."""
        if shape != self.shape:
            if shape.template_differs(self.shape):
                self.revision += 1
            self.shape = shape
            self._patch()
        self.wait_settled(timeout)

    def set_replicas(self, replicas: int) -> None:
        self.shape = dataclasses.replace(self.shape, replicas=replicas)
        self._patch()

    def set_sync(self, sync: int) -> None:
        # In the StatefulSet worlds the split lives in the template's env: every pod rolls.
        self.shape = dataclasses.replace(self.shape, sync=sync)
        self._patch()

    def roll(self, *, model_load_seconds: float | None = None) -> None:
        """A template change: every pod restarts (optionally with a slower model load)."""
        self.revision += 1
        if model_load_seconds is not None:
            self.shape = dataclasses.replace(self.shape, model_load_seconds=model_load_seconds)
        self._patch()

    def delete_pod(self, name: str) -> None:
        self.env.core.delete_namespaced_pod(name, self.env.namespace)

    def where(self) -> tuple[str, str]:
        """(the real node holding this world's pods, the other one)."""
        nodes = [p.spec.node_name for p in self.pods().values() if p.spec.node_name]
        here = max(self.env.node_names, key=nodes.count)
        there = next(n for n in self.env.node_names if n != here)
        return here, there

    def drain(self, timeout: float) -> None:
        """`kubectl drain` of the node holding this world's pods, with the other node made
        schedulable first: evictions honour the world's budget, if it has one, and the drain
        finishes once every pod has moved. Its exit status is checked; the drained node stays
        cordoned (the next drain goes back)."""
        here, there = self.where()
        _checked(self.env.kubectl("uncordon", there, timeout=60), f"kubectl uncordon {there}")
        _checked(
            self.env.kubectl(
                "drain",
                here,
                "--pod-selector",
                self.selector,
                "--ignore-daemonsets",
                "--delete-emptydir-data",
                f"--timeout={int(timeout)}s",
                timeout=timeout + 30,
            ),
            f"kubectl drain {here}",
        )


class OperatorWorld(World):
    """An InferenceService on the real node, managed by the operator process in ``env.operator``.
    ``idle_path``: lifecycle.idlePath (the operator's drain for long requests); None leaves it
    unset (the drain is drainSeconds alone)."""

    kind = "operator"
    idle_path: str | None = IDLE_PATH

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
        if self.shape.model_load_seconds:
            registry["registerDelaySeconds"] = REGISTER_DELAY_SECONDS
        lifecycle: dict[str, Any] = {
            "offlinePath": "/offline",
            "drainSeconds": DRAIN_SECONDS,
            "terminationGracePeriodSeconds": self.shape.grace_seconds,
        }
        if self.idle_path:
            lifecycle["idlePath"] = self.idle_path
        return isvc_body(
            self.name,
            self.env.namespace,
            replicas=self.shape.replicas,
            syncReplicas=self.shape.sync,
            template={
                "spec": {
                    "containers": [container],
                    "tolerations": self.tolerations(),
                    "nodeSelector": self.env.node.node_selector(),
                }
            },
            sync={
                "command": APP,
                "port": PORT,
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": PORT}, "periodSeconds": 1},
            },
            lifecycle=lifecycle,
            registry=registry,
            podDisruptionBudget={},
            **{"async": {"command": APP}},
        )

    def _object(self) -> dict[str, Any]:
        return self.env.custom.get_namespaced_custom_object(
            labels.GROUP, labels.VERSION, self.env.namespace, labels.PLURAL, self.name
        )

    @property
    def max_unavailable(self) -> int:
        spec = self._object()["spec"]
        return int(((spec.get("updateStrategy") or {}).get("rollingUpdate") or {}).get("maxUnavailable", 1))

    def create(self) -> None:
        self.env.custom.create_namespaced_custom_object(
            labels.GROUP, labels.VERSION, self.env.namespace, labels.PLURAL, self.body()
        )

    def delete(self) -> None:
        self.env.custom.delete_namespaced_custom_object(
            labels.GROUP, labels.VERSION, self.env.namespace, labels.PLURAL, self.name
        )
        wait_for(lambda: not self.pods(), 2 * self.shape.grace_seconds + 60, interval=0.5, message="pods gone")

    def _patch(self) -> None:
        spec = self.body()["spec"]
        # A merge patch keeps what it does not name: a setting turned off is written as null.
        spec["lifecycle"].setdefault("idlePath", None)
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
                    "lifecycle": spec["lifecycle"],
                }
            },
        )

    def up_to_date(self, live: dict[str, Any]) -> bool:
        body = self._object()
        status = body.get("status") or {}
        return (
            status.get("observedGeneration") == body["metadata"]["generation"]
            and status.get("updatedReplicas") == self.shape.replicas
            and all(
                p.metadata.labels.get(labels.LABEL_ROLE) == ("sync" if self.is_sync(n) else "async")
                for n, p in live.items()
            )
        )


class StatefulSetWorld(World):
    """A plain StatefulSet and Service running the sample app through a baseline entrypoint."""

    kind = ""
    entrypoint = ""
    budget = False  # a PodDisruptionBudget (maxUnavailable 1) over the pods
    service_selects_role = False  # the Service selects the pods labelled sync (else every pod)
    prestop = False  # baseline/prestop.sh as the preStop hook

    @property
    def selector(self) -> str:
        return f"lossless-baseline={self.name}"

    @property
    def config_map(self) -> str:
        return f"{self.name}-baseline"

    def pod_env(self) -> list[dict[str, Any]]:
        fixed = {
            **self.app_env(),
            "SYNC_INSTANCE": str(self.shape.sync),
            "ETCD_URL": self.env.etcd_url,
            "REGISTRY_PREFIX": self.env.prefix,
            "REGISTRY_SERVICE": self.name,
            "LEASE_SECONDS": str(LEASE_SECONDS),
            "DRAIN_SECONDS": str(DRAIN_SECONDS),
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
        container: dict[str, Any] = {
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
        if self.prestop:
            container["lifecycle"] = {"preStop": {"exec": {"command": ["/bin/sh", "/baseline/prestop.sh"]}}}
        pod_spec: dict[str, Any] = {
            "containers": [container],
            "terminationGracePeriodSeconds": self.shape.grace_seconds,
            "tolerations": self.tolerations(),
            "nodeSelector": self.env.node.node_selector(),
            "volumes": [{"name": "baseline", "configMap": {"name": self.config_map}}],
        }
        if self.service_selects_role:
            pod_spec["serviceAccountName"] = self.name
        return {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": self.name, "namespace": self.env.namespace},
            "spec": {
                "replicas": self.shape.replicas,
                "serviceName": self.name,
                "podManagementPolicy": "Parallel",
                "selector": {"matchLabels": pod_labels},
                "template": {"metadata": {"labels": pod_labels}, "spec": pod_spec},
            },
        }

    @property
    def max_unavailable(self) -> int:
        sts = self.env.apps.read_namespaced_stateful_set(self.name, self.env.namespace)
        rolling = sts.spec.update_strategy.rolling_update if sts.spec.update_strategy else None
        value = rolling.max_unavailable if rolling and rolling.max_unavailable is not None else 1
        return int(value)

    def create(self) -> None:
        scripts = resources.files(__package__).joinpath("baseline")
        names = ("seed.sh", "plain.sh", "careful.sh", "prestop.sh", "ready.sh", "register.py", "label.py")
        data = {name: scripts.joinpath(name).read_text() for name in names}
        ns = self.env.namespace
        self.env.core.create_namespaced_config_map(ns, {"metadata": {"name": self.config_map}, "data": data})
        selector = {"lossless-baseline": self.name}
        if self.service_selects_role:
            selector["lossless-role"] = "sync"
            self.env.core.create_namespaced_service_account(ns, {"metadata": {"name": self.name}})
            self.env.rbac.create_namespaced_role(
                ns,
                {
                    "metadata": {"name": self.name},
                    "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "patch"]}],
                },
            )
            self.env.rbac.create_namespaced_role_binding(
                ns,
                {
                    "metadata": {"name": self.name},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": self.name},
                    "subjects": [{"kind": "ServiceAccount", "name": self.name, "namespace": ns}],
                },
            )
        if self.budget:
            self.env.policy.create_namespaced_pod_disruption_budget(
                ns,
                {
                    "metadata": {"name": self.name},
                    "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"lossless-baseline": self.name}}},
                },
            )
        self.env.core.create_namespaced_service(
            ns, {"metadata": {"name": self.name}, "spec": {"selector": selector, "ports": [{"port": PORT}]}}
        )
        self.env.apps.create_namespaced_stateful_set(ns, self.statefulset())

    def delete(self) -> None:
        ns = self.env.namespace
        self.env.apps.delete_namespaced_stateful_set(self.name, ns)
        self.env.core.delete_namespaced_service(self.name, ns)
        self.env.core.delete_namespaced_config_map(self.config_map, ns)
        if self.budget:
            self.env.policy.delete_namespaced_pod_disruption_budget(self.name, ns)
        # The StatefulSet's pods go with it (garbage collection); wait, so the next world starts clean.
        wait_for(lambda: not self.pods(), self.shape.grace_seconds + 60, interval=0.5, message=f"{self.name}'s pods")
        if self.service_selects_role:
            self.env.rbac.delete_namespaced_role_binding(self.name, ns)
            self.env.rbac.delete_namespaced_role(self.name, ns)
            self.env.core.delete_namespaced_service_account(self.name, ns)

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


class CarefulWorld(StatefulSetWorld):
    kind = "careful"
    entrypoint = "careful.sh"
    budget = True
    service_selects_role = True
    prestop = True


class SeedScriptWorld(StatefulSetWorld):
    kind = "seed_script"
    entrypoint = "seed.sh"


class PlainWorld(StatefulSetWorld):
    kind = "plain"
    entrypoint = "plain.sh"


WORLDS: dict[str, type[World]] = {
    "operator": OperatorWorld,
    "careful": CarefulWorld,
    "seed_script": SeedScriptWorld,
    "plain": PlainWorld,
}


# -- events ------------------------------------------------------------------------------------------


def _nothing(world: World) -> int:
    return 0


def _restarts(world: World) -> int:
    return world.max_unavailable


def _one(world: World) -> int:
    return 1


STREAMS_SHAPE = Shape(grace_seconds=STREAM_GRACE_SECONDS, app_shutdown_seconds=APP_SHUTDOWN_SECONDS)
LONG_JOBS_SHAPE = Shape(grace_seconds=LONG_JOB_GRACE_SECONDS)


@dataclass(frozen=True)
class Event:
    """One lifecycle event. `act` starts the change (some carry it through); `start` is the shape
    the world is brought to first; `allowance(world)` is how many pods the change may take down at
    once below the smaller of the desired numbers before and after it; `streams`: the consumers
    send LLM-style streams instead of short requests; `long_jobs`: the producer pushes
    `Load.long_jobs` jobs of `Load.long_job_seconds` instead of short ones; `needs_idle_path`: the
    operator world loses nothing here only with lifecycle.idlePath."""

    name: str
    what: str
    act: Callable[[World, Load], None]
    start: Shape = Shape()
    allowance: Callable[[World], int] = _nothing
    streams: bool = False
    long_jobs: bool = False
    operator_only: bool = False
    needs_idle_path: bool = False


def _steady(world: World, load: Load) -> None:
    time.sleep(STEADY_SECONDS)  # the measurement window itself


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
    world.drain(timeout=180)


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


def _pod_deleted_while_operator_away(how: str, away_seconds: float) -> Callable[[World, Load], None]:
    """The operator goes away (`how`: "killed", SIGKILL as in a crash or a node loss; "stopped",
    SIGTERM as in an upgrade), sync pod 0 is deleted while it is away, and it comes back
    `away_seconds` later. The pod keeps serving while its preStop waits for the release the
    operator confirms (bounded by the grace period); the returning operator deregisters it first
    thing (pending releases), and only then does the pod go offline and drain."""

    def act(world: World, load: Load) -> None:
        operator = world.env.operator
        if how == "killed":
            operator.kill()
        else:
            operator.stop()
        world.delete_pod(f"{world.name}-0")
        time.sleep(away_seconds)  # the length of the absence is the event itself, not a wait on anything
        operator.start()

    return act


# The absence after a SIGKILL also lasts until the peering lease (15 s) lapses; the grace period
# leaves the pod room to wait for the returning operator's release within it.
AWAY_SHAPE = Shape(grace_seconds=60)


def _slow_model_load(world: World, load: Load) -> None:
    world.roll(model_load_seconds=SLOW_LOAD_SECONDS)


def _long_jobs_scale_down(world: World, load: Load) -> None:
    """Once the last async pod holds a long job, it is scaled away."""
    import redis

    last = f"{world.name}-{world.shape.replicas - 1}"
    client = redis.Redis.from_url(world.env.redis_url)
    try:
        wait_for(
            lambda: client.llen(f"{world.queue}:processing:{last}") > 0,
            30,
            interval=0.2,
            message=f"{last} took no long job",
        )
    finally:
        client.close()
    world.set_replicas(world.shape.replicas - 1)


EVENTS: tuple[Event, ...] = (
    Event("steady", f"no change: {STEADY_SECONDS} s of the load alone", _steady),
    Event("delete-sync-pod", "kubectl delete of sync pod 0", _delete_sync_pod, allowance=_one),
    Event("scale-down", f"replicas {REPLICAS} -> 1, through sync ordinal 1", _scale_down),
    Event("scale-up", f"replicas 1 -> {REPLICAS}", _scale_up, start=Shape(replicas=1)),
    Event("split-change", f"syncReplicas {SYNC} -> {SYNC + 1} (a pod flips to sync)", _split_change),
    Event(
        "split-change-back",
        f"syncReplicas {SYNC + 1} -> {SYNC} (it flips back)",
        _split_back,
        start=Shape(sync=SYNC + 1),
    ),
    Event("rollout", "a template change: every pod restarts", _rollout, allowance=_restarts),
    Event(
        "drain",
        "kubectl drain of the real node holding the pods (eviction; the other real node has room), exit status checked",
        _drain,
        allowance=_restarts,
    ),
    Event(
        "operator-killed-mid-rollout",
        "a rollout; the operator SIGKILLed once it is under way, started again "
        "once the StatefulSet has made the restarted pod's successor",
        _operator_killed_mid_rollout,
        allowance=_restarts,
        operator_only=True,
    ),
    Event(
        "operator-killed-pod-deleted",
        "the operator SIGKILLed; sync pod 0 deleted while it is away; started again 10 s later",
        _pod_deleted_while_operator_away("killed", 10.0),
        start=AWAY_SHAPE,
        allowance=_one,
        operator_only=True,
    ),
    Event(
        "operator-upgraded-pod-deleted",
        "the operator stopped (SIGTERM, as an upgrade does); sync pod 0 deleted meanwhile; started again 10 s later",
        _pod_deleted_while_operator_away("stopped", 10.0),
        start=AWAY_SHAPE,
        allowance=_one,
        operator_only=True,
    ),
    Event(
        "slow-model-load",
        f"a rollout to a {SLOW_LOAD_SECONDS} s model load (the operator: with "
        f"registerDelaySeconds {REGISTER_DELAY_SECONDS})",
        _slow_model_load,
        allowance=_restarts,
    ),
    Event(
        "streams-delete-sync-pod",
        f"LLM-style streams (5-30 s); sync pod 0 deleted; the app's shutdown timeout {APP_SHUTDOWN_SECONDS} s, "
        f"grace {STREAM_GRACE_SECONDS} s",
        _delete_sync_pod,
        start=STREAMS_SHAPE,
        allowance=_one,
        streams=True,
        needs_idle_path=True,
    ),
    Event(
        "streams-rollout",
        f"LLM-style streams (5-30 s); a rollout; the app's shutdown timeout {APP_SHUTDOWN_SECONDS} s, "
        f"grace {STREAM_GRACE_SECONDS} s",
        _rollout,
        start=STREAMS_SHAPE,
        allowance=_restarts,
        streams=True,
        needs_idle_path=True,
    ),
    Event(
        "long-jobs-scale-down",
        f"batch jobs of a minute; replicas {REPLICAS} -> {REPLICAS - 1} once the last async pod holds one "
        f"(grace {LONG_JOB_GRACE_SECONDS} s)",
        _long_jobs_scale_down,
        start=LONG_JOBS_SHAPE,
        long_jobs=True,
    ),
)
EVENTS_BY_NAME = {event.name: event for event in EVENTS}


@dataclass
class Outcome:
    """What one event cost: per consumer, the jobs, the capacity per phase."""

    registry: dict[str, Any] = field(default_factory=dict)
    service: dict[str, Any] = field(default_factory=dict)
    jobs: dict[str, Any] = field(default_factory=dict)
    capacity: dict[str, Any] = field(default_factory=dict)
    traffic: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    settle_seconds: float = 0.0
    error: str | None = None
    watch_errors: list[str] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return self.registry.get("failed", 0) + self.service.get("failed", 0)

    @property
    def cut(self) -> int:
        return self.registry.get("cut", 0) + self.service.get("cut", 0)

    @property
    def no_instance(self) -> int:
        return self.registry.get("no_instance", 0)

    @property
    def jobs_lost(self) -> int:
        return self.jobs.get("lost", 0)

    @property
    def jobs_duplicated(self) -> int:
        return self.jobs.get("done_twice_or_more", 0)

    @property
    def capacity_short(self) -> list[str]:
        """The phases in which the capacity fell below its bound (one sentence each)."""
        return [
            f"{phase}: {c['lowest']} < {c['bound']} for {c['seconds_below']} s"
            for phase, c in self.capacity.items()
            if isinstance(c, dict) and (c["lowest"] is None or c["lowest"] < c["bound"])
        ]

    def as_dict(self) -> dict[str, Any]:
        return {
            "failed": self.failed,
            "cut": self.cut,
            "no_instance": self.no_instance,
            "jobs_lost": self.jobs_lost,
            "jobs_duplicated": self.jobs_duplicated,
            "capacity_short": self.capacity_short,
            "seconds": round(self.seconds, 1),
            "settle_seconds": round(self.settle_seconds, 1),
            "traffic": self.traffic,
            "registry_consumer": self.registry,
            "service_consumer": self.service,
            "jobs": self.jobs,
            "capacity": self.capacity,
            **({"watch_errors": self.watch_errors} if self.watch_errors else {}),
            **({"error": self.error} if self.error else {}),
        }


def settle_timeout(world: World, load: Load, *shapes: Shape) -> float:
    """How long a change may take to settle: the event's bound, plus a grace period per pod (a
    rolling change in a world whose pods are SIGKILLed at its end waits it out pod by pod)."""
    grace = max(shape.grace_seconds for shape in (world.shape, *shapes))
    return load.event_timeout + max(shape.replicas for shape in (world.shape, *shapes)) * grace


async def _measure(world: World, event: Event, load: Load, inject: Callable[[World], None] | None) -> Outcome:
    """Load starts, the event runs and settles, the load stops (streams in flight run to their
    end); capacity is followed all along. Then the jobs pushed are given time to be done."""
    outcome = Outcome()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    before = world.shape
    request = (
        Request("/stream", load.stream_seconds, timeout=30.0) if event.streams else Request("/", None, timeout=10.0)
    )
    rate = load.stream_rps if event.streams else None
    registry_rate, service_rate = rate or load.registry_rps, rate or load.service_rps
    timeout = settle_timeout(world, load, event.start)
    limit = int(timeout * 4 * max(registry_rate, service_rate, load.jobs_per_second)) + 1
    registry = RegistryConsumer(world.env.etcd_url, world.env.prefix, world.name, request=request)
    service = ServiceConsumer(world.service_url(), request=request)
    jobs = JobProducer(
        world.env.redis_url,
        queue=world.queue,
        name=f"{event.name}-{secrets.token_hex(2)}",
        job_seconds=load.long_job_seconds if event.long_jobs else None,
    )
    job_rate, job_limit = (0.5, load.long_jobs) if event.long_jobs else (load.jobs_per_second, limit)
    purged = await jobs.purge()
    capacity = world.capacity_watch()
    window = timeout * 2 + 60
    watching = asyncio.create_task(capacity.run(window, stop))
    if not await capacity.started():
        outcome.watch_errors.append(f"the capacity watches did not start: {capacity.error}")
    started = loop.time()
    tasks = [
        asyncio.create_task(registry.run(registry_rate, timeout * 2, limit, stop)),
        asyncio.create_task(service.run(service_rate, timeout * 2, limit, stop)),
        asyncio.create_task(jobs.run(job_rate, timeout * 2, job_limit, stop)),
    ]
    acting: float | None = None
    settled: float | None = None
    try:
        # The "before" phase: a second of load; with streams, as long as the longest, so that as
        # many are in flight at the change as in a steady state.
        await asyncio.sleep(load.stream_seconds[1] if event.streams else 1.0)
        acting = loop.time()
        await asyncio.to_thread(event.act, world, load)
        if inject is not None:
            await asyncio.to_thread(inject, world)
        await asyncio.to_thread(world.wait_settled, timeout)
        settled = loop.time()
        outcome.settle_seconds = settled - acting
        await asyncio.sleep(1.0)  # and a second after it settled, in the "after" phase
    except AssertionError as exc:
        outcome.error = str(exc)[:800]
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        ended = loop.time()
        await watching
        outcome.seconds = ended - started
    after = world.shape
    low = min(before.desired, after.desired) - event.allowance(world)
    phases = {"before": (started, acting or ended, before.desired)}
    if acting is not None:
        phases["during"] = (acting, settled or ended, low)
    if settled is not None:
        phases["after"] = (settled, ended, after.desired)
    for phase, (start, end, bound) in phases.items():
        outcome.capacity[phase] = {
            "lowest": capacity.lowest(start, end),
            "bound": bound,
            "seconds_below": round(capacity.seconds_below(bound, start, end), 2),
            "seconds": round(end - start, 1),
        }
    outcome.capacity["max_unavailable"] = event.allowance(world)
    outcome.capacity["timeline"] = [(round(t - started, 2), v) for t, v in capacity.timeline]
    outcome.watch_errors += [e for e in (capacity.error, registry.watch_error) if e]
    # Jobs are scored where async pods work them: the end shape, else the start again.
    if after.workers == 0:
        try:
            await asyncio.to_thread(world.converge, before, settle_timeout(world, load, before))
        except AssertionError as exc:
            outcome.error = outcome.error or f"could not come back to the start: {str(exc)[:500]}"
    jobs_timeout = load.jobs_timeout + (load.long_job_seconds * load.long_jobs if event.long_jobs else 0)
    await jobs.wait_finished(jobs_timeout)
    outcome.jobs = {**(await jobs.report()).as_dict(), "left_by_earlier_events": purged}
    await jobs.close()
    outcome.registry, outcome.service = registry.tally.as_dict(), service.tally.as_dict()
    seconds = max(outcome.seconds, 1e-9)
    outcome.traffic = {
        "request": request.as_dict(),
        "registry_rate": registry_rate,
        "service_rate": service_rate,
        "registry_achieved_rate": round(registry.tally.sent / seconds, 1),
        "service_achieved_rate": round(service.tally.sent / seconds, 1),
        "service_connections": "new per request",
        "jobs": {"rate": job_rate, "seconds": load.long_job_seconds if event.long_jobs else WORK_SECONDS},
    }
    return outcome


def run_event(
    world: World,
    event: Event,
    load: Load,
    progress: Callable[[str], None] = print,
    inject: Callable[[World], None] | None = None,
) -> Outcome:
    """One event on its own: the world brought to the event's start, then measured. `inject`
    (tests of the counts only) runs right after the event's act, inside the measurement."""
    try:
        world.converge(event.start, settle_timeout(world, load, event.start))
    except AssertionError as exc:  # reported as the event's error; the next event starts afresh
        progress(f"{world.kind}: {event.name}: could not bring the world to the event's start: {exc}")
        return Outcome(error=f"could not bring the world to the event's start: {str(exc)[:700]}")
    progress(f"{world.kind}: {event.name} ({event.what})")
    outcome = asyncio.run(_measure(world, event, load, inject))
    progress(f"{world.kind}: {event.name}: {json.dumps(summary(outcome))}")
    return outcome


def run_events(
    world: World,
    load: Load,
    events: tuple[Event, ...] = EVENTS,
    progress: Callable[[str], None] = print,
    done: Callable[[str, Outcome], None] = lambda name, outcome: None,
) -> dict[str, Outcome]:
    """Every event that applies to the world, each on its own; {event name: Outcome}. `done` is
    called after each (the benchmark writes what it has so far)."""
    outcomes = {}
    for event in events:
        if event.operator_only and world.kind != "operator":
            continue
        outcomes[event.name] = run_event(world, event, load, progress)
        done(event.name, outcomes[event.name])
    return outcomes


def summary(outcome: Outcome) -> dict[str, Any]:
    """The counts of an outcome, without the details."""
    return {
        "failed": outcome.failed,
        "cut": outcome.cut,
        "no_instance": outcome.no_instance,
        "jobs_lost": outcome.jobs_lost,
        "jobs_duplicated": outcome.jobs_duplicated,
        "jobs_left": outcome.jobs.get("left_in_lists"),
        "capacity_short": outcome.capacity_short,
        "lowest": {p: c["lowest"] for p, c in outcome.capacity.items() if isinstance(c, dict)},
        "seconds": round(outcome.seconds, 1),
        **({"error": outcome.error[:200]} if outcome.error else {}),
    }
