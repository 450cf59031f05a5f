"""Operator start-up and shutdown: kopf settings, server-side watch filters, the hooks into kopf
(kopf_hooks/), clients."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import kopf

from infer_operator import kinds, kopf_hooks, labels, memory
from infer_operator.backoff import Backoff
from infer_operator.clients.kube import KubeError, load_configuration
from infer_operator.handlers import pods
from infer_operator.runtime import RUNTIME

log = logging.getLogger(__name__)

PEERING_LIFETIME_SECONDS = 15


class NoDiffBase(kopf.DiffBaseStorage):
    """No "diff base": kopf builds one of every object on every watch event (a deep copy of the
    whole body, then a diff against the last one) for change-detecting handlers
    (on.create/update/delete/field). The operator has none: its loop compares generations and
    markers itself, and the copy was a sizeable share of its CPU under churn (bench/README.md)."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return kopf.BodyEssence()  # the same as build's: nothing ever differs

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


def configure(settings: kopf.OperatorSettings) -> None:
    """Settings shared by `infer-operator run` and tests that run the operator in-process."""
    # Watch only what we own: the API server filters pods and owned objects by label, so the
    # operator never receives (or holds in memory) the rest of the cluster's pods.
    for kind in kinds.WATCHED:
        settings.watching.label_selectors[kind.group, kind.plural] = labels.MANAGED_SELECTOR
    # A dead connection must be noticed: the server closes each watch after server_timeout,
    # and the client gives up on a silent one (a hung API server, a dropped connection that
    # sent no RST) a little later. A reset connection is retried at once by kopf.
    settings.watching.server_timeout = 60
    settings.watching.client_timeout = 90
    settings.watching.connect_timeout = 10
    # kopf holds this finalizer while an InferenceService's loop (a daemon) runs; the registry
    # cleanup's finalizer is the operator's own. kopf writes no other bookkeeping: there are no
    # on.create/update/delete handlers.
    settings.persistence.finalizer = labels.LOOP_FINALIZER
    settings.persistence.diffbase_storage = NoDiffBase()
    # Lists come in pages: after a restart the pods arrive 100 at a time instead of as one
    # response holding every pod, whose text and decoded objects would all be alive at once. A
    # page is decoded whole before it is cut down, and the process keeps its peak (memory.py), so
    # smaller pages leave less behind after a restart (bench/README.md).
    settings.watching.chunk_size = 100
    settings.posting.level = logging.INFO
    settings.posting.reporting_component = "infer-operator"
    # Our own handlers retry with backoff; kopf's default of retrying failures forever is kept.
    settings.execution.max_workers = 16
    # Active/standby (--peering): a standby takes over once the active replica's record is older
    # than this (a replica that stops in order says goodbye, and is taken over from at once). kopf's
    # default is 60 s; a SIGKILLed active replica cannot say goodbye, and pods deleted meanwhile
    # wait in their preStop for it (endpoint.py). The record is renewed every 5-10 s of it.
    settings.peering.lifetime = int(os.environ.get("INFER_OPERATOR_PEERING_LIFETIME", str(PEERING_LIFETIME_SECONDS)))


@kopf.on.login()
def login(**_: Any) -> kopf.ConnectionInfo:
    # The same loaders as our own client (in-cluster service account, else --kubeconfig or
    # $KUBECONFIG), so kopf's watches and our writes always act as the same identity.
    cfg = load_configuration(RUNTIME.options.kubeconfig)
    token = cfg.get_api_key_with_prefix("authorization") or cfg.get_api_key_with_prefix("BearerToken")
    scheme, _, value = (token or "").partition(" ")
    return kopf.ConnectionInfo(
        server=cfg.host,
        ca_path=cfg.ssl_ca_cert,
        insecure=not cfg.verify_ssl,
        scheme=scheme or None,
        token=value or None,
        certificate_path=cfg.cert_file,
        private_key_path=cfg.key_file,
    )


def _relisted(namespace: str | None) -> None:
    where = f"namespace {namespace}" if namespace else "every namespace"
    log.info(
        f"The pods watch of {where} listed every pod again (its watch could not resume); each "
        f"InferenceService there audits its pods against the API now."
    )
    RUNTIME.services.relisted(namespace)


@kopf.on.startup()
async def on_startup(settings: kopf.OperatorSettings, logger: logging.Logger, **_: Any) -> None:
    configure(settings)
    # Before the watches start (kopf runs startup handlers first).
    kopf_hooks.install(
        on_pods_listed=_relisted,
        on_pod_event=pods.release_early,
        quiet=not RUNTIME.options.verbose,
        mode=RUNTIME.options.kopf_hooks,
    )
    RUNTIME.start_background(memory.trim_periodically())
    options = RUNTIME.options
    if options.release_port:
        try:
            await RUNTIME.serve_releases(options.release_port)
        except OSError as exc:  # the port is taken: the operator works, pods just do not wait for it
            logger.error(f"Cannot serve the pods' release checks on port {options.release_port}: {exc}.")
            options.release_url = options.release_service = None
        if options.release_url is None and options.release_service:
            options.release_url = await release_url_of(options.release_service)
    if options.release_url:
        logger.info(f"Deleted sync pods ask {options.release_url} whether they left the registry before they drain.")
    else:
        logger.warning(
            "Pods are given no release endpoint (--release-url or --release-service): a sync pod deleted while the "
            "operator is away drains for drainSeconds only and may stay listed until the operator is back."
        )
    logger.info("infer-operator is starting; watching InferenceServices and the pods they own.")


async def release_url_of(service: str, attempts: int = 10) -> str | None:
    """http://<ClusterIP>:<port> of the Service `namespace/name` whose port named `release` (or
    its first) serves the release endpoint: pods reach it without cluster DNS. None (logged) when
    it cannot be read within `attempts` tries."""
    namespace, _, name = service.partition("/")
    backoff = Backoff(first=0.5, cap=5.0)
    for attempt in range(attempts):
        try:
            body = await RUNTIME.kube.get("v1", "Service", namespace, name)
        except KubeError as exc:
            if attempt == attempts - 1:
                log.warning(f"Could not read Service {service} for the release endpoint's address: {exc}")
                return None
            await asyncio.sleep(backoff.next())
            continue
        spec = body.get("spec") or {}
        ports = spec.get("ports") or []
        port = next((p for p in ports if p.get("name") == "release"), ports[0] if ports else None)
        ip = spec.get("clusterIP")
        if not port or not ip or ip == "None":
            log.warning(f"Service {service} has no ClusterIP and port for the release endpoint.")
            return None
        host = f"[{ip}]" if ":" in ip else ip
        return f"http://{host}:{port['port']}"
    return None


@kopf.on.cleanup()
async def on_cleanup(logger: logging.Logger, **_: Any) -> None:
    await RUNTIME.close()
    logger.info("infer-operator has stopped.")
