"""The InferenceService API, version v1alpha1, as pydantic models.

These models are the single source of truth: the CRD in `crds/` is generated from them
(`infer-operator crd`), and the operator parses every object through them. Field descriptions
become `kubectl explain` text; `x-kubernetes-validations` carry the cross-field (CEL) rules so
the API server rejects bad objects before the operator ever sees them.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema, create_model

from infer_operator import labels
from infer_operator.api import kubeschema
from infer_operator.api.base import Model, Rule, RuleViolation
from infer_operator.registry.backends import BACKENDS

PROBE_HANDLERS = ("httpGet", "tcpSocket", "exec", "grpc")


def _kubernetes(name: str) -> Any:
    """A field whose schema is Kubernetes' own (api/kubeschema.py): embedded in the CRD, so the API
    server refuses an unknown field or value naming it, and checked here with the same schema."""

    def check(value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and (found := kubeschema.problems(name, value)):
            path, message = found[0]
            raise RuleViolation(message, path)
        return value

    return Annotated[dict[str, Any] | None, AfterValidator(check), WithJsonSchema(kubeschema.schema(name))]


class Probe(Model):
    """A core/v1 Probe: one handler plus timing."""

    rules: ClassVar = (
        Rule(
            "[has(self.httpGet), has(self.tcpSocket), has(self.exec), has(self.grpc)].filter(x, x).size() == 1",
            "a readinessProbe needs exactly one of httpGet, tcpSocket, exec, grpc",
            lambda p: sum(h is not None for h in (p.http_get, p.tcp_socket, p.exec_, p.grpc)) == 1,
        ),
    )

    http_get: _kubernetes("HTTPGetAction") = Field(
        default=None, alias="httpGet", description="HTTP GET against the pod (2xx/3xx is ready)."
    )
    tcp_socket: _kubernetes("TCPSocketAction") = Field(
        default=None, alias="tcpSocket", description="Ready while the port accepts connections."
    )
    exec_: _kubernetes("ExecAction") = Field(
        default=None, alias="exec", description="Command run in the main container; exit 0 is ready."
    )
    grpc: _kubernetes("GRPCAction") = Field(default=None, description="gRPC health check; checked as a listening port.")
    initial_delay_seconds: int | None = Field(
        default=None,
        ge=0,
        alias="initialDelaySeconds",
        description="Seconds after the container starts before the first check.",
    )
    period_seconds: int | None = Field(
        default=None, ge=1, alias="periodSeconds", description="How often the pod's probe runs (seconds; default 5)."
    )
    timeout_seconds: int | None = Field(
        default=None, ge=1, alias="timeoutSeconds", description="Seconds after which one check fails (default 3)."
    )
    success_threshold: int | None = Field(
        default=None, ge=1, alias="successThreshold", description="Consecutive successes to count as ready again."
    )
    failure_threshold: int | None = Field(
        default=None,
        ge=1,
        alias="failureThreshold",
        description="Consecutive failures to count as not ready (default 3).",
    )

    def as_kubernetes(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True)


class RoleSpec(Model):
    command: list[str] | None = Field(
        default=None,
        min_length=1,
        description=(
            "Command that starts this role. When set (for either role), the operator starts the "
            "main container through its launcher, which execs the role's command (no shell is "
            "left in the signal path) and sets INFER_ROLE. A role without a command then runs the "
            "container's own command. Without any role command the container keeps its entrypoint "
            "and picks its role from INFER_ORDINAL and INFER_SYNC_REPLICAS."
        ),
    )
    args: list[str] | None = Field(default=None, description="Arguments for this role's command. Requires command.")
    readiness_probe: Probe | None = Field(
        default=None,
        alias="readinessProbe",
        description=(
            "Readiness check for pods of this role (a core/v1 Probe). The pod's one readiness "
            "probe dispatches on the role at run time and runs this check: httpGet and tcpSocket "
            "against the pod itself, exec in the main container. Timing fields (periodSeconds, "
            "failureThreshold, ...) are taken from sync's probe, else async's."
        ),
    )

    rules: ClassVar = (
        Rule(
            "!has(self.args) || has(self.command)",
            "args requires command",
            lambda role: role.args is None or role.command is not None,
            ".args",
        ),
    )


class SyncRoleSpec(RoleSpec):
    port: int = Field(
        default=8000,
        ge=1,
        le=65535,
        description=(
            "Serving port of the sync role: registered in the registry and exposed by the "
            "ClusterIP Service <name>. Without a readinessProbe a sync pod is Ready once "
            "something listens on this port."
        ),
    )


class AsyncRoleSpec(RoleSpec):
    schema_extra: ClassVar = {"description": "The async role (queue worker): no port, never registered."}


class LifecycleSpec(Model):
    rules: ClassVar = (
        Rule(
            "self.terminationGracePeriodSeconds > self.drainSeconds",
            "lifecycle.terminationGracePeriodSeconds must exceed lifecycle.drainSeconds",
            lambda lc: lc.termination_grace_period_seconds > lc.drain_seconds,
            ".terminationGracePeriodSeconds",
        ),
        Rule(
            "self.terminationGracePeriodSeconds > self.asyncDrainSeconds",
            "lifecycle.terminationGracePeriodSeconds must exceed lifecycle.asyncDrainSeconds",
            lambda lc: lc.termination_grace_period_seconds > lc.async_drain_seconds,
            ".terminationGracePeriodSeconds",
        ),
    )

    drain_seconds: int = Field(
        default=10,
        ge=0,
        le=3600,
        alias="drainSeconds",
        description=(
            "Sync pods wait this long in preStop, after the instance is deregistered and the "
            "offline endpoint called, before SIGTERM. Set it to at least the clients' request "
            "timeout."
        ),
    )
    async_drain_seconds: int = Field(
        default=0,
        ge=0,
        le=3600,
        alias="asyncDrainSeconds",
        description="Async pods wait this long in preStop before SIGTERM (default 0: at once).",
    )
    offline_path: str | None = Field(
        default=None,
        alias="offlinePath",
        pattern=r"^/[^\s]*$",
        max_length=1024,
        description=(
            "Optional HTTP path on sync.port that the sync pod's preStop hook calls (GET) once the "
            "operator confirmed the pod left the registry, before the drain wait, so the app "
            "stops taking new work."
        ),
    )
    idle_path: str | None = Field(
        default=None,
        alias="idlePath",
        pattern=r"^/[^\s]*$",
        max_length=1024,
        description=(
            "Optional HTTP path on sync.port that answers 2xx when the app has no request in flight "
            "(and anything else while it has one). With it, a sync pod's preStop waits, after "
            "drainSeconds, until the path answers 2xx, within the grace period (one second is left for "
            "SIGTERM): long requests and streams that outlive drainSeconds finish before SIGTERM. "
            "Without it the drain is drainSeconds exactly."
        ),
    )
    termination_grace_period_seconds: int = Field(
        default=60,
        ge=1,
        le=86400,
        alias="terminationGracePeriodSeconds",
        description=(
            "Pod terminationGracePeriodSeconds: covers the preStop wait plus the app's own "
            "shutdown. Must exceed drainSeconds."
        ),
    )


# A count or a percentage of the pods ("25%"), as Kubernetes' IntOrString fields take it.
IntOrPercent = Annotated[
    int | str,
    WithJsonSchema({"x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"}, {"type": "string"}]}),
]


def _count_or_percent(field: str) -> Rule:
    return Rule(
        f"!has(self.{field}) || (type(self.{field}) == int ? int(self.{field}) >= 0"
        f" : string(self.{field}).matches('^[0-9]+%$'))",
        f'podDisruptionBudget.{field} must be a number >= 0 or a percentage such as "25%"',
        lambda budget: _valid_count(getattr(budget, _snake(field))),
        f".{field}",
    )


def _snake(field: str) -> str:
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), field)


def _valid_count(value: int | str | None) -> bool:
    if value is None:
        return True
    if isinstance(value, int):
        return value >= 0
    return re.fullmatch(r"[0-9]+%", value) is not None


class DisruptionBudgetSpec(Model):
    rules: ClassVar = (
        Rule(
            "!(has(self.maxUnavailable) && has(self.minAvailable))",
            "podDisruptionBudget takes maxUnavailable or minAvailable, not both",
            lambda budget: budget.max_unavailable is None or budget.min_available is None,
            ".minAvailable",
        ),
        _count_or_percent("maxUnavailable"),
        _count_or_percent("minAvailable"),
    )
    schema_extra: ClassVar = {
        "description": (
            "A PodDisruptionBudget over all the service's pods (policy/v1), made and owned by the "
            "operator. Voluntary disruptions respect it: kubectl drain, and the operator's own restarts "
            "(role flips and rolling updates go through the Eviction API). Leave it out for none; the "
            "operator's restarts then still keep to updateStrategy.rollingUpdate.maxUnavailable."
        )
    }

    max_unavailable: IntOrPercent | None = Field(
        default=None,
        alias="maxUnavailable",
        description=(
            "Pods that may be down at once through voluntary disruptions: a number or a "
            "percentage. Default (neither field set): updateStrategy.rollingUpdate.maxUnavailable."
        ),
    )
    min_available: IntOrPercent | None = Field(
        default=None,
        alias="minAvailable",
        description="Pods that must stay available instead: a number or a percentage.",
    )


def _section_required(backend_type: str) -> Rule:
    return Rule(
        f"self.type != '{backend_type}' || has(self.{backend_type})",
        f"registry.{backend_type} is required when registry.type is {backend_type}",
        lambda registry: registry.type != backend_type or getattr(registry, backend_type) is not None,
        f".{backend_type}",
    )


class _RegistryBase(Model):
    """The registry fields every backend shares; `RegistrySpec` adds one section per backend."""

    rules: ClassVar = tuple(_section_required(t) for t, b in BACKENDS.items() if b.spec is not None)

    type: Literal[tuple(BACKENDS)] = Field(  # type: ignore[valid-type]
        default="none",
        description=(
            "Where sync instances are registered: " + ", ".join(backend.summary for backend in BACKENDS.values()) + "."
        ),
    )
    service: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        max_length=253,
        description="Service name in the registry (default: metadata.name).",
    )

    @property
    def in_use(self) -> bool:
        """Whether pods are registered (and carry the deregistration finalizer)."""
        return self.type != "none"

    @property
    def backend(self) -> Any:
        return BACKENDS[self.type]

    def place(self, isvc_name: str) -> tuple[Any, ...] | None:
        """Where the entries live: (type, normalised location, registry service name); None when
        no registry is in use. InferenceServices with one place share a registry service."""
        if not self.in_use:
            return None
        return (self.type, self.backend.location(self.backend.section(self)), self.service or isvc_name)


RegistrySpec = create_model(
    "RegistrySpec",
    __base__=_RegistryBase,
    **{t: (b.spec | None, None) for t, b in BACKENDS.items() if b.spec is not None},
    register_delay_seconds=(
        int,
        Field(
            default=0,
            ge=0,
            le=3600,
            alias="registerDelaySeconds",
            description="Warm-up: register a sync pod only after it has been Ready this long.",
        ),
    ),
    warmup_seconds=(
        int,
        Field(
            default=0,
            ge=0,
            le=3600,
            alias="warmupSeconds",
            description=(
                "Traffic warm-up: for this long after its registration a sync pod asks for a growing "
                "share of the traffic (its entry's weight, in 4 steps: 12, 38, 62, 88 of 100; then 100). "
                "Honoured by consumers that weigh instances: DNS SRV clients of CoreDNS's etcd plugin, "
                "an admin controller passing the weight on (README, Registries)."
            ),
        ),
    ),
)


RetiredRegistry = create_model(
    "RetiredRegistry",
    __base__=RegistrySpec,
    retired_at=(
        str | None,
        Field(
            default=None,
            alias="retiredAt",
            description=(
                "When the service moved away from this registry (RFC 3339): what is left there is given "
                "up --cleanup-timeout after it, with a RegistryCleanupAbandoned event."
            ),
        ),
    ),
)


class Container(BaseModel):
    """Just enough of a core/v1 Container to validate the parts the operator relies on."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"x-kubernetes-preserve-unknown-fields": True})
    name: str = Field(min_length=1, description="Container name.")
    image: str = Field(min_length=1, description="Container image.")


