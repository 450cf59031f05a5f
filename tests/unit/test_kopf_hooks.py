"""kopf_hooks/: every hook installs on the pinned kopf (this test fails the day one falls back),
the version gate, and what each hook does: the watch stream (slim objects, relists, early pod
events), orjson decoding, the start-up indexing patch, and the log-line followers."""

from __future__ import annotations

import asyncio
import json
import logging
import tomllib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from kopf._cogs.aiokits import aiotoggles
from kopf._cogs.clients import api

from infer_operator import jsonwire, kopf_hooks, metrics
from infer_operator.kopf_hooks import base, decoding, indexing, logs, watchstream

ROOT = Path(__file__).resolve().parents[2]
BOUND = 5.0  # seconds any waiter may take to be released; they are released at once when right


def _install(**kwargs: Any) -> dict[str, bool]:
    return kopf_hooks.install(on_pods_listed=lambda namespace: None, on_pod_event=lambda event: None, **kwargs)


def _gauge(hook: str) -> float:
    return metrics.KOPF_HOOKS.labels(hook)._value.get()


# -- the gate -------------------------------------------------------------------------------------


def test_every_hook_installs_on_the_pinned_kopf() -> None:
    # The day a kopf upgrade moves what a hook relies on, this fails (rather than the operator
    # quietly losing memory, start-up time or events in production).
    installed = _install()
    assert installed == {
        hook.name: True for hook in kopf_hooks.hooks(on_pods_listed=print, on_pod_event=print, quiet=True)
    }
    assert all(_gauge(name) == 1 for name in installed)


def test_the_pin_and_the_tested_series_agree() -> None:
    [requirement] = [
        d
        for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
        if d.startswith("kopf")
    ]
    assert kopf_hooks.tested(kopf_hooks.kopf_version())
    for series in kopf_hooks.TESTED_KOPF:
        assert f">={series}" in requirement, requirement
    major, minor = kopf_hooks.TESTED_KOPF[-1].split(".")
    assert f"<{major}.{int(minor) + 1}" in requirement, requirement


@pytest.mark.parametrize(
    "version, expected",
    [("1.45.2", True), ("1.45", True), ("1.46.0", False), ("1.4", False), ("1.450.1", False), ("unknown", False)],
)
def test_the_series_a_version_belongs_to(version: str, expected: bool) -> None:
    assert kopf_hooks.tested(version) is expected


