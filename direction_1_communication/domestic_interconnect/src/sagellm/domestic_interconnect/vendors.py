"""The vendor table: what each domestic accelerator's torch expects, with where it says so.

Every value here was read from the vendor's own code (or PyTorch's, for
ROCm). ``Source`` records the file and the exact strings that prove a value;
``tests/test_vendor_table.py`` checks each claim against a short verbatim
excerpt of that file committed under ``tests/fixtures/vendor_sources/``, so a
typo in the table fails CI instead of failing on the vendor's hardware.

Two vendors reuse CUDA's names: ROCm builds of PyTorch (Hygon DCU runs
Hygon's DTK, a ROCm derivative) and Kunlunxin's XPyTorch both present their
device as ``"cuda"`` and their collective library (RCCL, XCCL) as the
``"nccl"`` backend. The import probe tells them apart, not the names.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Source:
    """One public file that states table values, and the strings in it that do."""

    url: str  # file at a pinned commit (or a documentation page)
    fixture: str  # excerpt file name under tests/fixtures/vendor_sources/
    claims: tuple[str, ...]  # exact substrings the excerpt must contain


@dataclass(frozen=True, slots=True)
class VendorSpec:
    """How to find, initialise and benchmark one vendor's collective library through torch."""

    key: str  # registry name (entry point in group sagellm.interconnect_backend)
    vendor: str
    probe_module: str  # import that must succeed (it registers the backend with torch)
    probe_hip: bool  # also require a ROCm build of torch (torch.version.hip set)
    backend: str  # the torch.distributed backend name the vendor's torch registers
    device_type: str  # torch device type tensors must live on
    library: str  # the collective library behind the backend
    install_hint: str  # what to install when the probe fails
    bench_tool: str  # the vendor's own bandwidth test (binary, default location)
    bench_format: str  # parser name in sagellm.domestic_interconnect.tool_output
    sources: tuple[Source, ...]


_ASCEND_TORCH_NPU = (
    "https://github.com/Ascend/pytorch/blob/0036adaa6ca72c2d2fb61c10d59ace63643501d2/torch_npu/__init__.py"
)
_CAMBRICON_CNCL = (
    "https://github.com/Cambricon/torch_mlu/blob/d578002c0863bfa1ad30fae6b99e4fb3a79dff48/torch_mlu/mlu/cncl.py"
)
_PYTORCH_HIP = (
    "https://github.com/pytorch/pytorch/blob/01800550d10752100a876246666bc1f4a60bc970/docs/source/notes/hip.rst"
)
_LIGHTX2V_HYGON = (
    "https://github.com/ModelTC/LightX2V/blob/29c8504c1487d886673d415784bea7a4ffc95352/"
    "lightx2v_platform/base/hygon_dcu.py"
)
_VLLM_KUNLUN = (
    "https://github.com/baidu/vLLM-Kunlun/blob/09869ee7795f8f0ea121fc38d6adbe177fc5006a/vllm_kunlun/platforms/kunlun.py"
)
_SGLANG_KUNLUN_SRT = "https://github.com/baidu-baige/sglang-kunlun/blob/0cf4bafc2ba567c280954255c8851f98df9afedf/sglang_kunlun/platform/srt.py"
_HCCL_TEST_DOC = (
    "https://github.com/hicann/oam-tools/blob/ea0ce91e3a326ab6ae8a7c2caf88701343288f2b/docs/zh/hccl_test/execution.md"
)
_FLAGPERF = "https://github.com/FlagOpen/FlagPerf/blob/1b5a030398ab719e406f77877eb34c9599b17fd2/base/toolkits/interconnect-MPI_intraserver/"

# The table: one row per vendor. The short torch-facing columns sit side by
# side, so the two rows that answer to ``nccl``/``cuda`` (rccl, xccl) read
# next to each other; the long text (install hints, bench tools, sources)
# follows in tables keyed by the same registry name.
_TorchRow = tuple[str, str, str, bool, str, str, str]
_TORCH_SIDE: tuple[_TorchRow, ...] = (
    # key, vendor, probe_module, probe_hip, backend, device_type, library
    ("hccl", "Huawei Ascend", "torch_npu", False, "hccl", "npu", "HCCL"),
    ("cncl", "Cambricon", "torch_mlu", False, "cncl", "mlu", "CNCL"),
    ("rccl", "Hygon DCU", "torch", True, "nccl", "cuda", "RCCL (xGMI/PCIe)"),
    ("xccl", "Kunlunxin", "torch_xmlir", False, "nccl", "cuda", "XCCL (formerly BKCL)"),
)

