"""benchmarks/vendor_busbw.py end to end: parse the vendor rows, time sageLLM (over a fake), compare."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import fake_vendors
import pytest

from sagellm.domestic_interconnect import VENDORS

HERE = Path(__file__).resolve().parent
SCRIPT = HERE.parent / "benchmarks" / "vendor_busbw.py"
OUTPUTS = HERE / "fixtures" / "tool_outputs"


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("vendor_busbw", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_parse_only_report(tmp_path: Path) -> None:
    fixture = OUTPUTS / "rccl_tests_all_reduce_8x_mi300x.txt"
    assert _script().main(["--vendor", "rccl", "--parse", str(fixture), "--no-ours", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "vendor_busbw_rccl.json").read_text())
    assert result["nranks"] == 8 and result["summary"]["meets_target"] is None
    (row,) = result["rows"]
    assert row["vendor_busbw_gbs"] == pytest.approx(161.14, abs=0.01)
    assert "| 8388608 | 91.10 | 92.08 | 161.14 |" in (tmp_path / "vendor_busbw_rccl.md").read_text()


def test_ours_against_a_vendor_table_over_the_fake_plugin(tmp_path: Path) -> None:
    text = (
        "data_size(Bytes): | aveg_time(us): | alg_bandwidth(GB/s): | check_result:\n65536 | 1.00 | 65.53600 | success\n"
    )
    saved = tmp_path / "hccl.log"
    saved.write_text(text)
    argv = [
        "--vendor",
        "hccl",
        "--parse",
        str(saved),
        "--nranks",
        "2",
        "--device",
        "cpu",
        "--iters",
        "3",
        "--warmup",
        "1",
        "--large",
        "1",
        "--plugin-path",
        str(fake_vendors.FAKE_PLUGINS),
        "--out",
        str(tmp_path),
    ]
    assert _script().main(argv) == 0
    result = json.loads((tmp_path / "vendor_busbw_hccl.json").read_text())
    (row,) = result["rows"]
    assert row["ours_time_us"] > 1.0  # gloo on CPU cannot move 64 KiB in the fake vendor's 1 us
    assert row["ratio"] == pytest.approx(row["ours_busbw_gbs"] / row["vendor_busbw_gbs"])
    assert result["summary"]["meets_target"] is False


def test_tool_commands_use_the_tables_tools() -> None:
    script = _script()
    for key, spec in VENDORS.items():
        command = script.tool_command(spec, 8, 1 << 20, 1 << 30)
        assert spec.bench_tool.rsplit("/", 1)[-1] in " ".join(command), key
