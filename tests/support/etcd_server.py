"""The tests' etcd: the project's own throwaway etcd (devtools.cluster.etcd), stopped at exit.

    with EtcdServer() as etcd:
        etcd.client_url            # http://127.0.0.1:PORT
        etcd.put("/k", "v"); etcd.get("/k"); etcd.range_prefix("/"); etcd.delete_all()
        etcd.enable_auth("root", "pw")   # later raw calls authenticate as root

Standalone: python -m tests.support.etcd_server [--port N]
"""

from __future__ import annotations

import atexit
import signal
import time

from devtools.cluster import etcd as _etcd
from devtools.cluster.etcd import EtcdError as EtcdUnavailable  # noqa: F401 - re-exported: tests catch it
from devtools.cluster.etcd import find_binary as find_etcd_binary  # noqa: F401 - re-exported


class EtcdServer(_etcd.EtcdServer):
    def __init__(self, **kwargs):
        kwargs.setdefault("name", "test")
        super().__init__(**kwargs)

    def start(self) -> EtcdServer:
        super().start()
        atexit.register(self.stop)  # no orphaned etcd if the test run ends abruptly
        return self


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="run a throwaway etcd for tests/demo")
    parser.add_argument("--port", type=int, default=None)
    args = parser.parse_args(argv)

    def _term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _term)
    signal.signal(signal.SIGINT, _term)
    with EtcdServer(client_port=args.port) as server:
        print(f"etcd {server.binary} listening on {server.client_url} (Ctrl-C to stop)", flush=True)
        try:
            while server.proc is not None and server.proc.poll() is None:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
