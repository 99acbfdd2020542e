"""W8A8 linear: the fused C++ passes equal the PyTorch path, and the product is close to the float one."""

from __future__ import annotations

import pytest
import torch

from sagellm.core.errors import ConfigError
from sagellm.core.testing import raises
from sagellm.quantization import (
    SmoothQuantW8A8,
    int8_linear,
    kernels,
    quantize_activations,
    quantize_per_channel,
    rescale,
    smoothing_factors,
)
from sagellm.quantization import w8a8_linear as int8_linear_module

needs_kernels = pytest.mark.skipif(kernels() is None, reason="the C++ extension could not be built here")


def _rows(m: int, k: int, seed: int, dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    x = torch.randn(m, k, generator=torch.Generator().manual_seed(seed))
    x[:, 3] *= 40.0  # an outlier channel, as LLM activations have
    return x.to(dtype)


def _python_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(int8_linear_module, "kernels", lambda: None)


def test_weight_codes_are_per_channel_and_invertible() -> None:
    weight = torch.randn(32, 64) * torch.linspace(0.01, 3.0, 32)[:, None]
    q = quantize_per_channel(weight)
    assert q.codes_t.dtype == torch.int8 and q.codes_t.shape == (64, 32) and q.shape == (32, 64)
    assert int(q.codes_t.abs().max()) == 127  # every row uses its full range
    step = weight.abs().amax(dim=1, keepdim=True) / 127
    assert bool(((q.dequantize() - weight).abs() <= step / 2 + 1e-7).all())


def test_smoothing_is_an_exact_rewrite_before_rounding() -> None:
    generator = torch.Generator().manual_seed(0)
    weight, act = torch.randn(16, 32, generator=generator), torch.rand(32, generator=generator) * 10 + 0.1
    smooth = smoothing_factors(act, weight, alpha=0.5)
    q = quantize_per_channel(weight, smooth)
    assert q.smooth_inverse is not None
    torch.testing.assert_close(q.smooth_inverse * smooth, torch.ones(32))
    # The only error is rounding the smoothed weight: half a row step, shrunk back by the column's factor.
    bound = q.scales[:, None] / 2 * q.smooth_inverse[None, :]
    assert bool(((q.dequantize() - weight).abs() <= bound * (1 + 1e-5) + 1e-7).all())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("rows", [1, 7, 64])
def test_activation_codes_match_the_pytorch_path(
    monkeypatch: pytest.MonkeyPatch, dtype: torch.dtype, rows: int
) -> None:
    if kernels() is None:
        pytest.skip("the C++ extension could not be built here")
    x, inverse = _rows(rows, 200, seed=rows, dtype=dtype), torch.rand(200) + 0.5  # 200: a ragged AVX-512 tail
    fused = quantize_activations(x, inverse)
    _python_path(monkeypatch)
    plain = quantize_activations(x, inverse)
    torch.testing.assert_close(fused[1], plain[1], rtol=0, atol=0)
    assert int((fused[0].int() - plain[0].int()).abs().max()) <= 1  # ties may round either way after FMA


@needs_kernels
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rescale_matches_the_pytorch_path(monkeypatch: pytest.MonkeyPatch, dtype: torch.dtype) -> None:
    acc = torch.randint(-(2**20), 2**20, (9, 70), dtype=torch.int32)
    row_scales, col_scales, bias = torch.rand(9, 1), torch.rand(70) / 1000, torch.randn(70)
    fused = rescale(acc, row_scales, col_scales, bias.to(dtype), dtype)
    _python_path(monkeypatch)
    plain = rescale(acc, row_scales, col_scales, bias.to(dtype), dtype)
    torch.testing.assert_close(fused.float(), plain.float(), rtol=1e-6 if dtype == torch.float32 else 8e-3, atol=1e-6)


def test_all_zero_rows_give_zero_output() -> None:
    weight = quantize_per_channel(torch.randn(8, 32))
    out = int8_linear(torch.zeros(3, 32), weight)
    assert out.shape == (3, 8) and bool((out == 0).all())


@pytest.mark.parametrize("fused", [True, False])
def test_w8a8_product_is_close_to_float(monkeypatch: pytest.MonkeyPatch, fused: bool) -> None:
    if not fused:
        _python_path(monkeypatch)
    x, weight, bias = _rows(64, 256, seed=5, dtype=torch.float32), torch.randn(96, 256) * 0.05, torch.randn(96)
    act = x.abs().amax(dim=0)
    reference = x @ weight.T + bias
    plain = int8_linear(x, quantize_per_channel(weight), bias)
    smoothed = int8_linear(x, SmoothQuantW8A8(alpha=0.5).quantize(weight, calibration=act), bias)

    def error(y: torch.Tensor) -> float:
        return float((y - reference).norm() / reference.norm())

    assert error(smoothed) < 0.02
    assert error(smoothed) < error(plain)  # the outlier channel is what smoothing is for


def test_leading_dimensions_and_dtype_are_kept() -> None:
    weight = quantize_per_channel(torch.randn(24, 48))
    out = int8_linear(torch.randn(2, 3, 48, dtype=torch.bfloat16), weight)
    assert out.shape == (2, 3, 24) and out.dtype == torch.bfloat16


def test_bad_alpha_and_options_raise_config_errors() -> None:
    with raises(ConfigError):
        SmoothQuantW8A8(alpha=1.5)

    class Section:
        options = {"alpah": 0.5}

    with raises(ConfigError):
        SmoothQuantW8A8.from_config(Section())


def test_bad_shapes_raise() -> None:
    with raises(ValueError):
        quantize_per_channel(torch.randn(4, 4, 4))
    with raises(ValueError):
        quantize_per_channel(torch.randn(4, 8), smooth=torch.ones(4))
    with raises(ValueError):
        quantize_per_channel(torch.randn(4, 8), smooth=torch.zeros(8))
