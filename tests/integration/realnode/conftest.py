"""Real-node fixtures: the real node beside KWOK (skipped, with the reason, only where this machine
cannot run one: never a KWOK stand-in; a set-up failure errors), a Redis the pods reach, and
pod-template helpers.

The session's operator (tests/integration/conftest.py: a subprocess on the host) manages the
InferenceServices here too; only one operator may watch a namespace at a time.
"""

from __future__ import annotations

import secrets

import pytest

from devtools.cluster import realnode
from tests.conftest import _terminal_progress
from tests.support.realnode import start_or_skip


@pytest.fixture(scope="session")
def real_node(cluster, pytestconfig):
    """The real node of the local control plane, started (images built, cached) unless running:
    skipped only where this machine cannot run one (tests/support/realnode.start_or_skip)."""
    return start_or_skip(cluster, realnode.up, progress=_terminal_progress(pytestconfig))


@pytest.fixture(scope="session")
def pod_redis(real_node):
    """A Redis on the pods' gateway address: the sample app's async role works its queue."""
    from tests.support.redis_server import RedisServer

    server = RedisServer(host=realnode.POD_GATEWAY)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def module_namespace(cluster, request):
    """One namespace for a test module's services (pods start in seconds, not free): deleted after."""
    from kubernetes import client

    name = (
        f"rn-{request.module.__name__.rsplit('.', 1)[-1].removeprefix('test_')[:20].replace('_', '-')}-"
        f"{secrets.token_hex(2)}"
    )
    core = client.CoreV1Api(cluster.api_client())
    core.create_namespace({"metadata": {"name": name, "labels": {"infer-operator.io/test": "true"}}})
    yield name
    core.delete_namespace(name)
