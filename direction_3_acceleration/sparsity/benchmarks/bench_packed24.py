"""Benchmark the packed 2:4 kernels against dense int8 and bf16 matmuls at decode sizes.

    python benchmarks/bench_packed24.py [--quick] [--hot] [--threads N] [--rounds R] [--stat median|min] [--out DIR]

For 1, 2, 4 and 8 rows of bf16 activations and square K = N = 2048, 4096
weights plus SmolLM2-135M's linears (576->1536, 1536->576, 576->576), one
2:4 sparse weight is timed as

* ``packed24_int8``: :func:`packed24_linear` on the packed int8 weight (W8A8);
* ``dense_int8``: this package's dense int8 kernel of the same structure
  (same quantization, loop and rescale; the fair baseline);
* ``w8a8``: sagellm-quantization's W8A8 linear (oneDNN ``_int_mm`` plus its
  fused C++ passes), through core's registry where that package is installed;
* ``int8pack_mm``: ``aten._weight_int8pack_mm`` (bf16 activations, int8 weights);
* ``bf16``: ``F.linear`` on the dense bf16 weight;
* ``packed24_bf16``: :func:`packed24_linear` on the packed bf16 weight.

Decode streams every weight from memory once per token (a model is larger
than the caches), so by default each side cycles through copies of its
weight totalling ``--working-set-mb`` (more than the last-level cache);
``--hot`` times one copy, cache-resident after the first call. Sides run
interleaved and each reports the median of its rounds, so load from other
processes lands on all sides alike; the load average is recorded.
Writes ``bench_packed24.json`` and ``bench_packed24.md`` to ``--out``
(default benchmarks/results/).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import itertools
import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from sagellm.core import registry
from sagellm.core.errors import RegistryError
from sagellm.sparsity.packed24 import pack_24, packed24_linear, unpack_codes
from sagellm.sparsity.sparse_kernels import dense_int8_linear, kernel_path


def w8a8_peer() -> Any | None:
    """sagellm-quantization's W8A8 quantizer, found through core's registry (never imported: a sibling)."""
    try:
        return registry.load("quantizer", "w8a8")()
    except RegistryError:  # not installed: that side is left out
        return None


HERE = Path(__file__).resolve().parent
SQUARE = (2048, 4096)
SMOLLM2 = {"smollm2 gate/up": (576, 1536), "smollm2 down": (1536, 576), "smollm2 o_proj": (576, 576)}
ROWS = (1, 2, 4, 8)
SIDES = ("packed24_int8", "dense_int8", "w8a8", "int8pack_mm", "bf16", "packed24_bf16")
_W8A8 = w8a8_peer()


def sparse_24(n: int, k: int, generator: torch.Generator) -> torch.Tensor:
    """A random [n, k] weight keeping the 2 largest of every 4 inputs."""
    weight = torch.randn(n, k, generator=generator) * 0.05
    groups = weight.view(n, -1, 4)
    keep = torch.zeros_like(groups).scatter_(-1, groups.abs().topk(2, dim=-1).indices, 1.0)
    return (groups * keep).view(n, k)


def copies(weight: Any, working_set: int) -> Iterator[Any]:
    """An endless cycle over enough copies of ``weight`` (a tensor, or a dataclass or tuple of them) that
    together they exceed ``working_set`` bytes; one copy when ``working_set`` is 0."""
    count = 1 if working_set <= 0 else max(1, -(-working_set // max(1, _nbytes(weight))))
    return itertools.cycle([weight] + [_clone(weight) for _ in range(count - 1)])


def _parts(weight: Any) -> list[Any]:
    if isinstance(weight, tuple):
        return list(weight)
    if dataclasses.is_dataclass(weight):
        return [getattr(weight, field.name) for field in dataclasses.fields(weight)]
    return [weight]


def _nbytes(weight: Any) -> int:
    return sum(part.nbytes for part in _parts(weight) if isinstance(part, torch.Tensor))


def _clone(weight: Any) -> Any:
    if isinstance(weight, torch.Tensor):
        return weight.clone()  # keeps strides (a transposed int8 weight stays transposed)
    if isinstance(weight, tuple):
        return tuple(_clone(part) for part in weight)
    if dataclasses.is_dataclass(weight) and not isinstance(weight, type):
        changes = {field.name: _clone(getattr(weight, field.name)) for field in dataclasses.fields(weight)}
        return dataclasses.replace(weight, **changes)
    return weight


def weights(weight: torch.Tensor, working_set: int) -> dict[str, Iterator[Any]]:
    """Each side's form of one sparse weight, as rotating copies (made once per shape)."""
    packed8 = pack_24(weight, "int8")
    codes = unpack_codes(packed8).contiguous()
    forms: dict[str, Any] = {
        "packed24_int8": packed8,
        "dense_int8": (codes, packed8.scales, packed8.row_sums),
        "int8pack_mm": (codes, packed8.scales.bfloat16()),  # type: ignore[union-attr]
        "bf16": weight.bfloat16(),
        "packed24_bf16": pack_24(weight, "bf16"),
    }
    if not hasattr(torch.ops.aten, "_weight_int8pack_mm"):  # pragma: no cover - older torch
        del forms["int8pack_mm"]
    if _W8A8 is not None:
        forms["w8a8"] = _W8A8.quantize(weight)
    return {side: copies(form, working_set) for side, form in forms.items()}


