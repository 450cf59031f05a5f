"""Pod-side shell scripts shipped to every pod through a ConfigMap.

The ConfigMap (``pod_scripts_configmap_data``) is mounted at ``SCRIPTS_DIR``
and holds the static POSIX-sh scripts in ``scripts/`` (``lib.sh``,
``launch.sh``, ``probe.sh``, ``prestop.sh``, ``gate.sh``) plus ``settings.sh``,
rendered here from the service spec. The scripts need only ``/bin/sh`` (and
``sleep``); ``httpGet`` probes and the offline call use curl, wget or python3
when the image has one, else degrade to a listen check.

``settings.sh`` is rendered from one ``PodSettings`` (made from the spec by
``PodSettings.from_spec``, and the operator's release endpoint) and defines
``INFER_SYNC_PORT``, ``INFER_DRAIN_SECONDS``, ``INFER_ASYNC_DRAIN_SECONDS``,
``INFER_OFFLINE_PATH``, ``INFER_IDLE_PATH``, ``INFER_RELEASE_URL``,
``INFER_PROBE_TIMEOUT_SECONDS`` and the functions ``infer_sync_probe`` /
``infer_async_probe`` (exit 0 = ready). Probe translation (Kubernetes Probe
dicts, camelCase):

* ``httpGet``   -> ``infer_http_get PORT PATH SCHEME HOST [HEADER...]``
* ``tcpSocket`` -> ``infer_tcp PORT`` (a local LISTEN socket; ``host`` ignored)
* ``exec``      -> the command argv, run directly
* ``grpc``      -> ``infer_listening PORT``: no gRPC health client can be
  assumed in the image, so this falls back to the TCP listen check
* none          -> sync: ``infer_listening SYNC_PORT`` (``true`` when there is
  no sync port); async: ``true``

Named (string) ports cannot be resolved against the container here; any
non-numeric string port means ``sync_port``. Every embedded value is
``shlex.quote``d. The numbers come from the validated spec; only the free-form
probe handlers (ports, commands) are checked here.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from infer_operator.api.v1alpha1 import InferenceServiceSpec

SCRIPTS_DIR = "/infer-operator"
SETTINGS_FILE = "settings.sh"
SCRIPT_NAMES = ("lib.sh", "launch.sh", "probe.sh", "prestop.sh", "gate.sh")

_HANDLERS = ("exec", "httpGet", "tcpSocket", "grpc")


def script_files() -> dict[str, str]:
    """The static scripts, file name -> text."""
    base = resources.files("infer_operator.builders").joinpath("scripts")
    return {name: base.joinpath(name).read_text(encoding="utf-8") for name in SCRIPT_NAMES}


def _q(value: Any) -> str:
    text = str(value)
    if "\x00" in text:
        raise ValueError(f"NUL byte in value for settings.sh: {text!r}")
    return shlex.quote(text)


def _port_number(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ValueError(f"{what} must be a port number 1..65535, got {value!r}")
    return value


# The pod's own sync port at run time: its env (from its template revision), not the live
# ConfigMap's, so that a changed sync.port never probes pods of the old revision on the new port.
POD_SYNC_PORT = '"$INFER_SYNC_PORT"'


def _resolve_port(port: Any, sync_port: int | None, what: str) -> str:
    """The probe's port as a shell word: the pod's sync port for the sync port's number or any
    name (only the sync port is known here), else the number."""
    if isinstance(port, str) and not port.isdigit():
        if sync_port is None:
            raise ValueError(f"{what}: named port {port!r} needs sync_port")
        return POD_SYNC_PORT
    number = _port_number(int(port) if isinstance(port, str) else port, what)
    return POD_SYNC_PORT if number == sync_port else _q(number)


def _probe_command(probe: dict | None, *, sync_port: int | None, default: str, what: str) -> str:
    """The sh command line that implements one Kubernetes probe."""
    if probe is None:
        return default
    handlers = [h for h in _HANDLERS if probe.get(h) is not None]
    if len(handlers) != 1:
        raise ValueError(f"{what} needs exactly one of {', '.join(_HANDLERS)}, got {sorted(probe)}")
    kind = handlers[0]
    spec = probe[kind]
    if kind == "exec":
        command = spec.get("command") or []
        if not command:
            raise ValueError(f"{what}.exec.command is empty")
        return " ".join(_q(word) for word in command)
    port = _resolve_port(spec.get("port"), sync_port, f"{what}.{kind}.port")
    if kind == "httpGet":
        words = [
            "infer_http_get",
            port,
            _q(spec.get("path") or "/"),
            _q(spec.get("scheme") or "HTTP"),
            _q(spec.get("host") or ""),
        ]
        for header in spec.get("httpHeaders") or []:
            words.append(_q(f"{header['name']}: {header.get('value', '')}"))
        return " ".join(words)
    if kind == "tcpSocket":
        return f"infer_tcp {port}"
    # grpc: fall back to "something listens on the port".
    return f"infer_listening {port}"


@dataclass(frozen=True)
class PodSettings:
    """What the pod-side scripts read at run time (seconds are whole seconds)."""

    sync_port: int | None  # None: no sync port (the default sync probe passes)
    drain_seconds: int
    async_drain_seconds: int
    offline_path: str | None
    sync_probe: dict[str, Any] | None  # core/v1 Probe dicts (camelCase), as in the spec
    async_probe: dict[str, Any] | None
    probe_timeout_seconds: int = 1  # budget of one HTTP check, inside the kubelet's timeout
    idle_path: str | None = None  # answers 2xx when nothing is in flight (lifecycle.idlePath)
    release_url: str | None = None  # the operator's release endpoint, as pods reach it (--release-url)

    @classmethod
    def from_spec(
        cls, spec: InferenceServiceSpec, probe_timeout_seconds: int, release_url: str | None = None
    ) -> PodSettings:
        def probe(role: Any) -> dict[str, Any] | None:
            return role.readiness_probe.as_kubernetes() if role.readiness_probe else None

        return cls(
            sync_port=spec.sync.port,
            drain_seconds=spec.lifecycle.drain_seconds,
            async_drain_seconds=spec.lifecycle.async_drain_seconds,
            offline_path=spec.lifecycle.offline_path,
            sync_probe=probe(spec.sync),
            async_probe=probe(spec.async_),
            probe_timeout_seconds=probe_timeout_seconds,
            idle_path=spec.lifecycle.idle_path,
            release_url=release_url,
        )


def render_settings(settings: PodSettings) -> str:
    """Render settings.sh (sourced by every script after lib.sh). ValueError on unusable probes."""
    sync_port = settings.sync_port
    sync_default = f"infer_listening {POD_SYNC_PORT}" if sync_port is not None else "true"
    sync_cmd = _probe_command(settings.sync_probe, sync_port=sync_port, default=sync_default, what="sync_probe")
    async_cmd = _probe_command(settings.async_probe, sync_port=sync_port, default="true", what="async_probe")
    lines = [
        "# Generated by infer-operator; do not edit. Sourced after lib.sh.",
        # A pod started by this version has its own (its env); older pods use the service's.
        f"INFER_SYNC_PORT=${{INFER_SYNC_PORT:-{_q('' if sync_port is None else sync_port)}}}",
        f"INFER_DRAIN_SECONDS={_q(settings.drain_seconds)}",
        f"INFER_ASYNC_DRAIN_SECONDS={_q(settings.async_drain_seconds)}",
        f"INFER_OFFLINE_PATH={_q(settings.offline_path or '')}",
        f"INFER_IDLE_PATH={_q(settings.idle_path or '')}",
        f"INFER_RELEASE_URL={_q(settings.release_url or '')}",
        f"INFER_PROBE_TIMEOUT_SECONDS={_q(settings.probe_timeout_seconds)}",
        "",
        "infer_sync_probe() {",
        f"    {sync_cmd}",
        "}",
        "",
        "infer_async_probe() {",
        f"    {async_cmd}",
        "}",
        "",
    ]
    return "\n".join(lines)


def pod_scripts_configmap_data(settings: PodSettings) -> dict[str, str]:
    """ConfigMap data: the static scripts plus the rendered settings.sh."""
    data = script_files()
    data[SETTINGS_FILE] = render_settings(settings)
    return data