class PodSpec(BaseModel):
    model_config = ConfigDict(extra="allow", json_schema_extra={"x-kubernetes-preserve-unknown-fields": True})
    containers: list[Container] = Field(
        min_length=1,
        description="The pod's containers; the first is the main one (gets env, probe, hooks).",
    )


class PodTemplate(BaseModel):
    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "x-kubernetes-preserve-unknown-fields": True,
            "description": (
                "The pod as you would write it in a Deployment (core/v1 PodTemplateSpec). The "
                "first container is the main one. Fields not shown by kubectl explain are "
                "passed through and validated by the API server when the StatefulSet is applied."
            ),
        },
    )
    metadata: dict[str, Any] | None = Field(
        default=None,
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
        description="Pod labels and annotations; the operator adds its own.",
    )
    spec: PodSpec


# Rules on the whole object (`self` is the InferenceService): its name becomes the names and labels
# of what it owns, which are held to stricter limits than the name of a custom resource. (No
# fieldPath: the CRD's schema has no properties under metadata; the messages name the field.)
NAME_RULES = (
    Rule(
        f"self.metadata.name.size() <= {labels.MAX_NAME_LENGTH}",
        f"metadata.name must be at most {labels.MAX_NAME_LENGTH} characters: the StatefulSet's pods carry it in "
        f"their controller-revision-hash label (at most 63 characters with the hash)",
        lambda body: len(body["metadata"]["name"]) <= labels.MAX_NAME_LENGTH,
        on_create=True,
    ),
    Rule(
        "self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",
        "metadata.name must start with a letter and hold only lower-case letters, digits and '-': it also "
        "names the Services <name> and <name>-headless",
        lambda body: re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", body["metadata"]["name"]) is not None,
        on_create=True,
    ),
)


