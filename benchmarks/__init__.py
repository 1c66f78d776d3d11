"""The benchmark scripts (run from the repository root: ``python benchmarks/<script>.py``, see
benchmarks/README.md), importable as ``benchmarks.<script>`` (the tests do); what they share is
benchmarks/common.py."""
