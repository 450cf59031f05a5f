"""The registry's real consumers, as processes tests, benchmarks and the lossless harness start.

Nothing here reads the registry itself: the Go programs do, through the libraries a team would
use (devtools/consumers/grpc_resolver: gRPC-Go with etcd's naming resolver; devtools/consumers/
coredns: CoreDNS with its etcd plugin). Their binaries come from the project's cached builds
(devtools/cluster/toolchain.py: `grpc-consumer`, `coredns`).

    with GrpcServers(["127.0.0.2:9000", "127.0.0.3:9000"]) as servers:   # gRPC servers to call
        with GrpcResolverConsumer(etcd_url, "llm", rate=100) as consumer:  # etcd:////services/llm/instances
            consumer.wait_for_calls(50)
            consumer.counts(since=t)     # {"127.0.0.2:9000": 48, ...}: calls each server answered
            consumer.failures(since=t)   # [Call(t, addr, ok=False, error), ...]
            servers.stop("127.0.0.2:9000")   # graceful: calls in flight finish

    with CoreDNS(etcd_url, prefix="/services") as dns:   # dns.address == ("127.0.0.1", port)
        dns.resolver().resolve("instances.llm.", "SRV")      # a dnspython resolver asking it
"""

from __future__ import annotations

import collections
import json
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from devtools.cluster import toolchain
from devtools.harness.processes import free_port, terminate
from devtools.harness.waiting import wait_for


def binary(name: str) -> str:
    """A consumer's binary, built (cached) when missing: `grpc-consumer` or `coredns`."""
    return str(toolchain.ensure([name])[name])


@dataclass(frozen=True)
class Call:
    """One call a consumer made: when it started (time.time()), the server that answered (from the
    call's peer; "" when none did), whether it succeeded, and why not."""

    t: float
    addr: str
    ok: bool
    error: str = ""


