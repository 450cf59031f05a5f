"""Pieces every builder shares: who owns the objects, their metadata and names."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from infer_operator import labels


class BuildError(ValueError):
    """The spec is valid for the API server but cannot be turned into working objects.

    The message names the field, e.g. ``spec.template.spec.containers[0].command``.
    """


@dataclass(frozen=True)
class Owner:
    """The InferenceService the built objects belong to (and are garbage-collected with)."""

    name: str
    namespace: str
    uid: str

    @classmethod
    def from_body(cls, body: Any) -> Owner:
        meta = body["metadata"]
        return cls(name=meta["name"], namespace=meta["namespace"], uid=meta["uid"])

    def reference(self) -> dict[str, Any]:
        return {
            "apiVersion": labels.API_VERSION,
            "kind": labels.KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }

    def metadata(self, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "namespace": self.namespace,
            "labels": labels.common_labels(self.name),
            "ownerReferences": [self.reference()],
        }


def headless_service_name(service: str) -> str:
    return f"{service}-headless"


def scripts_configmap_name(service: str) -> str:
    return f"{service}-scripts"
