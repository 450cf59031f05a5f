"""infer-operator: GPU inference services as one StatefulSet with an exact sync/async split."""

__version__ = "0.1.0"
