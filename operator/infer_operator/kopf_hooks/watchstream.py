"""kopf's watch streams, as they pass: objects cut down to what the operator reads (slim.py),
relists of the pods watch noticed (after which every service audits its pod index), and pod
events handed to the operator before kopf queues them.

kopf lists a resource when its watch starts, and again whenever it cannot resume the watch (a
"410 Gone" after a kube-apiserver restart or a long disconnect, a failed listing). A relist never
removes objects deleted in the gap from kopf's indexes: no DELETED event comes for them, and such
a ghost pod would count as unavailable forever. The periodic audit is a long backstop, so the
relist itself triggers the audit.

kopf tells handlers nothing about a listing ending: it is the `Bookmark.LISTED` mark in its watch
stream (`kopf._cogs.clients.watching.infinite_watch`), which its watcher consumes. So the stream
is wrapped here, and the mark observed as it passes. Objects of a relist arrive as events of type
None, but a relist that finds none (every pod of the namespace deleted in the gap) delivers no
event at all, so only the mark is a sound trigger.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from infer_operator import kinds
from infer_operator.kopf_hooks.base import MARK, Unavailable
from infer_operator.slim import NODE, OWNED, POD, WHOLE, slim

log = logging.getLogger(__name__)

# (API group, plural) -> what of its objects is kept (slim.py)
_SHAPES = {
    (kinds.POD.group, kinds.POD.plural): POD,
    (kinds.NODE.group, kinds.NODE.plural): NODE,
    **{(kind.group, kind.plural): OWNED for kind in kinds.OWNED},
}


def install(on_pods_listed: Callable[[Any], None], on_pod_event: Callable[[dict[str, Any]], None]) -> None:
    """Wrap kopf's watch streams: slim every object, call `on_pods_listed(namespace)` (None for a
    cluster-wide watch) each time the pods watch has listed everything, from its second listing in
    a namespace on (the first is the operator's start: nothing can be missing then), and
    `on_pod_event(event)` with each pod event ({"type", "object"}, slimmed) before kopf queues it.
    Neither callback may raise into the stream: their errors are logged. Idempotent.

    Raises Unavailable when this kopf has no such stream or mark."""
    try:
        from kopf._cogs.clients import watching

        original = watching.infinite_watch
        listed_mark = watching.Bookmark.LISTED
    except (ImportError, AttributeError) as exc:
        raise Unavailable(f"kopf._cogs.clients.watching.infinite_watch or its Bookmark.LISTED: {exc}") from None
    if getattr(original, MARK, False):
        return
    listings: dict[Any, int] = {}

    async def infinite_watch(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        resource, namespace = kwargs.get("resource"), kwargs.get("namespace")
        shape = _SHAPES.get((getattr(resource, "group", None), getattr(resource, "plural", None)), WHOLE)
        pods = shape == POD
        async for item in original(*args, **kwargs):
            if item is listed_mark:
                if pods:
                    listings[namespace] = listings.get(namespace, 0) + 1
                    if listings[namespace] > 1:
                        _call(on_pods_listed, namespace)
            elif isinstance(item, dict):
                slim(item.get("object"), shape)
                if pods:
                    _call(on_pod_event, item)
            yield item

    setattr(infinite_watch, MARK, True)
    watching.infinite_watch = infinite_watch


def _call(callback: Callable[[Any], None], argument: Any) -> None:
    try:
        callback(argument)
    except Exception:  # noqa: BLE001 - kopf's handlers still see the event
        log.exception(
            f"The operator's hook on kopf's watch stream failed on {callback.__name__}; kopf's own "
            f"handlers still get the event."
        )