def test_an_untested_kopf_gets_no_hook_and_each_loss_is_named(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(kopf_hooks, "kopf_version", lambda: "1.46.0")
    tried: list[str] = []
    real = kopf_hooks.hooks

    def spying(**kwargs: Any) -> list[kopf_hooks.Hook]:
        return [kopf_hooks.Hook(h.name, h.lost, lambda name=h.name: tried.append(name)) for h in real(**kwargs)]

    monkeypatch.setattr(kopf_hooks, "hooks", spying)
    try:
        with caplog.at_level(logging.WARNING, logger="infer_operator.kopf_hooks"):
            installed = _install()
        assert tried == [] and not any(installed.values())
        assert all(_gauge(name) == 0 for name in installed)
        for hook in real(on_pods_listed=print, on_pod_event=print, quiet=True):
            [line] = [r.getMessage() for r in caplog.records if f"kopf hook {hook.name} " in r.getMessage()]
            assert "1.46.0 is not a series these hooks were tested with" in line and hook.lost in line
        tried.clear()
        assert all(_install(mode="any").values()) and len(tried) == len(installed)  # tried anyway when asked
        assert not any(_install(mode="off").values())
    finally:
        monkeypatch.undo()
        _install()


def test_a_hook_whose_internals_moved_falls_back_alone(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from kopf._cogs.clients import watching

    original = watching.infinite_watch
    monkeypatch.delattr(watching, "infinite_watch")
    with caplog.at_level(logging.WARNING, logger="infer_operator.kopf_hooks"):
        installed = _install()
    assert installed.pop("watch_stream") is False and all(installed.values())
    assert _gauge("watch_stream") == 0
    assert "objects are kept whole" in caplog.text and "infinite_watch" in caplog.text
    monkeypatch.setattr(watching, "infinite_watch", original, raising=False)
    _install()
    assert _gauge("watch_stream") == 1


def test_nothing_outside_kopf_hooks_names_a_private_kopf_module() -> None:
    package = ROOT / "operator" / "infer_operator"
    found = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in package.rglob("*.py")
        if "kopf_hooks" not in path.parts
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if "kopf._" in line
    ]
    assert found == []


# -- watch_stream ---------------------------------------------------------------------------------


class _Resource(SimpleNamespace):
    pass


def _fake_kopf(monkeypatch, streams):
    """kopf's watching module as the hook sees it: each infinite_watch call plays one stream."""
    from kopf._cogs.clients import watching

    mark = watching.Bookmark.LISTED
    plays = iter(streams)

    async def infinite_watch(*, settings=None, resource, namespace, operator_paused=None):
        for item in next(plays):
            yield mark if item == "LISTED" else item

    monkeypatch.setattr(watching, "infinite_watch", infinite_watch)
    return watching


async def test_the_hook_reports_each_listing_of_the_pods_watch_after_the_first(monkeypatch):
    watching = _fake_kopf(monkeypatch, [["a", "LISTED", "b", "LISTED", "c", "LISTED"], ["LISTED", "LISTED"]])
    seen: list = []
    watchstream.install(seen.append, lambda event: None)
    watchstream.install(seen.append, lambda event: None)  # installing twice wraps once
    pods = _Resource(group="", plural="pods")
    items = [item async for item in watching.infinite_watch(settings=None, resource=pods, namespace="team")]
    assert items[:2] == ["a", watching.Bookmark.LISTED]  # the stream passes through
    assert seen == ["team", "team"]
    # Another kind's listings (here InferenceServices) are none of the audit's business.
    crs = _Resource(group="serving.infer-operator.io", plural="inferenceservices")
    assert [item async for item in watching.infinite_watch(settings=None, resource=crs, namespace="team")]
    assert seen == ["team", "team"]


async def test_objects_are_slimmed_as_they_pass(monkeypatch):
    pod = {
        "metadata": {"name": "llm-0", "managedFields": [{"manager": "kubelet"}], "labels": {"a": "b"}},
        "spec": {"containers": [{"name": "model", "image": "x", "env": [{"name": "A"}]}], "volumes": []},
        "status": {"phase": "Running", "containerStatuses": [{}]},
    }
    service = {"metadata": {"name": "llm", "managedFields": [{}]}, "spec": {"ports": [{"port": 80}]}}
    crd = {"metadata": {"name": "x", "managedFields": [{}]}, "spec": {"group": "g"}}
    watching = _fake_kopf(
        monkeypatch,
        [[{"type": "ADDED", "object": pod}], [{"type": None, "object": service}], [{"type": None, "object": crd}]],
    )
    watchstream.install(lambda namespace: None, lambda event: None)
    [event] = [
        item async for item in watching.infinite_watch(resource=_Resource(group="", plural="pods"), namespace=None)
    ]
    assert event["object"] == {
        "metadata": {"name": "llm-0", "labels": {"a": "b"}},
        "spec": {"containers": [{"name": "model"}]},
        "status": {"phase": "Running"},
    }
    [event] = [
        item async for item in watching.infinite_watch(resource=_Resource(group="", plural="services"), namespace=None)
    ]
    assert event["object"] == {"metadata": {"name": "llm"}}  # an owned kind: its watch reads the metadata
    [event] = [
        item
        async for item in watching.infinite_watch(
            resource=_Resource(group="apiextensions.k8s.io", plural="customresourcedefinitions"), namespace=None
        )
    ]
    assert event["object"] == {"metadata": {"name": "x"}, "spec": {"group": "g"}}


async def test_pod_events_reach_the_early_hook_before_kopf_and_its_errors_stay_out_of_the_stream(monkeypatch):
    pod = {"metadata": {"name": "llm-0"}}
    watching = _fake_kopf(
        monkeypatch,
        [
            [{"type": "MODIFIED", "object": pod}, "LISTED"],
            [{"type": "MODIFIED", "object": {"metadata": {"name": "llm"}}}],
        ],
    )
    seen: list = []

    def hook(event):
        seen.append(event["object"]["metadata"]["name"])
        raise RuntimeError("a bug in the hook")

    watchstream.install(lambda namespace: None, hook)
    items = [
        item async for item in watching.infinite_watch(resource=_Resource(group="", plural="pods"), namespace="team")
    ]
    assert len(items) == 2 and seen == ["llm-0"]  # kopf still gets the event
    [_] = [
        item
        async for item in watching.infinite_watch(resource=_Resource(group="", plural="services"), namespace="team")
    ]
    assert seen == ["llm-0"]  # only pods


# -- event_decoding -------------------------------------------------------------------------------


def test_kopfs_watch_events_are_decoded_by_jsonwire_and_nothing_else_changes() -> None:
    stdlib_loads = json.loads
    decoding.install()
    assert api.json.loads is jsonwire.loads
    assert api.json.dumps is json.dumps and api.json.JSONDecodeError is json.JSONDecodeError
    assert json.loads is stdlib_loads
    decoder = api.json
    decoding.install()
    assert api.json is decoder  # installing twice wraps once


def test_kopfs_decoding_is_switched_even_when_its_stream_cannot_be_hooked(monkeypatch: pytest.MonkeyPatch) -> None:
    from kopf._cogs.clients import watching

    monkeypatch.delattr(watching, "infinite_watch")
    monkeypatch.setattr(api, "json", json)
    installed = _install()
    assert not installed["watch_stream"] and installed["event_decoding"]
    assert api.json.loads is jsonwire.loads


def test_a_decoder_kopf_no_longer_takes_from_json_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    other = SimpleNamespace(loads=lambda text: "someone else's")
    monkeypatch.setattr(api, "json", other)
    with pytest.raises(base.Unavailable, match="not the standard json module"):
        decoding.install()
    assert api.json is other


# -- start_up_indexing ----------------------------------------------------------------------------


@pytest.fixture
def patched() -> None:
    indexing.install()
    assert getattr(aiotoggles.ToggleSet, base.MARK)


def count_wakeups(toggles: aiotoggles.ToggleSet) -> list[int]:
    calls = [0]
    notify_all = toggles._condition.notify_all

    def counting() -> None:
        calls[0] += 1
        notify_all()

    toggles._condition.notify_all = counting  # type: ignore[method-assign]
    return calls


async def released(waiter: asyncio.Task[Any]) -> bool:
    """Whether the waiter finishes once everything ready on the loop has run."""
    for _ in range(20):
        await asyncio.sleep(0)
    return waiter.done()


async def test_start_up_indexing_wakes_the_waiting_workers_once(patched: None) -> None:
    # kopf's pattern (bench/indexing.py): one toggle per listed object, each worker waiting on the
    # set after dropping its own. kopf's own ToggleSet notified on every one of the 2 x 300 changes.
    indexed = aiotoggles.ToggleSet(all)
    listing = await indexed.make_toggle(name="listing")
    wakeups = count_wakeups(indexed)
    ran = 0

    async def worker(own: aiotoggles.Toggle) -> None:
        nonlocal ran
        await asyncio.sleep(0)
        await indexed.drop_toggle(own)
        await indexed.wait_for(True)
        ran += 1

    workers = []
    for i in range(300):
        workers.append(asyncio.create_task(worker(await indexed.make_toggle(name=str(i)))))
        await asyncio.sleep(0)
    for _ in range(5):
        await asyncio.sleep(0)
    assert ran == 0, "no worker may run before the listing is indexed"
    await indexed.drop_toggle(listing)
    await asyncio.wait_for(asyncio.gather(*workers), BOUND)
    assert ran == 300
    assert wakeups[0] == 1


@pytest.mark.parametrize("case", ["last-dropped", "one-of-many-dropped", "dropped-together", "added-to-on"])
async def test_set_waiters_are_released_exactly_when_the_state_changes(patched: None, case: str) -> None:
    toggles = aiotoggles.ToggleSet(all)
    if case == "added-to-on":
        waiter = asyncio.create_task(toggles.wait_for(False))
        assert not await released(waiter)
        await toggles.make_toggle(False)
        assert await released(waiter)
        return
    a, b = await toggles.make_toggle(False), await toggles.make_toggle(False)
    waiter = asyncio.create_task(toggles.wait_for(True))
    assert not await released(waiter)
    if case == "last-dropped":
        await toggles.drop_toggle(a)
        assert not await released(waiter)
        await toggles.drop_toggle(b)
    elif case == "one-of-many-dropped":
        await b.turn_to(True)
        assert not await released(waiter)
        await toggles.drop_toggle(a)
    else:
        await toggles.drop_toggles([a, b])
    assert await released(waiter)


async def test_any_set_and_member_toggles_still_wake_on_turns(patched: None) -> None:
    # kopf's pause set (ToggleSet(any)): its members are turned, not only added and dropped.
    paused = aiotoggles.ToggleSet(any)
    peering = await paused.make_toggle(False, name="peering")
    set_on = asyncio.create_task(paused.wait_for(True))
    member_on = asyncio.create_task(peering.wait_for(True))
    await paused.make_toggle(False, name="other")
    assert not await released(set_on) and not await released(member_on)
    await peering.turn_to(True)
    assert await released(set_on) and await released(member_on)
    set_off = asyncio.create_task(paused.wait_for(False))
    await paused.drop_toggle(peering)
    assert await released(set_off)


def test_a_toggle_set_unlike_the_one_patched_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    class Elsewhere:  # kopf's ToggleSet, were its condition renamed
        def __init__(self, fn: Any) -> None:
            self.condition = asyncio.Condition()

    monkeypatch.setattr(aiotoggles, "ToggleSet", Elsewhere)
    with pytest.raises(base.Unavailable, match="ToggleSet"):
        indexing.install()
    assert not hasattr(Elsewhere, base.MARK)


# -- peering_state and quiet_handler_log ----------------------------------------------------------


def test_the_active_gauge_follows_kopfs_peering_pauses() -> None:
    _install()
    logger = logging.getLogger(logs.PEERING_LOGGER)
    try:
        logger.info("Pausing operations in favour of [Peer(...)].")
        assert metrics.ACTIVE._value.get() == 0
        logger.info("Resuming operations after the pause. Conflicting operators with the same priority are gone.")
        assert metrics.ACTIVE._value.get() == 1
        logger.warning("Pausing all operators, including self: [...]")
        assert metrics.ACTIVE._value.get() == 0
    finally:
        metrics.ACTIVE.set(1)
    assert sum(1 for f in logger.filters if isinstance(f, logs.PeeringState)) == 1  # installed once


def test_a_log_line_kopf_no_longer_says_is_not_followed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logs.inspect, "getsource", lambda module: "logger.info('Operations paused.')")
    with pytest.raises(base.Unavailable, match="Pausing operations"):
        logs.follow_peering(lambda active: None)
    with pytest.raises(base.Unavailable, match="succeeded"):
        logs.quiet_event_handlers()


def test_kopfs_success_line_of_event_handlers_is_dropped_and_nothing_else():
    def record(level, msg):
        return logging.LogRecord("kopf.objects", level, __file__, 1, msg, None, None)

    quiet = logs.QuietEventHandlers()
    assert not quiet.filter(record(logging.INFO, "Handler 'pod_changed' succeeded."))
    assert quiet.filter(record(logging.ERROR, "Handler 'pod_changed' failed with an exception. Will retry."))
    assert quiet.filter(record(logging.INFO, "Daemon 'reconcile' succeeded."))
    assert quiet.filter(record(logging.INFO, "Pod llm-0 of llm takes the sync role (ordinal 0)."))
