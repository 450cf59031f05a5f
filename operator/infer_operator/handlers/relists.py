"""Relists of the pods watch: after one, every service audits its pod index against the API.

kopf lists a resource when its watch starts, and again whenever it cannot resume the watch (a
"410 Gone" after a kube-apiserver restart or a long disconnect, a failed listing). A relist never
removes objects deleted in the gap from kopf's indexes: no DELETED event comes for them, and such
a ghost pod would count as unavailable forever. The periodic audit is a long backstop, so the
relist itself triggers the audit (reconcile/schedule.Schedule.relisted).

kopf tells handlers nothing about a listing ending: it is the `Bookmark.LISTED` mark in its watch
stream (`kopf._cogs.clients.watching.infinite_watch`), which its watcher consumes. So the stream
is wrapped here and the mark observed as it passes; nothing in it is changed. Objects of a relist
arrive as events of type None, but a relist that finds none (every pod of the namespace deleted
in the gap) delivers no event at all, so only the mark is a sound trigger. Were kopf's internals
to change, `install` says so in the log and the audit falls back to `--audit-seconds`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

log = logging.getLogger(__name__)

_MARK = "_infer_operator_relists"


def install(on_listed: Callable[[Any], None], plural: str = "pods") -> bool:
    """Call `on_listed(namespace)` (None for a cluster-wide watch) each time the watch of the core
    resource `plural` has listed everything, from its second listing in a namespace on (the first
    is the operator's start: nothing can be missing then). Returns whether kopf could be hooked."""
    try:
        from kopf._cogs.clients import watching

        original = watching.infinite_watch
        listed_mark = watching.Bookmark.LISTED
    except (ImportError, AttributeError) as exc:
        log.warning(f"Cannot observe relists of the {plural} watch in this kopf version ({exc}); pods deleted "
                    f"while a watch was away are found by the periodic audit (--audit-seconds) only.")
        return False
    if getattr(original, _MARK, False):
        return True
    listings: dict[Any, int] = {}

    async def infinite_watch(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        resource, namespace = kwargs.get("resource"), kwargs.get("namespace")
        ours = getattr(resource, "group", None) == "" and getattr(resource, "plural", None) == plural
        async for item in original(*args, **kwargs):
            if ours and item is listed_mark:
                listings[namespace] = listings.get(namespace, 0) + 1
                if listings[namespace] > 1:
                    on_listed(namespace)
            yield item

    setattr(infinite_watch, _MARK, True)
    watching.infinite_watch = infinite_watch
    return True
