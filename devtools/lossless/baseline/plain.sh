#!/bin/sh
# A plain StatefulSet, the way many start: the same app and self-registration, but the shell is
# PID 1 and passes no signal on, there is no preStop hook and nothing deregisters. The app is
# SIGKILLed at the end of the grace period; its registry entry lives until its lease runs out.
ordinal=${POD_NAME##*-}
if [ -z "${SYNC_INSTANCE:-}" ] || [ "$ordinal" -lt "$SYNC_INSTANCE" ]; then
    INFER_ROLE=sync
else
    INFER_ROLE=async
fi
export INFER_ROLE NO_DEREGISTER=1
python3 /app/app.py &
[ "$INFER_ROLE" = sync ] && python3 /baseline/register.py &
wait
