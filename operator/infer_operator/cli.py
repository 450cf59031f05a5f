"""Command line: `infer-operator run | crd | reference | cleanup`.

`run` starts the operator (kopf) for some namespaces or all of them, with a liveness endpoint,
Prometheus metrics and plain or JSON logs.
"""

from __future__ import annotations

import argparse
import os
import random
import sys

from infer_operator import __version__
from infer_operator.kopf_hooks import MODES
from infer_operator.reconcile.schedule import AUDIT_SECONDS, RESYNC_SECONDS, SWEEP_SECONDS


def _run(args: argparse.Namespace) -> int:
    import kopf

    from infer_operator import (
        handlers,  # noqa: F401 - registers the handlers
        metrics,
    )
    from infer_operator.runtime import RUNTIME

    if args.kubeconfig:
        os.environ["KUBECONFIG"] = args.kubeconfig
    options = RUNTIME.options
    options.namespaces = list(args.namespace or [])
    options.resync_seconds = args.resync_seconds
    options.audit_seconds = args.audit_seconds
    options.sweep_seconds = args.sweep_seconds
    options.registry_timeout_seconds = args.registry_timeout
    options.deregister_timeout_seconds = args.deregister_timeout
    options.cleanup_timeout_seconds = args.cleanup_timeout
    options.kubeconfig = args.kubeconfig
    options.verbose = args.verbose
    options.kopf_hooks = args.kopf_hooks
    options.release_port = args.release_port
    options.release_url = args.release_url
    options.release_service = args.release_service

    log_format = kopf.LogFormat.JSON if args.log_format == "json" else kopf.LogFormat.FULL
    kopf.configure(verbose=args.verbose, log_format=log_format, log_refkey="k8s")
    if args.metrics_port:
        metrics.serve(args.metrics_port)
    if args.standalone:
        peering: dict = {"standalone": True}
    else:
        # kopf pauses every replica that sees a peer of equal priority, and replicas of one
        # Deployment share their arguments: without an explicit priority, draw one per process.
        priority = args.priority if args.priority is not None else random.SystemRandom().randint(1, 2**30)
        peering = {"peering_name": args.peering, "priority": priority}
    kopf.run(
        clusterwide=not options.namespaces,
        namespaces=options.namespaces,
        liveness_endpoint=args.liveness or None,
        **peering,
    )
    return 0


def _crd(args: argparse.Namespace) -> int:
    from infer_operator.api.crd import render_crd_yaml

    sys.stdout.write(render_crd_yaml())
    return 0


def _reference(args: argparse.Namespace) -> int:
    from infer_operator.api.reference import render_reference

    sys.stdout.write(render_reference())
    return 0


