"""Benchmark targets: the in-process engine and OpenAI-compatible HTTP servers."""
