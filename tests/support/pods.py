"""PodViews for pure tests."""

from __future__ import annotations

import datetime

from infer_operator.podview import PodView


def pod(
    ordinal: int,
    role: str | None,
    *,
    ready: bool = True,
    serving: bool | None = None,
    deleting: bool = False,
    service: str = "llm",
    ip: str | None = None,
    finalizers: tuple[str, ...] = (),
    ready_for: float = 3600.0,
    gate_open: bool | None = None,
) -> PodView:
    """A pod; `serving` (containers ready) and `gate_open` default to `ready` (a Ready pod has both)."""
    now = datetime.datetime.now(datetime.UTC)
    serving = ready if serving is None else serving
    return PodView(
        name=f"{service}-{ordinal}",
        namespace="default",
        uid=f"uid-{ordinal}",
        service=service,
        ordinal=ordinal,
        role=role,
        ip=ip or f"10.0.0.{ordinal + 10}",
        ready=ready,
        serving=serving,
        serving_since=now - datetime.timedelta(seconds=ready_for) if serving else None,
        deleting=deleting,
        finalizers=finalizers,
        resource_version="7",
        gate_open=ready if gate_open is None else gate_open,
    )
