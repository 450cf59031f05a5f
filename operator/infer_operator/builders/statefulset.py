"""spec -> the one StatefulSet: the user's pod template plus the role machinery.

Nothing in the pod template depends on syncReplicas or replicas: each pod learns its split from
annotations the operator writes on the pod (read through the downward API). So changing the split
never rolls the StatefulSet; the operator restarts exactly the pods whose role flips.

What a pod must keep for its whole life is in the template, so it is frozen per pod with its
revision: the sync port (a named container port, and INFER_SYNC_PORT), the grace period (and
INFER_GRACE_SECONDS, which caps the drain read from the live ConfigMap), and the user's own
preStop handler. The StatefulSet's strategy is OnDelete: the operator rolls pods itself
(reconcile/roles.plan_restarts), within the budget role flips share.
"""

from __future__ import annotations

import copy
from typing import Any

from infer_operator import kinds, labels
from infer_operator.api.v1alpha1 import InferenceServiceSpec, Probe
from infer_operator.builders.common import BuildError, Owner, headless_service_name, scripts_configmap_name
from infer_operator.builders.pod_scripts import SCRIPTS_DIR

SCRIPTS_VOLUME = "infer-operator-scripts"
PODINFO_VOLUME = "infer-operator-podinfo"
PODINFO_DIR = "/etc/infer-operator/podinfo"
GATE_CONTAINER = "infer-operator-gate"

DEFAULT_PROBE_TIMING = {"periodSeconds": 5, "timeoutSeconds": 3, "failureThreshold": 3, "successThreshold": 1}
_PROBE_TIMING_KEYS = ("initialDelaySeconds", "periodSeconds", "timeoutSeconds", "successThreshold", "failureThreshold")


