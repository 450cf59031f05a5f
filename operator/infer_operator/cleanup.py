"""`infer-operator cleanup`: the way out when the operator is gone (uninstalled, or down for good).

Removes the operator's finalizers so that nothing stays stuck Terminating:

- `infer-operator.io/deregister` from pods (held until a deleted pod is deregistered);
- `infer-operator.io/cleanup` from InferenceServices (held until the registry is cleaned);
- `infer-operator.io/reconcile-loop` from InferenceServices (held by kopf while their loop runs).

Objects that are not being deleted lose the finalizer too, so that deleting them later does not
hang either. Registry entries and per-IP configs are NOT removed: a running operator's sweep
removes the stale ones; without an operator, clean the registry yourself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from infer_operator import kinds, labels
from infer_operator.clients.finalizers import remove_finalizer
from infer_operator.clients.kube import KubeClient

# (kind, our finalizers it may carry, label selector of the objects that may carry them)
TARGETS = (
    (kinds.POD, (labels.POD_FINALIZER,), labels.MANAGED_SELECTOR),
    (kinds.INFERENCE_SERVICE, (labels.CR_FINALIZER, labels.LOOP_FINALIZER), None),
)


async def release(
    kube: KubeClient, namespace: str | None, *, dry_run: bool = False, say: Callable[[str], None] = print
) -> int:
    """Remove our finalizers from pods and InferenceServices in `namespace` (None: all). Returns
    the number of objects released (an object counts once, however many of ours it carried).
    Raises KubeError when the API refuses (e.g. 403)."""
    released = 0
    for kind, ours, selector in TARGETS:
        for item in await kube.list(kind.api_version, kind.kind, namespace, label_selector=selector):
            meta = item["metadata"]
            held = [f for f in ours if f in (meta.get("finalizers") or [])]
            if not held:
                continue
            state = "Terminating" if meta.get("deletionTimestamp") else "live"
            where = f"{kind.kind.lower()} {meta['namespace']}/{meta['name']} ({state})"
            if dry_run:
                say(f"would release {where}: remove finalizer {', '.join(held)}")
                released += 1
                continue
            done = []
            for finalizer in held:
                # Only the first removal may trust the listed metadata: the next needs its new version.
                if await remove_finalizer(
                    kube,
                    kind,
                    meta["namespace"],
                    meta["name"],
                    finalizer,
                    uid=meta.get("uid"),
                    known=None if done else meta,
                    attempts=5,
                ):
                    done.append(finalizer)
            if len(done) == len(held):
                say(f"released {where}: removed finalizer {', '.join(done)}")
                released += 1
            else:
                say(f"could not release {where}: it kept changing or the API kept failing")
    return released


def run(namespace: str | None, *, kubeconfig: str | None = None, dry_run: bool = False) -> int:
    async def main() -> int:
        kube = KubeClient.from_environment(kubeconfig)
        try:
            return await release(kube, namespace, dry_run=dry_run)
        finally:
            await kube.close()

    return asyncio.run(main())
