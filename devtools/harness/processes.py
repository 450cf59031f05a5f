"""Free local ports, and child processes stopped the same way everywhere: SIGTERM, then SIGKILL after a bound."""

from __future__ import annotations

import socket
import subprocess


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports on 127.0.0.1 that nothing listens on right now.

    All sockets stay bound until every port is picked, so the ports differ from each other; a
    port can still be taken by someone else before the caller binds it.
    """
    socks = []
    try:
        for _ in range(n):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(sock)
            sock.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


def free_port() -> int:
    """One TCP port on 127.0.0.1 that nothing listens on right now (see ``free_ports``)."""
    return free_ports(1)[0]


def terminate(proc: subprocess.Popen | None, timeout: float, kill_wait: float = 10.0) -> int | None:
    """Ask ``proc`` to stop, kill it if it has not within ``timeout`` seconds; its exit code."""
    if proc is None:
        return None
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(kill_wait)
    return proc.returncode
