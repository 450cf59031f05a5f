#!/bin/sh
# The baselines' readiness probe (one for every pod of a plain StatefulSet): a sync pod is ready
# when its app answers /healthz, an async pod when its worker has written its ready file.
ordinal=${POD_NAME##*-}
if [ -z "${SYNC_INSTANCE:-}" ] || [ "$ordinal" -lt "$SYNC_INSTANCE" ]; then
    exec python3 -c 'import os, sys, urllib.request
try:
    sys.exit(0 if urllib.request.urlopen("http://127.0.0.1:%s/healthz" % os.environ.get("PORT", "8000"), timeout=1).status == 200 else 1)
except Exception:
    sys.exit(1)'
fi
test -f "${READY_FILE:-/tmp/worker-ready}"
