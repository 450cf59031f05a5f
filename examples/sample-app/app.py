"""A two-role sample app for infer-operator that behaves like an inference service.

One image, two roles, chosen by $INFER_ROLE (set by the operator when role commands are given;
otherwise derived from INFER_ORDINAL < INFER_SYNC_REPLICAS, as the pod contract describes).

- sync:  loads its "model" for $MODEL_LOAD_SECONDS (default 0), then serves HTTP on $PORT
         (default: $INFER_SYNC_PORT, else 8000).
         GET|POST /        one "inference", taking $WORK_SECONDS (default 0.2); a request body
                           (a prompt) is read and ignored
         GET|POST /stream  an LLM-style completion streamed as server-sent events: one token every
                           1/?rate= s (default $STREAM_TOKENS_PER_SECOND, 10) for ?seconds= s
                           (default $STREAM_SECONDS, 10), then `data: [DONE]`; a stream that ends
                           without it was cut
         GET /idle         200 when no request or stream is in flight, else 503 (a preStop hook
                           may wait on it: lifecycle.idlePath)
         GET /healthz      200 when ready, 503 while loading, after /offline, or while shutting down
         GET|POST /offline stop reporting ready (the operator's preStop hook calls it)
         GET /stats        {"served": N, "streamed": N, "in_flight": N}
         On SIGTERM: stop accepting, finish every request and stream in flight, exit 0
         (uvicorn-style). With $SHUTDOWN_SECONDS set, it waits at most that long for them and
         then exits anyway, cutting what is left (as servers with a graceful-shutdown timeout do:
         gunicorn's graceful_timeout, uvicorn's --timeout-graceful-shutdown, Triton's exit timeout).
- async: loads its "model" likewise, then works a Redis queue ($REDIS_URL, default
         redis://127.0.0.1:6379/0; list $QUEUE, default "jobs") with the reliable-queue pattern:
         a job is moved atomically to this pod's own processing list (BLMOVE), worked, then
         acknowledged by one script. A job `ID` takes $WORK_SECONDS, a job `ID@S` takes S seconds
         (a long batch job). Every take of a job is one attempt with its own id; the
         acknowledgement records the attempt once (a resent command records nothing more: redis-py
         repeats a command after a connection error or timeout, which may come after the server ran
         it), removes the job from the processing list and counts the job done (HINCRBY on the hash
         "$QUEUE:done"; "$QUEUE:done-by" names the attempts): a job whose work was finished by two
         attempts shows as done twice, with both. On start,
         a worker puts back what its pod name's processing list still holds (left by a crash of
         the pod of the same name). It writes $READY_FILE (default /tmp/worker-ready) once it
         takes jobs. On SIGTERM: take no new job, finish the one in hand, exit 0.

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
import urllib.parse
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


def env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name) or default)
    except ValueError:
        return default


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
    streamed = 0
    in_flight = 0

    def log_message(self, fmt: str, *args) -> None:  # quiet access log
        pass

    def _headers(self, status: int, content_type: str, length: int | None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if length is None:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(length))
        if shutting_down.is_set():
            self.send_header("Connection", "close")  # no more requests on this connection
            self.close_connection = True
        self.end_headers()

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self._headers(status, "application/json", len(data))
        self.wfile.write(data)

    def _read_body(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > 0:
            self.rfile.read(length)  # the prompt: read, so the connection stays usable

    def _track(self, delta: int) -> None:
        with Handler.lock:
            Handler.in_flight += delta

    def do_GET(self) -> None:  # noqa: N802
        self._read_body()
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        if url.path == "/healthz":
            ready = not (self.offline.is_set() or shutting_down.is_set())
            self._reply(200 if ready else 503, {"ready": ready})
        elif url.path == "/idle":
            with Handler.lock:
                in_flight = Handler.in_flight
            self._reply(200 if in_flight == 0 else 503, {"idle": in_flight == 0, "in_flight": in_flight})
        elif url.path == "/stats":
            with Handler.lock:
                self._reply(
                    200, {"served": Handler.served, "streamed": Handler.streamed, "in_flight": Handler.in_flight}
                )
        elif url.path == "/offline":
            self.offline.set()
            log("offline: no longer reporting ready")
            self._reply(200, {"offline": True})
        elif url.path == "/":
            self._track(+1)
            try:
                time.sleep(env_float("WORK_SECONDS", 0.2))  # "inference"
                with Handler.lock:
                    Handler.served += 1
                    served = Handler.served
                self._reply(200, {"pod": os.environ.get("POD_NAME", ""), "role": "sync", "served": served})
            finally:
                self._track(-1)
        elif url.path == "/stream":
            self._track(+1)
            try:
                self._stream(
                    float(query.get("seconds") or env_float("STREAM_SECONDS", 10)),
                    float(query.get("rate") or env_float("STREAM_TOKENS_PER_SECOND", 10)),
                )
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client went away mid-stream
            finally:
                self._track(-1)
        else:
            self._reply(404, {"error": "not found"})

    do_POST = do_GET

    def _stream(self, seconds: float, rate: float) -> None:
        """Tokens at `rate` per second for `seconds`, each a server-sent event in its own HTTP
        chunk, then `data: [DONE]` and the last chunk. Paced against the start time, so a slow
        write does not stretch the stream."""
        self._headers(200, "text/event-stream", None)
        started = time.monotonic()
        tokens = max(1, int(seconds * rate))
        for n in range(tokens):
            delay = started + n / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self._chunk(f"data: {json.dumps({'token': n, 'pod': os.environ.get('POD_NAME', '')})}\n\n".encode())
        self._chunk(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()
        with Handler.lock:
            Handler.streamed += 1

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


def run_sync() -> int:
    port = int(os.environ.get("PORT") or os.environ.get("INFER_SYNC_PORT") or "8000")
    load_model()
    if shutting_down.is_set():
        return 0
    server = Server(("", port), Handler)
    shutdown_seconds = os.environ.get("SHUTDOWN_SECONDS")

    def stop() -> None:
        # shutdown() blocks until serve_forever returns: call it from another thread.
        threading.Thread(target=server.shutdown, daemon=True).start()
        if shutdown_seconds:
            threading.Thread(target=exit_after, args=(float(shutdown_seconds),), daemon=True).start()

    on_sigterm(stop)
    log(f"sync role serving on :{port}")
    server.serve_forever(poll_interval=0.1)
    log("stopped accepting", in_flight=Handler.in_flight)
    server.server_close()  # joins in-flight request threads
    log(
        f"sync role stopped after {Handler.served} request(s) and {Handler.streamed} stream(s)",
        served=Handler.served,
        streamed=Handler.streamed,
    )
    return 0


def exit_after(seconds: float) -> None:
    """The graceful-shutdown timeout: after `seconds`, exit with whatever is still in flight."""
    time.sleep(seconds)
    with Handler.lock:
        in_flight = Handler.in_flight
    log(f"shutdown timeout of {seconds:g} s: exiting with {in_flight} request(s) in flight", in_flight=in_flight)
    os._exit(0)


# -- async role --------------------------------------------------------------------------------

# KEYS: this pod's processing list, the done hash, the set of recorded attempts, the hash of who did
# each job; ARGV: job, attempt ("POD:TAKEN_AT:RANDOM").
ACKNOWLEDGE = """
if redis.call('SADD', KEYS[3], ARGV[2]) == 0 then
    return 0
