"""Development tooling, not shipped with the operator: the local control plane, the demo and the harness tests and benchmarks share."""
