"""Text and traces shipped in the wheel, below every layer that reads them.

The benchmarks replay them (MT-Bench, GSM8K, Mooncake, Azure) and the engine
calibrates quantizers on them, so they live here rather than in ``bench``:
the engine layer must not import the benchmark layer above it.
"""
