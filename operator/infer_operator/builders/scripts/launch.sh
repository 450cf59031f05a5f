#!/bin/sh
# infer-operator launcher: the main container's command.
#
#   launch.sh N SYNC_ARGV... ASYNC_ARGV...
#
# N is the number of SYNC_ARGV words; the rest is ASYNC_ARGV. Picks the argv
# of this pod's role (see infer_role in lib.sh), exports INFER_ROLE and
# replaces itself with it (exec). When running as PID 1 it instead stays as a
# minimal init: the kernel gives PID 1 no default signal actions, so an app
# without a SIGTERM handler would never die on SIGTERM. It then runs the argv
# as a child, forwards TERM INT HUP QUIT USR1 USR2 to it and exits with its
# status (128+N when killed by signal N). Note: POSIX sh starts background
# children with INT and QUIT ignored; an app gets those two only if it
# installs its own handlers (TERM, what the kubelet sends, is unaffected).
INFER_SCRIPTS_DIR=${INFER_SCRIPTS_DIR:-/infer-operator}
. "$INFER_SCRIPTS_DIR/lib.sh"
. "$INFER_SCRIPTS_DIR/settings.sh"

_infer_usage() {
    infer_log "launch.sh: $*"
    infer_log "usage: launch.sh N SYNC_ARGV... ASYNC_ARGV...  (N = number of SYNC_ARGV words)"
    exit 64
}

[ $# -ge 1 ] || _infer_usage "missing N"
_infer_nsync=$1
shift
infer_is_uint "$_infer_nsync" || _infer_usage "N must be a non-negative integer, got '$_infer_nsync'"
[ "$_infer_nsync" -le $# ] || _infer_usage "N=$_infer_nsync but only $# argv words given"

_infer_role=$(infer_role) || exit 64

# Keep only this role's words, in order (rotate the positional parameters).
_infer_total=$#
_infer_i=0
while [ "$_infer_i" -lt "$_infer_total" ]; do
    _infer_i=$((_infer_i + 1))
    _infer_w=$1
    shift
    if [ "$_infer_role" = sync ]; then
        [ "$_infer_i" -gt "$_infer_nsync" ] || set -- "$@" "$_infer_w"
    else
        [ "$_infer_i" -le "$_infer_nsync" ] || set -- "$@" "$_infer_w"
    fi
done
[ $# -gt 0 ] || _infer_usage "no command given for role '$_infer_role'"

INFER_ROLE=$_infer_role
export INFER_ROLE
_infer_pod=$(infer_pod_name)
_infer_ord=$(infer_ordinal) || _infer_ord='?'

if [ "$$" != 1 ]; then
    infer_log "launch: pod=$_infer_pod ordinal=$_infer_ord role=$INFER_ROLE: exec $1"
    exec "$@"
fi

infer_log "launch: pod=$_infer_pod ordinal=$_infer_ord role=$INFER_ROLE: running $1 under the PID 1 signal forwarder"
_infer_child=
_infer_pending=
_infer_trapped=
_infer_forward() {
    _infer_trapped=1
    if [ -n "$_infer_child" ]; then
        kill -s "$1" "$_infer_child" 2>/dev/null || :
    else
        _infer_pending="$_infer_pending $1"
    fi
}
for _infer_sig in TERM INT HUP QUIT USR1 USR2; do
    # shellcheck disable=SC2064
    trap "_infer_forward $_infer_sig" "$_infer_sig"
done

# An explicit <&0 keeps stdin (background commands otherwise get /dev/null).
if { : <&0; } 2>/dev/null; then
    "$@" <&0 &
else
    "$@" &
fi
_infer_child=$!
for _infer_sig in $_infer_pending; do
    kill -s "$_infer_sig" "$_infer_child" 2>/dev/null || :
done

while :; do
    _infer_trapped=
    wait "$_infer_child"
    _infer_rc=$?
    # No trapped signal: wait returned the child's status.
    [ -n "$_infer_trapped" ] || break
    # A forwarded signal interrupted wait: wait again while the child (or
    # its unreaped zombie) exists.
    kill -0 "$_infer_child" 2>/dev/null && continue
    # Gone already (a shell that reaps asynchronously, or the signal came
    # right after wait returned): ask once more for the remembered status.
    wait "$_infer_child" 2>/dev/null
    _infer_rc2=$?
    [ "$_infer_rc2" = 127 ] || _infer_rc=$_infer_rc2
    break
done
exit "$_infer_rc"
