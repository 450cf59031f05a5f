#!/usr/bin/env bash
# End to end on kind: build the operator and sample-app images, helm install the operator, run the
# two-role sample app registered in an in-cluster etcd, check roles, registry entries and cleanup
# on pod deletion, then tear everything down.
#
# Needs docker (with a running engine), kind, kubectl and helm on PATH. Without docker or kind it
# prints "skipped: docker/kind not available" and exits 0.
#   KEEP_CLUSTER=1   keep the kind cluster afterwards
#   CLUSTER_NAME     kind cluster name (default infer-e2e)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CLUSTER_NAME="${CLUSTER_NAME:-infer-e2e}"
OPERATOR_IMAGE="infer-operator:e2e"
SAMPLE_IMAGE="infer-operator-sample-app:dev"
OP_NS=infer-operator
APP_NS=infer-sample
SERVICE=sample-etcd

if ! command -v docker >/dev/null 2>&1 || ! docker info >/dev/null 2>&1 || ! command -v kind >/dev/null 2>&1; then
  echo "skipped: docker/kind not available"
  exit 0
fi
for tool in kubectl helm; do
  command -v "$tool" >/dev/null 2>&1 || { echo "error: $tool is needed on PATH" >&2; exit 1; }
done

log() { echo "[e2e] $*"; }
fail() { echo "[e2e] FAIL: $*" >&2; dump; exit 1; }
dump() {
  kubectl -n "$OP_NS" logs deploy/infer-operator --tail=200 || true
  kubectl -n "$APP_NS" get inferenceservices,statefulsets,pods -o wide || true
}
cleanup() {
  if [ "${KEEP_CLUSTER:-0}" = 1 ]; then
    log "keeping kind cluster $CLUSTER_NAME"
  else
    kind delete cluster --name "$CLUSTER_NAME" >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT

# wait_until SECONDS DESCRIPTION COMMAND...: retry COMMAND every 2 s
wait_until() {
  local timeout=$1 what=$2; shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || fail "timed out after ${timeout}s: $what"
    sleep 2
  done
}
etcdctl() { kubectl -n "$APP_NS" exec deploy/etcd -- etcdctl "$@"; }
instances() { etcdctl get --prefix --keys-only "/services/$SERVICE/instances/" | sed '/^$/d' | sort; }
pod_ip() { kubectl -n "$APP_NS" get pod "$1" -o jsonpath='{.status.podIP}'; }
role_of() { kubectl -n "$APP_NS" get pod "$1" -o jsonpath='{.metadata.labels.infer-operator\.io/role}'; }
ready_count() { kubectl -n "$APP_NS" get inferenceservice "$SERVICE" -o jsonpath='{.status.readyReplicas}'; }

log "creating kind cluster $CLUSTER_NAME"
kind create cluster --name "$CLUSTER_NAME" --wait 120s
kubectl config use-context "kind-$CLUSTER_NAME" >/dev/null

log "building images"
docker build -t "$OPERATOR_IMAGE" "$ROOT"
docker build -t "$SAMPLE_IMAGE" "$ROOT/examples/sample-app"
kind load docker-image --name "$CLUSTER_NAME" "$OPERATOR_IMAGE" "$SAMPLE_IMAGE"

log "helm install"
helm install infer-operator "$ROOT/charts/infer-operator" --namespace "$OP_NS" --create-namespace \
  --set image.repository=infer-operator --set image.tag=e2e --set image.pullPolicy=Never \
  --set operator.sweepSeconds=5 --set operator.logFormat=plain --wait --timeout 180s

log "etcd and the sample InferenceService"
kubectl create namespace "$APP_NS"
kubectl -n "$APP_NS" apply -f "$ROOT/tests/e2e/etcd.yaml"
kubectl -n "$APP_NS" rollout status deploy/etcd --timeout=180s
kubectl -n "$APP_NS" apply -f "$ROOT/examples/sample-app/inferenceservice-etcd.yaml"

check_ready() { [ "$(ready_count)" = 3 ]; }
wait_until 240 "3 Ready replicas" check_ready
kubectl -n "$APP_NS" wait inferenceservice "$SERVICE" --for=condition=Ready --timeout=60s

log "roles"
[ "$(role_of $SERVICE-0)" = sync ] || fail "$SERVICE-0 is not sync"
[ "$(role_of $SERVICE-1)" = sync ] || fail "$SERVICE-1 is not sync"
[ "$(role_of $SERVICE-2)" = async ] || fail "$SERVICE-2 is not async"
kubectl -n "$APP_NS" exec "$SERVICE-2" -- test -f /tmp/worker-ready || fail "the async worker is not ready"

log "registry entries == Ready sync pods"
expected() { for p in $SERVICE-0 $SERVICE-1; do echo "/services/$SERVICE/instances/$(pod_ip $p):8000"; done | sort; }
registered_as_expected() { [ "$(instances)" = "$(expected)" ]; }
wait_until 60 "etcd holds exactly the sync pods" registered_as_expected

log "a sync request through the Service"
kubectl -n "$APP_NS" run curl --rm -i --restart=Never --image=curlimages/curl:8.11.1 --quiet -- \
  curl -fsS "http://$SERVICE.$APP_NS.svc:8000/" || fail "the sync Service does not answer"

log "cleanup on pod deletion"
old_ip=$(pod_ip "$SERVICE-0")
etcdctl put "/services/$SERVICE/config/$old_ip" '{"weight":1}' >/dev/null
kubectl -n "$APP_NS" delete pod "$SERVICE-0" --wait=false
entry_gone() { ! instances | grep -q "/$old_ip:8000\$"; }
wait_until 60 "the deleted pod's entry is removed" entry_gone
config_gone() { [ -z "$(etcdctl get "/services/$SERVICE/config/$old_ip")" ]; }
wait_until 60 "the deleted pod's per-IP config is removed" config_gone
wait_until 180 "the successor registers" registered_as_expected

log "deleting the InferenceService removes all its entries"
kubectl -n "$APP_NS" delete inferenceservice "$SERVICE" --timeout=120s
[ -z "$(instances)" ] || fail "entries left after deleting the InferenceService: $(instances)"

log "helm uninstall"
helm uninstall infer-operator --namespace "$OP_NS" --wait --timeout 120s
log "PASS"
