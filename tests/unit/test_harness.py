"""The shared harness's pure parts: bounded waits, ports, sample manifests, the operator's command line."""

from __future__ import annotations

import pytest

from devtools.harness import OperatorProcess, assert_stays, etcd_registry, free_ports, isvc_body, wait_for


def test_wait_for_returns_the_first_truthy_value():
    values = iter([0, None, "", "done"])
    assert wait_for(lambda: next(values), timeout=5, interval=0.01) == "done"


def test_wait_for_times_out_with_the_message():
    with pytest.raises(AssertionError, match=r"timed out after 0.1s: still 3 pods"):
        wait_for(lambda: False, timeout=0.1, interval=0.01, message=lambda: "still 3 pods")


def test_wait_for_propagates_errors_unless_ignored():
    def flaky():
        raise ConnectionError("refused")

    with pytest.raises(ConnectionError):
        wait_for(flaky, timeout=1, interval=0.01)
    with pytest.raises(AssertionError, match=r"the API \(last error: refused\)"):
        wait_for(flaky, timeout=0.1, interval=0.01, message="the API", ignore=(OSError,))


def test_wait_for_never_ignores_a_failed_check():
    def failing():
        raise AssertionError("wrong pod")

    with pytest.raises(AssertionError, match="^wrong pod$"):
        wait_for(failing, timeout=5, interval=0.01, ignore=(Exception,))


def test_assert_stays():
    assert_stays(lambda: True, duration=0.05, interval=0.01)
    with pytest.raises(AssertionError, match="gone"):
        assert_stays(lambda: False, duration=1, message="gone")


def test_free_ports_are_distinct():
    ports = free_ports(5)
    assert len(set(ports)) == 5 and all(1024 <= p < 65536 for p in ports)


def test_isvc_body_overrides_come_first_and_none_unsets():
    body = isvc_body("a", "ns", registry=etcd_registry("http://e:2379", "/p", service="s"), syncReplicas=None)
    assert body["metadata"] == {"name": "a", "namespace": "ns"}
    assert list(body["spec"]) == ["registry", "replicas", "lifecycle", "template"]
    assert body["spec"]["registry"] == {
        "type": "etcd",
        "etcd": {"endpoints": ["http://e:2379"], "prefix": "/p"},
        "service": "s",
    }


def test_operator_command_line(tmp_path):
    op = OperatorProcess(tmp_path / "kc", tmp_path / "log", "--sweep-seconds", "5", namespaces=["a", "b"])
    argv = op.argv()
    assert argv[1:4] == ["-m", "infer_operator", "run"]
    assert argv[-1] == "--standalone" and argv.count("--namespace") == 2
    assert argv[argv.index("--metrics-port") + 1] == "0"
    peer = OperatorProcess(tmp_path / "kc", tmp_path / "log", "--peering", "p", module="bench.instrumented")
    assert "--standalone" not in peer.argv() and peer.argv()[2] == "bench.instrumented"
