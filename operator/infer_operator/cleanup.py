"""`infer-operator cleanup`: the way out when the operator is gone (uninstalled, or down for good).

Removes the operator's finalizers so that nothing stays stuck Terminating:

- `infer-operator.io/deregister` from pods (held until a deleted pod is deregistered);
- `infer-operator.io/cleanup` from InferenceServices (held until the registry is cleaned).

Objects that are not being deleted lose the finalizer too, so that deleting them later does not
hang either. Registry entries and per-IP configs are NOT removed: a running operator's sweep
removes the stale ones; without an operator, clean the registry yourself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from infer_operator import labels
from infer_operator.clients.kube import KubeClient, KubeError

TARGETS = (("v1", "Pod", labels.POD_FINALIZER, labels.MANAGED_SELECTOR),
           (labels.API_VERSION, labels.KIND, labels.CR_FINALIZER, None))


async def release(kube: KubeClient, namespace: str | None, *, dry_run: bool = False,
                  say: Callable[[str], None] = print) -> int:
    """Remove our finalizers from pods and InferenceServices in `namespace` (None: all). Returns
    the number of objects released."""
    released = 0
    for api_version, kind, finalizer, selector in TARGETS:
        for item in await kube.list(api_version, kind, namespace, label_selector=selector):
            meta = item["metadata"]
            for _ in range(5):  # a concurrent change: re-read and try again
                finalizers = meta.get("finalizers") or []
                if finalizer not in finalizers:
                    break
                state = "Terminating" if meta.get("deletionTimestamp") else "live"
                where = f"{kind.lower()} {meta['namespace']}/{meta['name']} ({state})"
                if dry_run:
                    say(f"would release {where}: remove finalizer {finalizer}")
                    released += 1
                    break
                patch = {"metadata": {"finalizers": [f for f in finalizers if f != finalizer],
                                      "resourceVersion": meta["resourceVersion"]}}
                try:
                    await kube.merge_patch(api_version, kind, meta["namespace"], meta["name"], patch)
                except KubeError as exc:
                    if exc.not_found:
                        break
                    if not exc.conflict:
                        raise
                    try:
                        meta = (await kube.get(api_version, kind, meta["namespace"], meta["name"]))["metadata"]
                    except KubeError as again:
                        if again.not_found:
                            break
                        raise
                    continue
                say(f"released {where}: removed finalizer {finalizer}")
                released += 1
                break
    return released


def run(namespace: str | None, *, kubeconfig: str | None = None, dry_run: bool = False) -> int:
    async def main() -> int:
        kube = KubeClient.from_environment(kubeconfig)
        try:
            return await release(kube, namespace, dry_run=dry_run)
        finally:
            await kube.close()

    return asyncio.run(main())
