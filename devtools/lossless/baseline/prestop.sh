#!/bin/sh
# The careful baseline's preStop hook: a sync pod takes itself out of the registry (the registrar
# stops renewing first, so it does not put the entry back), then waits DRAIN_SECONDS for the
# requests already on their way; an async pod goes at once (its worker finishes the job in hand
# on SIGTERM).
ordinal=${POD_NAME##*-}
if [ -z "${SYNC_INSTANCE:-}" ] || [ "$ordinal" -lt "$SYNC_INSTANCE" ]; then
    STOP_FILE=/tmp/deregistered python3 /baseline/register.py --deregister
    sleep "${DRAIN_SECONDS:-3}"
fi
exit 0