class _Process:
    """A Go program whose stdout is read line by line on a thread; `# ` lines are its notes."""

    def __init__(self, args: list[str]) -> None:
        self.args = args
        self.notes: list[str] = []
        self.proc: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self._reader: threading.Thread | None = None
        self._stderr = tempfile.TemporaryFile()

    def start(self):
        self.proc = subprocess.Popen(
            self.args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, text=True, bufsize=1
        )
        self._reader = threading.Thread(target=self._read, daemon=True, name=self.args[1])
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("# "):
                with self._lock:
                    self.notes.append(line[2:].strip())
            elif line.strip():
                self.line(line)

    def line(self, text: str) -> None:  # a line of output that is not a note
        pass

    def stderr(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")[-2000:]

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def send(self, text: str) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.stdin.close()  # the programs stop at the end of their input
            except OSError:
                pass
            terminate(self.proc, 10)
        if self._reader is not None:
            self._reader.join(5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class GrpcServers(_Process):
    """Real gRPC servers (gRPC-Go, the standard health service), one per address, in one process.
    Loopback offers a whole /8: distinct IPs (127.0.0.2, 127.0.0.3, ...) stand for distinct pods."""

    def __init__(self, addresses: list[str]) -> None:
        super().__init__([binary("grpc-consumer"), "serve", *addresses])
        self.addresses = list(addresses)

    def start(self) -> GrpcServers:
        super().start()
        wait_for(lambda: "ready" in self.notes or not self.alive(), timeout=20, message="gRPC servers listening")
        if not self.alive():
            raise RuntimeError(f"gRPC servers did not start: {self.stderr()}")
        return self

    def stop_one(self, address: str, timeout: float = 10) -> None:
        """Stop one server gracefully (the calls in flight finish), as a pod's server at SIGTERM."""
        self.send(f"stop {address}")
        wait_for(lambda: f"stopped {address}" in self.notes, timeout=timeout, message=f"{address} stopped")


class _Consumer(_Process):
    def __init__(self, args: list[str]) -> None:
        super().__init__(args)
        self.calls: list[Call] = []

    def line(self, text: str) -> None:
        try:
            obj = json.loads(text)
            call = Call(obj["t"], obj.get("addr", ""), bool(obj.get("ok")), obj.get("err", ""))
        except (ValueError, KeyError, TypeError):
            return
        with self._lock:
            self.calls.append(call)

    def start(self):
        super().start()
        wait_for(lambda: self.notes or not self.alive(), timeout=20, message=f"{self.args[1]} consumer started")
        if not self.alive():
            raise RuntimeError(f"consumer did not start: {self.stderr()}")
        return self

    def calls_since(self, since: float = 0.0, until: float | None = None) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.t >= since and (until is None or c.t < until)]

    def counts(self, since: float = 0.0, until: float | None = None) -> dict[str, int]:
        """Calls each server answered successfully, from `since` (a time.time())."""
        return dict(collections.Counter(c.addr for c in self.calls_since(since, until) if c.ok))

    def failures(self, since: float = 0.0, until: float | None = None) -> list[Call]:
        return [c for c in self.calls_since(since, until) if not c.ok]

    def wait_for_calls(self, n: int, since: float = 0.0, timeout: float = 30.0, ok: bool = True) -> None:
        wait_for(
            lambda: len([c for c in self.calls_since(since) if c.ok or not ok]) >= n,
            timeout=timeout,
            message=f"{n} calls answered (stderr: {self.stderr()})",
        )


class GrpcResolverConsumer(_Consumer):
    """A gRPC-Go client whose only view of the service is etcd's naming resolver
    (`etcd:///<prefix>/<service>/instances`, `round_robin`), calling `rate` times a second until
    stopped. `endpoints`: the registry's etcd client URLs."""

    def __init__(
        self,
        endpoints: str | list[str],
        service: str,
        *,
        prefix: str = "/services",
        rate: float = 50.0,
        balancer: str = "round_robin",
        timeout: float = 2.0,
    ) -> None:
        urls = endpoints if isinstance(endpoints, str) else ",".join(endpoints)
        # The resolver trims one leading "/" of the target's path: keys under /services need four.
        self.target = f"etcd:///{prefix.rstrip('/')}/{service}/instances"
        super().__init__(
            [
                binary("grpc-consumer"),
                "etcd",
                "-endpoints",
                urls,
                "-target",
                self.target,
                "-rate",
                str(rate),
                "-balancer",
                balancer,
                "-timeout",
                f"{timeout}s",
            ]
        )


class GrpcDnsConsumer(_Consumer):
    """A gRPC-Go client on gRPC's own DNS resolver asking `server` (CoreDNS) for the A records of
    `name` (`instances.<service>.`), round-robin, at `port`. gRPC resolves again when a
    connection breaks, so it leaves a deregistered pod when that pod stops serving, not before."""

    def __init__(self, server: tuple[str, int], name: str, port: int, *, rate: float = 50.0) -> None:
        super().__init__(
            [
                binary("grpc-consumer"),
                "dns",
                "-server",
                f"{server[0]}:{server[1]}",
                "-name",
                name,
                "-port",
                str(port),
                "-rate",
                str(rate),
            ]
        )


class CoreDNS(_Process):
    """CoreDNS with its etcd plugin serving the zone `.` from `prefix` (one path segment: CoreDNS
    turns the rest of a key into the SRV target's name) on 127.0.0.1:`port`. The operator's entries
    answer `instances.<service>.` (A, and SRV with port and weight)."""

    def __init__(self, endpoints: str | list[str], *, prefix: str = "/services", port: int | None = None) -> None:
        urls = endpoints if isinstance(endpoints, str) else " ".join(endpoints)
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="coredns-"))
        corefile = self.dir / "Corefile"
        corefile.write_text(
            f".:{self.port} {{\n  bind 127.0.0.1\n  etcd {{\n    path {prefix}\n    endpoint {urls}\n  }}\n"
            "  errors\n}\n"
        )
        super().__init__([binary("coredns"), "-conf", str(corefile)])

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def resolver(self):
        import dns.resolver

        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = ["127.0.0.1"]
        resolver.port = self.port
        resolver.lifetime = 2.0
        return resolver

    def answer(self, name: str, rdtype: str) -> list:
        """The records CoreDNS answers now (empty for NXDOMAIN / no answer)."""
        import dns.resolver

        try:
            return list(self.resolver().resolve(name, rdtype))
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []

    def start(self) -> CoreDNS:
        super().start()
        import dns.exception

        def answering() -> bool:
            if not self.alive():
                return True
            try:
                self.answer("ready.probe.", "A")
                return True
            except dns.exception.DNSException:
                return False

        wait_for(answering, timeout=20, message="CoreDNS answering")
        if not self.alive():
            raise RuntimeError(f"CoreDNS did not start: {self.stderr()}")
        return self


