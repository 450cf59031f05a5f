# infer-operator pod-side helpers (POSIX sh: dash, busybox ash, bash).
# Sourced by launch.sh, probe.sh, prestop.sh and gate.sh. Defines functions
# only; every variable it uses is prefixed _infer_ (POSIX sh has no `local`).

INFER_SCRIPTS_DIR=${INFER_SCRIPTS_DIR:-/infer-operator}

# infer_log MSG...: one line to stderr.
infer_log() {
    printf 'infer-operator: %s\n' "$*" >&2
}

# infer_is_uint VALUE: true iff VALUE is a non-empty string of digits.
infer_is_uint() {
    case $1 in
        '' | *[!0-9]*) return 1 ;;
    esac
    return 0
}

# infer_pod_name: $POD_NAME, else $HOSTNAME, else the kernel host name.
infer_pod_name() {
    if [ -n "${POD_NAME:-}" ]; then
        printf '%s\n' "$POD_NAME"
    elif [ -n "${HOSTNAME:-}" ]; then
        printf '%s\n' "$HOSTNAME"
    elif [ -r /proc/sys/kernel/hostname ]; then
        IFS= read -r _infer_h </proc/sys/kernel/hostname && printf '%s\n' "$_infer_h"
    else
        hostname 2>/dev/null
    fi
}

# infer_ordinal: $INFER_ORDINAL, else the trailing -N of the pod name.
# Prints nothing and fails when neither gives a number.
infer_ordinal() {
    if [ -n "${INFER_ORDINAL:-}" ]; then
        infer_is_uint "$INFER_ORDINAL" || return 1
        printf '%s\n' "$INFER_ORDINAL"
        return 0
    fi
    _infer_n=$(infer_pod_name)
    case $_infer_n in
        *-*) _infer_n=${_infer_n##*-} ;;
        *) return 1 ;;
    esac
    infer_is_uint "$_infer_n" || return 1
    printf '%s\n' "$_infer_n"
}

# infer_role: "sync" or "async".
#   $INFER_ROLE if set; else every pod is sync when INFER_SYNC_REPLICAS is
#   empty; else sync iff ordinal < INFER_SYNC_REPLICAS.
# Fails (status 1, message on stderr) on an unusable INFER_ROLE or when the
# ordinal cannot be determined while INFER_SYNC_REPLICAS is set.
infer_role() {
    if [ -n "${INFER_ROLE:-}" ]; then
        case $INFER_ROLE in
            sync | async) printf '%s\n' "$INFER_ROLE"; return 0 ;;
        esac
        infer_log "INFER_ROLE must be 'sync' or 'async', got '$INFER_ROLE'"
        return 1
    fi
    if [ -z "${INFER_SYNC_REPLICAS:-}" ]; then
        printf 'sync\n'
        return 0
    fi
    if ! infer_is_uint "$INFER_SYNC_REPLICAS"; then
        infer_log "INFER_SYNC_REPLICAS must be a number, got '$INFER_SYNC_REPLICAS'"
        return 1
    fi
    if ! _infer_o=$(infer_ordinal); then
        infer_log "cannot determine the pod ordinal (INFER_ORDINAL='${INFER_ORDINAL:-}', pod name '$(infer_pod_name)')"
        return 1
    fi
    if [ "$_infer_o" -lt "$INFER_SYNC_REPLICAS" ]; then
        printf 'sync\n'
    else
        printf 'async\n'
    fi
}

# infer_listening PORT: true iff a TCP socket (IPv4 or IPv6, any address)
# is in state LISTEN on PORT in this network namespace. Pure sh.
infer_listening() {
    infer_is_uint "${1:-}" || { infer_log "infer_listening: bad port '${1:-}'"; return 2; }
    _infer_hex=$(printf '%04X' "$1")
    for _infer_f in /proc/net/tcp /proc/net/tcp6; do
        [ -r "$_infer_f" ] || continue
        # sl local_address rem_address st ...  (st 0A = LISTEN)
        while read -r _infer_sl _infer_local _infer_rem _infer_st _infer_rest; do
            [ "$_infer_st" = 0A ] || continue
            case $_infer_local in
                *:"$_infer_hex") return 0 ;;
            esac
        done <"$_infer_f"
    done
    return 1
}

# infer_tcp PORT: the tcpSocket probe = a listener on PORT.
infer_tcp() {
    infer_listening "$@"
}