def _field_env(name: str, field_path: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": field_path}}}


def pod_env(spec: InferenceServiceSpec) -> list[dict[str, Any]]:
    """What the pod-side scripts need of this pod's own revision (they read the rest from the
    live ConfigMap): its serving port and its grace period, in seconds."""
    return [
        {"name": "INFER_SYNC_PORT", "value": str(spec.sync.port)},
        {"name": "INFER_GRACE_SECONDS", "value": str(spec.lifecycle.termination_grace_period_seconds)},
    ]


def contract_env(service: str, with_role: bool) -> list[dict[str, Any]]:
    """The pod contract's environment (README.md, "Pod contract")."""
    env = [
        {"name": "INFER_SERVICE", "value": service},
        _field_env("INFER_ORDINAL", f"metadata.labels['{labels.LABEL_POD_INDEX}']"),
        _field_env("INFER_REPLICAS", f"metadata.annotations['{labels.ANNOTATION_REPLICAS}']"),
        _field_env("INFER_SYNC_REPLICAS", f"metadata.annotations['{labels.ANNOTATION_SYNC_REPLICAS}']"),
        _field_env("POD_NAME", "metadata.name"),
        _field_env("POD_NAMESPACE", "metadata.namespace"),
        _field_env("POD_IP", "status.podIP"),
    ]
    if with_role:
        env.append(_field_env("INFER_ROLE", f"metadata.labels['{labels.LABEL_ROLE}']"))
    return env


def _role_argv(role_name: str, role: Any, container: dict[str, Any]) -> list[str]:
    if role.command:
        return [*role.command, *(role.args or [])]
    if container.get("command"):
        return [*container["command"], *(container.get("args") or [])]
    raise BuildError(
        f"spec.{role_name}.command is required: spec.{'async' if role_name == 'sync' else 'sync'}.command "
        f"is set, and the main container (spec.template.spec.containers[0]) has no command to fall back on"
    )


def launcher_command(spec: InferenceServiceSpec, container: dict[str, Any]) -> tuple[list[str], list[str]]:
    """command/args that start the launcher: `launch.sh N <sync argv (N words)> <async argv>`."""
    sync_argv = _role_argv("sync", spec.sync, container)
    async_argv = _role_argv("async", spec.async_, container)
    return ["/bin/sh", f"{SCRIPTS_DIR}/launch.sh"], [str(len(sync_argv)), *sync_argv, *async_argv]


def readiness_probe(spec: InferenceServiceSpec) -> dict[str, Any]:
    """One exec probe that runs the role's own check (see probe.sh); timing from sync's probe, else async's."""
    source: Probe | None = spec.sync.readiness_probe or spec.async_.readiness_probe
    timing = dict(DEFAULT_PROBE_TIMING)
    if source is not None:
        given = source.as_kubernetes()
        timing.update({key: given[key] for key in _PROBE_TIMING_KEYS if key in given})
    return {"exec": {"command": ["/bin/sh", f"{SCRIPTS_DIR}/probe.sh"]}, **timing}


def _merge_env(ours: list[dict[str, Any]], theirs: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    # The API rejects a template setting the contract's names; an object stored before that rule
    # still gets ours (last, and only once).
    reserved = {item["name"] for item in ours}
    return [item for item in (theirs or []) if item.get("name") not in reserved] + ours


def _with_sync_port(ports: list[dict[str, Any]] | None, port: int) -> list[dict[str, Any]]:
    """The container's ports plus the named sync port (an unnamed declaration of it is replaced)."""
    ours = {"name": labels.SYNC_PORT_NAME, "containerPort": port, "protocol": "TCP"}
    kept = [
        p
        for p in ports or []
        if p.get("name") != labels.SYNC_PORT_NAME
        and not (p.get("containerPort") == port and (p.get("protocol") or "TCP") == "TCP" and not p.get("name"))
    ]
    return [*kept, ours]


def user_prestop_args(container: dict[str, Any]) -> list[str]:
    """Arguments that make prestop.sh run the template's own preStop handler first.

    exec -> `exec <argv...>`; httpGet -> `http PORT PATH SCHEME HOST [HEADER...]` (a named port is
    looked up in the container's ports); sleep -> `sleep SECONDS`; tcpSocket (a no-op in
    Kubernetes) and none -> no arguments.
    """
    handler = ((container.get("lifecycle") or {}).get("preStop")) or {}
    if handler.get("exec"):
        return ["exec", *[str(word) for word in handler["exec"].get("command") or []]]
    if handler.get("sleep"):
        return ["sleep", str(handler["sleep"].get("seconds", 0))]
    if handler.get("httpGet"):
        get = handler["httpGet"]
        port = get.get("port")
        if isinstance(port, str) and not port.isdigit():
            named = [p.get("containerPort") for p in container.get("ports") or [] if p.get("name") == port]
            if not named:
                raise BuildError(
                    f"spec.template.spec.containers[0].lifecycle.preStop.httpGet.port: no container "
                    f"port is named {port!r}"
                )
            port = named[0]
        headers = [f"{h['name']}: {h.get('value', '')}" for h in get.get("httpHeaders") or []]
        return ["http", str(port), get.get("path") or "/", get.get("scheme") or "HTTP", get.get("host") or "", *headers]
    return []


def _scripts_mount() -> dict[str, Any]:
    return {"name": SCRIPTS_VOLUME, "mountPath": SCRIPTS_DIR, "readOnly": True}


def _main_container(owner: Owner, spec: InferenceServiceSpec, container: dict[str, Any]) -> dict[str, Any]:
    main = copy.deepcopy(container)
    main["env"] = _merge_env([*contract_env(owner.name, spec.has_role_commands), *pod_env(spec)], main.get("env"))
    if spec.has_role_commands:
        main["command"], main["args"] = launcher_command(spec, container)
    main["readinessProbe"] = readiness_probe(spec)
    main["ports"] = _with_sync_port(main.get("ports"), spec.sync.port)
    lifecycle = dict(main.get("lifecycle") or {})
    lifecycle["preStop"] = {
        "exec": {"command": ["/bin/sh", f"{SCRIPTS_DIR}/prestop.sh", *user_prestop_args(container)]}
    }
    main["lifecycle"] = lifecycle
    mounts = [m for m in main.get("volumeMounts") or [] if m.get("name") != SCRIPTS_VOLUME]
    main["volumeMounts"] = [*mounts, _scripts_mount()]
    return main


def _gate_container(main: dict[str, Any]) -> dict[str, Any]:
    """Init container that waits until the operator has labelled the pod with its role.

    Environment variables are resolved when a container starts, so the main container must not
    start before the role label and split annotations exist. It reuses the main image (only
    /bin/sh is needed) and the main container's resources, so it changes neither scheduling
    nor the pod's QoS class.
    """
    gate: dict[str, Any] = {
        "name": GATE_CONTAINER,
        "image": main["image"],
        "command": ["/bin/sh", f"{SCRIPTS_DIR}/gate.sh"],
        "env": [_field_env("POD_NAME", "metadata.name")],
        "volumeMounts": [_scripts_mount(), {"name": PODINFO_VOLUME, "mountPath": PODINFO_DIR, "readOnly": True}],
    }
    for key in ("imagePullPolicy", "resources", "securityContext"):
        if key in main:
            gate[key] = copy.deepcopy(main[key])
    return gate


def _volumes(owner: Owner, existing: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    ours = [
        {
            "name": SCRIPTS_VOLUME,
            "configMap": {"name": scripts_configmap_name(owner.name), "defaultMode": 0o555},
        },
        {
            "name": PODINFO_VOLUME,
            "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]},
        },
    ]
    names = {volume["name"] for volume in ours}
    return [v for v in existing or [] if v.get("name") not in names] + ours


def build_pod_template(owner: Owner, spec: InferenceServiceSpec) -> dict[str, Any]:
    template = spec.template.model_dump(by_alias=True, exclude_none=True)
    metadata = copy.deepcopy(template.get("metadata") or {})
    pod_spec = copy.deepcopy(template["spec"])
    containers = pod_spec["containers"]
    main = _main_container(owner, spec, containers[0])
    pod_spec["containers"] = [main, *containers[1:]]
    init = [c for c in pod_spec.get("initContainers") or [] if c.get("name") != GATE_CONTAINER]
    pod_spec["initContainers"] = [_gate_container(containers[0]), *init]
    pod_spec["volumes"] = _volumes(owner, pod_spec.get("volumes"))
    pod_spec["terminationGracePeriodSeconds"] = spec.lifecycle.termination_grace_period_seconds
    # Ready waits for the operator's part too (reconcile/readiness.py); the template's gates stay.
    gates = [g for g in pod_spec.get("readinessGates") or [] if g.get("conditionType") != labels.CONDITION_READY]
    pod_spec["readinessGates"] = [*gates, {"conditionType": labels.CONDITION_READY}]
    metadata["labels"] = {**(metadata.get("labels") or {}), **labels.common_labels(owner.name)}
    # The role label is the operator's to set per pod; a template value would label every pod alike.
    metadata["labels"].pop(labels.LABEL_ROLE, None)
    return {"metadata": metadata, "spec": pod_spec}


def build_statefulset(owner: Owner, spec: InferenceServiceSpec) -> dict[str, Any]:
    return {
        "apiVersion": kinds.STATEFUL_SET.api_version,
        "kind": kinds.STATEFUL_SET.kind,
        "metadata": owner.metadata(owner.name),
        "spec": {
            "replicas": spec.replicas,
            "serviceName": headless_service_name(owner.name),
            "selector": {"matchLabels": labels.selector_labels(owner.name)},
            "podManagementPolicy": spec.pod_management_policy,
            # The operator rolls pods itself (spec.updateStrategy): one budget with role flips.
            "updateStrategy": {"type": "OnDelete"},
            "template": build_pod_template(owner, spec),
        },
    }
