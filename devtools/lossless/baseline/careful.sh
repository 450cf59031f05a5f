#!/bin/sh
# What a careful team writes by hand around a plain StatefulSet (the third baseline): the role by
# ordinal as in the seeds' script, the pod labels itself with its role (label.py, through the API
# with its ServiceAccount) so that a per-role Service selects only sync pods, a self-registering
# sidecar process, SIGTERM trapped and forwarded. Its preStop hook (prestop.sh) deregisters the
# instance and waits DRAIN_SECONDS; a PodDisruptionBudget guards voluntary disruptions.
ordinal=${POD_NAME##*-}
if [ -z "${SYNC_INSTANCE:-}" ] || [ "$ordinal" -lt "$SYNC_INSTANCE" ]; then
    INFER_ROLE=sync
else
    INFER_ROLE=async
fi
export INFER_ROLE STOP_FILE=/tmp/deregistered
python3 /baseline/label.py "$INFER_ROLE" || exit 1
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
