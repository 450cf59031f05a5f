#!/bin/sh
# The seeds' way (SEEDS.md, report 1), as the field wrote it: a shell entrypoint picks the role by
# the StatefulSet ordinal, runs the app and, for sync pods, a second process that registers the
# instance in etcd (and deregisters it when told to stop); SIGTERM is trapped and forwarded to both,
# then the script waits for them. No preStop hook, no readiness gate, no operator.
ordinal=${POD_NAME##*-}
if [ -z "${SYNC_INSTANCE:-}" ] || [ "$ordinal" -lt "$SYNC_INSTANCE" ]; then
    INFER_ROLE=sync
else
    INFER_ROLE=async
fi
export INFER_ROLE
python3 /app/app.py &
app=$!
registrar=
if [ "$INFER_ROLE" = sync ]; then
    python3 /baseline/register.py &
    registrar=$!
fi
trap 'kill -TERM $app $registrar 2>/dev/null' TERM INT
wait $app        # returns early when the trap runs
wait $app
[ -n "$registrar" ] && wait $registrar
exit 0
