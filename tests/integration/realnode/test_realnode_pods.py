"""A two-role service on real pods (the sample app image on the real node, registry etcd, the async
role on a real Redis): readiness runs each role's own check, the launcher is PID 1 and the app
sees the pod contract's env, a deleted sync pod leaves the registry before its drain ends and
before SIGTERM, and a split change restarts only the pod whose role flips.

One InferenceService serves the whole module (3 pods; the tests run in file order)."""

from __future__ import annotations

import json
import secrets

import pytest

from devtools.harness import etcd_registry, isvc_body, wait_for
from devtools.harness.realpods import KeyWatch, delete_and_time, parse_cri_time
from infer_operator import labels
from tests.support.realnode import exec_in, sample_template, wait_pods
from tests.support.truth import expected_entries

pytestmark = [pytest.mark.integration, pytest.mark.registry, pytest.mark.realnode]

NAME = "two"
MODEL_LOAD_SECONDS = 4
DRAIN_SECONDS = 2
GRACE_SECONDS = 10
# What the app sees of its own process tree and env, printed as JSON by `kubectl exec`.
INSPECT = """
import json, os
def env(pid):
    return dict(x.split('=', 1) for x in open(f'/proc/{pid}/environ').read().split('\\0') if '=' in x)
def cmd(pid):
    return open(f'/proc/{pid}/cmdline').read().split('\\0')[:-1]
app = [int(p) for p in os.listdir('/proc') if p.isdigit() and cmd(p)[-1:] == ['/app/app.py'] and 'python' in cmd(p)[0]]
print(json.dumps({'pid1': cmd(1), 'app_pids': app, 'env': env(app[0]) if app else {}}))
"""


@pytest.fixture(scope="module")
def prefix():
    return f"/rn-{secrets.token_hex(3)}"


@pytest.fixture(scope="module")
def service(kube, operator, real_node, pod_redis, etcd_server, module_namespace, prefix):
    """The module's InferenceService, created once, Ready on the real node."""
    if not operator.alive():  # an earlier test stopped the session's operator
        operator.start()
    body = isvc_body(
        NAME,
        replicas=3,
        syncReplicas=2,
        template=sample_template(
            real_node, {"REDIS_URL": pod_redis.url, "MODEL_LOAD_SECONDS": str(MODEL_LOAD_SECONDS)}, gpus=1
        ),
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
        registry=etcd_registry(etcd_server.client_url, prefix),
        **{
            "async": {
                "command": ["python", "/app/app.py"],
                "readinessProbe": {"exec": {"command": ["test", "-f", "/tmp/worker-ready"]}, "periodSeconds": 1},
            }
        },
    )
    kube.create_isvc(module_namespace, body)
    return wait_pods(kube, module_namespace, NAME, 3, timeout=120)


def containers_ready_at(pod) -> float:
    cond = next(c for c in pod.status.conditions if c.type == "ContainersReady")
    return cond.last_transition_time.timestamp()


def test_readiness_runs_each_roles_own_check(cluster, service, module_namespace):
    """The model loads for 4 s: a sync pod turns ready only once its port answers, an async pod
    only once its worker writes its ready file (each role's own probe, through one exec probe);
    the pod is Ready only after that and the operator's readiness gate."""
    for name, pod in sorted(service.items()):
        role = pod.metadata.labels[labels.LABEL_ROLE]
        logs = cluster.kubectl("logs", "-n", module_namespace, name, "-c", "app", "--timestamps")
        assert logs.returncode == 0, logs.stderr
        marker = "sync role serving on" if role == "sync" else "async role working on"
        line = next((ln for ln in logs.stdout.splitlines() if marker in ln), None)
        assert line, f"{name} ({role}) never logged {marker!r}:\n{logs.stdout}"
        serving_at = parse_cri_time(line.split(" ", 1)[0])
        started_at = pod.status.container_statuses[0].state.running.started_at.timestamp()
        ready_at = containers_ready_at(pod)
        # Condition times have one-second resolution (truncated).
        assert ready_at >= int(serving_at), f"{name} ({role}) was ready at {ready_at}, before it served ({serving_at})"
        assert ready_at >= started_at + MODEL_LOAD_SECONDS - 1, f"{name} ({role}) ready during its model load"
        assert role == ("sync" if int(name.rsplit("-", 1)[1]) < 2 else "async")
        # The readiness gate: the kubelet holds Ready until the operator has done its part (a sync
        # pod registered, an async pod's containers ready), so Ready never precedes ContainersReady.
        assert labels.CONDITION_READY in [g.condition_type for g in pod.spec.readiness_gates or []]
        gate = next(c for c in pod.status.conditions if c.type == labels.CONDITION_READY)
        ready = next(c for c in pod.status.conditions if c.type == "Ready")
        assert gate.status == "True" and ready.last_transition_time.timestamp() >= ready_at, name
    assert exec_in(cluster, module_namespace, f"{NAME}-2", "test", "-f", "/tmp/worker-ready") == ""


