"""sagellm.core.native: the ISA choice (pure, any machine) and real builds (where torch and a compiler exist)."""

from __future__ import annotations

import importlib.util
import math
import platform
import shutil
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sagellm.core import native
from sagellm.core.errors import ConfigError
from sagellm.core.native import AVX2, AVX512, PORTABLE, ExtensionSpec, choose_isa

# A Zen 4 server's flag line (abridged) and two older x86 CPUs: Haswell (AVX2) and Knights Landing (AVX-512F
# without BW/VL/DQ, which the kernels' intrinsics need).
ZEN4 = "fpu sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 avx512f avx512dq avx512cd avx512bw avx512vl avx512_bf16"
HASWELL = "fpu sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 bmi2"
KNIGHTS_LANDING = "fpu sse sse2 fma avx f16c avx2 avx512f avx512cd avx512er avx512pf"
GRAVITON = "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm"


@pytest.mark.parametrize(
    ("flags", "machine", "expected"),
    [
        (ZEN4, "x86_64", AVX512),
        (ZEN4, "AMD64", AVX512),
        (HASWELL, "x86_64", AVX2),
        (KNIGHTS_LANDING, "x86_64", AVX2),
        ("fpu sse sse2", "x86_64", PORTABLE),
        ("", "x86_64", PORTABLE),
        (GRAVITON, "aarch64", PORTABLE),
        (ZEN4, "aarch64", PORTABLE),  # x86 flags on another machine: never x86 -m flags
    ],
)
def test_the_best_level_the_cpu_runs_is_chosen(flags: str, machine: str, expected: native.CpuIsa) -> None:
    assert choose_isa(flags.split(), machine) == expected


@pytest.mark.parametrize(
    ("request_", "flags", "expected"),
    [
        ("portable", ZEN4, PORTABLE),
        ("avx2", ZEN4, AVX2),
        (" AVX512 ", ZEN4, AVX512),
        ("auto", ZEN4, AVX512),
        ("", ZEN4, AVX512),
        ("avx512", HASWELL, AVX2),  # a cap, not a demand: never flags the CPU lacks
        ("avx512", "", PORTABLE),
    ],
)
def test_a_request_caps_the_level(request_: str, flags: str, expected: native.CpuIsa) -> None:
    assert choose_isa(flags.split(), "x86_64", request_) == expected


def test_an_unknown_level_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="SAGELLM_CPU_ISA='avx1024'"):
        choose_isa(ZEN4.split(), "x86_64", "avx1024")


def test_levels_use_explicit_flags_that_their_cpu_flags_cover() -> None:
    assert AVX512.cflags[-4:] == ("-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq")
    assert PORTABLE.cflags == ()
    for isa in native.LEVELS:
        assert not any(flag.startswith(("-march", "-mtune")) for flag in isa.cflags), isa
        # every -m<feature> flag is backed by the cpuinfo flag of the same name
        assert {flag.removeprefix("-m") for flag in isa.cflags} <= isa.requires, isa
    assert native.LEVELS[-1] is PORTABLE  # the choice always ends somewhere


