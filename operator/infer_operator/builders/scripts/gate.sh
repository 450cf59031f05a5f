#!/bin/sh
# infer-operator init-container gate: wait until the operator has labelled
# this pod with its role, i.e. the downward-API file
# ${INFER_PODINFO_DIR:-/etc/infer-operator/podinfo}/labels has a line
# starting with infer-operator.io/role= . Env resolved by the main container
# (which starts after this) is then consistent with the label.
#   INFER_GATE_INTERVAL  poll interval, whole seconds (default 1)
#   INFER_GATE_TIMEOUT   give up after this many seconds, exit 1 (default 600)
INFER_SCRIPTS_DIR=${INFER_SCRIPTS_DIR:-/infer-operator}
. "$INFER_SCRIPTS_DIR/lib.sh"
. "$INFER_SCRIPTS_DIR/settings.sh"

_infer_file=${INFER_PODINFO_DIR:-/etc/infer-operator/podinfo}/labels
_infer_interval=${INFER_GATE_INTERVAL:-1}
_infer_timeout=${INFER_GATE_TIMEOUT:-600}
infer_is_uint "$_infer_interval" && [ "$_infer_interval" -gt 0 ] || _infer_interval=1
infer_is_uint "$_infer_timeout" || _infer_timeout=600
_infer_pod=$(infer_pod_name)

# Prints the label line and succeeds once it is there. The downward-API file
# may lack a final newline, hence the `|| [ -n ]`.
_infer_labelled() {
    [ -r "$_infer_file" ] || return 1
    while IFS= read -r _infer_line || [ -n "$_infer_line" ]; do
        case $_infer_line in
            infer-operator.io/role=*) printf '%s\n' "$_infer_line"; return 0 ;;
        esac
        _infer_line=
    done <"$_infer_file"
    return 1
}

_infer_elapsed=0
_infer_next_msg=0
while :; do
    if _infer_label=$(_infer_labelled); then
        infer_log "gate: pod $_infer_pod labelled ($_infer_label) after ${_infer_elapsed}s"
        exit 0
    fi
    if [ "$_infer_elapsed" -ge "$_infer_timeout" ]; then
        infer_log "gate: giving up after ${_infer_timeout}s: pod $_infer_pod has not been labelled infer-operator.io/role by the operator ($_infer_file). Is infer-operator running?"
        exit 1
    fi
    if [ "$_infer_elapsed" -ge "$_infer_next_msg" ]; then
        infer_log "gate: pod $_infer_pod waiting for the operator to label it infer-operator.io/role (${_infer_elapsed}s/${_infer_timeout}s)"
        _infer_next_msg=$((_infer_next_msg + 10))
    fi
    sleep "$_infer_interval"
    _infer_elapsed=$((_infer_elapsed + _infer_interval))
done
