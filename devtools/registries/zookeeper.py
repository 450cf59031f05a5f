"""Debian's ZooKeeper (3.8), one standalone server on 127.0.0.1, in the foreground.

`zkServer.sh start-foreground` reads its environment from /etc/zookeeper (a log directory under
/var/log): the server's own main class is started instead, with a config, a data directory and a
log4j setup of our own, so that nothing is written outside a temporary directory.
"""

from __future__ import annotations

import atexit
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from devtools.harness.processes import free_port, terminate
from devtools.harness.waiting import wait_for

ZOOKEEPER_JAR = Path("/usr/share/java/zookeeper.jar")
JAVA = Path("/usr/bin/java")
MAIN = "org.apache.zookeeper.server.ZooKeeperServerMain"
START_TIMEOUT = 60.0  # about 8 s on 2 shared cores


class ZooKeeperUnavailable(RuntimeError):
    pass


def _four_letters(port: int, word: bytes = b"ruok") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(word)
        return sock.recv(64)


class ZooKeeperServer:
    def __init__(self, port: int | None = None) -> None:
        if not ZOOKEEPER_JAR.is_file() or not JAVA.is_file():
            raise ZooKeeperUnavailable(
                "Debian's ZooKeeper is not installed (/usr/share/java/zookeeper.jar, /usr/bin/java): "
                "`make setup` installs the zookeeper package"
            )
        self.port = port or free_port()
        self.dir: Path | None = None
        self.proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> ZooKeeperServer:
        self.dir = Path(tempfile.mkdtemp(prefix="zookeeper-"))
        (self.dir / "data").mkdir()
        cfg = self.dir / "zoo.cfg"
        cfg.write_text(
            "tickTime=500\n"  # sessions of the tests' clients expire in seconds, not minutes
            "minSessionTimeout=1000\n"
            f"dataDir={self.dir / 'data'}\n"
            f"clientPort={self.port}\n"
            "clientPortAddress=127.0.0.1\n"
            "admin.enableServer=false\n"
            "4lw.commands.whitelist=ruok,srvr,stat\n"
            "maxClientCnxns=0\n"
        )
        (self.dir / "log4j.properties").write_text(
            "log4j.rootLogger=WARN, FILE\n"
            "log4j.appender.FILE=org.apache.log4j.FileAppender\n"
            f"log4j.appender.FILE.File={self.dir / 'zookeeper.log'}\n"
            "log4j.appender.FILE.layout=org.apache.log4j.PatternLayout\n"
            "log4j.appender.FILE.layout.ConversionPattern=%d %p [%t] %c{1}: %m%n\n"
        )
        classpath = f"{self.dir}:{ZOOKEEPER_JAR}"
        self.proc = subprocess.Popen(
            [
                str(JAVA),
                "-Xmx256m",
                "-XX:+UseSerialGC",
                f"-Dlog4j.configuration=file:{self.dir / 'log4j.properties'}",
                "-Dzookeeper.jmx.log4j.disable=true",
                "-cp",
                classpath,
                MAIN,
                str(cfg),
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(self.dir / "stderr.log", "wb"),  # noqa: SIM115 - the process holds it
            start_new_session=True,
        )
        atexit.register(self.stop)

        def answering() -> bool:
            if self.proc is None or self.proc.poll() is not None:
                return True
            try:
                return _four_letters(self.port) == b"imok"
            except OSError:
                return False

        wait_for(answering, timeout=START_TIMEOUT, interval=0.2, message=f"ZooKeeper on {self.address}")
        if self.proc.poll() is not None:
            log = (self.dir / "stderr.log").read_text(errors="replace")[-2000:]
            self.stop()
            raise ZooKeeperUnavailable(f"ZooKeeper exited at start: {log}")
        return self

    def client(self, auth: tuple[str, str] | None = None):
        """A started kazoo client (the caller stops it)."""
        from kazoo.client import KazooClient

        zk = KazooClient(hosts=self.address, auth_data=[("digest", f"{auth[0]}:{auth[1]}")] if auth else None)
        zk.start(timeout=15)
        return zk

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc, 10)
            self.proc = None
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self) -> ZooKeeperServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
