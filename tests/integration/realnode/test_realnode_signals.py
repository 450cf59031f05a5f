"""Shutdown on real pods: an app that ignores SIGTERM is killed at terminationGracePeriodSeconds
and the pod goes; an app that exits on SIGTERM makes its pod go at once; without role commands
the container keeps its own entrypoint as PID 1 and the app picks its role from the env."""

from __future__ import annotations

import json
import time

import pytest

from devtools.harness import isvc_body, wait_for
from devtools.harness.realpods import SIGTERM_MSG, ContainerLog, container_log_file
from tests.support.realnode import exec_in, sample_template, wait_pods

pytestmark = [pytest.mark.integration, pytest.mark.realnode]

# Logs SIGTERM (as the sample app does) and carries on; ready at once.
STUBBORN = """
import json, signal, time
def log(msg):
    print(json.dumps({'ts': round(time.time(), 3), 'msg': msg}), flush=True)
signal.signal(signal.SIGTERM, lambda *a: log('SIGTERM received'))
log('ignoring SIGTERM from now on')
while True:
    time.sleep(1)
"""
ALWAYS_READY = {"exec": {"command": ["true"]}, "periodSeconds": 1}
# All pods sync; the async role still needs a command when the sync role has one.
NO_ASYNC_PODS = {"async": {"command": ["python", "/app/app.py"]}}


@pytest.fixture(scope="module")
def live_operator(operator):
    if not operator.alive():  # an earlier test stopped the session's operator
        operator.start()
    return operator


def delete_and_watch(kube, namespace: str, name: str, node, timeout: float = 60) -> tuple[float, ContainerLog]:
    """Delete a pod; the seconds until its object is gone, and its container log read to the end."""
    from kubernetes.client.rest import ApiException

    pod = kube.core.read_namespaced_pod(name, namespace)
    log = ContainerLog(
        wait_for(
            lambda: container_log_file(node.pod_logs, namespace, name, pod.metadata.uid, "app"),
            30,
            message=f"no log of {name}",
        )
    )
    t0 = time.time()
    kube.core.delete_namespaced_pod(name, namespace, body={"preconditions": {"uid": pod.metadata.uid}})

    def gone() -> bool:
        try:
            return kube.core.read_namespaced_pod(name, namespace).metadata.uid != pod.metadata.uid
        except ApiException as exc:
            if exc.status == 404:
                return True
            raise

    wait_for(gone, timeout, interval=0.05, message=f"{name} still there")
    elapsed = time.time() - t0
    log.read()
    log.close()
    log.t0 = t0
    return elapsed, log


def test_app_ignoring_sigterm_is_killed_at_the_grace_period(kube, live_operator, real_node, module_namespace):
    grace = 5
    kube.create_isvc(
        module_namespace,
        isvc_body(
            "stubborn",
            replicas=1,
            syncReplicas=1,
            template=sample_template(real_node),
            sync={"command": ["python", "-u", "-c", STUBBORN], "port": 8000, "readinessProbe": ALWAYS_READY},
            lifecycle={"drainSeconds": 1, "terminationGracePeriodSeconds": grace},
            **NO_ASYNC_PODS,
        ),
    )
    wait_pods(kube, module_namespace, "stubborn", 1)
    elapsed, log = delete_and_watch(kube, module_namespace, "stubborn-0", real_node)
    sigterm = log.app_time(SIGTERM_MSG)
    assert sigterm is not None, "the launcher did not forward SIGTERM to the app:\n" + "\n".join(
        x.text for x in log.lines
    )
    # SIGTERM after the 1 s drain; SIGKILL at the grace period, counted from the deletion.
    assert 0.8 <= sigterm - log.t0 < grace - 1, sigterm - log.t0
    assert grace - 0.5 <= elapsed < grace + 5, f"pod gone {elapsed:.1f}s after deletion, grace period {grace}s"


def test_app_exiting_at_once_makes_the_pod_go_at_once(kube, live_operator, real_node, module_namespace):
    grace = 30
    kube.create_isvc(
        module_namespace,
        isvc_body(
            "quick",
            replicas=1,
            syncReplicas=1,
            template=sample_template(real_node),
            sync={
                "command": ["python", "/app/app.py"],
                "port": 8000,
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8000}, "periodSeconds": 1},
            },
            lifecycle={"drainSeconds": 0, "terminationGracePeriodSeconds": grace},
            **NO_ASYNC_PODS,
        ),
    )
    wait_pods(kube, module_namespace, "quick", 1)
    elapsed, log = delete_and_watch(kube, module_namespace, "quick-0", real_node)
    assert log.app_time(SIGTERM_MSG) is not None
    assert any("sync role stopped" in line.text for line in log.lines)
    assert elapsed < 5, f"pod gone {elapsed:.1f}s after deletion (grace period {grace}s)"


def test_without_role_commands_the_entrypoint_is_pid1_and_decides_from_the_env(
    cluster, kube, live_operator, real_node, pod_redis, module_namespace
):
    kube.create_isvc(
        module_namespace,
        isvc_body(
            "plain",
            replicas=2,
            syncReplicas=1,
            template=sample_template(real_node, {"REDIS_URL": pod_redis.url}),
            sync={"port": 8000, "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8000}, "periodSeconds": 1}},
            lifecycle={"drainSeconds": 0, "terminationGracePeriodSeconds": 5},
            **{
                "async": {
                    "readinessProbe": {"exec": {"command": ["test", "-f", "/tmp/worker-ready"]}, "periodSeconds": 1}
                }
            },
        ),
    )
    pods = wait_pods(kube, module_namespace, "plain", 2)
    for name, pod in sorted(pods.items()):
        ordinal = int(name.rsplit("-", 1)[1])
        seen = json.loads(
            exec_in(
                cluster,
                module_namespace,
                name,
                "python",
                "-c",
                "import json, os; print(json.dumps({'pid1': open('/proc/1/cmdline').read()"
                ".split('\\0')[:-1], 'env': dict(os.environ)}))",
            )
        )
        assert seen["pid1"] == ["python", "/app/app.py"], "the image's entrypoint is not PID 1"
        env = seen["env"]
        assert "INFER_ROLE" not in env
        assert (env["INFER_ORDINAL"], env["INFER_SYNC_REPLICAS"], env["INFER_REPLICAS"]) == (str(ordinal), "1", "2")
        assert env["POD_IP"] == pod.status.pod_ip
        logs = cluster.kubectl("logs", "-n", module_namespace, name, "-c", "app").stdout
        roles = {json.loads(line)["role"] for line in logs.splitlines() if line.startswith("{")}
        assert roles == {"sync" if ordinal == 0 else "async"}, logs
