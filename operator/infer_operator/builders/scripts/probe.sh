#!/bin/sh
# infer-operator readiness probe: exit 0 = ready.
# Runs infer_sync_probe or infer_async_probe (rendered into settings.sh from
# the service spec) according to this pod's role.
INFER_SCRIPTS_DIR=${INFER_SCRIPTS_DIR:-/infer-operator}
. "$INFER_SCRIPTS_DIR/lib.sh"
. "$INFER_SCRIPTS_DIR/settings.sh"

_infer_role=$(infer_role) || exit 1
case $_infer_role in
    sync) infer_sync_probe ;;
    async) infer_async_probe ;;
esac
