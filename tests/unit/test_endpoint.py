"""endpoint.py and PodReleaser.released: what a deleted pod's preStop is told about its
deregistration, from the watch's view or the API, and over HTTP."""

from __future__ import annotations

import dataclasses

from aiohttp.test_utils import TestClient, TestServer

from infer_operator import endpoint, labels
from infer_operator.clients.kube import KubeError
from infer_operator.registration.sharing import Views
from tests.unit.test_releaser import NAME, NS, Setup


async def test_a_deleted_pod_is_released_once_our_finalizer_is_gone():
    setup = Setup()
    pod = setup.deleted_pod()
    setup.register(pod)
    assert not await setup.releaser.released(NS, pod.name, None)  # held by our finalizer: not yet
    await setup.release(pod)
    assert labels.POD_FINALIZER not in setup.finalizers(pod)
    assert await setup.releaser.released(NS, pod.name, None)  # from the API
    # The watch's view may still show the finalizer a moment after the release: it is over all the same.
    assert await setup.releaser.released(NS, pod.name, Views({(NS, NAME): [pod]}, {}))


async def test_what_is_gone_never_held_the_finalizer_or_is_not_deleted_is_released():
    setup = Setup()
    assert await setup.releaser.released(NS, f"{NAME}-7", None)  # no such pod
    pod = setup.deleted_pod()
    never_held = dataclasses.replace(pod, finalizers=())
    assert await setup.releaser.released(NS, pod.name, Views({(NS, NAME): [never_held]}, {}))
    alive = dataclasses.replace(pod, deleting=False)  # a container restarted in place
    assert await setup.releaser.released(NS, pod.name, Views({(NS, NAME): [alive]}, {}))
    assert not await setup.releaser.released(NS, pod.name, Views({(NS, NAME): [pod]}, {}))


async def test_the_endpoint_answers_200_released_503_releasing_or_unknown():
    answers = {"done": True, "held": False}

    async def answer(namespace: str, name: str) -> bool:
        if name == "broken":
            raise KubeError(0, "Unreachable", "the API is away")
        return answers[name]

    async with TestClient(TestServer(endpoint.application(answer))) as client:
        done = await client.get("/released/ns/done")
        held = await client.get("/released/ns/held")
        broken = await client.get("/released/ns/broken")
        assert (done.status, await done.text()) == (200, "released\n")
        assert (held.status, await held.text()) == (503, "releasing\n")
        assert (broken.status, await broken.text()) == (503, "unknown\n")
        assert (await client.get("/released/ns")).status == 404
