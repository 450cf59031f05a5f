"""Write an OCI image archive (an image layout, tarred) from layer tars: no Docker, no registry.

Layers are stored uncompressed (``application/vnd.oci.image.layer.v1.tar``): the archive only
travels from the cache to the node's containerd on the same disk, where gzip would cost seconds
per build and save nothing. containerd's ``ctr images import`` reads the archive as it is; the
image is named by the ``io.containerd.image.name`` annotation, fully qualified
(``docker.io/local/NAME:TAG``: the CRI resolves short names to ``docker.io/library/...``).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

MT_LAYER = "application/vnd.oci.image.layer.v1.tar"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CHUNK = 1 << 20
# Directories whose contents the runtime provides: kept in a layer, empty.
RUNTIME_DIRS = {"dev", "proc", "sys"}


@dataclass(frozen=True)
class ImageArchive:
    """One built image: its reference, archive path, manifest digest and total layer bytes."""

    ref: str
    path: Path
    digest: str
    size: int


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def tar_directory(src: Path, out: Path, *, whiteouts: bool = False, exclude: Iterable[str] = ()) -> None:
    """Write ``src``'s contents to the tar file ``out`` as a layer: sorted, numeric owners, names
    relative to ``src``, the contents of dev/, proc/ and sys/ left out.

    ``whiteouts``: ``src`` is an overlayfs upper directory; its deletion markers (character devices
    0:0) become OCI whiteout files ``.wh.NAME`` and opaque directories get ``.wh..wh..opq``.
    ``exclude``: relative paths left out with everything below them."""
    skip = {p.strip("/") for p in exclude}
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tf:

        def add(path: Path, arc: str) -> None:
            if arc in skip:
                return
            st = os.lstat(path)
            if whiteouts and stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                parent, _, name = arc.rpartition("/")
                info = tarfile.TarInfo(f"{parent}/.wh.{name}" if parent else f".wh.{name}")
                info.mtime = int(st.st_mtime)
                tf.addfile(info, io.BytesIO(b""))
                return
            info = tf.gettarinfo(str(path), arcname=arc)
            if info is None:  # a socket: nothing to keep
                return
            info.uname = info.gname = ""
            if info.isreg():
                with open(path, "rb") as fh:
                    tf.addfile(info, fh)
            else:
                tf.addfile(info)
            if info.isdir():
                if whiteouts and _opaque(path):
                    opq = tarfile.TarInfo(f"{arc}/.wh..wh..opq")
                    tf.addfile(opq, io.BytesIO(b""))
                if arc not in RUNTIME_DIRS:
                    for child in sorted(os.listdir(path)):
                        add(path / child, f"{arc}/{child}")

        for child in sorted(os.listdir(src)):
            add(src / child, child)


def _opaque(path: Path) -> bool:
    try:
        return os.getxattr(path, "trusted.overlay.opaque") == b"y"
    except OSError:
        return False


def _put(blobs: Path, data: bytes) -> tuple[str, int]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    (blobs / digest.split(":", 1)[1]).write_bytes(data)
    return digest, len(data)


def write_archive(
    out: Path,
    ref: str,
    layers: list[Path],
    config: dict,
    *,
    created: str = "1970-01-01T00:00:00Z",
    history: list[str] | None = None,
) -> ImageArchive:
    """Write the OCI archive ``out`` for image ``ref`` from layer tars (bottom first) and an image
    config (``{"User": ..., "Entrypoint": [...], "Env": [...], ...}``). The layer files are read,
    not moved. Returns the archive's description; OSError when a layer cannot be read."""
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
    diff_ids, descriptors = [], []
    for layer in layers:
        digest = sha256_file(layer)
        diff_ids.append(digest)
        descriptors.append({"mediaType": MT_LAYER, "digest": digest, "size": layer.stat().st_size})
    image_config = {
        "created": created,
        "architecture": arch,
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": created, "created_by": h} for h in (history or [])],
    }
    tmp = out.with_name(out.name + ".tmp")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(out.name + ".blobs")
    staging.mkdir(exist_ok=True)
    try:
        config_digest, config_size = _put(staging, json.dumps(image_config, sort_keys=True).encode())
        manifest = {
            "schemaVersion": 2,
            "mediaType": MT_MANIFEST,
            "config": {"mediaType": MT_CONFIG, "digest": config_digest, "size": config_size},
            "layers": descriptors,
        }
        manifest_digest, manifest_size = _put(staging, json.dumps(manifest, sort_keys=True).encode())
        tag = ref.rsplit(":", 1)[1] if ":" in ref.rsplit("/", 1)[-1] else "latest"
        index = {
            "schemaVersion": 2,
            "mediaType": MT_INDEX,
            "manifests": [
                {
                    "mediaType": MT_MANIFEST,
                    "digest": manifest_digest,
                    "size": manifest_size,
                    "platform": {"architecture": arch, "os": "linux"},
                    "annotations": {"io.containerd.image.name": ref, "org.opencontainers.image.ref.name": tag},
                }
            ],
        }
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tf:

            def add_bytes(name: str, data: bytes) -> None:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mode = 0o644
                tf.addfile(info, io.BytesIO(data))

            add_bytes("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
            add_bytes("index.json", json.dumps(index).encode())
            seen = set()
            for layer, desc in zip(layers, descriptors, strict=True):
                if desc["digest"] in seen:
                    continue
                seen.add(desc["digest"])
                tf.add(str(layer), arcname=f"blobs/sha256/{desc['digest'].split(':', 1)[1]}")
            for blob in sorted(staging.iterdir()):
                tf.add(str(blob), arcname=f"blobs/sha256/{blob.name}")
        os.replace(tmp, out)
    finally:
        for blob in staging.iterdir():
            blob.unlink()
        staging.rmdir()
        tmp.unlink(missing_ok=True)
    return ImageArchive(ref, out, manifest_digest, sum(d["size"] for d in descriptors))


def read_config(archive: Path) -> dict:
    """The image config (``{"config": {...}, "rootfs": ...}``) stored in an archive written here."""
    with tarfile.open(archive) as tf:
        index = json.load(tf.extractfile("index.json"))
        manifest = json.load(tf.extractfile(f"blobs/sha256/{index['manifests'][0]['digest'].split(':', 1)[1]}"))
        return json.load(tf.extractfile(f"blobs/sha256/{manifest['config']['digest'].split(':', 1)[1]}"))


def layer_names(archive: Path) -> list[set[str]]:
    """The file names in each layer of an archive written here (bottom first), without ``./``."""
    with tarfile.open(archive) as tf:
        index = json.load(tf.extractfile("index.json"))
        manifest = json.load(tf.extractfile(f"blobs/sha256/{index['manifests'][0]['digest'].split(':', 1)[1]}"))
        out = []
        for desc in manifest["layers"]:
            with tarfile.open(fileobj=tf.extractfile(f"blobs/sha256/{desc['digest'].split(':', 1)[1]}")) as layer:
                out.append({m.name.removeprefix("./").rstrip("/") for m in layer.getmembers()})
        return out
