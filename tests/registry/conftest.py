"""Fixtures for registry tests: a private etcd and a real admin-controller HTTP server (the shared
`etcd` fixture lives in tests/conftest.py)."""

from __future__ import annotations

import pytest

from devtools.harness import free_port
from devtools.registries import NacosServer, NacosUnavailable, ZooKeeperServer, ZooKeeperUnavailable
from tests.support.admin_controller import AdminController
from tests.support.etcd_server import EtcdServer, EtcdUnavailable


@pytest.fixture
def etcd_fresh():
    """A private etcd for tests that change server-wide settings (auth)."""
    try:
        srv = EtcdServer()
    except EtcdUnavailable as exc:
        pytest.fail(f"{exc} (`make test` installs Debian's etcd-server)")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def zookeeper_server():
    """Debian's ZooKeeper for the session (about 2 s to start)."""
    try:
        server = ZooKeeperServer()
    except ZooKeeperUnavailable as exc:
        pytest.fail(str(exc))
    with server:
        yield server


@pytest.fixture
def zookeeper(zookeeper_server):
    """A kazoo client of the test's own to the session ZooKeeper, everything but /zookeeper removed first."""
    zk = zookeeper_server.client()
    for child in zk.get_children("/"):
        if child != "zookeeper":
            zk.delete(f"/{child}", recursive=True)
    try:
        yield zk
    finally:
        zk.stop()
        zk.close()


@pytest.fixture(scope="session")
def nacos_server():
    """r-nacos (authentication on) for the session; built and cached on first use (cargo). With
    NACOS_URL (and NACOS_USERNAME, NACOS_PASSWORD) the suite runs against that Nacos instead."""
    import os

    if os.environ.get("NACOS_URL"):
        from devtools.registries.nacos import ExternalNacos

        yield ExternalNacos(
            os.environ["NACOS_URL"],
            os.environ.get("NACOS_USERNAME", "nacos"),
            os.environ.get("NACOS_PASSWORD", "nacos"),
        )
        return
    try:
        server = NacosServer()
    except NacosUnavailable as exc:
        pytest.fail(str(exc))
    with server:
        yield server


@pytest.fixture
def nacos(nacos_server):
    return nacos_server


@pytest.fixture
async def admin_controller():
    async with AdminController() as ac:
        yield ac


@pytest.fixture
def dead_url():
    """http://127.0.0.1:PORT where nothing listens (connection refused)."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture
async def blackhole_url():
    """A TCP server that accepts connections and never answers (for timeout tests)."""
    import asyncio

    conns = []

    async def handle(reader, writer):
        conns.append(writer)
        try:
            await reader.read()  # until the client gives up
        except Exception:
            pass

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        for w in conns:
            w.close()
        server.close()
        await server.wait_closed()
