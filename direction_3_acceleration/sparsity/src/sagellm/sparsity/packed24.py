"""Packed 2:4 weights and their linear layer: half the values plus 2 bits of position per kept value.

A 2:4 sparse [N, K] weight keeps at most 2 of every 4 consecutive inputs of
a row. Stored packed it reads 0.625 bytes per weight as int8 (0.5 value +
0.125 index) and 1.125 as bf16 (1 + 0.125), against 1 and 2 dense: where a
matmul is memory-bound (decode: 1-8 rows) that is up to 1.6x (1.78x) less
time. The C++ kernels (:mod:`.sparse_kernels`, ``csrc/layout.h``) gather
the activations each kept value meets by its index and multiply:

* ``int8``: W8A8 — per-output-row int8 weight codes (absmax / 127), the
  activations quantized per row at run time as sagellm-quantization's
  ``quantize_activations`` does, exact int32 sums, then row scale x column
  scale (+ bias) in x's dtype;
* ``bf16``: bf16 values, x rounded to bf16, fp32 sums.

The window layout (which kept value sits where, which bits hold its index)
is defined once in ``csrc/layout.h`` and mirrored by :func:`_slot_table`;
:func:`packed24_reference` (unpack, then a dense matmul) computes the same
numbers as every kernel path and serves where no kernel is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from sagellm.core.errors import ConfigError
from sagellm.sparsity.sparse_kernels import kernel_path, kernels, simd_path

KINDS = ("int8", "bf16")
QMAX = 127
_ABSENT = torch.empty(0)  # "no bias" for the C++ entry points
_NATIVE_DTYPES = frozenset({torch.float32, torch.bfloat16, torch.float16})  # x dtypes the kernels read


@dataclass(frozen=True, slots=True)
class _Window:
    """One kind's window: ``inputs`` inputs -> ``values`` kept values + ``values / 4`` index bytes."""

    inputs: int
    values: int
    slot_input: tuple[int, ...]  # slot -> first input of its group within the window
    slot_field: tuple[int, ...]  # slot -> which 2-bit field of the window's index word holds its position

    @property
    def index_bytes(self) -> int:
        return self.values // 4


