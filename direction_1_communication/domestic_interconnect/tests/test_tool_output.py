"""Parsers of the vendors' bandwidth tests on committed outputs (see fixtures/tool_outputs/SOURCES.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sagellm.core.errors import ConfigError
from sagellm.domestic_interconnect import BUS_FACTORS, alg_bandwidth_gbs, bus_bandwidth_gbs, parse_tool_output

OUTPUTS = Path(__file__).resolve().parent / "fixtures" / "tool_outputs"


def _read(name: str) -> str:
    return (OUTPUTS / name).read_text(encoding="utf-8")


def test_bus_factors_are_nccl_tests_formulas() -> None:
    n = 8
    assert bus_bandwidth_gbs("all_reduce", 10.0, n) == pytest.approx(10.0 * 2 * 7 / 8)
    assert bus_bandwidth_gbs("all_gather", 10.0, n) == pytest.approx(10.0 * 7 / 8)
    assert bus_bandwidth_gbs("reduce_scatter", 10.0, n) == pytest.approx(10.0 * 7 / 8)
    assert bus_bandwidth_gbs("broadcast", 10.0, n) == 10.0
    assert bus_bandwidth_gbs("all_reduce", 10.0, 1) == 0.0  # one rank moves nothing over a bus
    assert set(BUS_FACTORS) >= {"all_reduce", "all_gather", "reduce_scatter", "broadcast", "sendrecv"}
    assert alg_bandwidth_gbs(1_000_000, 1000.0) == pytest.approx(1.0)
    with pytest.raises(ConfigError):
        bus_bandwidth_gbs("allreduce", 1.0, 2)


def test_hccl_test_real_sample() -> None:
    records = parse_tool_output("hccl_test", _read("hccl_test_all_reduce_8npu.txt"), nranks=8)
    assert len(records) == 14 and records[0].size_bytes == 8192 and records[-1].size_bytes == 67108864
    last = records[-1]
    assert last.time_us == 2630.20 and last.algbw_printed == 23.76245 and last.check == "success"
    assert last.algbw_gbs == pytest.approx(67108864 / 2630.20e-6 / 1e9)
    assert last.busbw_gbs == pytest.approx(last.algbw_gbs * 2 * 7 / 8)
    # the documented sample prints GiB/s: printed / (size/time) = 1e9 / 2**30
    assert last.printed_unit_ratio == pytest.approx(1e9 / 2**30, rel=2e-3)


def test_hccl_test_all_gather_size_is_the_gathered_total() -> None:
    text = (
        "data_size(Bytes): | aveg_time(us): | alg_bandwidth(GB/s): | check_result:\n1024 | 10.00 | 0.81920 | failed\n"
    )
    (record,) = parse_tool_output("hccl_test", text, op="all_gather", nranks=8)
    assert record.size_bytes == 8 * 1024 and record.algbw_gbs == pytest.approx(0.8192) and not record.ok


def test_hccl_test_needs_the_rank_count() -> None:
    with pytest.raises(ConfigError, match="nranks"):
        parse_tool_output("hccl_test", _read("hccl_test_all_reduce_8npu.txt"))


def test_rccl_tests_real_sample_agrees_with_its_own_busbw() -> None:
    (record,) = parse_tool_output("nccl_tests", _read("rccl_tests_all_reduce_8x_mi300x.txt"))
    assert record.nranks == 8 and record.size_bytes == 8388608 and record.time_us == 91.10
    assert record.algbw_printed == 92.08
    assert record.busbw_gbs == pytest.approx(161.14, abs=0.01)  # rccl-tests printed busbw 161.14
    assert record.busbw_from_printed_gbs == pytest.approx(161.14, abs=0.01)
    with pytest.raises(ConfigError, match="lists 8 ranks"):
        parse_tool_output("nccl_tests", _read("rccl_tests_all_reduce_8x_mi300x.txt"), nranks=4)


def test_mpirun_prefixed_lines_parse() -> None:
    text = "\n".join("[1,0]<stdout>:" + line for line in _read("rccl_tests_all_reduce_8x_mi300x.txt").splitlines())
    (record,) = parse_tool_output("nccl_tests", text)
    assert record.algbw_printed == 92.08


@pytest.mark.parametrize(
    ("fmt", "name"),
    [
        ("cncl_benchmark", "cncl_benchmark_all_reduce_8mlu.HAND_CONSTRUCTED.txt"),
        ("xccl_perf", "xccl_perf_all_reduce_8xpu.HAND_CONSTRUCTED.txt"),
    ],
)
def test_header_driven_formats(fmt: str, name: str) -> None:
    records = parse_tool_output(fmt, _read(name), nranks=8)
    assert [r.size_bytes for r in records] == [1 << 20, 1 << 24, 1 << 28]
    for record in records:  # time in ms (cncl) or us (xccl) both land in us
        assert record.printed_unit_ratio == pytest.approx(1.0, rel=2e-3)
        assert record.busbw_gbs == pytest.approx(record.algbw_printed * 2 * 7 / 8, rel=2e-3)


def test_unreadable_output_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no header"):
        parse_tool_output("xccl_perf", "segmentation fault\n", nranks=8)
    with pytest.raises(ConfigError, match="no hccl_test result rows"):
        parse_tool_output("hccl_test", "HcclGetRootInfo failed\n", nranks=8)
    with pytest.raises(ConfigError, match="unknown tool output format"):
        parse_tool_output("nccom", "", nranks=2)
    with pytest.raises(ConfigError, match="unknown collective"):
        parse_tool_output("nccl_tests", "", op="allreduce")