class _Snapshots(_Process):
    """A consumer that prints one JSON line {"t", "instances": [...]} each time its view changes."""

    def __init__(self, args: list[str]) -> None:
        super().__init__(args)
        self.snapshots: list[tuple[float, list[dict]]] = []

    def line(self, text: str) -> None:
        try:
            obj = json.loads(text)
            snapshot = (float(obj["t"]), list(obj["instances"]))
        except (ValueError, KeyError, TypeError):
            return
        with self._lock:
            self.snapshots.append(snapshot)

    def start(self):
        super().start()
        wait_for(lambda: "started" in self.notes or not self.alive(), timeout=60, message=f"{self.args[0]} started")
        if not self.alive():
            raise RuntimeError(f"consumer did not start: {self.stderr()}")
        return self

    def current(self) -> list[dict]:
        with self._lock:
            return self.snapshots[-1][1] if self.snapshots else []

    def addresses(self) -> set[str]:
        return {f"{i['address' if 'address' in i else 'ip']}:{i['port']}" for i in self.current()}

    def wait_for(self, predicate, timeout: float = 20.0, message: str = "the consumer's view") -> float:
        """Waits until `predicate(instances)` holds for the latest view; returns when it began to (time.time())."""
        wait_for(lambda: predicate(self.current()), timeout=timeout, message=lambda: f"{message}: {self.current()}")
        with self._lock:
            return self.snapshots[-1][0]


class CuratorConsumer(_Snapshots):
    """Apache Curator's service discovery (a ServiceCache of `service` under `base_path`), in Java."""

    def __init__(self, connect_string: str, service: str, *, base_path: str = "/services") -> None:
        super().__init__([binary("curator-consumer"), connect_string, base_path, service])


class NacosConsumer(_Snapshots):
    """nacos-sdk-python 3.x subscribed (gRPC) to `service` in `group` on the server at `url` (its
    gRPC port is the HTTP port + 1000, as Nacos 2.x clients derive it)."""

    def __init__(
        self,
        url: str,
        service: str,
        *,
        group: str = "DEFAULT_GROUP",
        namespace: str = "",
        credentials: tuple[str, str] | None = None,
    ) -> None:
        server = url.split("://", 1)[-1]
        super().__init__([binary("nacos-consumer"), server, namespace, group, service, *(credentials or ())])


def shares(calls: list[Call], window: float, start: float) -> list[tuple[float, dict[str, float]]]:
    """Each server's share of the successful calls per `window` seconds from `start`."""
    buckets: dict[int, collections.Counter] = collections.defaultdict(collections.Counter)
    for call in calls:
        if call.ok and call.t >= start:
            buckets[int((call.t - start) // window)][call.addr] += 1
    out = []
    for index in sorted(buckets):
        total = sum(buckets[index].values())
        out.append((index * window, {addr: n / total for addr, n in sorted(buckets[index].items())}))
    return out


__all__ = [
    "Call",
    "CoreDNS",
    "CuratorConsumer",
    "GrpcDnsConsumer",
    "GrpcResolverConsumer",
    "GrpcServers",
    "NacosConsumer",
    "binary",
    "shares",
]
