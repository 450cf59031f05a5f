"""Throwaway registry servers on loopback, as tests, the demo and benchmarks start them: Debian's
ZooKeeper (package `zookeeper`, run in the foreground with a config of our own) and r-nacos (the
Nacos server implemented in Rust, built from crates.io by devtools/cluster/toolchain.py).

    with ZooKeeperServer() as zk:          # zk.address == "127.0.0.1:PORT"
        zk.client()                        # a kazoo client for the test's own reads and writes
    with NacosServer() as nacos:           # nacos.url == "http://127.0.0.1:PORT"; auth on
        nacos.username, nacos.password

Each writes its data and logs in a temporary directory removed on stop, and is stopped at exit.
"""

from __future__ import annotations

from .nacos import NacosServer, NacosUnavailable
from .zookeeper import ZooKeeperServer, ZooKeeperUnavailable

__all__ = ["NacosServer", "NacosUnavailable", "ZooKeeperServer", "ZooKeeperUnavailable"]
