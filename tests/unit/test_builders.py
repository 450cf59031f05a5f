"""Builders: spec in, manifests out. Table-style over roles, env, probes, preStop, grace, labels, services."""

import pytest

from devtools.harness import isvc_body
from infer_operator import labels
from infer_operator.api.v1alpha1 import parse_spec
from infer_operator.builders import BuildError, Owner, build_all
from infer_operator.builders.statefulset import GATE_CONTAINER, build_statefulset

OWNER = Owner("llm", "prod", "uid-1")


def objects(**overrides):
    return {
        o["kind"] + "/" + o["metadata"]["name"]: o for o in build_all(OWNER, parse_spec(isvc_body(**overrides)["spec"]))
    }


def statefulset(**overrides):
    return build_statefulset(OWNER, parse_spec(isvc_body(**overrides)["spec"]))


def main_container(**overrides):
    return statefulset(**overrides)["spec"]["template"]["spec"]["containers"][0]


def env_of(container):
    return {
        e["name"]: e.get("value", e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")) for e in container["env"]
    }


def test_builds_the_four_owned_objects_all_owned_and_labelled():
    built = objects()
    assert sorted(built) == ["ConfigMap/llm-scripts", "Service/llm", "Service/llm-headless", "StatefulSet/llm"]
    for obj in built.values():
        assert obj["metadata"]["namespace"] == "prod"
        assert obj["metadata"]["ownerReferences"] == [OWNER.reference()]
        assert obj["metadata"]["labels"][labels.LABEL_MANAGED_BY] == "infer-operator"


@pytest.mark.parametrize(
    ("budget", "strategy", "limit"),
    [
        (None, None, None),
        ({}, None, {"maxUnavailable": 1}),  # the rollout's budget
        ({}, {"rollingUpdate": {"maxUnavailable": 3}}, {"maxUnavailable": 3}),
        ({"maxUnavailable": "25%"}, None, {"maxUnavailable": "25%"}),
        ({"minAvailable": 2}, {"rollingUpdate": {"maxUnavailable": 3}}, {"minAvailable": 2}),
    ],
)
def test_disruption_budget(budget, strategy, limit):
    built = objects(replicas=8, podDisruptionBudget=budget, updateStrategy=strategy)
    if limit is None:
        assert "PodDisruptionBudget/llm" not in built
        return
    pdb = built["PodDisruptionBudget/llm"]
    assert pdb["metadata"]["ownerReferences"] == [OWNER.reference()]
    assert {k: v for k, v in pdb["spec"].items() if k in ("maxUnavailable", "minAvailable")} == limit
    assert pdb["spec"]["selector"] == {"matchLabels": labels.selector_labels("llm")}
    assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    # The StatefulSet comes last: what its pods need, and what guards them, is there first.
    assert list(built)[-1] == "StatefulSet/llm"


def test_statefulset_shape():
    sts = statefulset(replicas=7, syncReplicas=3)
    assert sts["spec"]["replicas"] == 7
    assert sts["spec"]["serviceName"] == "llm-headless"
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    assert sts["spec"]["selector"]["matchLabels"] == {labels.LABEL_NAME: "llm", labels.LABEL_SERVICE: "llm"}
    pod_labels = sts["spec"]["template"]["metadata"]["labels"]
    assert pod_labels == {
        "team": "ml",
        labels.LABEL_NAME: "llm",
        labels.LABEL_SERVICE: "llm",
        labels.LABEL_MANAGED_BY: "infer-operator",
    }


@pytest.mark.parametrize(
    "overrides",
    [
        {"syncReplicas": 1},
        {"syncReplicas": 4},
        {"replicas": 9, "syncReplicas": 4},
        {"replicas": 2, "syncReplicas": None},
    ],
)
def test_pod_template_does_not_depend_on_the_split(overrides):
    """Changing syncReplicas or replicas must never roll the StatefulSet."""
    assert statefulset(**overrides)["spec"]["template"] == statefulset()["spec"]["template"]


@pytest.mark.parametrize(
    ("overrides", "command", "args", "has_role_env"),
    [
        ({}, ["python", "-m", "app"], None, False),
        (
            {"sync": {"command": ["serve"], "args": ["--port", "8000"]}, "async": {"command": ["work"]}},
            ["/bin/sh", "/infer-operator/launch.sh"],
            ["3", "serve", "--port", "8000", "work"],
            True,
        ),
        # a role without a command falls back to the container's own command
        (
            {"sync": {"command": ["serve"]}},
            ["/bin/sh", "/infer-operator/launch.sh"],
            ["1", "serve", "python", "-m", "app"],
            True,
        ),
        (
            {"async": {"command": ["work", "a b"]}},
            ["/bin/sh", "/infer-operator/launch.sh"],
            ["3", "python", "-m", "app", "work", "a b"],
            True,
        ),
    ],
)
def test_role_commands_go_through_the_launcher(overrides, command, args, has_role_env):
    main = main_container(**overrides)
    assert main["command"] == command
    assert main.get("args") == args
    assert ("INFER_ROLE" in env_of(main)) == has_role_env


def test_role_command_without_any_fallback_is_a_clear_error():
    body = isvc_body(sync={"command": ["serve"]})
    del body["spec"]["template"]["spec"]["containers"][0]["command"]
    with pytest.raises(BuildError, match=r"spec\.async\.command"):
        build_all(OWNER, parse_spec(body["spec"]))


def test_contract_env_and_user_env_kept():
    body = isvc_body()
    body["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "MODEL", "value": "llama"}]
    main = build_statefulset(OWNER, parse_spec(body["spec"]))["spec"]["template"]["spec"]["containers"][0]
    env = env_of(main)
    assert env == {
        "MODEL": "llama",
        "INFER_SYNC_PORT": "8000",
        "INFER_GRACE_SECONDS": "3",
        "INFER_SERVICE": "llm",
        "INFER_ORDINAL": "metadata.labels['apps.kubernetes.io/pod-index']",
        "INFER_REPLICAS": "metadata.annotations['infer-operator.io/replicas']",
        "INFER_SYNC_REPLICAS": "metadata.annotations['infer-operator.io/sync-replicas']",
        "POD_NAME": "metadata.name",
        "POD_NAMESPACE": "metadata.namespace",
        "POD_IP": "status.podIP",
    }


@pytest.mark.parametrize(
    ("overrides", "timing"),
    [
        ({}, {"periodSeconds": 5, "timeoutSeconds": 3, "failureThreshold": 3, "successThreshold": 1}),
        (
            {
                "sync": {
                    "readinessProbe": {
                        "httpGet": {"path": "/healthz", "port": 8000},
                        "periodSeconds": 2,
                        "failureThreshold": 30,
                    }
                }
            },
            {"periodSeconds": 2, "timeoutSeconds": 3, "failureThreshold": 30, "successThreshold": 1},
        ),
        (
            {"async": {"readinessProbe": {"exec": {"command": ["true"]}, "initialDelaySeconds": 9}}},
            {
                "periodSeconds": 5,
                "timeoutSeconds": 3,
                "failureThreshold": 3,
                "successThreshold": 1,
                "initialDelaySeconds": 9,
            },
        ),
    ],
)
def test_one_role_dispatching_readiness_probe(overrides, timing):
    probe = main_container(**overrides)["readinessProbe"]
    assert probe == {"exec": {"command": ["/bin/sh", "/infer-operator/probe.sh"]}, **timing}


def test_prestop_grace_and_mounts():
    body = isvc_body(lifecycle={"drainSeconds": 20, "terminationGracePeriodSeconds": 90})
    body["spec"]["template"]["spec"]["containers"][0]["lifecycle"] = {"postStart": {"exec": {"command": ["hi"]}}}
    sts = build_statefulset(OWNER, parse_spec(body["spec"]))
    pod_spec = sts["spec"]["template"]["spec"]
    main = pod_spec["containers"][0]
    assert main["lifecycle"] == {
        "postStart": {"exec": {"command": ["hi"]}},
        "preStop": {"exec": {"command": ["/bin/sh", "/infer-operator/prestop.sh"]}},
    }
    assert pod_spec["terminationGracePeriodSeconds"] == 90
    assert {"name": "infer-operator-scripts", "mountPath": "/infer-operator", "readOnly": True} in main["volumeMounts"]
    volumes = {v["name"]: v for v in pod_spec["volumes"]}
    assert volumes["infer-operator-scripts"]["configMap"]["name"] == "llm-scripts"
    assert volumes["infer-operator-podinfo"]["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"] == "metadata.labels"


def test_gate_init_container_runs_first_with_main_image_and_resources():
    body = isvc_body()
    body["spec"]["template"]["spec"]["initContainers"] = [{"name": "fetch-model", "image": "busybox"}]
    pod_spec = build_statefulset(OWNER, parse_spec(body["spec"]))["spec"]["template"]["spec"]
    names = [c["name"] for c in pod_spec["initContainers"]]
    assert names == [GATE_CONTAINER, "fetch-model"]
    gate = pod_spec["initContainers"][0]
    assert gate["image"] == "registry.example/llm:1"
    assert gate["resources"] == {"limits": {"nvidia.com/gpu": 1}}
    assert gate["command"] == ["/bin/sh", "/infer-operator/gate.sh"]


@pytest.mark.parametrize(
    "theirs", [[], [{"conditionType": "example.com/warm"}], [{"conditionType": labels.CONDITION_READY}]]
)
def test_readiness_gate_added_once_and_the_templates_kept(theirs):
    body = isvc_body()
    body["spec"]["template"]["spec"]["readinessGates"] = theirs
    gates = build_statefulset(OWNER, parse_spec(body["spec"]))["spec"]["template"]["spec"]["readinessGates"]
    assert gates == [g for g in theirs if g["conditionType"] != labels.CONDITION_READY] + [
        {"conditionType": labels.CONDITION_READY}
    ]


def test_second_containers_are_untouched():
    body = isvc_body()
    sidecar = {"name": "proxy", "image": "envoy", "ports": [{"containerPort": 9901}]}
    body["spec"]["template"]["spec"]["containers"].append(sidecar)
    pod_spec = build_statefulset(OWNER, parse_spec(body["spec"]))["spec"]["template"]["spec"]
    assert pod_spec["containers"][1] == sidecar


@pytest.mark.parametrize(
    ("ports", "expected"),
    [
        (None, [{"name": labels.SYNC_PORT_NAME, "containerPort": 8000, "protocol": "TCP"}]),
        # the same port declared without a name: named now
        ([{"containerPort": 8000}], [{"name": labels.SYNC_PORT_NAME, "containerPort": 8000, "protocol": "TCP"}]),
        # other ports (and a named declaration of the same one) are kept
        (
            [{"name": "metrics", "containerPort": 9090}, {"name": "http", "containerPort": 8000}],
            [
                {"name": "metrics", "containerPort": 9090},
                {"name": "http", "containerPort": 8000},
                {"name": labels.SYNC_PORT_NAME, "containerPort": 8000, "protocol": "TCP"},
            ],
        ),
    ],
)
def test_the_sync_port_is_a_named_container_port_of_the_pod(ports, expected):
    body = isvc_body()
    if ports is not None:
        body["spec"]["template"]["spec"]["containers"][0]["ports"] = ports
    main = build_statefulset(OWNER, parse_spec(body["spec"]))["spec"]["template"]["spec"]["containers"][0]
    assert main["ports"] == expected


@pytest.mark.parametrize(
    ("pre_stop", "args"),
    [
        (None, []),
        ({"exec": {"command": ["touch", "/tmp/drain"]}}, ["exec", "touch", "/tmp/drain"]),
        ({"httpGet": {"path": "/quiesce", "port": "http"}}, ["http", "8080", "/quiesce", "HTTP", ""]),
        (
            {
                "httpGet": {
                    "path": "/q",
                    "port": 9000,
                    "scheme": "HTTPS",
                    "host": "h",
                    "httpHeaders": [{"name": "X", "value": "y"}],
                }
            },
            ["http", "9000", "/q", "HTTPS", "h", "X: y"],
        ),
        ({"sleep": {"seconds": 5}}, ["sleep", "5"]),
        ({"tcpSocket": {"port": 1}}, []),
    ],
)
def test_the_templates_own_pre_stop_runs_first_in_ours(pre_stop, args):
    body = isvc_body()
    main = body["spec"]["template"]["spec"]["containers"][0]
    main["ports"] = [{"name": "http", "containerPort": 8080}]
    if pre_stop is not None:
        main["lifecycle"] = {"preStop": pre_stop, "postStart": {"exec": {"command": ["true"]}}}
    built = build_statefulset(OWNER, parse_spec(body["spec"]))["spec"]["template"]["spec"]["containers"][0]
    assert built["lifecycle"]["preStop"]["exec"]["command"] == ["/bin/sh", "/infer-operator/prestop.sh", *args]
    if pre_stop is not None:
        assert built["lifecycle"]["postStart"] == {"exec": {"command": ["true"]}}


def test_a_pre_stop_on_a_port_name_the_container_lacks_is_a_build_error():
    body = isvc_body()
    body["spec"]["template"]["spec"]["containers"][0]["lifecycle"] = {"preStop": {"httpGet": {"port": "nope"}}}
    with pytest.raises(BuildError, match="preStop.httpGet.port"):
        build_statefulset(OWNER, parse_spec(body["spec"]))


def test_the_statefulset_leaves_rolling_to_the_operator():
    body = isvc_body(updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 2}})
    sts = build_statefulset(OWNER, parse_spec(body["spec"]))
    assert sts["spec"]["updateStrategy"] == {"type": "OnDelete"}


