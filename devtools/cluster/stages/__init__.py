"""KWOK Stage documents the local control plane loads (read with importlib.resources)."""
