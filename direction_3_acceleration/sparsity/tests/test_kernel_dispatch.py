"""The kernel choice: packed 2:4 operands for decode-sized inputs where a kernel is built, else dense F.linear."""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from sagellm.sparsity import MAX_PACKED_ROWS, MagnitudeSparsifier, SparseWeight, WandaSparsifier, packed_kind


class _FakePacked24:
    """Stands in for helper module sagellm.sparsity.packed24 and records what was asked of it."""

    def __init__(self, available: set[str]) -> None:
        self.available, self.packed, self.calls = available, [], 0

    def module(self) -> types.ModuleType:
        module = types.ModuleType("sagellm.sparsity.packed24")
        module.packed24_available = lambda kind: kind in self.available  # type: ignore[attr-defined]
        module.pack_24 = self.pack_24  # type: ignore[attr-defined]
        module.packed24_linear = self.linear  # type: ignore[attr-defined]
        return module

    def pack_24(self, weight: torch.Tensor, kind: str) -> Any:
        self.packed.append(kind)
        return ("packed", kind, weight)

    def linear(self, x: torch.Tensor, packed: Any, bias: torch.Tensor | None = None) -> torch.Tensor:
        self.calls += 1
        return F.linear(x, packed[2].to(x.dtype), bias) + 1000.0  # recognisably the kernel's answer


@pytest.fixture()
def fake(monkeypatch: pytest.MonkeyPatch) -> _FakePacked24:
    stub = _FakePacked24({"int8", "bf16"})
    monkeypatch.setitem(sys.modules, "sagellm.sparsity.packed24", stub.module())
    return stub


def test_auto_packs_2_4_as_int8_and_runs_few_rows_through_the_kernel(fake: _FakePacked24) -> None:
    sparsifier = MagnitudeSparsifier(pattern="2:4")
    sweight = sparsifier.sparsify(torch.randn(16, 64))
    assert (sweight.kernel, fake.packed) == ("int8", ["int8"])
    bias = torch.randn(16)
    few, many = torch.randn(MAX_PACKED_ROWS, 64), torch.randn(2, MAX_PACKED_ROWS, 64)
    dense = sparsifier.densify(sweight)
    torch.testing.assert_close(sparsifier.linear(few, sweight, bias), F.linear(few, dense, bias) + 1000.0)
    torch.testing.assert_close(sparsifier.linear(many, sweight, bias), F.linear(many, dense, bias))
    assert sparsifier.linear(torch.randn(0, 64), sweight).shape == (0, 16)  # no rows: never the kernel
    assert fake.calls == 1
    assert packed_kind("auto", sparsifier.options.pattern, torch.device("meta")) is None  # packed kernels: CPU only


def test_explicit_kinds_dense_and_other_patterns(fake: _FakePacked24) -> None:
    weight = torch.randn(16, 64)
    assert MagnitudeSparsifier(pattern="2:4", kernel="bf16").sparsify(weight).kernel == "bf16"
    assert MagnitudeSparsifier(pattern="2:4", kernel="dense").sparsify(weight).packed is None
    assert MagnitudeSparsifier(pattern="4:8").sparsify(weight).kernel == "dense"
    assert MagnitudeSparsifier(pattern="unstructured").sparsify(weight).kernel == "dense"
    assert fake.packed == ["bf16"]


def test_an_unavailable_kernel_falls_back_to_dense(monkeypatch: pytest.MonkeyPatch) -> None:
    stub = _FakePacked24(available={"bf16"})
    monkeypatch.setitem(sys.modules, "sagellm.sparsity.packed24", stub.module())
    sweight = MagnitudeSparsifier(pattern="2:4").sparsify(torch.randn(16, 64))
    assert sweight.kernel == "dense" and sweight.packed is None and stub.packed == []


def test_a_missing_kernel_module_falls_back_to_dense(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sagellm.sparsity.packed24", None)  # import raises ImportError
    sweight = MagnitudeSparsifier(pattern="2:4", kernel="int8").sparsify(torch.randn(16, 64))
    assert sweight.kernel == "dense" and sweight.packed is None


def test_dense_path_keeps_dtypes_and_computes_the_pruned_layer() -> None:
    weight = torch.randn(16, 64).to(torch.bfloat16)
    sparsifier = MagnitudeSparsifier(pattern="unstructured", sparsity=0.6)
    sweight = sparsifier.sparsify(weight)
    assert isinstance(sweight, SparseWeight) and sweight.weight.dtype == torch.bfloat16
    assert sweight.shape == (16, 64) and sweight.density == pytest.approx(0.4, abs=1 / 1024)
    kept = sweight.weight != 0
    assert torch.equal(sweight.weight[kept], weight[kept])  # magnitude keeps values bit for bit
    x, bias = torch.randn(3, 64), torch.randn(16, dtype=torch.bfloat16)
    out = sparsifier.linear(x, sweight, bias)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, F.linear(x, sweight.weight.float(), bias.float()))


def test_sparsegpt_style_updates_come_back_in_the_weights_dtype() -> None:
    weight = torch.randn(16, 64, dtype=torch.float16)
    sparsifier = WandaSparsifier(pattern="2:4", update=True, kernel="dense")
    observer = sparsifier.calibration_observer()
    observer.observe(torch.randn(128, 64))
    dense = sparsifier.densify(sparsifier.sparsify(weight, observer.result))
    assert dense.dtype == torch.float16
    assert ((dense == 0).reshape(16, 16, 4).sum(-1) == 2).all()


def test_linear_and_densify_reject_other_types() -> None:
    sparsifier = MagnitudeSparsifier()
    with pytest.raises(TypeError, match="SparseWeight"):
        sparsifier.densify(torch.ones(2, 2))  # type: ignore[arg-type]
