#!/bin/sh
# infer-operator preStop hook. Always exits 0.
#   first, the template's own preStop handler, given as arguments (failure is
#          only logged):  exec ARGV... | http PORT PATH SCHEME HOST [HEADER...] |
#          sleep SECONDS
#   sync:  GET $INFER_OFFLINE_PATH on the sync port (if set; failure is only
#          logged), then sleep $INFER_DRAIN_SECONDS so endpoints drain.
#   async: sleep $INFER_ASYNC_DRAIN_SECONDS (usually 0).
# A drain never outgrows this pod's own grace period ($INFER_GRACE_SECONDS,
# from its template): the settings are live, the grace period is the pod's.
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
    _infer_drain=$1
    if infer_is_uint "${INFER_GRACE_SECONDS:-}" && [ "$_infer_drain" -ge "$INFER_GRACE_SECONDS" ]; then
        # Leave a second of the grace period for SIGTERM and the app's own shutdown.
        _infer_drain=$((INFER_GRACE_SECONDS - 1))
        [ "$_infer_drain" -ge 0 ] || _infer_drain=0
        _infer_plog "role=$_infer_role: drain of $1 s cut to $_infer_drain s: this pod's grace period is" \
            "$INFER_GRACE_SECONDS s (it is restarted with the new one)"
    fi
    [ "$_infer_drain" -gt 0 ] || return 0
    _infer_plog "role=$_infer_role: draining for $_infer_drain s"
    sleep "$_infer_drain" || :
}

_infer_user_prestop() {
    case "${1:-}" in
        exec)
            shift
            "$@"; _infer_rc=$?
            [ "$_infer_rc" -eq 0 ] && _infer_plog "ran the template's preStop command" \
                || _infer_plog "the template's preStop command exited $_infer_rc (continuing)"
            ;;
        http)
            shift
            if infer_http_get "$@"; then
                _infer_plog "called the template's preStop httpGet on port $1"
            else
                _infer_plog "the template's preStop httpGet on port $1 failed (continuing)"
            fi
            ;;
        sleep)
            infer_is_uint "${2:-}" && sleep "$2"
            _infer_plog "slept ${2:-0} s (the template's preStop)"
            ;;
        '') ;;
        *) _infer_plog "unknown preStop handler '$1' (ignored)" ;;
    esac
}

_infer_role=$(infer_role) || _infer_role=sync
_infer_user_prestop "$@"
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
