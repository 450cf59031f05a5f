"""A two-role sample app for infer-operator that behaves like an inference service.

One image, two roles, chosen by $INFER_ROLE (set by the operator when role commands are given;
otherwise derived from INFER_ORDINAL < INFER_SYNC_REPLICAS, as the pod contract describes).

- sync:  loads its "model" for $MODEL_LOAD_SECONDS (default 0), then serves HTTP on $PORT
         (default: $INFER_SYNC_PORT, else 8000).
         GET /          one "inference", taking $WORK_SECONDS (default 0.2)
         GET /healthz   200 when ready, 503 while loading, after /offline, or while shutting down
         GET|POST /offline  stop reporting ready (the operator's preStop hook calls it)
         GET /stats     {"served": N, "in_flight": N}
         On SIGTERM: stop accepting, finish every request in flight, exit 0 (uvicorn-style).
- async: loads its "model" likewise, then works a Redis queue ($REDIS_URL, default
         redis://127.0.0.1:6379/0; list $QUEUE, default "jobs") with the reliable-queue pattern:
         a job is moved atomically to this pod's own processing list (BLMOVE), worked for
         $WORK_SECONDS, then acknowledged by one script that removes it from the processing
         list and, only if it was there, records it (HINCRBY on the hash "$QUEUE:done", so a job
         done twice shows; a repeated acknowledgement records nothing). On start, a worker puts back what its
         pod name's processing list still holds (left by a crash of the pod of the same name),
         so no job is lost. It writes $READY_FILE (default /tmp/worker-ready) once it takes jobs.
         On SIGTERM: take no new job, finish the one in hand, exit 0.

Both roles log JSON lines; `SIGTERM received` carries the time the signal arrived, so tests can
put it beside the time the pod left the registry.
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import socketserver
import sys
import threading
import time
from pathlib import Path

shutting_down = threading.Event()


def log(message: str, **fields) -> None:
    print(
        json.dumps(
            {
                "ts": round(time.time(), 3),
                "role": role(),
                "pod": os.environ.get("POD_NAME", ""),
                "msg": message,
                **fields,
            }
        ),
        flush=True,
    )


def role() -> str:
    explicit = os.environ.get("INFER_ROLE")
    if explicit in ("sync", "async"):
        return explicit
    try:
        ordinal = int(os.environ.get("INFER_ORDINAL", "0"))
        sync_replicas = int(os.environ.get("INFER_SYNC_REPLICAS", "1"))
    except ValueError:
        return "sync"
    return "sync" if ordinal < sync_replicas else "async"


def on_sigterm(then=None) -> None:
    def stop(signum, frame):
        if not shutting_down.is_set():
            log("SIGTERM received" if signum == signal.SIGTERM else "SIGINT received", signal=signum)
        shutting_down.set()
        if then is not None:
            then()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


def load_model() -> None:
    seconds = float(os.environ.get("MODEL_LOAD_SECONDS", "0"))
    if seconds > 0:
        log("loading the model", seconds=seconds)
        shutting_down.wait(seconds)
    log("model loaded")


# -- sync role ---------------------------------------------------------------------------------


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = False  # in-flight requests are joined on shutdown
    block_on_close = True
    allow_reuse_address = True
    request_queue_size = 128


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real clients use it
    offline = threading.Event()
    lock = threading.Lock()
    served = 0
    in_flight = 0

    def log_message(self, fmt: str, *args) -> None:  # quiet access log
        pass

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if shutting_down.is_set():
            self.send_header("Connection", "close")  # no more requests on this connection
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/healthz":
            ready = not (self.offline.is_set() or shutting_down.is_set())
            self._reply(200 if ready else 503, {"ready": ready})
        elif self.path == "/stats":
            with Handler.lock:
                self._reply(200, {"served": Handler.served, "in_flight": Handler.in_flight})
        elif self.path == "/offline":
            self.offline.set()
            log("offline: no longer reporting ready")
            self._reply(200, {"offline": True})
        elif self.path == "/" or self.path.startswith("/?"):
            with Handler.lock:
                Handler.in_flight += 1
            try:
                time.sleep(float(os.environ.get("WORK_SECONDS", "0.2")))  # "inference"
                with Handler.lock:
                    Handler.served += 1
                    served = Handler.served
                self._reply(200, {"pod": os.environ.get("POD_NAME", ""), "role": "sync", "served": served})
            finally:
                with Handler.lock:
                    Handler.in_flight -= 1
        else:
            self._reply(404, {"error": "not found"})

    do_POST = do_GET


def run_sync() -> int:
    port = int(os.environ.get("PORT") or os.environ.get("INFER_SYNC_PORT") or "8000")
    load_model()
    if shutting_down.is_set():
        return 0
    server = Server(("", port), Handler)
    # shutdown() blocks until serve_forever returns: call it from another thread.
    on_sigterm(lambda: threading.Thread(target=server.shutdown, daemon=True).start())
    log(f"sync role serving on :{port}")
    server.serve_forever(poll_interval=0.1)
    log("stopped accepting", in_flight=Handler.in_flight)
    server.server_close()  # joins in-flight request threads
    log(f"sync role stopped after {Handler.served} request(s)", served=Handler.served)
    return 0


# -- async role --------------------------------------------------------------------------------

ACKNOWLEDGE = """
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 1 then
    return redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
end
return 0
"""


def run_async() -> int:
    import redis  # the async role needs it; the sync role runs without

    on_sigterm()
    queue = os.environ.get("QUEUE", "jobs")
    pod = os.environ.get("POD_NAME") or f"worker-{os.getpid()}"
    processing = f"{queue}:processing:{pod}"
    done = f"{queue}:done"
    ready_file = Path(os.environ.get("READY_FILE", "/tmp/worker-ready"))
    work_seconds = float(os.environ.get("WORK_SECONDS", "0.2"))
    client = redis.Redis.from_url(
        os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"), socket_timeout=5, socket_connect_timeout=5
    )
    acknowledge = client.register_script(ACKNOWLEDGE)
    load_model()
    # Jobs a crashed pod of this name had taken but not finished go back to the queue.
    while not shutting_down.is_set() and client.lmove(processing, queue, "RIGHT", "RIGHT") is not None:
        log("put back a job a previous run had not finished")
    ready_file.write_text(str(os.getpid()))
    log(f"async role working on {queue}")
    processed = 0
    try:
        while not shutting_down.is_set():
            job = client.blmove(queue, processing, 1, "RIGHT", "LEFT")  # at most 1 s without a job
            if job is None:
                continue
            time.sleep(work_seconds)  # "inference": a job in hand is always finished
            # The acknowledgement is one script that records the job only if it takes it off this
            # pod's processing list: a client that sends it again (redis-py repeats a command or
            # transaction after a connection error or timeout, which may come after the server
            # executed it) records nothing the second time.
            acknowledge(keys=[processing, done], args=[job])
            processed += 1
    finally:
        ready_file.unlink(missing_ok=True)
    log(f"async role stopped after {processed} job(s)", processed=processed)
    return 0


def main() -> int:
    return run_sync() if role() == "sync" else run_async()


if __name__ == "__main__":
    sys.exit(main())
