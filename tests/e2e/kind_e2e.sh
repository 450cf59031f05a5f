#!/usr/bin/env bash
# End to end on kind: build the operator and sample-app images, helm install the operator, run the
# two-role sample app registered in an in-cluster etcd (its async role on an in-cluster Redis),
# run the checks of tests/e2e/checks.py (roles, registry entries, the Service, cleanup on pod
# deletion and on the InferenceService's deletion: the same list the real-node test runs), then
# tear everything down.
#
# Needs docker (with a running engine), kind, kubectl, helm and python3 on PATH. Without docker or kind it
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
for tool in kubectl helm python3; do
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

log "etcd, Redis and the sample InferenceService"
kubectl create namespace "$APP_NS"
kubectl -n "$APP_NS" apply -f "$ROOT/tests/e2e/etcd.yaml"
kubectl -n "$APP_NS" rollout status deploy/etcd deploy/redis --timeout=180s
kubectl -n "$APP_NS" apply -f "$ROOT/examples/sample-app/inferenceservice-etcd.yaml"

# The checks themselves are one list, shared with the real-node test (tests/e2e/checks.py).
(cd "$ROOT" && python3 -m tests.e2e.checks --namespace "$APP_NS" --service "$SERVICE") || fail "the end-to-end checks"

log "helm uninstall"
helm uninstall infer-operator --namespace "$OP_NS" --wait --timeout 120s
log "PASS"
