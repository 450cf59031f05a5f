#!/bin/sh
# infer-operator preStop hook. Always exits 0.
#   sync:  GET $INFER_OFFLINE_PATH on the sync port (if set; failure is only
#          logged), then sleep $INFER_DRAIN_SECONDS so endpoints drain.
#   async: sleep $INFER_ASYNC_DRAIN_SECONDS (usually 0).
# Log lines go to stderr and, best effort, to $INFER_LOG_SINK (default
# /proc/1/fd/1, the main process's stdout, so they show in `kubectl logs`;
# set it empty to disable).
INFER_SCRIPTS_DIR=${INFER_SCRIPTS_DIR:-/infer-operator}
. "$INFER_SCRIPTS_DIR/lib.sh"
. "$INFER_SCRIPTS_DIR/settings.sh"

_infer_sink=${INFER_LOG_SINK-/proc/1/fd/1}
_infer_pod=$(infer_pod_name)
_infer_plog() {
    _infer_msg="infer-operator: prestop: pod=$_infer_pod $*"
    printf '%s\n' "$_infer_msg" >&2
    if [ -n "$_infer_sink" ]; then
        (printf '%s\n' "$_infer_msg" >>"$_infer_sink") 2>/dev/null || :
    fi
}
_infer_sleep() {
    infer_is_uint "$1" || { _infer_plog "ignoring bad drain seconds '$1'"; return 0; }
    [ "$1" -gt 0 ] || return 0
    _infer_plog "role=$_infer_role: draining for $1 s"
    sleep "$1" || :
}

_infer_role=$(infer_role) || _infer_role=sync
if [ "$_infer_role" = async ]; then
    _infer_sleep "${INFER_ASYNC_DRAIN_SECONDS:-0}"
else
    if [ -n "${INFER_OFFLINE_PATH:-}" ]; then
        if [ -z "${INFER_SYNC_PORT:-}" ]; then
            _infer_plog "role=sync: no sync port; not calling offline path $INFER_OFFLINE_PATH"
        elif infer_http_get "$INFER_SYNC_PORT" "$INFER_OFFLINE_PATH"; then
            _infer_plog "role=sync: called offline path $INFER_OFFLINE_PATH on port $INFER_SYNC_PORT"
        else
            _infer_plog "role=sync: offline path $INFER_OFFLINE_PATH on port $INFER_SYNC_PORT failed (continuing)"
        fi
    fi
    _infer_sleep "${INFER_DRAIN_SECONDS:-0}"
fi
_infer_plog "role=$_infer_role: done"
exit 0