def test_launcher_is_pid1_and_the_app_sees_its_ordinal(cluster, service, module_namespace):
    for name, pod in sorted(service.items()):
        ordinal = int(name.rsplit("-", 1)[1])
        seen = json.loads(exec_in(cluster, module_namespace, name, "python", "-c", INSPECT))
        assert seen["pid1"][:2] == ["/bin/sh", "/infer-operator/launch.sh"], seen["pid1"]
        assert len(seen["app_pids"]) == 1 and seen["app_pids"][0] != 1, seen
        env = seen["env"]
        assert env["INFER_ROLE"] == ("sync" if ordinal < 2 else "async")
        assert env["INFER_ORDINAL"] == str(ordinal)
        assert (env["INFER_SYNC_REPLICAS"], env["INFER_REPLICAS"]) == ("2", "3")
        assert (env["POD_NAME"], env["POD_NAMESPACE"], env["INFER_SERVICE"]) == (name, module_namespace, NAME)
        assert env["POD_IP"] == pod.status.pod_ip and pod.status.pod_ip.startswith("10.245.0.")


def test_sync_pod_leaves_the_registry_before_its_drain_ends_and_before_sigterm(
    kube, service, module_namespace, real_node, etcd_server, prefix
):
    def registered():
        want = {f"{prefix}/{NAME}/instances/{k}" for k in expected_entries(kube, module_namespace, NAME)}
        return len(want) == 2 and set(etcd_server.range_prefix(f"{prefix}/{NAME}/instances/")) == want

    wait_for(registered, 60, message="the two sync pods are not both registered")
    pod = kube.core.read_namespaced_pod(f"{NAME}-0", module_namespace)
    key = f"{prefix}/{NAME}/instances/{pod.status.pod_ip}:8000"
    watch = KeyWatch(etcd_server.client_url, f"{prefix}/{NAME}/instances/").start()
    try:
        timeline = delete_and_time(kube.core, module_namespace, pod.metadata.name, real_node.pod_logs, watch, key)
    finally:
        watch.stop()
    print(json.dumps(timeline.as_dict()), *timeline.log, sep="\n")
    t = timeline
    assert None not in (t.deregistered, t.offline_called, t.drain_ended, t.sigterm), t.as_dict()
    assert t.deregistered < t.drain_ended and t.deregistered < t.sigterm, t.as_dict()
    assert t.offline_called < t.drain_ended <= t.sigterm + 0.05, t.as_dict()
    assert t.drain_ended - t.offline_called >= DRAIN_SECONDS - 0.2, t.as_dict()
    # The app exits on SIGTERM: the pod goes well before its grace period ends.
    assert t.gone < GRACE_SECONDS - 2, t.as_dict()
    wait_pods(kube, module_namespace, NAME, 3, timeout=90)
    wait_for(registered, 60, message="the recreated sync pod is not registered again")


def test_split_change_restarts_only_the_flipped_pod(kube, service, module_namespace, etcd_server, prefix):
    before = {n: p.metadata.uid for n, p in wait_pods(kube, module_namespace, NAME, 3).items()}
    kube.patch_isvc(module_namespace, NAME, {"spec": {"syncReplicas": 1}})

    def flipped():
        pods = wait_pods(kube, module_namespace, NAME, 3, timeout=60)
        flip = pods[f"{NAME}-1"]
        return (
            flip.metadata.uid != before[f"{NAME}-1"] and flip.metadata.labels.get(labels.LABEL_ROLE) == "async" and pods
        )

    pods = wait_for(flipped, 90, interval=0.5, message=f"{NAME}-1 did not come back as async")
    assert {n: p.metadata.uid for n, p in pods.items() if n != f"{NAME}-1"} == {
        n: u for n, u in before.items() if n != f"{NAME}-1"
    }, "a pod whose role did not flip was restarted"
    ip0 = pods[f"{NAME}-0"].status.pod_ip
    wait_for(
        lambda: (
            set(etcd_server.range_prefix(f"{prefix}/{NAME}/instances/")) == {f"{prefix}/{NAME}/instances/{ip0}:8000"}
        ),
        30,
        message="the registry does not hold just the one sync pod",
    )