_INSTALL_HINTS: dict[str, str] = {
    "hccl": "install CANN and the torch_npu wheel matching your torch (https://github.com/Ascend/pytorch)",
    "cncl": "install Cambricon Neuware (CNToolkit, CNCL) and the torch_mlu wheel (https://github.com/Cambricon/torch_mlu)",
    "rccl": "install Hygon DTK (or ROCm) and its PyTorch build: torch.version.hip must be set",
    "xccl": "install Kunlunxin XRE/XCCL and XPyTorch (which provides torch_xmlir), see https://github.com/baidu/vLLM-Kunlun",
}

# key -> (the vendor's own bandwidth test, its parser in tool_output)
_BENCH_TOOLS: dict[str, tuple[str, str]] = {
    "hccl": ("$ASCEND_HOME_PATH/tools/hccl_test/bin/all_reduce_test", "hccl_test"),
    "cncl": ("/usr/local/neuware/bin/allreduce", "cncl_benchmark"),
    "rccl": ("all_reduce_perf", "nccl_tests"),
    "xccl": ("/opt/xccl/perf/all_reduce", "xccl_perf"),
}

_SOURCES: dict[str, tuple[Source, ...]] = {
    "hccl": (
        Source(_ASCEND_TORCH_NPU, "ascend_torch_npu_init.py.txt", ('register_backend("hccl"', 'devices=["npu"]')),
        Source(_HCCL_TEST_DOC, "hccl_test_execution.md.txt", ("./bin/all_reduce_test", "alg_bandwidth(GB/s)")),
    ),
    "cncl": (
        Source(_CAMBRICON_CNCL, "cambricon_torch_mlu_cncl.py.txt", ('"cncl",', 'devices=["mlu"]', "ProcessGroupCNCL")),
        Source(
            _FLAGPERF + "cambricon/MLU/main.sh", "flagperf_cambricon_main.sh.txt", ("/usr/local/neuware/bin/allreduce",)
        ),
    ),
    "rccl": (
        Source(
            _PYTORCH_HIP, "pytorch_notes_hip.rst.txt", ("torch.version.hip", "use 'cuda'", 'only the "nccl" and "gloo"')
        ),
        Source(_LIGHTX2V_HYGON, "lightx2v_hygon_dcu.py.txt", ('backend="nccl"', 'return "cuda"', "RCCL")),
        Source(_FLAGPERF + "dcu/BW/main.sh", "flagperf_dcu_main.sh.txt", ("all_reduce_perf", "RCCL_SDMA_COPY_ENABLE")),
    ),
    "xccl": (
        Source(
            _VLLM_KUNLUN, "vllm_kunlun_platform.py.txt", ('dist_backend: str = "nccl"', 'device_name: str = "cuda"')
        ),
        Source(_SGLANG_KUNLUN_SRT, "sglang_kunlun_srt.py.txt", ("import torch_xmlir", 'device_type="cuda"')),
        Source(_FLAGPERF + "kunlunxin/R300p/main.sh", "flagperf_kunlunxin_main.sh.txt", ("/opt/xccl/perf/${TOOL}",)),
    ),
}


def _spec(row: _TorchRow) -> VendorSpec:
    """Join one torch-side row with its long-text columns; a vendor missing from one fails at import."""
    key, vendor, probe_module, probe_hip, backend, device_type, library = row
    bench_tool, bench_format = _BENCH_TOOLS[key]
    return VendorSpec(
        key=key,
        vendor=vendor,
        probe_module=probe_module,
        probe_hip=probe_hip,
        backend=backend,
        device_type=device_type,
        library=library,
        install_hint=_INSTALL_HINTS[key],
        bench_tool=bench_tool,
        bench_format=bench_format,
        sources=_SOURCES[key],
    )


VENDORS: dict[str, VendorSpec] = {row[0]: _spec(row) for row in _TORCH_SIDE}
"""Every vendor by registry name, in table order (``auto`` has its own order: AUTO_ORDER)."""

# One name per row, for the backend classes that serve them.
HCCL = VENDORS["hccl"]
CNCL = VENDORS["cncl"]
RCCL = VENDORS["rccl"]
XCCL = VENDORS["xccl"]

ALIASES: dict[str, str] = {"bkcl": "xccl"}
"""Older names still in use (Kunlun's library was called BKCL before XCCL)."""


def vendor_spec(name: str) -> VendorSpec:
    """The table row for a registry name or alias; ConfigError names the known ones."""
    from sagellm.core.errors import ConfigError

    key = ALIASES.get(name, name)
    try:
        return VENDORS[key]
    except KeyError:
        known = ", ".join([*VENDORS, *ALIASES])
        raise ConfigError(f"unknown interconnect vendor '{name}' (known: {known})") from None
