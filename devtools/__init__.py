"""Development tooling, not shipped: the local control plane, the demo, and the harness tests and benchmarks share."""
