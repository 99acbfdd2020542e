"""PNG charts of a run (``--plot``): latency CDFs, and throughput against offered rate for sweeps.

matplotlib is an optional extra (``pip install 'sagellm-engines[plot]'``);
``require_matplotlib`` is called before any benchmark runs, so a missing
install fails in a second, not after the whole suite.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sagellm.engines.bench.runner import RunResult
from sagellm.engines.bench.sweep import SweepResult

INSTALL_HINT = "--plot needs matplotlib: pip install 'sagellm-engines[plot]' (or pip install matplotlib)"


def require_matplotlib() -> None:
    """Raise ImportError with the install hint when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ImportError(INSTALL_HINT) from None


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    return plt


def plot_latency_cdf(results: Sequence[RunResult], path: Path) -> Path:
    """TTFT and end-to-end latency CDFs, one line per run."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for result in results:
        ok = [r for r in result.outcome.records if r.ok]
        for ax, values in zip(axes, ([r.ttft_s for r in ok], [r.e2e_s for r in ok])):
            xs = sorted(v * 1000 for v in values if v is not None)
            if xs:
                ys = [(i + 1) / len(xs) for i in range(len(xs))]
                ax.step(xs, ys, where="post", label=result.spec.name)
    for ax, title in zip(axes, ("time to first token", "end-to-end latency")):
        ax.set(title=title, xlabel="ms", ylabel="fraction of requests", ylim=(0, 1.02))
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize="small", loc="lower right")
    return _save(fig, plt, path)


def plot_sweep(sweep: SweepResult, path: Path) -> Path:
    """Output throughput and goodput against the offered request rate; p90 TTFT on the second axis."""
    plt = _pyplot()
    points = sorted(sweep.points, key=lambda p: p.rate)
    rates = [p.rate for p in points]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(rates, [p.result.metrics.get("request_throughput_rps") or 0 for p in points], "o-", label="completed req/s")
    ax.plot(rates, [p.result.metrics.get("goodput_rps") or 0 for p in points], "s--", label="goodput req/s")
    ax.set(xlabel="offered request rate (req/s)", ylabel="req/s", title="throughput vs offered rate")
    ax.grid(alpha=0.3)
    twin = ax.twinx()
    twin.plot(rates, [p.result.metrics.get("p90_ttft_ms") or 0 for p in points], "^:", color="grey", label="p90 TTFT")
    twin.set_ylabel("p90 TTFT (ms)")
    best = sweep.max_rate_meeting_slo
    if best is not None:
        ax.axvline(best, color="green", alpha=0.4, label=f"max rate meeting SLO ({best:g})")
    handles, labels = ax.get_legend_handles_labels()
    twin_handles, twin_labels = twin.get_legend_handles_labels()
    ax.legend(handles + twin_handles, labels + twin_labels, fontsize="small", loc="upper left")
    return _save(fig, plt, path)


def _save(fig: Any, plt: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
