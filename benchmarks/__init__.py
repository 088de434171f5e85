"""The memoric performance suite: `python -m benchmarks.bench --help`."""
