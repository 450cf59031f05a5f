"""Benchmarks of infer-operator (not tests: nothing asserts a time). See bench/README.md."""