def test_cpu_flags_reads_the_flags_line(tmp_path: Path) -> None:
    x86 = tmp_path / "x86"
    x86.write_text(f"processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: {ZEN4}\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    arm = tmp_path / "arm"
    arm.write_text(f"processor\t: 0\nFeatures\t: {GRAVITON}\nCPU implementer\t: 0x41\n")
    assert native.cpu_flags(x86) == frozenset(ZEN4.split())
    assert native.cpu_flags(arm) == frozenset(GRAVITON.split())
    assert isinstance(native.cpu_flags(tmp_path / "missing"), frozenset)


def test_host_isa_honours_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(native.ISA_ENV, "portable")
    assert native.host_isa() == PORTABLE
    assert native.host_isa("auto") == choose_isa(native.cpu_flags(), platform.machine())  # the argument wins
    monkeypatch.setenv(native.ISA_ENV, "sse9")
    with pytest.raises(ConfigError):
        native.host_isa()


def test_the_shared_header_ships_with_core() -> None:
    header = native.include_dir() / "sagellm" / "avx512.h"
    assert header.is_file()
    assert "namespace sagellm_simd" in header.read_text()


def test_extension_names_carry_the_level_and_the_sources(tmp_path: Path) -> None:
    source, header = tmp_path / "k.cpp", tmp_path / "k.h"
    source.write_text("int x;\n")
    header.write_text("// v1\n")
    spec = ExtensionSpec("demo", (source,), "demo kernels", "the reference runs", include_dirs=(tmp_path,))
    names = {isa.name: native.extension_name(spec, isa) for isa in native.LEVELS}
    assert names["avx512"].startswith("sagellm_demo_avx512_") and names["portable"].startswith("sagellm_demo_portable_")
    assert len(set(names.values())) == len(names) and all(name.isidentifier() for name in names.values())
    assert native.extension_name(spec, AVX512) == names["avx512"]
    header.write_text("// v2\n")  # an edited header must not reuse a cached build
    assert native.extension_name(spec, AVX512) != names["avx512"]


@pytest.fixture
def fresh_builds(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No cached build, and neither SAGELLM_CPU_KERNELS nor SAGELLM_CPU_ISA from the caller's shell."""
    monkeypatch.delenv(native.DISABLE_ENV, raising=False)
    monkeypatch.delenv(native.ISA_ENV, raising=False)
    native.clear_builds()
    yield
    native.clear_builds()


def test_switched_off_builds_nothing_and_says_why(monkeypatch: pytest.MonkeyPatch, fresh_builds: None) -> None:
    monkeypatch.setenv(native.DISABLE_ENV, "off")
    spec = ExtensionSpec("never_built", (Path("missing.cpp"),), "demo kernels", "the reference runs")
    build = native.build_extension(spec)
    assert build.module is None and not build.available and build.isa is None
    assert build.reason == "SAGELLM_CPU_KERNELS=off"
    assert native.load_extension(spec) is None


def test_a_failed_build_warns_once_and_returns_none(tmp_path: Path, fresh_builds: None) -> None:
    source = tmp_path / "broken.cpp"
    source.write_text("#error this kernel does not compile\n")
    spec = ExtensionSpec("broken", (source,), "demo kernels", "the reference runs instead")
    with pytest.warns(RuntimeWarning, match=r"(?s)demo kernels is unavailable \(.+\); the reference runs instead"):
        build = native.build_extension(spec)
    assert build.module is None and build.reason and build.isa == native.host_isa()
    assert native.build_extension(spec) is build  # cached: no second build, no second warning


def test_one_name_means_one_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_builds: None) -> None:
    monkeypatch.setenv(native.DISABLE_ENV, "0")
    native.build_extension(ExtensionSpec("taken", (tmp_path / "a.cpp",), "a", "b"))
    with pytest.raises(ConfigError, match="two native extensions named 'taken'"):
        native.build_extension(ExtensionSpec("taken", (tmp_path / "other.cpp",), "a", "b"))


# --------------------------------------------------------------------------- real builds

PROBE = r"""
// A Python module (C API: no pybind11, so it builds in seconds) over the shared header's helpers.
#include <Python.h>

#include <cstdint>
#include <cstring>

#include <sagellm/avx512.h>

#define PROBE_CAT_(a, b) a##b
#define PROBE_CAT(a, b) PROBE_CAT_(a, b)
#define PROBE_STR_(a) #a
#define PROBE_STR(a) PROBE_STR_(a)

static PyObject* level(PyObject*, PyObject*) {
#ifdef SAGELLM_AVX512
  return PyUnicode_FromString("avx512");
#else
  return PyUnicode_FromString("portable");
#endif
}

// op(16 float32 as bytes) -> 16 float32 as bytes: "bf16" store16/load16 through c10::BFloat16,
// "int8" store16/load16 through int8 codes, "exp" exp16.
static PyObject* apply(PyObject*, PyObject* args) {
  const char* op;
  Py_buffer in;
  if (!PyArg_ParseTuple(args, "sy*", &op, &in)) return nullptr;
  if (in.len != 16 * static_cast<Py_ssize_t>(sizeof(float))) {
    PyBuffer_Release(&in);
    PyErr_SetString(PyExc_ValueError, "16 float32 values");
    return nullptr;
  }
  float out[16];
#ifdef SAGELLM_AVX512
  const __m512 v = _mm512_loadu_ps(static_cast<const float*>(in.buf));
  __m512 r = v;
  if (std::strcmp(op, "bf16") == 0) {
    c10::BFloat16 half[16];
    sagellm_simd::store16(half, v);
    r = sagellm_simd::load16(half);
  } else if (std::strcmp(op, "int8") == 0) {
    int8_t codes[16];
    sagellm_simd::store16(codes, v);
    r = sagellm_simd::load16(codes);
  } else if (std::strcmp(op, "exp") == 0) {
    r = sagellm_simd::exp16(v);
  }
  _mm512_storeu_ps(out, r);
#else
  (void)op;
  std::memcpy(out, in.buf, sizeof(out));
#endif
  PyBuffer_Release(&in);
  return PyBytes_FromStringAndSize(reinterpret_cast<const char*>(out), sizeof(out));
}

static PyMethodDef methods[] = {
    {"level", level, METH_NOARGS, "the level this build's code was compiled for"},
    {"apply", apply, METH_VARARGS, "one of the header's helpers over 16 lanes"},
    {nullptr, nullptr, 0, nullptr},
};

static PyModuleDef module = {PyModuleDef_HEAD_INIT, PROBE_STR(TORCH_EXTENSION_NAME), nullptr, -1, methods};

PyMODINIT_FUNC PROBE_CAT(PyInit_, TORCH_EXTENSION_NAME)(void) { return PyModule_Create(&module); }
"""


def _can_build() -> bool:
    if importlib.util.find_spec("torch") is None or shutil.which("c++") is None:
        return False
    from torch.utils.cpp_extension import is_ninja_available

    return bool(is_ninja_available())


needs_toolchain = pytest.mark.skipif(not _can_build(), reason="needs torch, a C++ compiler and ninja")


@pytest.fixture(scope="module")
def probe_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("native") / "probe.cpp"
    source.write_text(PROBE)
    return source


def _probe(source: Path, isa: str | None = None) -> native.ExtensionBuild:
    spec = ExtensionSpec("core_probe", (source,), "the core probe", "nothing else")
    return native.build_extension(spec, isa=isa)


@needs_toolchain
def test_builds_for_the_host_level_once(probe_source: Path, fresh_builds: None) -> None:
    build = _probe(probe_source)
    assert build.available, build.reason
    assert build.isa == native.host_isa()
    expected = "avx512" if build.isa == AVX512 else "portable"
    assert build.module.level() == expected  # the header saw exactly the flags the level passes
    assert _probe(probe_source) is build  # once per process
    assert f"_{build.isa.name}_" in build.module.__name__


@needs_toolchain
def test_portable_builds_beside_the_host_level(probe_source: Path, fresh_builds: None) -> None:
    portable = _probe(probe_source, isa="portable")
    assert portable.available, portable.reason
    assert portable.isa == PORTABLE and portable.module.level() == "portable"
    host = _probe(probe_source)
    assert host.available, host.reason
    if host.isa != PORTABLE:  # two levels, two extensions: never one cache entry
        assert host.module.__name__ != portable.module.__name__


@needs_toolchain
@pytest.mark.skipif(native.host_isa("auto") != AVX512, reason="this CPU has no AVX-512")
def test_the_header_helpers_match_their_scalar_definitions(probe_source: Path, fresh_builds: None) -> None:
    import torch

    module = _probe(probe_source, isa="avx512").module
    assert module is not None

    def apply(op: str, values: list[float]) -> list[float]:
        return list(struct.unpack("16f", module.apply(op, struct.pack("16f", *values))))

    lanes = [1.0, -2.5, 3.1415927, 1e-3, 65504.0, -0.0, 1.00390625, 1.01171875, 0.1, 7.0, -7.5, 2.0**-20, 3e38, -1e-30]
    lanes += [1.0 + 2.0**-8, 1.0 + 3 * 2.0**-8]  # ties: round to even (down, then up)
    as_float32 = torch.tensor(lanes, dtype=torch.float32)
    assert apply("bf16", lanes) == as_float32.to(torch.bfloat16).float().tolist()

    codes = [0.5, 1.5, 2.5, -0.5, -1.5, 126.5, 127.4, 200.0, -128.6, -300.0, 3.49, -3.51, 0.0, 64.0, 1e9, -1e9]
    expected = [max(-128.0, min(127.0, float(round(value)))) for value in codes]  # round() is half-to-even
    assert apply("int8", codes) == expected

    points = [-87.0, -20.0, -1.0, -0.3, 0.0, 0.25, 0.5, 1.0, 2.0, 10.0, 44.4, 88.0, -100.0, 3.3, -5.5, 0.69314718]
    points = list(struct.unpack("16f", struct.pack("16f", *points)))  # the float32 inputs the lanes hold
    for x, got in zip(points, apply("exp", points)):
        want = math.exp(min(max(x, -87.0), 88.0))
        # the polynomial's ~2e-7, plus float32's rounding of x * log2(e), which grows with |x|
        assert got == pytest.approx(want, rel=4e-7 + 1e-7 * abs(x)), x


def test_core_native_imports_without_torch() -> None:
    code = "import sys, sagellm.core.native; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
