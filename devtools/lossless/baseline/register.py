"""The seeds' self-registration (SEEDS.md, report 1): a second process in a sync pod that waits for
the app to answer, then keeps `{prefix}/{service}/instances/{ip}:{port}` in etcd under a lease it
renews (register, heartbeat), and deletes it when told to stop (deregister) -- unless
$NO_DEREGISTER is set (the plain baseline: the entry lives until its lease runs out). When the
file $STOP_FILE appears it stops at once, leaving the key alone: `register.py --deregister`
(a preStop hook) creates that file and deletes the key itself.

Environment: ETCD_URL (the etcd v3 JSON gateway), REGISTRY_PREFIX, REGISTRY_SERVICE, POD_IP,
POD_NAME, PORT (default 8000), LEASE_SECONDS (default 10), STOP_FILE (optional).
"""

import base64
import json
import os
import signal
import sys
import threading
import time
import urllib.request

stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
signal.signal(signal.SIGINT, lambda *_: stop.set())

etcd = os.environ["ETCD_URL"].rstrip("/")
port = os.environ.get("PORT", "8000")
address = f"{os.environ['POD_IP']}:{port}"
key = (
    f"{os.environ.get('REGISTRY_PREFIX', '/services').rstrip('/')}/{os.environ['REGISTRY_SERVICE']}/instances/{address}"
)
lease_seconds = int(os.environ.get("LEASE_SECONDS", "10"))
stop_file = os.environ.get("STOP_FILE")


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def post(path: str, body: dict) -> dict:
    request = urllib.request.Request(
        f"{etcd}{path}", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=3) as response:
        return json.loads(response.read() or b"{}")


def log(message: str) -> None:
    print(json.dumps({"ts": round(time.time(), 3), "pod": os.environ.get("POD_NAME", ""), "msg": message}), flush=True)


def app_answers() -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as response:
            return response.status == 200
    except Exception:  # noqa: BLE001 - not yet
        return False


def stopped_by_file() -> bool:
    return bool(stop_file) and os.path.exists(stop_file)


if sys.argv[1:] == ["--deregister"]:
    if stop_file:
        open(stop_file, "w").close()  # the registrar stops renewing and never puts the key back
    try:
        post("/v3/kv/deleterange", {"key": b64(key)})
        log(f"deregistered {address} (preStop)")
    except Exception as exc:  # noqa: BLE001
        log(f"deregistration failed: {exc}")
    sys.exit(0)

while not stop.is_set() and not stopped_by_file() and not app_answers():
    stop.wait(0.5)
lease = None
while not stop.is_set() and not stopped_by_file():
    try:
        if lease is None:
            lease = post("/v3/lease/grant", {"TTL": lease_seconds})["ID"]
            post(
                "/v3/kv/put",
                {"key": b64(key), "value": b64(json.dumps({"pod": os.environ.get("POD_NAME", "")})), "lease": lease},
            )
            log(f"registered {address}")
        else:
            post("/v3/lease/keepalive", {"ID": lease})
    except Exception as exc:  # noqa: BLE001 - the registry is down: try again
        log(f"registry call failed: {exc}")
        lease = None
    stop.wait(lease_seconds / 3)
if lease is not None and not os.environ.get("NO_DEREGISTER") and not stopped_by_file():
    try:
        post("/v3/kv/deleterange", {"key": b64(key)})
        post("/v3/lease/revoke", {"ID": lease})
        log(f"deregistered {address}")
    except Exception as exc:  # noqa: BLE001
        log(f"deregistration failed: {exc}")
sys.exit(0)