def calls(x: torch.Tensor, forms: dict[str, Iterator[Any]]) -> dict[str, Callable[[], Any]]:
    """One zero-argument call per side, each taking the next copy of its weight."""
    run: dict[str, Callable[[Any], Any]] = {
        "packed24_int8": lambda w: packed24_linear(x, w),
        "dense_int8": lambda w: dense_int8_linear(x, *w),
        "w8a8": lambda w: _W8A8.linear(x, w),
        "int8pack_mm": lambda w: torch.ops.aten._weight_int8pack_mm(x, *w),
        "bf16": lambda w: F.linear(x, w),
        "packed24_bf16": lambda w: packed24_linear(x, w),
    }
    return {
        side: functools.partial(lambda f, it: f(next(it)), run[side], forms[side]) for side in SIDES if side in forms
    }


def timed(fn: Callable[[], Any], repeats: int) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def case(
    x: torch.Tensor, weight: torch.Tensor, forms: dict[str, Iterator[Any]], rounds: int, repeats: int
) -> dict[str, Any]:
    sides = calls(x, forms)
    for fn in sides.values():
        fn()  # warm-up (and the kernel build, once)
    samples: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(rounds):
        for name, fn in sides.items():
            samples[name].append(timed(fn, repeats))
    result: dict[str, Any] = {f"{name}_us": statistics.median(s) * 1e6 for name, s in samples.items()}
    result.update({f"{name}_min_us": min(s) * 1e6 for name, s in samples.items()})  # robust to bursts of load
    exact = x.float() @ weight.T
    for kind in ("int8", "bf16"):
        out = packed24_linear(x, next(forms[f"packed24_{kind}"])).float()
        result[f"packed24_{kind}_rel_error"] = float((out - exact).norm() / exact.norm())
    return result


def load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:  # pragma: no cover - not on Linux
        return None


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):  # pragma: no cover - no lscpu
        return platform.processor() or platform.machine()
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    model = fields.get("Model name", "?").strip()
    return f"{model} (family {fields.get('CPU family', '?').strip()}, model {fields.get('Model', '?').strip()})"