def _int8_window() -> _Window:  # mirrors int8_slot_input / int8_slot_field in csrc/layout.h
    slots = range(32)
    inputs = tuple(32 * ((p % 16) // 8) + 16 * (p // 16) + 4 * ((p % 8) // 2) for p in slots)
    return _Window(64, 32, inputs, tuple(4 * (p % 8) + p // 8 for p in slots))


def _bf16_window() -> _Window:  # mirrors bf16_slot_input / bf16_slot_field in csrc/layout.h
    slots = range(16)
    inputs = tuple(16 * ((e % 8) // 4) + 8 * (e // 8) + 4 * ((e % 4) // 2) for e in slots)
    return _Window(32, 16, inputs, tuple(e // 2 + 8 * (e % 2) for e in slots))


_WINDOWS = {"int8": _int8_window(), "bf16": _bf16_window()}


@dataclass(frozen=True, slots=True)
class Packed24Weight:
    """A 2:4 sparse [N, K] weight in the kernels' layout (``csrc/layout.h``), rows padded to whole windows.

    ``values``: int8 codes [N, windows * 32] (kind ``int8``) or bf16 [N, windows * 16] (``bf16``);
    ``indices``: uint8 [N, windows * values_per_window / 4], four 2-bit positions a byte;
    ``scales``: float32 [N] (weight ~= code * scale) and ``row_sums``: int32 [N] (sum of each row's
    codes, the AVX-512 kernel's correction for unsigned activations), both None for ``bf16``;
    ``shape``: (N, K) as ``nn.Linear.weight``.
    """

    values: torch.Tensor
    indices: torch.Tensor
    scales: torch.Tensor | None
    row_sums: torch.Tensor | None
    shape: tuple[int, int]
    kind: str

    @property
    def nbytes(self) -> int:
        """Bytes a matmul reads: values, indices and (int8) the per-row scales and sums."""
        extra = 0 if self.scales is None or self.row_sums is None else self.scales.nbytes + self.row_sums.nbytes
        return int(self.values.nbytes + self.indices.nbytes + extra)


def pack_24(weight: torch.Tensor, kind: str) -> Packed24Weight:
    """Pack a 2:4 sparse [N, K] float weight for :func:`packed24_linear`.

    Raises ValueError where a group of 4 consecutive inputs of a row holds
    more than 2 nonzeros (or the weight is not 2-D), ConfigError for an
    unknown ``kind``. Each group keeps its nonzeros, topped up with zero
    entries at the lowest free positions, in increasing position.
    """
    window = _window(kind)
    if weight.dim() != 2:
        raise ValueError(f"expected a 2-D [out, in] weight, got shape {tuple(weight.shape)}")
    rows, cols = (int(size) for size in weight.shape)
    dense = weight.detach().to("cpu", torch.float32)
    padded = torch.nn.functional.pad(dense, (0, _padded(cols, window) - cols))
    groups = padded.view(rows, -1, 4)
    positions = _kept_positions(groups)
    kept = groups.gather(-1, positions)  # [N, groups, 2]
    if kind == "int8":
        scales = dense.abs().amax(dim=1).clamp(min=torch.finfo(torch.float32).tiny) / QMAX
        codes = torch.round(kept / scales[:, None, None]).clamp(-QMAX, QMAX).to(torch.int8)
        values = _to_slots(codes, window)
        return Packed24Weight(
            values=values,
            indices=_pack_indices(_to_slots(positions, window), window),
            scales=scales.contiguous(),
            row_sums=values.sum(dim=1, dtype=torch.int32),
            shape=(rows, cols),
            kind=kind,
        )
    return Packed24Weight(
        values=_to_slots(kept.to(torch.bfloat16), window),
        indices=_pack_indices(_to_slots(positions, window), window),
        scales=None,
        row_sums=None,
        shape=(rows, cols),
        kind=kind,
    )


def unpack_codes(packed: Packed24Weight) -> torch.Tensor:
    """The dense [N, K] weight as stored: int8 codes (``int8``) or bf16 values (``bf16``)."""
    window = _WINDOWS[packed.kind]
    rows, cols = packed.shape
    windows = packed.values.shape[1] // window.values
    fields = _unpack_indices(packed.indices, window).view(rows, windows, window.values)
    slot_field = torch.tensor(window.slot_field)
    positions = fields[:, :, slot_field] + torch.tensor(window.slot_input)  # input of each slot in its window
    dense = torch.zeros(rows, windows, window.inputs, dtype=packed.values.dtype)
    dense.scatter_(2, positions, packed.values.view(rows, windows, window.values))
    return dense.view(rows, -1)[:, :cols]


def unpack_24(packed: Packed24Weight) -> torch.Tensor:
    """The dense float32 [N, K] weight the packed one stands for (int8: codes x scales)."""
    values = unpack_codes(packed).float()
    return values if packed.scales is None else values * packed.scales[:, None]


def packed24_available(kind: str) -> bool:
    """Whether a vectorized kernel (AVX2 or AVX-512) runs ``kind`` on this CPU.

    Elsewhere :func:`packed24_linear` still computes the same numbers (the
    portable C++ path or the PyTorch reference) but slower than a dense
    matmul, so a caller should keep the dense weight.
    """
    _window(kind)
    return simd_path(kind)


def packed24_linear(x: torch.Tensor, packed: Packed24Weight, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ W.T + bias`` for a packed 2:4 ``W``; ``x`` is [..., K] in any float dtype, the result has its dtype."""
    rows, cols = packed.shape
    if x.shape[-1] != cols:
        raise ValueError(f"x has {x.shape[-1]} features, the weight expects {cols}")
    flat = x if x.dim() == 2 else x.reshape(-1, cols)
    path = kernel_path(packed.kind) if x.is_cpu else None
    out = packed24_reference(flat, packed, bias) if path is None else _run(flat, packed, bias, path)
    return out if x.dim() == 2 else out.view(*x.shape[:-1], rows)


def packed24_reference(x: torch.Tensor, packed: Packed24Weight, bias: torch.Tensor | None = None) -> torch.Tensor:
    """The PyTorch reference of :func:`packed24_linear` for 2-D ``x``: unpack, then a dense matmul.

    int8: the same codes, an exact integer product (float64 holds it) and the
    same float32 rescale as the kernels, so the results are equal; bf16:
    bf16 x bf16 products summed in float32 (in another order than a kernel).
    """
    device = x.device
    if packed.kind == "int8":
        codes, row_scales = quantize_rows(x)
        weight = unpack_codes(packed).to(device)
        acc = (codes.double() @ weight.double().T).to(torch.int32)
        out = acc.float() * row_scales * packed.scales.to(device)  # type: ignore[union-attr]
    else:
        out = x.to(torch.bfloat16).float() @ unpack_codes(packed).float().to(device).T
    if bias is not None:
        out = out + bias.float()
    return out.to(x.dtype)


def quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row symmetric int8 codes [M, K] and float32 scales [M, 1] (sagellm-quantization's rule)."""
    rows = x.float()
    amax = rows.abs().amax(dim=-1, keepdim=True)
    scales = torch.where(amax > 0, amax / QMAX, torch.ones_like(amax))
    return torch.round(rows * scales.reciprocal()).to(torch.int8), scales


def _run(x: torch.Tensor, packed: Packed24Weight, bias: torch.Tensor | None, path: str) -> torch.Tensor:
    module: Any = kernels()  # not None: ``path`` came from kernel_path()
    native = x.dtype in _NATIVE_DTYPES
    rows = (x if native else x.float()).contiguous()
    bias32 = _ABSENT if bias is None else bias.detach().float().contiguous()
    if packed.kind == "int8":
        out = module.packed_int8_linear(
            rows, packed.values, packed.indices, packed.scales, packed.row_sums, bias32, path
        )
    else:
        out = module.packed_bf16_linear(rows, packed.values, packed.indices, bias32, path)
    result: torch.Tensor = out if native else out.to(x.dtype)
    return result


def _window(kind: str) -> _Window:
    if kind not in _WINDOWS:
        raise ConfigError(f"unknown packed 2:4 kind {kind!r}: expected one of {', '.join(KINDS)}")
    return _WINDOWS[kind]


def _padded(cols: int, window: _Window) -> int:
    return max(1, -(-cols // window.inputs)) * window.inputs


def _kept_positions(groups: torch.Tensor) -> torch.Tensor:
    """[N, G, 2] positions 0-3 each group keeps: its nonzeros, then its lowest zeros, in increasing order."""
    nonzero = groups != 0
    counts = nonzero.sum(dim=-1)
    if bool((counts > 2).any()):
        row, group = (int(i) for i in (counts > 2).nonzero()[0])
        raise ValueError(
            f"weight is not 2:4 sparse: row {row}, inputs {4 * group}-{4 * group + 3} hold "
            f"{int(counts[row, group])} nonzeros (at most 2 of every 4 consecutive inputs)"
        )
    rank = (~nonzero).to(torch.int64) * 4 + torch.arange(4)  # nonzeros first, lower positions first
    return rank.argsort(dim=-1)[..., :2].sort(dim=-1).values


def _to_slots(kept: torch.Tensor, window: _Window) -> torch.Tensor:
    """[N, groups, 2] per-group pairs -> [N, windows * values] in window slot order."""
    rows = kept.shape[0]
    per_window = kept.view(rows, -1, window.inputs // 4, 2)
    slot = torch.arange(window.values)
    group = torch.tensor(window.slot_input) // 4
    return per_window[:, :, group, slot % 2].reshape(rows, -1).contiguous()


def _pack_indices(slot_positions: torch.Tensor, window: _Window) -> torch.Tensor:
    """Slot positions [N, windows * values] -> uint8 [N, windows * values / 4], each in its slot's field."""
    rows = slot_positions.shape[0]
    slots = slot_positions.view(rows, -1, window.values)
    fields = torch.empty_like(slots)
    fields[:, :, torch.tensor(window.slot_field)] = slots
    quads = fields.view(rows, -1, 4).to(torch.int32)
    packed = quads[..., 0] | (quads[..., 1] << 2) | (quads[..., 2] << 4) | (quads[..., 3] << 6)
    return packed.to(torch.uint8).contiguous()


def _unpack_indices(indices: torch.Tensor, window: _Window) -> torch.Tensor:
    """uint8 [N, bytes] -> int64 [N, bytes * 4]: field 4b + j is bits 2j..2j+1 of byte b."""
    shifts = torch.tensor([0, 2, 4, 6])
    return ((indices.to(torch.int64)[..., None] >> shifts) & 3).flatten(1)
