"""Container images for the real node, built without Docker or a registry (see ``build``)."""

from .build import NAMES, REFS, ImageBuildError, ensure
from .oci import ImageArchive

__all__ = ["NAMES", "REFS", "ImageArchive", "ImageBuildError", "ensure"]
