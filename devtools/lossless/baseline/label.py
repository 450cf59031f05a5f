"""Label this pod with its role (`lossless-role=sync|async`) through the API server, as the
pod's own ServiceAccount (a Role allows it to patch pods in its namespace): what lets a careful
team's per-role Service select the sync pods of one StatefulSet. Retries for up to 60 s.

Usage: label.py ROLE. Environment: POD_NAME, POD_NAMESPACE, KUBERNETES_SERVICE_HOST/PORT.
"""

import json
import os
import ssl
import sys
import time
import urllib.request

ACCOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
role = sys.argv[1]
url = (
    f"https://{os.environ['KUBERNETES_SERVICE_HOST']}:{os.environ['KUBERNETES_SERVICE_PORT']}"
    f"/api/v1/namespaces/{os.environ['POD_NAMESPACE']}/pods/{os.environ['POD_NAME']}"
)
with open(f"{ACCOUNT}/token") as f:
    token = f.read().strip()
context = ssl.create_default_context(cafile=f"{ACCOUNT}/ca.crt")
body = json.dumps({"metadata": {"labels": {"lossless-role": role}}}).encode()
deadline = time.monotonic() + 60
while True:
    request = urllib.request.Request(
        url,
        data=body,
        method="PATCH",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/merge-patch+json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5, context=context):
            print(json.dumps({"ts": round(time.time(), 3), "msg": f"labelled lossless-role={role}"}), flush=True)
            sys.exit(0)
    except Exception as exc:  # noqa: BLE001 - the API may not answer yet: try again
        if time.monotonic() > deadline:
            print(json.dumps({"ts": round(time.time(), 3), "msg": f"could not label the pod: {exc}"}), flush=True)
            sys.exit(1)
        time.sleep(1)
