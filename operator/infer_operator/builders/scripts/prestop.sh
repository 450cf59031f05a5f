#!/bin/sh
# infer-operator preStop hook. Always exits 0.
#   first, the template's own preStop handler, given as arguments (failure is
#          only logged):  exec ARGV... | http PORT PATH SCHEME HOST [HEADER...] |
#          sleep SECONDS
#   sync:  wait until the operator says this pod left the registry
#          ($INFER_RELEASE_URL/released/NAMESPACE/POD answers 2xx; if set): the
#          pod keeps serving while consumers may still call it, and an operator
#          that is away (restarting, upgraded, failing over) finds it listed and
#          deregisters it when it is back;
#          then GET $INFER_OFFLINE_PATH on the sync port (if set; failure is only
#          logged), sleep $INFER_DRAIN_SECONDS so endpoints and requests on the
#          wire drain, and then (if $INFER_IDLE_PATH is set) wait until that
#          path answers 2xx: nothing in flight any more.
#   async: sleep $INFER_ASYNC_DRAIN_SECONDS (usually 0).
# Every wait is bounded by this pod's own grace period ($INFER_GRACE_SECONDS,
# from its template; one second is left for SIGTERM): the settings are live,
# the grace period is the pod's.
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
# The hook's time: it ends a second before the grace period does (SIGTERM and the app's own
# shutdown need it). Without a known grace period there is no deadline.
_infer_started=$(date +%s 2>/dev/null) || _infer_started=
_infer_left() {
    if ! infer_is_uint "${INFER_GRACE_SECONDS:-}" || ! infer_is_uint "$_infer_started"; then
        echo 999999
        return
    fi
    _infer_now=$(date +%s 2>/dev/null) || _infer_now=$_infer_started
    _infer_l=$((_infer_started + INFER_GRACE_SECONDS - 1 - _infer_now))
    [ "$_infer_l" -ge 0 ] || _infer_l=0
    echo "$_infer_l"
}
_infer_nap() {
    # A fifth of a second where sleep takes fractions (GNU, busybox), else a second.
    sleep 0.2 2>/dev/null || sleep 1
}
_infer_sleep() {
    infer_is_uint "$1" || { _infer_plog "ignoring bad drain seconds '$1'"; return 0; }
    _infer_drain=$1
    _infer_room=$(_infer_left)
    if [ "$_infer_drain" -gt "$_infer_room" ]; then
        _infer_drain=$_infer_room
        _infer_plog "role=$_infer_role: drain of $1 s cut to $_infer_drain s: this pod's grace period is" \
            "$INFER_GRACE_SECONDS s (raise lifecycle.terminationGracePeriodSeconds; it takes effect when the" \
            "pod is restarted)"
    fi
    [ "$_infer_drain" -gt 0 ] || return 0
    _infer_plog "role=$_infer_role: draining for $_infer_drain s"
    sleep "$_infer_drain" || :
}

# Wait until the operator confirms this pod is out of the registry, keeping $1 seconds of the
# hook's time for the drain. A refused or failed call (the operator away) is retried.
_infer_wait_released() {
    [ -n "${INFER_RELEASE_URL:-}" ] || return 0
    _infer_url="${INFER_RELEASE_URL%/}/released/${POD_NAMESPACE:-}/$_infer_pod"
    _infer_waited=0
    while :; do
        infer_get_url "$_infer_url" 2>/dev/null
        case $? in
            0)
                [ "$_infer_waited" -eq 0 ] || _infer_plog "role=sync: the operator confirmed the deregistration"
                return 0
                ;;
            3)
                _infer_plog "role=sync: no curl, wget or python3 in the image: not waiting for the operator"
                return 0
                ;;
        esac
        if [ "$(_infer_left)" -le "$1" ]; then
            _infer_plog "role=sync: the operator did not confirm the deregistration within the grace" \
                "period; draining anyway (it removes the entry when it is back)"
            return 0
        fi
        [ "$_infer_waited" -eq 1 ] || _infer_plog "role=sync: waiting for the operator to confirm the deregistration"
        _infer_waited=1
        _infer_nap
    done
}

# Wait until GET $INFER_IDLE_PATH answers 2xx (the app has nothing in flight), within the hook's time.
_infer_wait_idle() {
    [ -n "${INFER_IDLE_PATH:-}" ] && [ -n "${INFER_SYNC_PORT:-}" ] || return 0
    _infer_waited=0
    while ! infer_http_get "$INFER_SYNC_PORT" "$INFER_IDLE_PATH" 2>/dev/null; do
        if [ "$(_infer_left)" -le 0 ]; then
            _infer_plog "role=sync: still busy at the end of the grace period; SIGTERM now"
            return 0
        fi
        [ "$_infer_waited" -eq 1 ] || _infer_plog "role=sync: waiting for the requests in flight ($INFER_IDLE_PATH)"
        _infer_waited=1
        _infer_nap
    done
    [ "$_infer_waited" -eq 0 ] || _infer_plog "role=sync: nothing in flight any more"
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
    _infer_drain_wanted=${INFER_DRAIN_SECONDS:-0}
    infer_is_uint "$_infer_drain_wanted" || _infer_drain_wanted=0
    _infer_wait_released "$_infer_drain_wanted"
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
    _infer_wait_idle
fi
_infer_plog "role=$_infer_role: done"
exit 0
