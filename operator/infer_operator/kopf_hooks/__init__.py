"""Every use of kopf's private internals, in one place, behind one version gate.

kopf's public API covers handlers, indexes, settings and events; a few things the operator needs
at fleet size are not in it. Each is a hook here. `install()` checks kopf's version against the
series the hooks were tested with (`TESTED_KOPF`), tries each hook, exports
`infer_operator_kopf_hook_installed{hook}` (1 installed, 0 fallen back) and logs a warning naming
what a hook that fell back costs. A hook that falls back leaves kopf's own behaviour: the operator
stays correct, only slower or less informed. Nothing outside this package names a private kopf
module (`grep -rn "kopf\\._" operator/` finds only this package).

Private names touched (kopf 1.45), by hook, and what each gives:

- `watch_stream` (watchstream.py): `kopf._cogs.clients.watching.infinite_watch` (replaced by a
  wrapper) and `watching.Bookmark.LISTED`. Objects slimmed as they arrive (memory), relists
  noticed (an audit at once), deregistration started before kopf's per-object queue.
- `event_decoding` (decoding.py): `kopf._cogs.clients.api.json`, the name kopf decodes watch
  events with. orjson decoding (CPU).
- `start_up_indexing` (indexing.py): `kopf._cogs.aiokits.aiotoggles.ToggleSet` (`make_toggle`,
  `drop_toggle`, `drop_toggles` replaced; `_condition`, `_toggles`, `is_on` used) and
  `aiotoggles.Toggle(condition=)`. A restart's indexing linear, not quadratic, in the objects (a
  kopf defect: docs/design.md has the report for kopf).
- `peering_state` (logs.py): the logger `kopf._core.engines.peering` and its lines "Pausing
  operations", "Pausing all operators", "Resuming operations". `infer_operator_active` follows
  the standby pauses.
- `quiet_handler_log` (logs.py): the logger `kopf.objects` and the line "Handler '...'
  succeeded." of `kopf._core.actions.execution`. No log line per handled watch event.

To upgrade kopf: raise the pin in pyproject.toml, run `tests/unit/test_kopf_hooks.py` (it fails
when any hook falls back on the installed kopf), re-check what each hook relies on, and add the
new minor series to `TESTED_KOPF`.
"""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from infer_operator import metrics
from infer_operator.kopf_hooks import decoding, indexing, logs, watchstream
from infer_operator.kopf_hooks.base import Unavailable

log = logging.getLogger(__name__)

TESTED_KOPF = ("1.45",)  # minor series the hooks were tested with (pyproject.toml pins the same)

# How `install` treats the kopf it finds: "tested" installs hooks only on a tested series, "any"
# tries them on any version whose internals still look as relied on, "off" installs none.
MODES = ("tested", "any", "off")


@dataclass(frozen=True)
class Hook:
    name: str  # the gauge's label
    lost: str  # what falling back costs, for the warning
    install: Callable[[], None]  # raises Unavailable


def kopf_version() -> str:
    try:
        return importlib.metadata.version("kopf")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def tested(version: str) -> bool:
    return any(version == series or version.startswith(f"{series}.") for series in TESTED_KOPF)


def hooks(
    *, on_pods_listed: Callable[[Any], None], on_pod_event: Callable[[dict[str, Any]], None], quiet: bool
) -> list[Hook]:
    """The hooks, in the order they are installed (all before kopf starts its watches)."""
    found = [
        Hook(
            "watch_stream",
            install=lambda: watchstream.install(on_pods_listed, on_pod_event),
            lost="objects are kept whole (more memory per pod), pods deleted while a watch was away are found "
            "by the periodic audit only (--audit-seconds), and deregistration waits in kopf's queue",
        ),
        Hook("event_decoding", install=decoding.install, lost="watch events are decoded by json (more CPU per event)"),
        Hook(
            "start_up_indexing",
            install=indexing.install,
            lost="a restart with many objects spends time quadratic in their number before the first handler "
            "runs (pods deleted meanwhile stay registered that long)",
        ),
        Hook(
            "peering_state",
            install=lambda: logs.follow_peering(_set_active),
            lost="infer_operator_active stays 1 on a paused standby",
        ),
    ]
    if quiet:
        found.append(
            Hook(
                "quiet_handler_log",
                install=logs.quiet_event_handlers,
                lost="kopf logs a line for every watch event a handler took",
            )
        )
    return found


def _set_active(active: bool) -> None:
    metrics.ACTIVE.set(1 if active else 0)


def install(
    *,
    on_pods_listed: Callable[[Any], None],
    on_pod_event: Callable[[dict[str, Any]], None],
    quiet: bool = True,
    mode: str = "tested",
) -> dict[str, bool]:
    """Install every hook this kopf allows (`mode`: see MODES). Returns hook name -> installed.
    Never raises for a hook: one that cannot be installed is reported and left out."""
    version = kopf_version()
    refused: str | None = None
    if mode == "off":
        refused = "kopf hooks are turned off (--kopf-hooks off)"
    elif mode == "tested" and not tested(version):
        refused = (
            f"kopf {version} is not a series these hooks were tested with ({', '.join(TESTED_KOPF)}); "
            f"--kopf-hooks any tries them anyway"
        )
    installed: dict[str, bool] = {}
    for hook in hooks(on_pods_listed=on_pods_listed, on_pod_event=on_pod_event, quiet=quiet):
        reason = refused
        if reason is None:
            try:
                hook.install()
            except Unavailable as exc:
                reason = f"this kopf ({version}) lacks what it relies on: {exc}"
        installed[hook.name] = reason is None
        metrics.KOPF_HOOKS.labels(hook.name).set(1 if reason is None else 0)
        if reason is not None:
            log.warning(
                f"The kopf hook {hook.name} is not installed ({reason}); kopf's own behaviour stays: {hook.lost}."
            )
    return installed


__all__ = ["TESTED_KOPF", "MODES", "Hook", "Unavailable", "install", "hooks", "kopf_version", "tested"]
