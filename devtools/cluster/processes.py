"""Stopping child processes the same way everywhere: SIGTERM, then SIGKILL after a bound."""

from __future__ import annotations

import subprocess


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
