"""What the real-node tests, the demo and the benchmark observe of real pods: container logs read on
the node, etcd key events as they happen, and the timeline of one pod's deletion.

    watch = KeyWatch(etcd_url, "/services/llm/instances/").start()
    timeline = delete_and_time(core, "ns", "llm-0", node.pod_logs, watch, key=".../10.245.0.7:8000")
    timeline.deregistered, timeline.drain_ended, timeline.sigterm   # seconds after the DELETE call
    watch.stop()

Every time here is wall-clock (``time.time()``): the containers share the machine's clock.
"""

from __future__ import annotations

import base64
import datetime
import http.client
import json
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from .waiting import wait_for

PRESTOP_DONE = "role=sync: done"  # prestop.sh's last line, after the drain
SIGTERM_MSG = "SIGTERM received"  # the sample app's line, with the time the signal arrived
OFFLINE_MSG = "offline: no longer reporting ready"  # the sample app, when offlinePath is called


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _prefix_end(prefix: str) -> str:
    raw = bytearray(prefix.encode())
    raw[-1] += 1
    return base64.b64encode(bytes(raw)).decode()


class KeyWatch:
    """etcd's watch on a key prefix (JSON gateway ``POST /v3/watch``, streamed) in a thread:
    ``events`` is a list of (wall time, "PUT"|"DELETE", key), appended as etcd announces them."""

    def __init__(self, url: str, prefix: str):
        parsed = urllib.parse.urlsplit(url)
        self.host, self.port = parsed.hostname, parsed.port
        self.prefix = prefix
        self.events: list[tuple[float, str, str]] = []
        self._created = threading.Event()
        self._conn: http.client.HTTPConnection | None = None
        self._thread: threading.Thread | None = None
        self._error: Exception | None = None

    def start(self, timeout: float = 10.0) -> KeyWatch:
        """Start watching; AssertionError when etcd has not confirmed the watch within ``timeout`` s."""
        self._thread = threading.Thread(target=self._run, name=f"etcd-watch {self.prefix}", daemon=True)
        self._thread.start()
        if not self._created.wait(timeout):
            raise AssertionError(f"etcd watch on {self.prefix} not created within {timeout:g}s: {self._error}")
        return self

    def _run(self) -> None:
        body = json.dumps({"create_request": {"key": _b64(self.prefix), "range_end": _prefix_end(self.prefix)}})
        try:
            self._conn = http.client.HTTPConnection(self.host, self.port, timeout=None)
            self._conn.request("POST", "/v3/watch", body, {"Content-Type": "application/json"})
            resp = self._conn.getresponse()
            buffer = b""
            while True:
                chunk = resp.read1(65536)
                if not chunk:
                    return
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    self._handle(line)
        except (OSError, http.client.HTTPException, ValueError, AttributeError) as exc:
            # AttributeError: http.client's reader after stop() closed the connection under it.
            self._error = exc

    def _handle(self, line: bytes) -> None:
        if not line.strip():
            return
        now = time.time()
        result = json.loads(line).get("result") or {}
        if result.get("created"):
            self._created.set()
        for event in result.get("events") or []:
            key = base64.b64decode(event["kv"]["key"]).decode()
            self.events.append((now, event.get("type", "PUT"), key))

    def deleted_after(self, key: str, since: float) -> float | None:
        """The first time ``key`` was deleted at or after wall time ``since``, else None."""
        return next((t for t, kind, k in list(self.events) if k == key and kind == "DELETE" and t >= since), None)

    def stop(self) -> None:
        if self._conn is not None and self._conn.sock is not None:
            try:
                self._conn.sock.shutdown(2)
            except OSError:
                pass
            self._conn.close()
        if self._thread is not None:
            self._thread.join(5)


def parse_cri_time(stamp: str) -> float:
    """A CRI log line's RFC 3339 time (nanoseconds, ``Z`` or an offset) as a wall-clock float."""
    if stamp.endswith("Z"):
        stamp = stamp[:-1] + "+00:00"
    main, _, rest = stamp.partition(".")
    if rest:
        digits = "".join(c for c in rest if c.isdigit())
        offset = rest[len(digits) :]
        stamp = f"{main}.{digits[:6].ljust(6, '0')}{offset}"
    return datetime.datetime.fromisoformat(stamp).timestamp()


@dataclass
class LogLine:
    at: float  # when the runtime wrote it (the CRI line's time)
    stream: str  # stdout | stderr
    text: str

    def json(self) -> dict | None:
        """The line as the sample app's JSON record (``{"ts", "msg", ...}``), else None."""
        try:
            record = json.loads(self.text)
        except ValueError:
            return None
        return record if isinstance(record, dict) else None


