"""Benchmarks of the detector: engine, state and stream, each against its floor or peer in the
same run. Run `python -m bench` (full, writes docs/BENCHMARKS.md) or `python -m bench --quick`."""