# infer_http_get PORT PATH [SCHEME [HOST [HEADER...]]]
# GET SCHEME://HOST:PORT/PATH (HOST defaults to $POD_IP, else 127.0.0.1;
# SCHEME HTTP|HTTPS, certificates not verified, like the kubelet; proxies
# ignored). Success on 2xx/3xx. HEADER is "Name: value". Timeout
# $INFER_PROBE_TIMEOUT_SECONDS (default 1). Returns 0 or 1. Uses curl, else wget (GNU or
# busybox), else python3 (infer_get_url); with none of them it degrades to
# `infer_listening PORT` and says so on stderr.
infer_http_get() {
    _infer_port=${1:-}
    _infer_path=${2:-/}
    _infer_scheme=${3:-HTTP}
    _infer_host=${4:-}
    if [ $# -ge 4 ]; then shift 4; else set --; fi
    infer_is_uint "$_infer_port" || { infer_log "infer_http_get: bad port '$_infer_port'"; return 2; }
    case $_infer_scheme in
        [Hh][Tt][Tt][Pp][Ss]) _infer_scheme=https ;;
        *) _infer_scheme=http ;;
    esac
    _infer_host=${_infer_host:-${POD_IP:-127.0.0.1}}
    case $_infer_host in
        \[*) ;;
        *:*) _infer_host="[$_infer_host]" ;;
    esac
    case $_infer_path in
        /*) ;;
        *) _infer_path=/$_infer_path ;;
    esac
    infer_get_url "$_infer_scheme://$_infer_host:$_infer_port$_infer_path" "$@"
    _infer_rc=$?
    [ "$_infer_rc" -ne 3 ] && return "$_infer_rc"
    infer_log "warning: no curl, wget or python3 in the image; GET $_infer_url degraded to a listen check on port $_infer_port"
    infer_listening "$_infer_port"
}

# infer_get_url URL [HEADER...]
# GET URL (certificates not verified, proxies ignored). Returns 0 on 2xx/3xx, 1 otherwise
# (refused, timed out, another status), 3 when the image has no curl, wget or python3.
# Timeout $INFER_PROBE_TIMEOUT_SECONDS (default 1).
infer_get_url() {
    _infer_url=${1:-}
    shift
    _infer_t=${INFER_PROBE_TIMEOUT_SECONDS:-1}
    infer_is_uint "$_infer_t" && [ "$_infer_t" -gt 0 ] || _infer_t=1

    if command -v curl >/dev/null 2>&1; then
        _infer_k=$#
        while [ "$_infer_k" -gt 0 ]; do
            set -- "$@" -H "$1"
            shift
            _infer_k=$((_infer_k - 1))
        done
        (
            unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY
            curl -sS -f -k -o /dev/null --max-time "$_infer_t" "$@" "$_infer_url"
        ) || return 1
        return 0
    fi
    if command -v wget >/dev/null 2>&1; then
        _infer_k=$#
        while [ "$_infer_k" -gt 0 ]; do
            set -- "$@" --header "$1"
            shift
            _infer_k=$((_infer_k - 1))
        done
        case $(wget --help 2>&1) in
            # GNU Wget would reuse the connection to follow a redirect; a server that closes it
            # after the 3xx (many do) then fails the check. One connection per request.
            *'GNU Wget'*) set -- -T "$_infer_t" -t 1 --no-http-keep-alive "$@" ;;
            *'-T SEC'*) set -- -T "$_infer_t" "$@" ;;
            # busybox wget built without FEATURE_WGET_TIMEOUT: no timeout
            # option (passing -T would fail); the kubelet's probe timeout
            # still bounds the probe.
        esac
        (
            unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY
            wget -q -O /dev/null --no-check-certificate "$@" "$_infer_url"
        ) || { infer_log "GET $_infer_url failed (wget)"; return 1; }
        return 0
    fi
    if command -v python3 >/dev/null 2>&1; then
        python3 -c '
import ssl, sys, urllib.error, urllib.request
url, timeout = sys.argv[1], float(sys.argv[2])
class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None
opener = urllib.request.build_opener(
    NoRedirect,
    urllib.request.ProxyHandler({}),
    urllib.request.HTTPSHandler(context=ssl._create_unverified_context()),
)
req = urllib.request.Request(url)
for h in sys.argv[3:]:
    name, _, value = h.partition(":")
    req.add_header(name.strip(), value.strip())
try:
    code = opener.open(req, timeout=timeout).status
except urllib.error.HTTPError as e:
    code = e.code
except Exception as e:
    print("GET %s: %s" % (url, e), file=sys.stderr)
    sys.exit(1)
if not 200 <= code < 400:
    print("GET %s: HTTP %d" % (url, code), file=sys.stderr)
    sys.exit(1)
' "$_infer_url" "$_infer_t" "$@" || return 1
        return 0
    fi
    return 3
}
