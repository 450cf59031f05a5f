"""kopf's watch streams, as they pass: events decoded by orjson (jsonwire.py), objects cut down to
what the operator reads (slim.py), and relists of the pods watch noticed, after which every service
audits its pod index.

kopf lists a resource when its watch starts, and again whenever it cannot resume the watch (a
"410 Gone" after a kube-apiserver restart or a long disconnect, a failed listing). A relist never
removes objects deleted in the gap from kopf's indexes: no DELETED event comes for them, and such
a ghost pod would count as unavailable forever. The periodic audit is a long backstop, so the
relist itself triggers the audit (reconcile/schedule.Schedule.relisted).

kopf tells handlers nothing about a listing ending: it is the `Bookmark.LISTED` mark in its watch
stream (`kopf._cogs.clients.watching.infinite_watch`), which its watcher consumes. So the stream
is wrapped here, and the mark observed as it passes. Objects of a relist arrive as events of type
None, but a relist that finds none (every pod of the namespace deleted in the gap) delivers no
event at all, so only the mark is a sound trigger. Were kopf's internals to change, `install` says
so in the log; the operator then works on whole objects, and the audit falls back to
`--audit-seconds`.
"""

from __future__ import annotations

import json
import logging
import types
from collections.abc import AsyncIterator, Callable
from typing import Any

from infer_operator import jsonwire, kinds
from infer_operator.slim import OWNED, POD, WHOLE, slim

log = logging.getLogger(__name__)

_MARK = "_infer_operator_wrapped"
# (API group, plural) -> what of its objects is kept (slim.py)
_SHAPES = {(kinds.POD.group, kinds.POD.plural): POD,
           **{(kind.group, kind.plural): OWNED for kind in kinds.OWNED}}


def install(on_pods_listed: Callable[[Any], None], on_pod_event: Callable[[dict[str, Any]], None] | None = None
            ) -> bool:
    """Wrap kopf's watch streams: slim every object, and call `on_pods_listed(namespace)` (None for
    a cluster-wide watch) each time the pods watch has listed everything, from its second listing
    in a namespace on (the first is the operator's start: nothing can be missing then), and
    `on_pod_event(event)` with each pod event ({"type", "object"}, slimmed) before kopf queues it.
    Neither may raise into the stream: their errors are logged. Returns whether kopf could be
    hooked."""
    _decode_with_orjson()
    try:
        from kopf._cogs.clients import watching

        original = watching.infinite_watch
        listed_mark = watching.Bookmark.LISTED
    except (ImportError, AttributeError) as exc:
        log.warning(f"Cannot hook the watch streams of this kopf version ({exc}): objects are kept whole, and pods "
                    f"deleted while a watch was away are found by the periodic audit (--audit-seconds) only.")
        return False
    if getattr(original, _MARK, False):
        return True
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
                        on_pods_listed(namespace)
            elif isinstance(item, dict):
                slim(item.get("object"), shape)
                if pods and on_pod_event is not None:
                    try:
                        on_pod_event(item)
                    except Exception:  # noqa: BLE001 - kopf's handlers still see the event
                        log.exception("Handling a pod event from the watch stream failed; kopf's handler will.")
            yield item

    setattr(infinite_watch, _MARK, True)
    watching.infinite_watch = infinite_watch
    return True


def _decode_with_orjson() -> None:
    """kopf decodes each watch event with the `json` module its API client imported
    (`kopf._cogs.clients.api`): that name is given the standard module's functions, with
    jsonwire's `loads`. Only that module's name changes; `json` stays as it is for everyone else.
    Idempotent, and independent of the stream hook: either may work without the other."""
    try:
        from kopf._cogs.clients import api
    except ImportError as exc:
        log.warning(f"Cannot hook this kopf version's decoding of watch events ({exc}); it decodes with json.")
        return
    if getattr(api.json, _MARK, False):
        return
    decoder = types.SimpleNamespace(**{name: getattr(json, name) for name in dir(json) if not name.startswith("__")})
    decoder.loads = jsonwire.loads
    setattr(decoder, _MARK, True)
    api.json = decoder
