"""Names shared by the operator, its manifests and its tests: labels, annotations, finalizers.

They are part of the contract (docs/design.md); tests outside the project rely on them.
"""

GROUP = "serving.infer-operator.io"
VERSION = "v1alpha1"
KIND = "InferenceService"
PLURAL = "inferenceservices"
SINGULAR = "inferenceservice"
SHORT_NAME = "infsvc"
API_VERSION = f"{GROUP}/{VERSION}"

PREFIX = "infer-operator.io/"
FIELD_MANAGER = "infer-operator"
MANAGED_BY = "infer-operator"

LABEL_NAME = "app.kubernetes.io/name"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_SERVICE = PREFIX + "service"
LABEL_ROLE = PREFIX + "role"
LABEL_POD_INDEX = "apps.kubernetes.io/pod-index"
LABEL_REVISION = "controller-revision-hash"  # set by the StatefulSet controller on each pod

# The main container's sync port carries this name; the Services target it, so each pod is
# reached on the port it was started with (a changed sync.port rolls out like the template).
SYNC_PORT_NAME = "infer-sync"

# Written by the operator together with the role label, read by the pod through the downward API.
# They freeze, per pod, the split the pod was started with.
ANNOTATION_SYNC_REPLICAS = PREFIX + "sync-replicas"
ANNOTATION_REPLICAS = PREFIX + "replicas"

# On an InferenceService, "true" stops its reconciling (nothing is applied, labelled, restarted or
# registered) without deleting it; deleted pods are still released.
ANNOTATION_PAUSED = PREFIX + "paused"

# Held on pods (registry != none) until the pod is deregistered and its per-IP config removed.
POD_FINALIZER = PREFIX + "deregister"
# Held on InferenceServices (that use a registry) until their registry entries are gone.
CR_FINALIZER = PREFIX + "cleanup"
# Held on InferenceServices by kopf while their reconcile loop (a kopf daemon) runs.
LOOP_FINALIZER = PREFIX + "reconcile-loop"
# Written by kopf's bookkeeping in versions that used kopf's on.delete handler; removed on sight.
LEGACY_ANNOTATIONS = (PREFIX + "last-handled-configuration", PREFIX + "registry-cleanup")

# A pod condition the operator sets once the pod has been registered (it is never unset): from
# then on, per-IP config written for its IP is the pod's own (see registration/plans.py).
CONDITION_REGISTERED = PREFIX + "registered"
# The pods' readiness gate (spec.readinessGates), set True by the operator once its part is done: a
# sync pod is registered (or needs no registry), an async pod's containers are ready. Until then
# the pod is not Ready, so a rollout or a role flip waits for the new pod's registration before it
# takes down the next one, and the Service sends it nothing before the registry does.
CONDITION_READY = PREFIX + "ready"

ROLE_SYNC = "sync"
ROLE_ASYNC = "async"

MANAGED_SELECTOR = f"{LABEL_MANAGED_BY}={MANAGED_BY}"

# Environment of the main container that the operator sets (the pod contract, docs/design.md): a
# template must not set these itself.
CONTRACT_ENV = (
    "INFER_SERVICE",
    "INFER_ORDINAL",
    "INFER_REPLICAS",
    "INFER_SYNC_REPLICAS",
    "POD_NAME",
    "POD_NAMESPACE",
    "POD_IP",
    "INFER_ROLE",
)

# The longest InferenceService name whose objects Kubernetes accepts: the StatefulSet labels each
# pod `controller-revision-hash: <name>-<hash of up to 10 characters>`, a label value of at most 63.
MAX_NAME_LENGTH = 52


def selector_labels(service: str) -> dict[str, str]:
    """The immutable StatefulSet selector: every pod of one InferenceService, both roles."""
    return {LABEL_NAME: service, LABEL_SERVICE: service}


def common_labels(service: str) -> dict[str, str]:
    """Labels on everything the operator creates for one InferenceService."""
    return {**selector_labels(service), LABEL_MANAGED_BY: MANAGED_BY}


def selector_string(labels: dict[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))