end
redis.call('LREM', KEYS[1], 1, ARGV[1])
local before = redis.call('HGET', KEYS[4], ARGV[1])
redis.call('HSET', KEYS[4], ARGV[1], before and (before .. ' ' .. ARGV[2]) or ARGV[2])
return redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
"""


def job_seconds(job: str, default: float) -> float:
    """A job `ID@S` takes S seconds, any other job `default`."""
    _, sep, seconds = job.rpartition("@")
    try:
        return float(seconds) if sep else default
    except ValueError:
        return default


def run_async() -> int:
    import redis  # the async role needs it; the sync role runs without

    on_sigterm()
    queue = os.environ.get("QUEUE", "jobs")
    pod = os.environ.get("POD_NAME") or f"worker-{os.getpid()}"
    processing = f"{queue}:processing:{pod}"
    done = f"{queue}:done"
    attempts = f"{queue}:attempts"
    done_by = f"{queue}:done-by"
    ready_file = Path(os.environ.get("READY_FILE", "/tmp/worker-ready"))
    work_seconds = env_float("WORK_SECONDS", 0.2)
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    # No command is sent twice (a BLMOVE re-sent after the server ran it would strand a job in the
    # processing list): an error ends the worker, and its successor of the same name puts back
    # what it held.
    client = redis.Redis.from_url(
        os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        socket_timeout=5,
        socket_connect_timeout=5,
        retry=Retry(NoBackoff(), 0),
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
            job = job.decode() if isinstance(job, bytes) else job
            # Its own id (a pod's PID and counters repeat across restarts), naming who took it when.
            attempt = f"{pod}:{time.time():.3f}:{os.urandom(4).hex()}"
            time.sleep(job_seconds(job, work_seconds))  # "inference": a job in hand is always finished
            acknowledge(keys=[processing, done, attempts, done_by], args=[job, attempt])
            processed += 1
    finally:
        ready_file.unlink(missing_ok=True)
    log(f"async role stopped after {processed} job(s)", processed=processed)
    return 0


def main() -> int:
    return run_sync() if role() == "sync" else run_async()


if __name__ == "__main__":
    sys.exit(main())