@pytest.mark.parametrize("port", [8000, 50051])
def test_services(port):
    built = objects(sync={"port": port})
    headless, sync = built["Service/llm-headless"], built["Service/llm"]
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["selector"] == {labels.LABEL_NAME: "llm", labels.LABEL_SERVICE: "llm"}
    assert headless["spec"]["publishNotReadyAddresses"] is True
    assert sync["spec"]["selector"] == {
        labels.LABEL_NAME: "llm",
        labels.LABEL_SERVICE: "llm",
        labels.LABEL_ROLE: "sync",
    }
    assert sync["spec"]["ports"] == [
        {"name": "sync", "port": port, "targetPort": labels.SYNC_PORT_NAME, "protocol": "TCP"}
    ]
    assert headless["spec"]["ports"] == sync["spec"]["ports"]
    # pods made before the port had a name are reached by number until they are all replaced
    by_number = build_all(OWNER, parse_spec(isvc_body(sync={"port": port})["spec"]), named_target=False)
    services = [m for m in by_number if m["kind"] == "Service"]
    assert [s["spec"]["ports"][0]["targetPort"] for s in services] == [port, port]


def test_scripts_configmap_carries_scripts_and_settings():
    data = objects(lifecycle={"drainSeconds": 7, "offlinePath": "/offline"})["ConfigMap/llm-scripts"]["data"]
    assert {"launch.sh", "probe.sh", "prestop.sh", "gate.sh", "lib.sh", "settings.sh"} <= set(data)
    assert "INFER_DRAIN_SECONDS=7" in data["settings.sh"]
    assert "/offline" in data["settings.sh"]
