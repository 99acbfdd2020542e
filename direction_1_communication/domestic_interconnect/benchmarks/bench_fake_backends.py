"""CPU benchmark of the vendor backends over their fake (gloo) plugins, against plain gloo.

    python benchmarks/bench_fake_backends.py [--quick] [--out DIR]

Each vendor backend (hccl, cncl, rccl, xccl) runs all_reduce on 2 spawned
ranks over gloo, as CI runs them; plain ``torch.distributed`` gloo with no
sageLLM layer runs the same sizes in the same run. The ratio ours / gloo is
the cost of sageLLM's layer (probe once, argument checks per call), not a
vendor figure: no vendor hardware was available. Because two-rank timings on
a shared machine are noisy, the layer's own cost is also measured alone: one
rank, in this process, the median of ``backend.all_reduce`` against
``torch.distributed.all_reduce`` on the same group, calls interleaved. Writes
``bench_fake_backends.json`` and ``.md`` into ``--out`` (default
``benchmarks/results/``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

from sagellm.core.testing.comm_backend import free_init_method
from sagellm.domestic_interconnect.measure import MeasureRequest, measure_times_us

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results"
FAKE_PLUGINS = HERE.parent / "tests" / "fake_plugins"
NRANKS = 2
# vendor key -> (module imported first in each rank, torch backend override)
FAKES = {
    "hccl": (None, None),
    "cncl": (None, None),
    "rccl": ("sagellm_fake_rocm", "fake_rccl"),
    "xccl": (None, "fake_xccl"),
}


def request(key: str, sizes: tuple[int, ...], iters: int) -> MeasureRequest:
    if key == "gloo":
        return MeasureRequest(key="gloo", sizes=sizes, iters=iters, warmup=3)
    preload, backend = FAKES[key]
    options = {"device": "cpu", **({"backend": backend} if backend else {})}
    return MeasureRequest(
        key=key, sizes=sizes, iters=iters, warmup=3, options=options, plugin_path=str(FAKE_PLUGINS), preload=preload
    )


def layer_overhead_us(calls: int) -> dict[str, float]:
    """Median us per 1-element all_reduce on a 1-rank fake hccl group: through sageLLM, and torch direct."""
    sys.path.insert(0, str(FAKE_PLUGINS))
    from sagellm.domestic_interconnect import HcclBackend

    backend = HcclBackend(0, 1, free_init_method(), 30.0, device="cpu")
    try:
        tensor = torch.ones(1)
        ours, direct = [], []
        for i in range(calls):  # alternate which goes first, so caches and clocks favour neither
            first, second = (backend.all_reduce, dist.all_reduce) if i % 2 else (dist.all_reduce, backend.all_reduce)
            start = time.perf_counter()
            first(tensor)
            middle = time.perf_counter()
            second(tensor)
            end = time.perf_counter()
            (ours if i % 2 else direct).append(middle - start)
            (direct if i % 2 else ours).append(end - middle)
    finally:
        backend.close()
    ours_us, direct_us = statistics.median(ours) * 1e6, statistics.median(direct) * 1e6
    return {"ours_us": ours_us, "torch_direct_us": direct_us, "overhead_us": ours_us - direct_us}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smoke-test size (a few seconds per backend)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    args = parser.parse_args(argv)
    sizes = (4096, 1 << 20) if args.quick else (4096, 65536, 1 << 20, 1 << 24)
    iters = 10 if args.quick else 50
    overhead = layer_overhead_us(2000 if args.quick else 20000)
    times = {key: measure_times_us(request(key, sizes, iters), NRANKS, free_init_method()) for key in ("gloo", *FAKES)}
    result = {
        "benchmark": "fake_backends",
        "quick": args.quick,
        "nranks": NRANKS,
        "iters": iters,
        "op": "all_reduce",
        "times_us": {k: {str(s): t for s, t in v.items()} for k, v in times.items()},
    }
    lines = [
        "| backend (over gloo) | " + " | ".join(f"{s} B (us)" for s in sizes) + " | ours/gloo at largest |",
        "|---|" + "---:|" * (len(sizes) + 1),
    ]
    for key, per_size in times.items():
        cells = " | ".join(f"{per_size[s]:.1f}" for s in sizes)
        ratio = per_size[sizes[-1]] / times["gloo"][sizes[-1]]
        lines.append(f"| {key} | {cells} | {ratio:.2f}x |")
    lines += [
        "",
        f"sageLLM layer alone (1 rank, 1-element all_reduce, median): {overhead['ours_us']:.2f} us through the "
        f"backend vs {overhead['torch_direct_us']:.2f} us direct: {overhead['overhead_us']:.2f} us per call.",
    ]
    table = "\n".join(lines) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_fake_backends.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "bench_fake_backends.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
