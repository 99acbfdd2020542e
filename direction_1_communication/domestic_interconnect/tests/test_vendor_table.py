"""The vendor table against the vendors' own sources (short verbatim excerpts in tests/fixtures).

Each Source in the table names an excerpt and the exact strings it must
contain; the strings are built from the table's values here, so changing a
backend name or device string in the table without a source that says so
fails this test.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sagellm.core.errors import ConfigError
from sagellm.domestic_interconnect import ALIASES, VENDORS, vendor_spec

SOURCES_DIR = Path(__file__).resolve().parent / "fixtures" / "vendor_sources"

# What the vendors' sources say, transcribed independently of vendors.py.
EXPECTED = {
    # key: (probe module, torch backend, device type, needs torch.version.hip)
    "hccl": ("torch_npu", "hccl", "npu", False),
    "cncl": ("torch_mlu", "cncl", "mlu", False),
    "rccl": ("torch", "nccl", "cuda", True),
    "xccl": ("torch_xmlir", "nccl", "cuda", False),
}


def _excerpt(name: str) -> str:
    return (SOURCES_DIR / name).read_text(encoding="utf-8")


@pytest.mark.parametrize("key", sorted(VENDORS))
def test_table_row_matches_the_transcription(key: str) -> None:
    spec = VENDORS[key]
    assert (spec.probe_module, spec.backend, spec.device_type, spec.probe_hip) == EXPECTED[key]


@pytest.mark.parametrize("key", sorted(VENDORS))
def test_every_claim_is_in_its_excerpt(key: str) -> None:
    spec = VENDORS[key]
    assert spec.sources, f"{key} cites no source"
    for source in spec.sources:
        text = _excerpt(source.fixture)
        assert source.url.startswith("https://github.com/"), source.url
        for claim in source.claims:
            assert claim in text, f"{key}: '{claim}' not in {source.fixture} ({source.url})"


def test_backend_registrations_name_the_table_values() -> None:
    """The plugin code registers exactly the table's backend name for the table's device."""
    npu = _excerpt("ascend_torch_npu_init.py.txt")
    match = re.search(r'register_backend\("(\w+)",.*?devices=\["(\w+)"\]', npu, re.S)
    assert match is not None and match.groups() == (VENDORS["hccl"].backend, VENDORS["hccl"].device_type)
    mlu = _excerpt("cambricon_torch_mlu_cncl.py.txt")
    match = re.search(r'register_backend\(\s*"(\w+)",.*?devices=\["(\w+)"\]', mlu, re.S)
    assert match is not None and match.groups() == (VENDORS["cncl"].backend, VENDORS["cncl"].device_type)


def test_rocm_and_kunlun_present_themselves_as_cuda_and_nccl() -> None:
    hip = _excerpt("pytorch_notes_hip.rst.txt")
    assert f'only the "{VENDORS["rccl"].backend}" and "gloo" backends' in hip
    assert f"use '{VENDORS['rccl'].device_type}'" in hip
    hygon = _excerpt("lightx2v_hygon_dcu.py.txt")
    assert f'backend="{VENDORS["rccl"].backend}"' in hygon
    kunlun = _excerpt("vllm_kunlun_platform.py.txt")
    assert f'dist_backend: str = "{VENDORS["xccl"].backend}"' in kunlun
    assert f'device_name: str = "{VENDORS["xccl"].device_type}"' in kunlun
    assert f"import {VENDORS['xccl'].probe_module}" in _excerpt("sglang_kunlun_srt.py.txt")


def test_bench_tools_are_the_ones_the_sources_run() -> None:
    assert VENDORS["cncl"].bench_tool in _excerpt("flagperf_cambricon_main.sh.txt")
    assert VENDORS["xccl"].bench_tool.replace("all_reduce", "${TOOL}") in _excerpt("flagperf_kunlunxin_main.sh.txt")
    assert VENDORS["rccl"].bench_tool in _excerpt("flagperf_dcu_main.sh.txt")
    assert VENDORS["hccl"].bench_tool.rsplit("/", 1)[-1] in _excerpt("hccl_test_execution.md.txt")


def test_every_fixture_is_cited_in_sources_md() -> None:
    listed = (SOURCES_DIR / "SOURCES.md").read_text(encoding="utf-8")
    for path in SOURCES_DIR.glob("*.txt"):
        assert path.name in listed, f"{path.name} has no entry in SOURCES.md"
    for spec in VENDORS.values():
        for source in spec.sources:
            assert source.url in listed, f"{source.url} missing from SOURCES.md"


def test_vendor_spec_resolves_aliases_and_refuses_unknown_names() -> None:
    assert vendor_spec("bkcl") is VENDORS["xccl"] and ALIASES["bkcl"] == "xccl"
    with pytest.raises(ConfigError, match="unknown interconnect vendor 'nvlink'.*hccl"):
        vendor_spec("nvlink")
