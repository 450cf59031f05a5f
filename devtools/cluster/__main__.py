"""``python -m devtools.cluster {build,up,down,status,kubeconfig}``."""

from __future__ import annotations

import argparse
import sys

from . import toolchain


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.cluster",
        description="Local Kubernetes control plane (etcd, apiserver, controller-manager, scheduler, KWOK) for tests.",
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build the cached binaries (only what is missing)")
    b.add_argument("components", nargs="*", help=f"default: all ({', '.join(toolchain.ALL_COMPONENTS)})")
    b.add_argument("--force", action="store_true", help="rebuild even if cached")
    for name, hlp in (
        ("up", "start the control plane and, where the machine can run one, the real node (idempotent)"),
        ("down", "stop the real node and the control plane"),
        ("status", "show process and API health"),
        ("kubeconfig", "print the admin kubeconfig path"),
        ("leftovers", "list what a stopped real node left on this machine (exit 1 if anything)"),
    ):
        p = sub.add_parser(name, help=hlp)
        p.add_argument(
            "--state-dir", default=None, help="default: $INFER_OPERATOR_CLUSTER_DIR or ~/.cache/infer-operator/cluster"
        )
        if name == "up":
            p.add_argument("--no-real-node", action="store_true", help="KWOK nodes only")
    args = parser.parse_args(argv)

    if args.cmd == "build":
        paths = toolchain.ensure(args.components or toolchain.ALL_COMPONENTS, force=args.force)
        for name, path in paths.items():
            print(f"{name}\t{path}")
        return 0

    from . import launcher, realnode

    if args.cmd == "up":
        info = launcher.up(args.state_dir)
        if args.no_real_node:
            print("[devcluster] real node: not started (--no-real-node); pods run on KWOK nodes only", file=sys.stderr)
        else:
            try:
                node = realnode.up(args.state_dir)
                print(
                    f"[devcluster] real node: {node.name} runs containers; pods that tolerate "
                    f"{realnode.TAINT_KEY} and select {realnode.NODE_LABEL[0]}={realnode.NODE_LABEL[1]} land there",
                    file=sys.stderr,
                )
            except realnode.RealNodeUnavailable as exc:
                print(f"[devcluster] real node: not started: {exc}; pods run on KWOK nodes only", file=sys.stderr)
            except realnode.RealNodeError as exc:
                print(f"[devcluster] real node: FAILED to start: {exc}", file=sys.stderr)
                print(info.kubeconfig)
                return 1
        print(info.kubeconfig)
        print(f"export KUBECONFIG={info.kubeconfig}", file=sys.stderr)
        return 0
    if args.cmd == "leftovers":
        found = realnode.leftovers(args.state_dir)
        for line in found:
            print(line)
        if not found:
            print("nothing of a real node is left on this machine")
        return 1 if found else 0
    if args.cmd == "down":
        launcher.down(args.state_dir)
        return 0
    if args.cmd == "status":
        st = launcher.status(args.state_dir)
        print(st.render())
        return 0 if st.healthy else 1
    if args.cmd == "kubeconfig":
        path = launcher.kubeconfig_path(args.state_dir)
        if not path.is_file():
            print(f"no kubeconfig at {path}; run 'up' first", file=sys.stderr)
            return 1
        print(path)
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
