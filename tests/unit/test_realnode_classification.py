"""Real-node set-up: "this machine cannot" (a skip, with the reason) is told apart from "the set-up
failed" (an error that fails the run), at the source (devtools/cluster/realnode.py), in the
tests' fixture (tests/support/realnode.start_or_skip), and at the end of a session in which no
real-node test ran (tests/conftest.none_ran_verdict)."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from devtools.cluster import launcher, realnode
from tests.conftest import none_ran_verdict
from tests.support.realnode import CANNOT, start_or_skip


def raising(exc: BaseException):
    def start(*args, **kwargs):
        raise exc

    return start


def test_a_host_command_that_fails_is_a_set_up_failure():
    with pytest.raises(realnode.RealNodeError, match="`false` failed"):
        realnode._sh("false")


def test_a_wait_that_times_out_is_a_set_up_failure(tmp_path):
    with pytest.raises(realnode.RealNodeError, match="timed out after 0s waiting for the moon"):
        realnode._wait("the moon", lambda: False, 0.1, tmp_path)


def test_a_process_that_exits_while_waited_for_is_a_set_up_failure(tmp_path):
    proc = launcher._start(tmp_path, "kubelet", ["sh", "-c", "echo 'failed to run Kubelet'; exit 3"])
    proc.wait(10)
    with pytest.raises(realnode.RealNodeError, match="kubelet exited while waiting for node Ready") as caught:
        realnode._wait("node Ready", lambda: False, 10, tmp_path, ["kubelet"])
    assert "failed to run Kubelet" in str(caught.value)


def test_up_on_a_machine_that_can_but_without_a_control_plane_is_a_set_up_failure(monkeypatch, tmp_path):
    monkeypatch.setattr(realnode, "host_reason", lambda: None)  # as on a machine that can run one
    monkeypatch.setattr(realnode, "_owner", lambda: None)  # and no other control plane's node
    started = time.monotonic()
    with pytest.raises(realnode.RealNodeError, match="is not running"):
        realnode.up(tmp_path, build=False)
    assert time.monotonic() - started < 10


def test_up_on_a_machine_that_cannot_is_unavailable(monkeypatch, tmp_path):
    monkeypatch.setattr(realnode.os, "geteuid", lambda: 1000)
    with pytest.raises(realnode.RealNodeUnavailable, match="needs root"):
        realnode.up(tmp_path, build=False)


@pytest.fixture
def cannot():
    CANNOT["reason"] = None
    yield CANNOT
    CANNOT["reason"] = None


def test_the_fixture_skips_only_where_the_machine_cannot(tmp_path, cannot):
    cluster = SimpleNamespace(external=False, state_dir=tmp_path)
    with pytest.raises(pytest.skip.Exception, match="no real node on this machine: a real node needs root"):
        start_or_skip(cluster, raising(realnode.RealNodeUnavailable("a real node needs root")))
    assert cannot["reason"] == "a real node needs root"
    cannot["reason"] = None
    with pytest.raises(realnode.RealNodeError, match="kubelet exited"):
        start_or_skip(cluster, raising(realnode.RealNodeError("kubelet exited while waiting for node Ready")))
    with pytest.raises(OSError):  # an image build, a toolchain build: anything else fails too
        start_or_skip(cluster, raising(OSError("No space left on device")))
    assert cannot["reason"] is None
    node = SimpleNamespace(name="real-node-0")
    assert start_or_skip(cluster, lambda state_dir, **kw: node) is node


def test_the_fixture_skips_beside_another_cluster(tmp_path, cannot):
    with pytest.raises(pytest.skip.Exception, match="KUBECONFIG"):
        start_or_skip(SimpleNamespace(external=True, state_dir=None), raising(AssertionError("not called")))
    assert "KUBECONFIG" in cannot["reason"]


def test_a_run_where_no_real_node_test_ran_on_a_machine_that_can_fails():
    none = {"collected": 22, "ran": 0}
    assert "22 real-node test(s) were collected and none ran" in none_ran_verdict(none, None, None, False)
    assert none_ran_verdict(none, "a real node needs root", None, False) is None
    assert none_ran_verdict(none, "the real node of another control plane runs", None, False) is None
    # CI (.ci/run sets the requirement): only the host's own reason excuses it.
    assert "a fixture said: the real node of another" in none_ran_verdict(
        none, "the real node of another control plane runs", None, True
    )
    assert none_ran_verdict(none, "a real node needs root", "a real node needs root", True) is None
    assert none_ran_verdict({"collected": 22, "ran": 3}, None, None, True) is None
    assert none_ran_verdict({"collected": 0, "ran": 0}, None, None, True) is None
