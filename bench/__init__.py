"""Load benchmarks of the fabric: `python -m bench rpc|tokens`; figures in RESULTS.md."""
