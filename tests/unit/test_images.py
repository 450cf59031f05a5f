"""The images built without Docker (devtools/images) against the Dockerfiles they stand for: the
same USER, ENTRYPOINT, CMD, ENV, WORKDIR and ports, and the same build steps, read from the
Dockerfiles themselves; a step the local build does not know fails it. Also the OCI writer."""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

import pytest

from devtools.images import build, dockerfile, oci

ROOT = Path(__file__).resolve().parents[2]


def test_operator_image_config_is_the_dockerfiles():
    stage = dockerfile.parse(ROOT / "Dockerfile")
    config = stage.config(build.BASE_ENV)
    assert config["User"] == "65532:65532"
    assert config["Entrypoint"] == ["infer-operator"] and config["Cmd"] == ["run"]
    assert set(config["ExposedPorts"]) == {"8080/tcp", "9090/tcp"}
    env = dict(e.split("=", 1) for e in config["Env"])
    assert env["PYTHONUNBUFFERED"] == "1" and env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PATH"].startswith("/usr/local/sbin:/usr/local/bin") and env["LANG"] == "C.UTF-8"
    assert "WorkingDir" not in config
    build._operator_run_step(stage)  # the Dockerfile still runs install.sh with the lock


def test_sample_app_image_config_is_the_dockerfiles():
    stage = dockerfile.parse(build.SAMPLE_DIR / "Dockerfile")
    config = stage.config(build.BASE_ENV)
    assert (config["User"], config["Entrypoint"]) == ("10001", ["python", "/app/app.py"])
    assert dict(e.split("=", 1) for e in config["Env"])["PORT"] == "8000"
    assert stage.copies == [(["app.py"], "/app/app.py")]
    assert stage.runs == build.SAMPLE_RUNS


def test_a_new_build_step_in_a_dockerfile_fails_the_local_build(tmp_path):
    text = (
        (ROOT / "Dockerfile").read_text().replace("USER 65532:65532", "RUN apt-get install -y curl\nUSER 65532:65532")
    )
    (tmp_path / "Dockerfile").write_text(text)
    with pytest.raises(build.ImageBuildError, match="RUN steps changed"):
        build._operator_run_step(dockerfile.parse(tmp_path / "Dockerfile"))
    (tmp_path / "Dockerfile").write_text("FROM scratch\nHEALTHCHECK CMD true\n")
    with pytest.raises(ValueError, match="HEALTHCHECK"):
        dockerfile.parse(tmp_path / "Dockerfile")


def test_image_keys_change_with_their_inputs(monkeypatch, tmp_path):
    before = build.image_key("sample-app")
    app = tmp_path / "sample-app"
    app.mkdir()
    for name in ("app.py", "Dockerfile"):
        (app / name).write_bytes((build.SAMPLE_DIR / name).read_bytes())
    monkeypatch.setattr(build, "SAMPLE_DIR", app)
    assert build.image_key("sample-app") == before
    (app / "app.py").write_text("# changed\n")
    assert build.image_key("sample-app") != before


def test_oci_archive_holds_the_layers_and_config(tmp_path):
    root = tmp_path / "root"
    (root / "app").mkdir(parents=True)
    (root / "app" / "app.py").write_text("print('hi')\n")
    (root / "dev").mkdir()
    (root / "dev" / "null-ish").write_text("left out: dev/ is the runtime's")
    layer = tmp_path / "layer.tar"
    oci.tar_directory(root, layer)
    archive = oci.write_archive(
        tmp_path / "img.tar", "docker.io/local/t:1", [layer], {"User": "10001", "Env": [oci.DEFAULT_PATH]}
    )
    assert archive.digest.startswith("sha256:") and archive.size == layer.stat().st_size
    assert oci.read_config(archive.path)["config"]["User"] == "10001"
    assert oci.layer_names(archive.path) == [{"app", "app/app.py", "dev"}]
    with tarfile.open(archive.path) as tf:
        index = json.load(tf.extractfile("index.json"))
    assert index["manifests"][0]["annotations"]["io.containerd.image.name"] == "docker.io/local/t:1"


@pytest.mark.skipif(os.geteuid() != 0, reason="making an overlayfs deletion marker (mknod) needs root")
def test_overlay_deletions_become_whiteouts(tmp_path):
    upper = tmp_path / "upper"
    (upper / "etc").mkdir(parents=True)
    os.mknod(upper / "etc" / "gone", 0o600 | 0o020000, os.makedev(0, 0))
    layer = tmp_path / "layer.tar"
    oci.tar_directory(upper, layer, whiteouts=True)
    with tarfile.open(layer) as tf:
        assert sorted(tf.getnames()) == ["etc", "etc/.wh.gone"]
