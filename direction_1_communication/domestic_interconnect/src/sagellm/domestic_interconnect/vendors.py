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

HCCL = VendorSpec(
    key="hccl",
    vendor="Huawei Ascend",
    probe_module="torch_npu",
    probe_hip=False,
    backend="hccl",
    device_type="npu",
    library="HCCL",
    install_hint="install CANN and the torch_npu wheel matching your torch (https://github.com/Ascend/pytorch)",
    bench_tool="$ASCEND_HOME_PATH/tools/hccl_test/bin/all_reduce_test",
    bench_format="hccl_test",
    sources=(
        Source(_ASCEND_TORCH_NPU, "ascend_torch_npu_init.py.txt", ('register_backend("hccl"', 'devices=["npu"]')),
        Source(_HCCL_TEST_DOC, "hccl_test_execution.md.txt", ("./bin/all_reduce_test", "alg_bandwidth(GB/s)")),
    ),
)

CNCL = VendorSpec(
    key="cncl",
    vendor="Cambricon",
    probe_module="torch_mlu",
    probe_hip=False,
    backend="cncl",
    device_type="mlu",
    library="CNCL",
    install_hint="install Cambricon Neuware (CNToolkit, CNCL) and the torch_mlu wheel (https://github.com/Cambricon/torch_mlu)",
    bench_tool="/usr/local/neuware/bin/allreduce",
    bench_format="cncl_benchmark",
    sources=(
        Source(_CAMBRICON_CNCL, "cambricon_torch_mlu_cncl.py.txt", ('"cncl",', 'devices=["mlu"]', "ProcessGroupCNCL")),
        Source(
            _FLAGPERF + "cambricon/MLU/main.sh", "flagperf_cambricon_main.sh.txt", ("/usr/local/neuware/bin/allreduce",)
        ),
    ),
)

RCCL = VendorSpec(
    key="rccl",
    vendor="Hygon DCU",
    probe_module="torch",
    probe_hip=True,
    backend="nccl",
    device_type="cuda",
    library="RCCL (xGMI/PCIe)",
    install_hint="install Hygon DTK (or ROCm) and its PyTorch build: torch.version.hip must be set",
    bench_tool="all_reduce_perf",
    bench_format="nccl_tests",
    sources=(
        Source(
            _PYTORCH_HIP, "pytorch_notes_hip.rst.txt", ("torch.version.hip", "use 'cuda'", 'only the "nccl" and "gloo"')
        ),
        Source(_LIGHTX2V_HYGON, "lightx2v_hygon_dcu.py.txt", ('backend="nccl"', 'return "cuda"', "RCCL")),
        Source(_FLAGPERF + "dcu/BW/main.sh", "flagperf_dcu_main.sh.txt", ("all_reduce_perf", "RCCL_SDMA_COPY_ENABLE")),
    ),
)

XCCL = VendorSpec(
    key="xccl",
    vendor="Kunlunxin",
    probe_module="torch_xmlir",
    probe_hip=False,
    backend="nccl",
    device_type="cuda",
    library="XCCL (formerly BKCL)",
    install_hint="install Kunlunxin XRE/XCCL and XPyTorch (which provides torch_xmlir), see https://github.com/baidu/vLLM-Kunlun",
    bench_tool="/opt/xccl/perf/all_reduce",
    bench_format="xccl_perf",
    sources=(
        Source(
            _VLLM_KUNLUN, "vllm_kunlun_platform.py.txt", ('dist_backend: str = "nccl"', 'device_name: str = "cuda"')
        ),
        Source(_SGLANG_KUNLUN_SRT, "sglang_kunlun_srt.py.txt", ("import torch_xmlir", 'device_type="cuda"')),
        Source(_FLAGPERF + "kunlunxin/R300p/main.sh", "flagperf_kunlunxin_main.sh.txt", ("/opt/xccl/perf/${TOOL}",)),
    ),
)

VENDORS: dict[str, VendorSpec] = {spec.key: spec for spec in (HCCL, CNCL, RCCL, XCCL)}
"""Every vendor by registry name; ``auto`` probes them in this order."""

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
