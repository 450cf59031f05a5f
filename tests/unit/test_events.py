"""clients/events.py: the operator's events, posted with its own client, in the background, in
order, never blocking or raising into the caller."""

from __future__ import annotations

import asyncio
import datetime

from infer_operator.clients.events import MAX_MESSAGE, EventRecorder, event_body, reference
from tests.support.fakes import FakeKube

POD = reference("v1", "Pod", "team", "llm-0", "uid-0")


def _events(kube: FakeKube) -> list[dict]:
    return [body for (_, kind, _, _), body in sorted(kube.objects.items()) if kind == "Event"]


async def test_events_are_posted_in_order_about_the_object_named():
    kube = FakeKube()
    recorder = EventRecorder(kube, instance="op-0")
    recorder.post(POD, "Normal", "IPReused", "first")
    recorder.post(POD, "Warning", "DeregistrationTimedOut", "second")
    await recorder.close()
    posted = sorted(_events(kube), key=lambda e: int(e["metadata"]["resourceVersion"]))
    assert [(e["reason"], e["message"], e["type"]) for e in posted] == [
        ("IPReused", "first", "Normal"),
        ("DeregistrationTimedOut", "second", "Warning"),
    ]
    assert posted[0]["involvedObject"] == POD and posted[0]["metadata"]["namespace"] == "team"
    assert posted[0]["source"] == {"component": "infer-operator"} and posted[0]["reportingInstance"] == "op-0"


async def test_a_refused_event_is_dropped_and_the_next_still_goes():
    kube = FakeKube()
    kube.fail("create", 403, kind="Event")
    recorder = EventRecorder(kube)
    recorder.post(POD, "Normal", "A", "refused")
    recorder.post(POD, "Normal", "B", "posted")
    await recorder.close()
    assert [e["reason"] for e in _events(kube)] == ["B"]


async def test_posting_never_waits_and_a_full_queue_drops_the_oldest():
    kube = FakeKube()
    recorder = EventRecorder(kube, max_queued=3)
    for i in range(5):
        recorder.post(POD, "Normal", f"R{i}", "m")  # all queued before the sender runs once
    assert recorder.dropped == 2
    await recorder.close()
    assert sorted(e["reason"] for e in _events(kube)) == ["R2", "R3", "R4"]


async def test_closing_gives_up_on_an_api_that_does_not_answer():
    class Hung(FakeKube):
        async def create(self, obj):
            await asyncio.Event().wait()

    recorder = EventRecorder(Hung())
    recorder.post(POD, "Normal", "A", "m")
    await asyncio.wait_for(recorder.close(timeout=0.1), 5)


def test_a_long_message_is_cut_in_the_middle_to_what_the_api_takes():
    body = event_body(POD, "Warning", "R", "a" * 600 + "b" * 600, datetime.datetime(2026, 1, 1), "op")
    assert len(body["message"]) <= MAX_MESSAGE
    assert body["message"].startswith("a") and body["message"].endswith("b") and "..." in body["message"]
    assert body["firstTimestamp"] == "2026-01-01T00:00:00Z"
