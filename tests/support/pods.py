"""PodViews for pure tests."""

from __future__ import annotations

import datetime

from infer_operator.podview import PodView


def pod(ordinal: int, role: str | None, *, ready: bool = True, deleting: bool = False, service: str = "llm",
        ip: str | None = None, finalizers: tuple[str, ...] = (), ready_for: float = 3600.0) -> PodView:
    now = datetime.datetime.now(datetime.UTC)
    return PodView(
        name=f"{service}-{ordinal}", namespace="default", uid=f"uid-{ordinal}", service=service,
        ordinal=ordinal, role=role, ip=ip or f"10.0.0.{ordinal + 10}", ready=ready,
        ready_since=now - datetime.timedelta(seconds=ready_for) if ready else None,
        deleting=deleting, finalizers=finalizers, resource_version="7",
    )
