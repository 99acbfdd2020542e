"""Parsers for the vendors' own bandwidth tests, normalised to nccl-tests' conventions.

Formats (``VendorSpec.bench_format``):

- ``hccl_test``: Ascend CANN ``tools/hccl_test`` prints
  ``data_size(Bytes): | aveg_time(us): | alg_bandwidth(GB/s): | check_result:``
  (``avg_time`` in its documentation) and one ``|``-separated row per size.
  ``data_size`` is per NPU; for all_gather/reduce_scatter its algbw uses
  ``data_size * rank_size``, so that product is the nccl-tests size.
- ``nccl_tests``: rccl-tests / nccl-tests tables (Hygon DCU runs rccl-tests).
- ``cncl_benchmark``, ``xccl_perf``: Cambricon's and Kunlunxin's tools; no
  public text sample exists, so their parser reads whatever columns the
  header names (size, a time or latency column, algbw, busbw) instead of
  fixed positions, and fails loudly when the header is not understood.

Every row becomes a :class:`BandwidthRecord`; ``busbw_gbs`` is computed from
size and time with nccl-tests' formula, and the tool's printed algbw is kept
beside it: ``printed_unit_ratio`` ≈ 0.931 reveals a tool printing GiB/s.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from sagellm.core.errors import ConfigError
from sagellm.domestic_interconnect.busbw import BUS_FACTORS, alg_bandwidth_gbs, bus_bandwidth_gbs

FORMATS = ("hccl_test", "nccl_tests", "cncl_benchmark", "xccl_perf")
_MPI_PREFIX = re.compile(r"^\[\d+,\d+\]<std\w+>:")
_HCCL_ROW = re.compile(r"^\s*(\d+)\s*\|\s*([0-9.eE+-]+)\s*\|\s*([0-9.eE+-]+)\s*\|\s*(\w+)")
_NCCL_RANK_LINE = re.compile(r"^#\s+Rank\s+\d+\s")
_TOTAL_SIZE_OPS = ("all_gather", "reduce_scatter")  # hccl_test's data_size is per rank for these


@dataclass(frozen=True, slots=True)
class BandwidthRecord:
    """One message size of one tool run, in nccl-tests' terms."""

    tool: str
    op: str
    nranks: int
    size_bytes: int  # nccl-tests' size: the larger of the input and output buffers
    time_us: float
    algbw_printed: float | None  # what the tool printed, in its own unit
    check: str = "n/a"  # hccl_test's check_result (success, failed, NULL)

    @property
    def algbw_gbs(self) -> float:
        return alg_bandwidth_gbs(self.size_bytes, self.time_us)

    @property
    def busbw_gbs(self) -> float:
        return bus_bandwidth_gbs(self.op, self.algbw_gbs, self.nranks)

    @property
    def busbw_from_printed_gbs(self) -> float | None:
        """busbw from the tool's own algbw column (what FlagPerf-style scripts report)."""
        if self.algbw_printed is None:
            return None
        return bus_bandwidth_gbs(self.op, self.algbw_printed, self.nranks)

    @property
    def printed_unit_ratio(self) -> float | None:
        """Printed algbw over size/time: 1.0 for GB/s, 0.931 when the tool printed GiB/s."""
        if self.algbw_printed is None or self.algbw_gbs == 0:
            return None
        return self.algbw_printed / self.algbw_gbs

    @property
    def ok(self) -> bool:
        return self.check != "failed"


def parse_tool_output(fmt: str, text: str, op: str = "all_reduce", nranks: int | None = None) -> list[BandwidthRecord]:
    """Every size row of one tool's output; ConfigError when nothing can be read."""
    if op not in BUS_FACTORS:
        raise ConfigError(f"unknown collective '{op}' (known: {', '.join(BUS_FACTORS)})")
    lines = [_MPI_PREFIX.sub("", line) for line in text.splitlines()]
    if fmt == "hccl_test":
        records = _parse_hccl_test(lines, op, _need_ranks(fmt, nranks))
    elif fmt in FORMATS:
        records = _parse_table(fmt, lines, op, nranks)
    else:
        raise ConfigError(f"unknown tool output format '{fmt}' (known: {', '.join(FORMATS)})")
    if not records:
        raise ConfigError(f"no {fmt} result rows found (is this the tool's stdout?)")
    return records


def _need_ranks(fmt: str, nranks: int | None) -> int:
    if nranks is None or nranks < 1:
        raise ConfigError(f"{fmt} output does not say how many ranks ran: pass nranks (--nranks)")
    return nranks


def _parse_hccl_test(lines: list[str], op: str, nranks: int) -> list[BandwidthRecord]:
    scale = nranks if op in _TOTAL_SIZE_OPS else 1
    records = []
    for line in lines:
        match = _HCCL_ROW.match(line)
        if match:
            size, time_us, algbw, check = match.groups()
            records.append(
                BandwidthRecord("hccl_test", op, nranks, int(size) * scale, float(time_us), float(algbw), check)
            )
    return records


@dataclass(frozen=True, slots=True)
class _Columns:
    size: int
    time: int
    algbw: int | None
    time_scale_us: float  # 1.0 for us, 1000.0 for ms
    width: int


def _parse_table(fmt: str, lines: list[str], op: str, nranks: int | None) -> list[BandwidthRecord]:
    columns = None
    records = []
    for line in lines:
        tokens = [tok for tok in line.split() if tok != "#"]
        if not tokens:
            continue
        if columns is None or line.lstrip().startswith("#"):
            columns = _header(tokens) or columns
            continue
        if columns is None or len(tokens) < columns.width or not tokens[columns.size].isdigit():
            continue
        algbw = float(tokens[columns.algbw]) if columns.algbw is not None else None
        records.append(
            BandwidthRecord(
                fmt,
                op,
                0,  # filled in below, once the rank count is known
                int(tokens[columns.size]),
                float(tokens[columns.time]) * columns.time_scale_us,
                algbw,
            )
        )
    if columns is None:
        raise ConfigError(f"{fmt}: no header naming size, time (or latency) and algbw columns")
    ranks = sum(1 for line in lines if _NCCL_RANK_LINE.match(line)) or _need_ranks(fmt, nranks)
    if nranks is not None and nranks != ranks:
        raise ConfigError(f"{fmt}: output lists {ranks} ranks but nranks={nranks} was given")
    return [BandwidthRecord(r.tool, r.op, ranks, r.size_bytes, r.time_us, r.algbw_printed, r.check) for r in records]


def _header(tokens: list[str]) -> _Columns | None:
    """Column positions from a header line, or None when the line is not a header."""
    names = [re.sub(r"\(.*\)$", "", tok.lower()) for tok in tokens]
    size = _first(names, lambda n: n.startswith("size"))
    time = _first(names, lambda n: n.startswith("time") or n.endswith("lat") or "avg_time" in n)
    algbw = _first(names, lambda n: "algbw" in n)
    if size is None or time is None or algbw is None:
        return None
    scale = 1000.0 if tokens[time].lower().endswith("(ms)") else 1.0
    return _Columns(size, time, algbw, scale, max(size, time, algbw) + 1)


def _first(names: list[str], pred: Callable[[str], bool]) -> int | None:
    return next((i for i, name in enumerate(names) if pred(name)), None)
