"""A two-role sample app for infer-operator (standard library only).

One image, two roles, chosen by $INFER_ROLE (set by the operator when role commands are given;
otherwise derived from INFER_ORDINAL < INFER_SYNC_REPLICAS, as the pod contract describes):

- sync:  an HTTP server on $PORT (default 8000).
         GET /          answers a request ("inference"), taking $WORK_SECONDS (default 0.05)
         GET /healthz   200 when ready, 503 after /offline was called (or while shutting down)
         GET|POST /offline  stop reporting ready (the operator's preStop hook calls it)
- async: a queue worker. Items are files in $QUEUE_DIR (default /tmp/queue) without a dot in their
         name; each is taken (renamed to NAME.working), "processed", and renamed to NAME.done. Without items it just ticks. It writes /tmp/worker-ready
         (or $READY_FILE) once it runs, which an exec readiness probe can test.

Both roles shut down gracefully on SIGTERM: stop taking new work, finish what is in flight, exit 0.
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


def log(message: str) -> None:
    print(json.dumps({"ts": round(time.time(), 3), "role": role(), "pod": os.environ.get("POD_NAME", ""),
                      "msg": message}), flush=True)


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


# -- sync role ---------------------------------------------------------------------------------

class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = False          # in-flight requests are joined on shutdown
    block_on_close = True
    allow_reuse_address = True


class Handler(http.server.BaseHTTPRequestHandler):
    offline = threading.Event()
    served = 0

    def log_message(self, fmt: str, *args) -> None:  # quiet access log
        pass

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/healthz":
            if self.offline.is_set() or shutting_down.is_set():
                self._reply(503, {"ready": False})
            else:
                self._reply(200, {"ready": True})
        elif self.path == "/offline":
            self.offline.set()
            log("offline: no longer reporting ready")
            self._reply(200, {"offline": True})
        elif self.path == "/" or self.path.startswith("/?"):
            time.sleep(float(os.environ.get("WORK_SECONDS", "0.05")))
            Handler.served += 1
            self._reply(200, {"pod": os.environ.get("POD_NAME", ""), "role": "sync", "served": Handler.served})
        else:
            self._reply(404, {"error": "not found"})

    do_POST = do_GET


def run_sync() -> int:
    port = int(os.environ.get("PORT", "8000"))
    server = Server(("", port), Handler)

    def stop(signum, frame):
        shutting_down.set()
        # shutdown() blocks until serve_forever returns: call it from another thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log(f"sync role serving on :{port}")
    server.serve_forever(poll_interval=0.2)
    server.server_close()       # joins in-flight request threads
    log(f"sync role stopped after {Handler.served} request(s)")
    return 0


# -- async role --------------------------------------------------------------------------------

def run_async() -> int:
    queue = Path(os.environ.get("QUEUE_DIR", "/tmp/queue"))
    queue.mkdir(parents=True, exist_ok=True)
    ready_file = Path(os.environ.get("READY_FILE", "/tmp/worker-ready"))
    work_seconds = float(os.environ.get("WORK_SECONDS", "0.2"))

    def stop(signum, frame):
        shutting_down.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    ready_file.write_text(str(os.getpid()))
    log(f"async role working on {queue}")
    processed = 0
    try:
        while not shutting_down.is_set():
            items = sorted(p for p in queue.iterdir() if p.is_file() and "." not in p.name)
            if not items:
                shutting_down.wait(0.2)     # tick
                continue
            item = items[0]
            working = item.rename(item.with_name(item.name + ".working"))  # taken: in flight
            time.sleep(work_seconds)        # "process" it: an in-flight item is always finished
            working.rename(item.with_name(item.name + ".done"))
            processed += 1
            log(f"processed {item.name}")
    finally:
        ready_file.unlink(missing_ok=True)
    log(f"async role stopped after {processed} item(s)")
    return 0


def main() -> int:
    return run_sync() if role() == "sync" else run_async()


if __name__ == "__main__":
    sys.exit(main())
