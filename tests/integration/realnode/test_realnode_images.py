"""The images as built here and loaded into the real node: the files the Dockerfiles put in them,
and their config as containerd holds it."""

from __future__ import annotations

import json
import subprocess

import pytest

from devtools.images import build, oci

pytestmark = [pytest.mark.integration, pytest.mark.realnode]


def _passwd(archive, layer: int) -> str:
    import tarfile

    with tarfile.open(archive.path) as tf:
        index = json.load(tf.extractfile("index.json"))
        manifest = json.load(tf.extractfile(f"blobs/sha256/{index['manifests'][0]['digest'].split(':')[1]}"))
        digest = manifest["layers"][layer]["digest"].split(":")[1]
        with tarfile.open(fileobj=tf.extractfile(f"blobs/sha256/{digest}")) as inner:
            return inner.extractfile("etc/passwd").read().decode()


def test_operator_image_files_and_config(real_node):
    archive = build.ensure(["operator"])["operator"]
    base, layer = oci.layer_names(archive.path)
    assert {"usr/bin/python3", "usr/bin/pip3"} <= base
    # install.sh's work: the console script, the package, the nonroot user; its inputs removed.
    assert "usr/local/bin/infer-operator" in layer
    assert any(name.startswith("usr/local/lib/python3.11/dist-packages/infer_operator/") for name in layer)
    assert not any(name.startswith(("tmp/install", "root/.cache")) for name in layer)
    assert "nonroot:x:65532:65532:" in _passwd(archive, 1)
    config = oci.read_config(archive.path)["config"]
    assert (config["User"], config["Entrypoint"], config["Cmd"]) == ("65532:65532", ["infer-operator"], ["run"])


def test_sample_app_image_files_and_config_in_containerd(real_node):
    archive = build.cached("sample-app")
    assert archive is not None and real_node.images["sample-app"] == archive.ref
    base, layer = oci.layer_names(archive.path)
    assert "usr/bin/python" in base  # python-is-python3: the Dockerfile's ENTRYPOINT says `python`
    assert any("/redis/" in name for name in base if name.startswith("usr/lib/python3/dist-packages/"))
    assert {"app/app.py", "etc/passwd"} <= layer
    assert "app:x:10001:10001:" in _passwd(archive, 1)
    listed = subprocess.run(
        ["ctr", "--address", str(real_node.containerd_socket), "-n", "k8s.io", "images", "ls"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert any(line.split()[:1] == [archive.ref] and archive.digest in line for line in listed.splitlines()), listed