def _cleanup(args: argparse.Namespace) -> int:
    from infer_operator.cleanup import run
    from infer_operator.clients.kube import KubeError

    if not args.namespace and not args.all:
        sys.stderr.write("infer-operator cleanup: give --namespace NS or --all\n")
        return 2
    try:
        released = run(None if args.all else args.namespace, kubeconfig=args.kubeconfig, dry_run=args.dry_run)
    except KubeError as exc:
        sys.stderr.write(f"infer-operator cleanup: {exc}\n")
        return 1
    print(f"{'would release' if args.dry_run else 'released'} {released} object(s)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="infer-operator", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"infer-operator {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the operator")
    run.add_argument(
        "-n",
        "--namespace",
        action="append",
        help="watch this namespace (repeatable; glob patterns allowed); default: all namespaces",
    )
    run.add_argument("--all-namespaces", "-A", action="store_true", help="watch all namespaces (the default)")
    run.add_argument("--kubeconfig", default=None, help="kubeconfig file (default: in-cluster, then $KUBECONFIG)")
    run.add_argument(
        "--liveness", default="http://0.0.0.0:8080/healthz", help="liveness endpoint URL to serve ('' to disable)"
    )
    run.add_argument("--metrics-port", type=int, default=9090, help="Prometheus metrics port (0 to disable)")
    run.add_argument("--log-format", choices=["plain", "json"], default="plain")
    run.add_argument("--verbose", "-v", action="store_true")
    run.add_argument(
        "--resync-seconds",
        type=float,
        default=RESYNC_SECONDS,
        help="re-apply the owned objects at least this often (a backstop: edits and deletions of "
        "them are seen on their watches and repaired at once)",
    )
    run.add_argument(
        "--audit-seconds",
        type=float,
        default=AUDIT_SECONDS,
        help="read each service's pods from the API to find pods the watch missed at least this "
        "often (a backstop: the audit also runs on a service's first pass and at once after "
        "the pods watch lists everything again)",
    )
    run.add_argument(
        "--sweep-seconds",
        type=float,
        default=SWEEP_SECONDS,
        help="how often stale registry entries and per-IP configs are swept (the registry is read "
        "each time; the pods are read from the API when something may be stale)",
    )
    run.add_argument("--registry-timeout", type=float, default=5.0, help="timeout of one registry call")
    run.add_argument(
        "--deregister-timeout",
        type=float,
        default=30.0,
        help="how long a deleted pod is held while the registry is unreachable",
    )
    run.add_argument(
        "--cleanup-timeout",
        type=float,
        default=300.0,
        help="how long after its deletion an InferenceService is held while its registry data "
        "cannot be removed (at once when its namespace is being deleted and the registry "
        "cannot be used)",
    )
    run.add_argument(
        "--release-port",
        type=int,
        default=8081,
        help="serve the pods' release checks on this port (GET /released/NAMESPACE/POD; 0 disables): a deleted "
        "sync pod's preStop waits for it before it drains",
    )
    release = run.add_mutually_exclusive_group()
    release.add_argument("--release-url", default=None, help="the release endpoint as pods reach it (http://HOST:PORT)")
    release.add_argument(
        "--release-service",
        default=None,
        metavar="NAMESPACE/NAME",
        help="the Service in front of the release endpoint: pods reach it at its ClusterIP (no cluster DNS needed)",
    )
    run.add_argument(
        "--kopf-hooks",
        choices=MODES,
        default="tested",
        help="the operator's hooks into kopf's internals (kopf_hooks/): installed on the kopf series "
        "they were tested with (tested), tried on any kopf whose internals still fit (any), or "
        "none (off: kopf's own behaviour, slower at fleet size)",
    )
    group = run.add_mutually_exclusive_group()
    group.add_argument(
        "--standalone",
        action="store_true",
        default=True,
        help="no peering: this is the only operator instance (default)",
    )
    group.add_argument("--peering", default=None, help="kopf peering name: replicas sharing it run active/standby")
    run.add_argument(
        "--priority",
        type=int,
        default=None,
        help="peering priority, highest is active (default: random per process, so replicas "
        "of one Deployment never tie)",
    )
    run.set_defaults(func=_run)

    crd = sub.add_parser("crd", help="print the InferenceService CRD generated from the models")
    crd.set_defaults(func=_crd)

    reference = sub.add_parser("reference", help="print the configuration reference (Markdown) generated from the CRD")
    reference.set_defaults(func=_reference)

    cleanup = sub.add_parser(
        "cleanup",
        help="remove the operator's finalizers (after uninstalling it)",
        description="Remove infer-operator.io/deregister from pods and infer-operator.io/"
        "cleanup from InferenceServices, so nothing stays stuck Terminating "
        "once the operator is gone. Registry entries are left to the sweep.",
    )
    scope = cleanup.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", help="only this namespace")
    scope.add_argument("--all", "-A", action="store_true", help="all namespaces")
    cleanup.add_argument("--kubeconfig", default=None, help="kubeconfig file (default: in-cluster, then $KUBECONFIG)")
    cleanup.add_argument("--dry-run", action="store_true", help="only print what would be released")
    cleanup.set_defaults(func=_cleanup)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "peering", None):
        args.standalone = False
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