def run(quick: bool, threads: int, working_set_mb: int, hot: bool, rounds: int, repeats: int) -> dict[str, Any]:
    torch.set_num_threads(threads)
    working_set = 0 if hot else working_set_mb << 20
    shapes = [(f"square {k}", k, k) for k in SQUARE] + [(name, k, n) for name, (k, n) in SMOLLM2.items()]
    row_counts = ROWS
    if quick:
        shapes, row_counts, rounds, repeats, working_set = shapes[2:3], (1, 8), 2, 2, 0
    load_before = load_average()
    results = []
    for name, k, n in shapes:
        generator = torch.Generator().manual_seed(k * 31 + n)
        weight = sparse_24(n, k, generator)
        forms = weights(weight, working_set)
        for rows in row_counts:
            x = torch.randn(rows, k, generator=generator).bfloat16()
            results.append({"layer": name, "rows": rows, "k": k, "n": n, **case(x, weight, forms, rounds, repeats)})
        del forms
    return {
        "benchmark": "packed24",
        "environment": {
            "cpu": cpu_model(),
            "torch": torch.__version__,
            "threads": threads,
            "int8_path": kernel_path("int8"),
            "bf16_path": kernel_path("bf16"),
            "weights": "hot (one copy, cache-resident)"
            if working_set == 0
            else f"cold ({working_set >> 20} MB rotation)",
            "load_average_before": load_before,
            "load_average_after": load_average(),
            "w8a8_installed": _W8A8 is not None,
            "rounds": rounds,
            "repeats": repeats,
        },
        "results": results,
    }


def ratio(results: dict[str, Any], slow: str, fast: str, stat: str) -> str:
    if f"{slow}{stat}" not in results or f"{fast}{stat}" not in results:
        return "-"
    return f"{results[f'{slow}{stat}'] / results[f'{fast}{stat}']:.2f}"


def markdown(report: dict[str, Any], stat: str) -> str:
    """The table of one statistic: ``_us`` (median of the rounds) or ``_min_us`` (best round)."""
    env = report["environment"]
    lines = [
        f"CPU: {env['cpu']}; torch {env['torch']}, {env['threads']} threads; paths int8={env['int8_path']} "
        f"bf16={env['bf16_path']}; weights {env['weights']}; load average {env['load_average_before']} -> "
        f"{env['load_average_after']}; µs per call, {'median' if stat == '_us' else 'best'} of "
        f"{env['rounds']} interleaved rounds of {env['repeats']} calls",
        "",
        "| layer [K->N] | rows | packed int8 µs | dense int8 µs | w8a8 µs | int8pack_mm µs | bf16 µs | "
        "packed bf16 µs | int8: x dense | x w8a8 | x int8pack | bf16: x dense |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        cells = [f"{r[f'{side}{stat}']:.0f}" if f"{side}{stat}" in r else "-" for side in SIDES]
        lines.append(
            f"| {r['layer']} [{r['k']}->{r['n']}] | {r['rows']} | {' | '.join(cells)} | "
            f"{ratio(r, 'dense_int8', 'packed24_int8', stat)} | {ratio(r, 'w8a8', 'packed24_int8', stat)} | "
            f"{ratio(r, 'int8pack_mm', 'packed24_int8', stat)} | {ratio(r, 'bf16', 'packed24_bf16', stat)} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke-test size (a few seconds)")
    parser.add_argument("--hot", action="store_true", help="one cache-resident weight copy per side")
    parser.add_argument("--working-set-mb", type=int, default=96, help="bytes of weight copies per side (cold)")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="output directory")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds per case (default 7)")
    parser.add_argument("--repeats", type=int, default=10, help="calls per side and round (default 10)")
    parser.add_argument(
        "--stat", choices=("median", "min"), default="median", help="table statistic over rounds (JSON has both)"
    )
    args = parser.parse_args()
    report = run(args.quick, args.threads, args.working_set_mb, args.hot, args.rounds, args.repeats)
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = ("_hot" if args.hot and not args.quick else "") + (f"_t{args.threads}" if args.threads != 2 else "")
    (args.out / f"bench_packed24{suffix}.json").write_text(json.dumps(report, indent=2))
    table = markdown(report, "_us" if args.stat == "median" else "_min_us")
    (args.out / f"bench_packed24{suffix}.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
