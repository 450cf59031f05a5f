#!/bin/sh
# What a careful team writes by hand around a plain StatefulSet (the third baseline): the seeds'
# script (seed.sh: the role by ordinal, a self-registering sidecar process, SIGTERM trapped and
# forwarded), after the pod labelled itself with its role (label.py, through the API with its
# ServiceAccount) so that a per-role Service selects only sync pods. Its preStop hook (prestop.sh)
# deregisters the instance and waits DRAIN_SECONDS; a PodDisruptionBudget guards voluntary
# disruptions.
ordinal=${POD_NAME##*-}
if [ -z "${SYNC_INSTANCE:-}" ] || [ "$ordinal" -lt "$SYNC_INSTANCE" ]; then
    role=sync
else
    role=async
fi
python3 /baseline/label.py "$role" || exit 1
# The registrar stops renewing once the preStop hook created this file (and deleted the entry).
export STOP_FILE=/tmp/deregistered
exec /bin/sh /baseline/seed.sh