def name_problems(body: Any) -> list[str]:
    """The name rules an object breaks, as `metadata.name: <message>` (objects that bypassed the CRD)."""
    return [f"metadata.name: {rule.message}" for rule in NAME_RULES if not rule.holds(body)]


def _main(template: Any) -> dict[str, Any]:
    return template.spec.containers[0].model_dump(by_alias=True, exclude_none=True) if template.spec.containers else {}


_ROLE_LABEL = labels.LABEL_ROLE
_RESERVED_ENV = "[" + ", ".join(f"'{name}'" for name in labels.CONTRACT_ENV) + "]"


class InferenceServiceSpec(Model):
    # syncReplicas may exceed replicas: an HPA or KEDA scales through /scale, down to 0, and the
    # split in force is min(syncReplicas, replicas). The fields below are the operator's to set:
    # a template setting them is rejected, naming the field to use instead.
    rules: ClassVar = (
        Rule(
            "!has(self.terminationGracePeriodSeconds)",
            "spec.template.spec.terminationGracePeriodSeconds is not allowed: set spec.lifecycle."
            "terminationGracePeriodSeconds instead (the operator sets the pod's grace period from it, to cover the "
            "drain)",
            lambda spec: "terminationGracePeriodSeconds" not in (spec.template.spec.model_extra or {}),
            ".terminationGracePeriodSeconds",
            at=("template", "spec"),
            report_only=True,
        ),
        Rule(
            "!has(self[0].readinessProbe)",
            "spec.template.spec.containers[0].readinessProbe is not allowed: set spec.sync.readinessProbe and "
            "spec.async.readinessProbe instead (readiness is checked per role)",
            lambda spec: "readinessProbe" not in _main(spec.template),
            at=("template", "spec", "containers"),
            report_only=True,
        ),
        Rule(
            f"!has(self[0].env) || self[0].env.all(e, !(e.name in {_RESERVED_ENV}))",
            f"spec.template.spec.containers[0].env must not set {', '.join(labels.CONTRACT_ENV)}: the operator "
            f"sets them (rename yours)",
            lambda spec: not {e.get("name") for e in _main(spec.template).get("env") or []} & set(labels.CONTRACT_ENV),
            at=("template", "spec", "containers"),
            report_only=True,
        ),
        Rule(
            f"!has(self.labels) || !('{_ROLE_LABEL}' in self.labels)",
            f"spec.template.metadata.labels must not set {_ROLE_LABEL}: the operator sets it on each pod by its "
            f"ordinal",
            lambda spec: _ROLE_LABEL not in ((spec.template.metadata or {}).get("labels") or {}),
            ".labels",
            at=("template", "metadata"),
            report_only=True,
        ),
        # A StatefulSet's podManagementPolicy is immutable: a change could only be carried out by
        # re-creating it, so it is refused here, naming the field, instead of leaving the service
        # Degraded with every apply refused. (A transition rule: the API server checks it on
        # updates, against the stored value; the operator cannot, and need not.)
        Rule(
            "self == oldSelf",
            "spec.podManagementPolicy cannot be changed: a StatefulSet's podManagementPolicy is immutable. "
            "Delete the InferenceService and create it again with the new policy",
            lambda spec: True,
            at=("podManagementPolicy",),
        ),
    )

    replicas: int = Field(
        default=1,
        ge=0,
        le=10000,
        description="Total pods (both roles). The /scale subresource drives it.",
    )
    sync_replicas: int | None = Field(
        default=None,
        ge=0,
        le=10000,
        alias="syncReplicas",
        description=(
            "Pods with ordinal < syncReplicas run the sync role, the rest async. Default: "
            "replicas (all sync). It may exceed replicas (an HPA or KEDA scales through /scale, "
            "down to 0): the split in force is min(syncReplicas, replicas), shown in "
            "status.syncReplicas. Changing it restarts only the pods whose role flips."
        ),
    )
    template: PodTemplate
    sync: SyncRoleSpec = Field(default_factory=SyncRoleSpec, description="The sync role (HTTP/gRPC server).")
    async_: AsyncRoleSpec = Field(
        default_factory=AsyncRoleSpec, alias="async", description="The async role (queue worker)."
    )
    lifecycle: LifecycleSpec = Field(
        default_factory=LifecycleSpec, description="Graceful offline: preStop drain and grace period."
    )
    registry: RegistrySpec = Field(
        default_factory=RegistrySpec, description="Service registry the operator keeps in step with Ready sync pods."
    )
    pod_disruption_budget: DisruptionBudgetSpec | None = Field(
        default=None,
        alias="podDisruptionBudget",
        description=DisruptionBudgetSpec.schema_extra["description"],
    )
    pod_management_policy: Literal["Parallel", "OrderedReady"] = Field(
        default="Parallel",
        alias="podManagementPolicy",
        description="StatefulSet podManagementPolicy. Parallel: GPU pods load models slowly; no need to wait in line.",
    )
    update_strategy: _kubernetes("StatefulSetUpdateStrategy") = Field(
        default=None, alias="updateStrategy", description=kubeschema.UPDATE_STRATEGY_DESCRIPTION
    )

    @property
    def effective_sync_replicas(self) -> int:
        return self.replicas if self.sync_replicas is None else min(self.sync_replicas, self.replicas)

    def role_for(self, ordinal: int) -> str:
        return labels.ROLE_SYNC if ordinal < self.effective_sync_replicas else labels.ROLE_ASYNC

    @property
    def has_role_commands(self) -> bool:
        return bool(self.sync.command or self.async_.command)

    @property
    def rolling_partition(self) -> int | None:
        """The lowest ordinal the operator rolls to a new template (updateStrategy.rollingUpdate.
        partition, default 0); None for updateStrategy.type OnDelete (outdated pods wait for you)."""
        strategy = self.update_strategy or {}
        if strategy.get("type") == "OnDelete":
            return None
        try:
            return max(0, int((strategy.get("rollingUpdate") or {}).get("partition", 0)))
        except (TypeError, ValueError):
            return 0

    @property
    def max_unavailable(self) -> int:
        """Pods that may be down at once for a rollout or a split change
        (updateStrategy.rollingUpdate.maxUnavailable)."""
        rolling = (self.update_strategy or {}).get("rollingUpdate") or {}
        value = rolling.get("maxUnavailable", 1)
        if isinstance(value, str) and value.endswith("%"):
            try:
                percent = int(value[:-1])
            except ValueError:
                return 1
            return max(1, self.replicas * percent // 100)
        try:
            return max(1, int(value))
        except (TypeError, ValueError):
            return 1


class Condition(Model):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str = ""
    observed_generation: int | None = Field(default=None, alias="observedGeneration")
    last_transition_time: str | None = Field(default=None, alias="lastTransitionTime")


class InferenceServiceStatus(Model):
    observed_generation: int | None = Field(default=None, alias="observedGeneration")
    replicas: int | None = Field(default=None, description="Pods that exist (not terminating).")
    ready_replicas: int | None = Field(default=None, alias="readyReplicas", description="Ready pods.")
    updated_replicas: int | None = Field(
        default=None, alias="updatedReplicas", description="Pods of the current template revision."
    )
    sync_replicas: int | None = Field(default=None, alias="syncReplicas", description="Effective syncReplicas.")
    sync_ready: int | None = Field(default=None, alias="syncReady", description="Ready pods running the sync role.")
    async_ready: int | None = Field(default=None, alias="asyncReady", description="Ready pods running the async role.")
    registered: int | None = Field(default=None, description="Instances currently in the registry.")
    selector: str | None = Field(default=None, description="Label selector of the pods (for /scale, HPA, KEDA).")
    url: str | None = Field(
        default=None,
        description="Where the sync role is reached in the cluster: http://<name>.<namespace>.svc:<sync.port>.",
    )
    registry: RegistrySpec | None = Field(
        default=None,
        description="The registry the pods were last registered in (a copy of spec.registry), so a move is noticed.",
    )
    retired_registries: list[RetiredRegistry] | None = Field(
        default=None,
        alias="retiredRegistries",
        description="Registries this service moved away from whose entries are not removed yet; "
        "each goes once cleaned.",
    )
    conditions: list[Condition] | None = Field(
        default=None,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )


class InferenceService(Model):
    model_config = ConfigDict(
        json_schema_extra={
            "description": "A GPU inference service: one StatefulSet whose pods run the sync or async role by ordinal."
        }
    )
    api_version: Literal["serving.infer-operator.io/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["InferenceService"]
    metadata: dict[str, Any]
    spec: InferenceServiceSpec
    status: InferenceServiceStatus | None = None


def parse_spec(spec: Any) -> InferenceServiceSpec:
    """Parse a spec as stored in the API (camelCase) into the model; raises pydantic.ValidationError."""
    return InferenceServiceSpec.model_validate(dict(spec or {}))
