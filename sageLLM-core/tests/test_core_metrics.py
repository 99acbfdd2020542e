"""Metrics: the three kinds, Prometheus text that a scraper can parse, and concurrent use."""

from __future__ import annotations

import math
import re
import threading

import pytest

from sagellm.core.metrics import DEFAULT_BUCKETS, Counter, Gauge, Histogram, MetricsRegistry, default_registry

# One sample line of the Prometheus text format 0.0.4: name, optional labels, a float value.
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[a-zA-Z_][a-zA-Z0-9_]*="[^"]*"\})? (\S+)$')
COMMENT = re.compile(r"^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$")


def parse_prometheus(text: str) -> tuple[dict[str, str], dict[str, float]]:
    """Tiny parser: (metric -> type, 'name{labels}' -> value); fails on any malformed line."""
    types: dict[str, str] = {}
    samples: dict[str, float] = {}
    assert text.endswith("\n")
    for line in text.splitlines():
        comment = COMMENT.match(line)
        if comment:
            if comment.group(1) == "TYPE":
                assert comment.group(3) in ("counter", "gauge", "histogram"), line
                types[comment.group(2)] = comment.group(3)
            continue
        sample = SAMPLE.match(line)
        assert sample, f"unparsable line: {line!r}"
        samples[sample.group(1) + (sample.group(2) or "")] = float(sample.group(3))
    return types, samples


def test_counter() -> None:
    reg = MetricsRegistry()
    requests = reg.counter("requests", "Requests served")
    requests.inc()
    requests.inc(2.5)
    assert requests.value == 3.5 and requests.name == "sagellm_requests"
    assert reg.counter("requests") is requests, "created on first use, then shared"
    with pytest.raises(ValueError, match="only goes up"):
        requests.inc(-1)


def test_gauge() -> None:
    reg = MetricsRegistry()
    free = reg.gauge("kv_free_blocks")
    free.set(10)
    free.set(3)
    assert free.value == 3
    free.set(-1.5)
    assert free.value == -1.5


def test_histogram_buckets_are_le() -> None:
    hist = Histogram("latency", buckets=(0.1, 1.0, 10.0))
    for value in (0.05, 0.1, 0.5, 1.0, 5.0, 100.0):
        hist.observe(value)
    # per-bucket counts, the last one being the overflow beyond 10.0; a value equal to a bound is "le" it
    assert hist.counts == [2, 2, 1, 1]
    assert hist.count == 6 and hist.total == pytest.approx(106.65)


def test_histogram_default_buckets() -> None:
    hist = MetricsRegistry().histogram("ttft_seconds")
    assert hist.buckets == DEFAULT_BUCKETS and len(hist.counts) == len(DEFAULT_BUCKETS) + 1


@pytest.mark.parametrize("buckets", [(), (1.0, 1.0), (2.0, 1.0)])
def test_histogram_rejects_bad_buckets(buckets: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="strictly increasing"):
        Histogram("h", buckets=buckets)


def test_type_clash_is_an_error() -> None:
    reg = MetricsRegistry()
    reg.counter("steps")
    with pytest.raises(TypeError, match="sagellm_steps already exists as Counter"):
        reg.gauge("steps")
    with pytest.raises(TypeError):
        reg.histogram("steps")


@pytest.mark.parametrize("name", ["bad-name", "has space", "9starts_with_digit", "", "é"])
def test_invalid_names_rejected(name: str) -> None:
    reg = MetricsRegistry(prefix="")
    with pytest.raises(ValueError, match="invalid metric name"):
        reg.counter(name)


def test_prefix() -> None:
    assert MetricsRegistry(prefix="").counter("x").name == "x"
    assert MetricsRegistry(prefix="engine").gauge("x").name == "engine_x"


def test_prometheus_rendering_parses() -> None:
    reg = MetricsRegistry()
    reg.counter("requests_total", "Finished requests").inc(3)
    reg.gauge("kv_utilization").set(0.25)
    hist = reg.histogram("ttft_seconds", "Time to first token", buckets=(0.1, 1.0))
    for value in (0.05, 0.5, 2.0, 3.0):
        hist.observe(value)
    text = reg.render_prometheus()
    types, samples = parse_prometheus(text)
    assert types == {
        "sagellm_requests_total": "counter",
        "sagellm_kv_utilization": "gauge",
        "sagellm_ttft_seconds": "histogram",
    }
    assert samples["sagellm_requests_total"] == 3.0
    assert samples["sagellm_kv_utilization"] == 0.25
    # buckets are cumulative and end with +Inf == count
    assert samples['sagellm_ttft_seconds_bucket{le="0.1"}'] == 1
    assert samples['sagellm_ttft_seconds_bucket{le="1.0"}'] == 2
    assert samples['sagellm_ttft_seconds_bucket{le="+Inf"}'] == 4
    assert samples["sagellm_ttft_seconds_count"] == 4
    assert samples["sagellm_ttft_seconds_sum"] == pytest.approx(5.55)
    assert "# HELP sagellm_ttft_seconds Time to first token" in text.splitlines()


def test_prometheus_help_is_escaped_and_defaults_to_name() -> None:
    reg = MetricsRegistry()
    reg.counter("a", "line one\nline two \\ backslash")
    reg.gauge("b")
    text = reg.render_prometheus()
    parse_prometheus(text)
    assert "# HELP sagellm_a line one\\nline two \\\\ backslash" in text
    assert "# HELP sagellm_b sagellm_b" in text


def test_empty_registry_renders_newline() -> None:
    assert MetricsRegistry().render_prometheus() == "\n"


def test_collect_returns_a_snapshot() -> None:
    reg = MetricsRegistry()
    reg.counter("a")
    snapshot = reg.collect()
    reg.counter("b")
    assert [m.name for m in snapshot] == ["sagellm_a"]
    assert all(isinstance(m, (Counter, Gauge, Histogram)) for m in reg.collect())


def test_default_registry_is_process_wide() -> None:
    assert default_registry() is default_registry()
    assert default_registry().prefix == "sagellm"


def test_thread_safety_smoke() -> None:
    """Many threads creating and recording the same metrics lose neither metrics nor updates."""
    reg = MetricsRegistry()
    num_threads, per_thread = 8, 2000
    start = threading.Barrier(num_threads)
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            start.wait()
            for i in range(per_thread):
                reg.counter("hits").inc()
                reg.histogram("lat", buckets=(0.5, 1.5)).observe(i % 2)
                reg.gauge(f"worker_{worker}").set(i)
                if i % 100 == 0:
                    parse_prometheus(reg.render_prometheus())
        except BaseException as exc:  # noqa: BLE001 -- a worker thread's failure must reach the test
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(num_threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert reg.counter("hits").value == num_threads * per_thread
    hist = reg.histogram("lat")
    assert hist.count == num_threads * per_thread == sum(hist.counts)
    assert math.isclose(hist.total, num_threads * per_thread / 2)
    assert len(reg.collect()) == 2 + num_threads