def container_log_file(pod_logs: Path, namespace: str, pod: str, uid: str, container: str) -> Path | None:
    """The newest log file of one container of a real-node pod (the kubelet's podLogsDir layout
    ``NAMESPACE_POD_UID/CONTAINER/N.log``), or None while there is none."""
    files = sorted(
        (pod_logs / f"{namespace}_{pod}_{uid}" / container).glob("*.log"),
        key=lambda p: p.stat().st_mtime if p.exists() else 0,
    )
    return files[-1] if files else None


class ContainerLog:
    """Follows one container's log file on the node from the start. The file is opened once, so
    what was written stays readable after the kubelet removes it with the pod."""

    def __init__(self, path: Path):
        self.path = path
        self._fh = open(path, "rb")  # noqa: SIM115 - kept open on purpose (see the class docstring)
        self._partial = b""
        self.lines: list[LogLine] = []

    def read(self) -> list[LogLine]:
        """Parse what was appended since the last call; all lines so far (after ``close()``: those read)."""
        if self._fh.closed:
            return self.lines
        data = self._partial + self._fh.read()
        *complete, self._partial = data.split(b"\n")
        for raw in complete:
            parts = raw.decode(errors="replace").split(" ", 3)
            if len(parts) == 4:
                self.lines.append(LogLine(parse_cri_time(parts[0]), parts[1], parts[3]))
        return self.lines

    def first(self, needle: str) -> LogLine | None:
        return next((line for line in self.read() if needle in line.text), None)

    def app_time(self, message: str) -> float | None:
        """The ``ts`` the sample app logged with ``message`` (its own clock reading), else None."""
        for line in self.read():
            record = line.json()
            if record and record.get("msg") == message:
                return float(record["ts"])
        return None

    def close(self) -> None:
        self._fh.close()


@dataclass
class DeletionTimeline:
    """One sync pod's deletion, each time in seconds after the DELETE request was sent (None:
    not seen). ``order`` lists the events sorted by time."""

    pod: str
    deregistered: float | None = None
    offline_called: float | None = None
    drain_ended: float | None = None
    sigterm: float | None = None
    gone: float | None = None
    log: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            k: getattr(self, k) for k in ("pod", "deregistered", "offline_called", "drain_ended", "sigterm", "gone")
        }


def delete_and_time(
    core,
    namespace: str,
    pod: str,
    pod_logs: Path,
    watch: KeyWatch,
    key: str,
    container: str = "app",
    timeout: float = 90.0,
) -> DeletionTimeline:
    """Delete a Running sync pod of the real node and record when its registry ``key`` was
    deleted (the ``watch``), when its app was told to go offline and got SIGTERM (the sample
    app's log), when the preStop drain ended (prestop.sh's last line) and when the pod object was
    gone. ``core`` is a kubernetes ``CoreV1Api``. AssertionError when the pod does not go within
    ``timeout`` seconds."""
    from kubernetes.client.rest import ApiException

    body = core.read_namespaced_pod(pod, namespace)
    path = wait_for(
        lambda: container_log_file(pod_logs, namespace, pod, body.metadata.uid, container),
        30,
        message=f"no log file of {namespace}/{pod} on the node",
    )
    log = ContainerLog(path)
    log.read()
    try:
        t0 = time.time()
        core.delete_namespaced_pod(pod, namespace, body={"preconditions": {"uid": body.metadata.uid}})

        def gone() -> bool:
            try:
                current = core.read_namespaced_pod(pod, namespace)
            except ApiException as exc:
                if exc.status == 404:
                    return True
                raise
            return current.metadata.uid != body.metadata.uid

        wait_for(
            gone, timeout, interval=0.05, message=f"pod {namespace}/{pod} still there {timeout:g}s after its deletion"
        )
        gone_at = time.time()
        log.read()
        rel = lambda t: None if t is None else round(t - t0, 3)  # noqa: E731
        done = log.first(PRESTOP_DONE)
        return DeletionTimeline(
            pod=pod,
            deregistered=rel(watch.deleted_after(key, t0)),
            offline_called=rel(log.app_time(OFFLINE_MSG)),
            drain_ended=rel(done.at if done else None),
            sigterm=rel(log.app_time(SIGTERM_MSG)),
            gone=rel(gone_at),
            log=[f"{line.at - t0:+.3f}s {line.text}" for line in log.lines],
        )
    finally:
        log.close()
