"""Instance JSON, the backend table, secrets hygiene, TLS context building, none backend."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import ssl
import subprocess

import pytest

from infer_operator.registration.actions import deregister_confirmed
from infer_operator.registry.backends import BACKENDS, connect
from infer_operator.registry.etcd import EtcdRegistry, normalise_prefix
from infer_operator.registry.http import HttpRegistry
from infer_operator.registry.model import Instance, MalformedEntry
from infer_operator.registry.none import NoneRegistry
from infer_operator.registry.tls import Secret, build_ssl_context

A = Instance(pod="web-0", namespace="ns", uid="u", ip="10.0.0.1", port=80, role="sync", ordinal=0)


def test_instance_json_roundtrip():
    text = A.to_json()
    assert text == (
        '{"pod":"web-0","namespace":"ns","uid":"u","ip":"10.0.0.1","port":80,"role":"sync","ordinal":0,"weight":100}'
    )
    assert Instance.from_json(text) == A
    assert Instance.from_json(text.encode()) == A
    with pytest.raises(dataclasses.FrozenInstanceError):
        A.port = 1  # frozen


@pytest.mark.parametrize(
    "text",
    [
        "",
        "nope",
        "[]",
        "null",
        "1",
        '"x"',
        '{"pod":"p"}',
        json.dumps({**A.to_obj(), "port": "80"}),
        json.dumps({**A.to_obj(), "port": True}),
        json.dumps({**A.to_obj(), "ordinal": 1.5}),
        json.dumps({**A.to_obj(), "ip": None}),
        json.dumps({**A.to_obj(), "weight": 101}),
        json.dumps({**A.to_obj(), "weight": "100"}),
        b"\xff\xfe",
    ],
)
def test_instance_from_json_malformed(text):
    with pytest.raises(MalformedEntry):
        Instance.from_json(text)


def test_fields_a_go_writer_omits_as_zero_and_entries_without_a_weight():
    # An admin controller serialising with Go's `omitempty` leaves out ordinal 0: still pod 0's entry.
    obj = {k: v for k, v in A.to_obj().items() if k not in ("ordinal", "weight")}
    assert Instance.from_obj(obj) == A  # no weight: written before weights, a warm instance


def test_same_entry_ignores_weight_and_stored_layout():
    warming = dataclasses.replace(A, weight=12)
    assert A.same_entry(warming) and A.same_entry(dataclasses.replace(A, stale_layout=True))
    assert warming != A and not A.same_entry(dataclasses.replace(A, uid="other")) and not A.same_entry(None)


def test_etcd_value_carries_what_grpc_and_coredns_read():
    from infer_operator.registry.etcd import entry_value, read_entry

    value = json.loads(entry_value(dataclasses.replace(A, weight=38)))
    assert value["Addr"] == "10.0.0.1:80" and value["Metadata"] == {"weight": 38}  # gRPC-Go's etcd resolver
    assert (value["host"], value["port"], value["weight"], value["ttl"]) == ("10.0.0.1", 80, 38, 5)  # SkyDNS
    assert read_entry(entry_value(A).encode()) == A
    six = dataclasses.replace(A, ip="fd00::7")
    assert json.loads(entry_value(six))["Addr"] == "[fd00::7]:80"
    # A value of an earlier version (ours alone) is ours, to be written again
    assert read_entry(A.to_json().encode()) == dataclasses.replace(A, stale_layout=True)


def test_backend_table_connects_each_type_and_rejects_bad_settings():
    assert set(BACKENDS) == {"none", "etcd", "http", "zookeeper", "nacos"}
    assert isinstance(connect("none", None, None, timeout=1), NoneRegistry)
    e = connect("etcd", {"endpoints": ["http://a:2379", "http://b:2379"], "prefix": "/x/"}, None, timeout=1)
    assert isinstance(e, EtcdRegistry) and e.prefix == "/x"
    assert "http://a:2379,http://b:2379" in e.describe()
    h = connect("http", {"url": "http://admin:8080/api"}, {}, timeout=1)
    assert isinstance(h, HttpRegistry)
    z = connect("zookeeper", {"servers": ["zk-0:2181"], "chroot": "/team//a/", "layout": "curator"}, None, timeout=1)
    assert "zk-0:2181 curator root=/team/a/services" in z.describe()
    for kind, settings, creds in [
        ("consul", {}, None),
        ("zookeeper", {}, None),
        ("zookeeper", {"servers": ["zk-0:2181"]}, {"username": "u"}),
        ("zookeeper", {"servers": ["zk-0:2181"], "root": "/a/../b"}, None),
        ("zookeeper", {"servers": ["zk-0:2181"], "layout": "eureka"}, None),
        ("etcd", {}, None),
        ("http", {}, None),
        ("etcd", None, None),
        ("etcd", {"endpoints": ["http://a:1"]}, {"username": "u"}),
        ("etcd", {"endpoints": ["http://u:p@a:1"]}, None),
        ("http", {"url": "http://u:p@a"}, None),
        ("http", {"url": "ftp://a"}, None),
        ("http", {"url": "http://a"}, {"bogus_key": "x"}),
        ("etcd", {"endpoints": ["http://a:1"]}, {"token": "t"}),  # a key of another backend
    ]:
        with pytest.raises(ValueError) as ei:
            connect(kind, settings, creds, timeout=1)
        assert ":p@" not in str(ei.value)


def test_secrets_never_in_repr():
    pw, tok = "pw-VERY-secret", "tok-VERY-secret"
    e = connect("etcd", {"endpoints": ["http://a:1"]}, {"username": "root", "password": pw}, timeout=1)
    h = connect("http", {"url": "http://a"}, {"token": tok}, timeout=1)
    for obj in (e, h):
        for text in (repr(obj), str(obj), obj.describe(), repr(vars(obj))):
            assert pw not in text and tok not in text
    assert repr(Secret(pw)) == "Secret('***')"


def test_prefix_normalisation():
    assert normalise_prefix("/services/") == "/services"
    assert normalise_prefix("a//b") == "/a/b"
    assert normalise_prefix("/") == ""
    with pytest.raises(ValueError):
        normalise_prefix("/a/../b")


@pytest.fixture(scope="module")
def pem_pair(tmp_path_factory):
    if not shutil.which("openssl"):
        pytest.skip("openssl CLI not available")
    d = tmp_path_factory.mktemp("pki")
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=test",
            "-keyout",
            str(d / "key.pem"),
            "-out",
            str(d / "cert.pem"),
        ],
        check=True,
        capture_output=True,
    )
    return (d / "cert.pem").read_text(), (d / "key.pem").read_text(), d


def test_ssl_context_from_pem_data(pem_pair, tmp_path, monkeypatch):
    cert, key, d = pem_pair
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    ctx = build_ssl_context(ca_data=cert, cert_data=cert, key_data=key)
    assert isinstance(ctx, ssl.SSLContext)
    assert os.listdir(tmp_path) == []  # the private temp files are gone
    assert (
        build_ssl_context(ca_file=str(d / "cert.pem"), cert_file=str(d / "cert.pem"), key_file=str(d / "key.pem"))
        is not None
    )
    assert build_ssl_context() is None
    with pytest.raises(ValueError) as ei:
        build_ssl_context(cert_data=cert, key_data="-----BEGIN PRIVATE KEY-----\nGARBAGE\n-----END PRIVATE KEY-----\n")
    assert "GARBAGE" not in str(ei.value)
    r = connect("http", {"url": "https://a"}, {"ca_data": cert, "cert_data": cert, "key_data": key}, timeout=1)
    assert "BEGIN" not in repr(r)


async def test_none_backend():
    r = NoneRegistry()
    await r.register("svc", A)
    await r.deregister("svc", "10.0.0.1", 80)
    assert (await r.list_instances("svc")).instances == []
    assert await r.list_config_ips("svc") == set()
    await r.delete_config("svc", "1.2.3.4")
    res = await deregister_confirmed(r, "svc", "10.0.0.1", 80)
    assert res.confirmed and res.attempts == 1
    with pytest.raises(ValueError):
        await r.delete_config("svc", "../x")
    await r.close()


async def test_the_default_batch_delete_goes_one_by_one_and_reports_each_failure():
    from tests.support.fakes import StubRegistry

    registry = StubRegistry(configs={"llm": {"10.0.0.1", "10.0.0.2", "10.0.0.3"}})
    registry.fail("delete_config")  # the first one fails
    failed = await registry.delete_configs("llm", ["10.0.0.1", "10.0.0.2"])
    assert list(failed) == ["10.0.0.1"] and "injected" in failed["10.0.0.1"]
    assert registry.configs["llm"] == {"10.0.0.1", "10.0.0.3"}


async def test_the_default_lookup_reads_the_listing():
    from tests.support.fakes import StubRegistry

    registry = StubRegistry(instances={"llm": {A.address: A}})
    assert await registry.lookup("llm", A.ip, A.port) == A
    assert await registry.lookup("llm", A.ip, 81) is None


@pytest.mark.parametrize(
    ("type_", "section"),
    [
        ("etcd", {"endpoints": ["http://127.0.0.1:2379"]}),
        ("zookeeper", {"servers": ["127.0.0.1:2181"]}),
        ("nacos", {"serverAddr": ["127.0.0.1:8848"]}),
    ],
)
@pytest.mark.parametrize("given", ["username", "password"])
def test_a_login_needs_both_username_and_password(type_, section, given):
    with pytest.raises(ValueError, match=f"^{type_} credentials need both username and password$"):
        connect(type_, section, {given: "s3cret-value"})
