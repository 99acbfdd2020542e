"""A linear layer that picks its kernel by batch size.

Decode with a few sequences multiplies a handful of rows by every weight:
the step is bound by reading weights from memory, so 4-bit weights win.
Large batches and prefill are bound by arithmetic, where the dense bf16
matmul wins. Measured on 2 Zen 4 cores, weights out of cache, [M, 576] x
[576, 3072]::

    rows (M)     1      4      16     64
    dense bf16   372us  365us  436us  842us
    4-bit        57us   109us  403us  1373us

so rows up to :data:`MAX_LOW_BIT_ROWS` take the 4-bit kernel. On 2 Zen 5
cores, timing every matmul of a SmolLM2-135M decode step (30 layers, LM head
aside; after 30 s of load, the state a busy server runs in, where bf16
matmuls run slower) moved the crossover up::

    rows (M)     8      12     16     24     32     64      (ms per step)
    dense bf16   13.6   14.5   15.3   17.4   20.2   32.3
    4-bit        6.7    9.3    11.6   17.0   22.3   43.8

and the engine, 48 greedy tokens after 64-token prompts, interleaved A/B,
medians of 4: 12 sequences 535 -> 659 tok/s, 16 sequences 673 -> 747 tok/s
with the limit raised from 8 to 16; 24 sequences no faster (828 / 834).
Under a quantizer the limit stays 8 (:data:`MAX_LOW_BIT_ROWS_QUANTIZED`):
int8 x int8 takes 8.4 / 10.5 ms at 12 / 16 rows, ahead of the 4-bit kernel.
Both copies are kept: the 4-bit one costs a quarter of the dense one's memory.

The LM head of such a checkpoint (GGUF keeps it 8-bit, Q8_0) gets an int8
copy with one scale per output row for the same reason: at batch 1 its dense
bf16 matmul ([1, 576] x [576, 49152]) took 2.8 ms of an 8.5 ms decode step,
the int8 kernel takes 1.0 ms (measured on 2 Zen 5 cores: rows 1 / 4 / 8 /
16: dense 2156 / 2140 / 2250 / 2846 us, int8 961 / 892 / 1826 / 3715 us).

A quantizer (``--quantization w8a8``, see ``engine/quantize.py``) replaces the
dense path: rows the 4-bit kernel does not take run through the quantizer's
own kernel (int8 x int8 at ~2x bf16's rate), and the dense copy is dropped.

A sparsifier (``--sparsity``, see ``engine/sparsify.py``) replaces every
path: the 4-bit and int8 copies hold the unpruned weights, so they are
dropped with the dense one and all rows run through its kernel.

A weight GGUF stored as Q5_0, Q8_0 or a K-quant (Q4_K, Q5_K, Q6_K) keeps no
dense copy at all (``ggml_matmul.py``): few rows run the packed kernel on the
file's blocks, more rows dequantize a tile at a time into a reused float32
buffer and run a float32 GEMM (bf16 GEMMs are 2-3x slower than float32 on
CPUs without bf16 instructions). Single-thread timings on 2 Zen 3 cores
(load ~2-4, so +-30 %), the 1.5B Qwen2.5's ffn_gate (Q4_K, [8960, 1536]) and
ffn_down (Q6_K, [1536, 8960]), us per call::

    rows (M)               1      4      8      16     32     64
    gate dense f32         3147   9839   10920  13889  26001  38202
    gate packed            1638   5219   6605   16312  27964  85994
    gate tiled f32 (32MB)  6460   14477  12039  20435  23081  56764
    gate dense bf16        3600   13425  22507  56479  95052  187239
    down dense f32         3298   10233  12087  15698  27587  38451
    down packed            3166   7890   13466  27805  53826  96646
    down tiled f32 (32MB)  10300  16821  16772  21171  25654  31813

so rows up to :data:`MAX_PACKED_ROWS` (per model dtype) take the packed kernel
(tiles are now 4 MB, which made the tiled path ~1.3x faster at 64-256 rows).
With int8 activations (the default) the packed kernel is faster at every row
count and the crossover moves up to :data:`MAX_PACKED_INT8_ROWS`. SmolLM2's
Q4_1 ffn_up ([1536, 576]) on 2 Zen 3 cores, us per call::

    rows (M)        1     8     16    32    64
    packed int8     55    213   410   816   1610
    packed float    85    276   541   1099  2121
    tiled float32   231   538   571   781   1114
    dense float32   103   251   359   576   934

(the default model's decode at 16 / 64 users, float32, offline: 70 / 146 ->
141 / 180 tok/s with the limit at 24 instead of 8).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sagellm.core.protocols import LinearQuantizer, Sparsifier
from sagellm.engines.model.ggml_matmul import GGMLMatmul, dequantize_parts, packed_kernels
from sagellm.engines.model.ggml_weights import TORCH_INT4_DTYPES, GGMLWeight
from sagellm.engines.model.q4_weights import GROUP_SIZE, Q4Weight

MAX_LOW_BIT_ROWS = 16
MAX_LOW_BIT_ROWS_QUANTIZED = 8
MAX_INT8_ROWS = 8
INT8_PACK_ROWS = 4096
LOW_BIT_DTYPES = TORCH_INT4_DTYPES
# Most rows the packed GGML kernel serves, by model dtype (measured: see the table above).
MAX_PACKED_ROWS = {torch.float32: 8, torch.bfloat16: 16, torch.float16: 16}
MAX_PACKED_INT8_ROWS = 24  # the same, for int8 activations (any model dtype)


class Linear(nn.Module):
    """``x @ weight.T + bias``, through a 4-bit kernel for few rows when the weight came 4-bit."""

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor | None = None,
        q4: Q4Weight | None = None,
        ggml: Sequence[GGMLWeight] | None = None,
    ) -> None:
        """``ggml``: the weight as GGML blocks (parts stacked along N); ``weight`` is then an empty placeholder
        of the model dtype, and :meth:`pack_low_bit` keeps the blocks or, off CPU, makes them dense."""
        super().__init__()
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.ggml_parts = list(ggml) if ggml else None  # kept packed (or made dense) by pack_low_bit
        self.ggml: GGMLMatmul | None = None
        self.bias = None if bias is None else nn.Parameter(bias, requires_grad=False)
        self.q4 = q4  # packed lazily, on the model's final device and dtype (see pack_low_bit)
        self.packed: torch.Tensor | None = None
        self.scales_and_zeros: torch.Tensor | None = None
        self.int8_weight: torch.Tensor | None = None  # [N, K] int8, one scale per output row
        self.int8_scales: torch.Tensor | None = None
        self.quantized: Any = None  # the quantizer's weight, run by self.quantizer
        self.quantizer: LinearQuantizer | None = None
        self.sparse: Any = None  # the sparsifier's pruned weight, run by self.sparsifier
        self.sparsifier: Sparsifier | None = None

    def dense_weight(self) -> torch.Tensor:
        """The [N, K] weight in the model dtype: the dense parameter, or the packed blocks dequantized (a copy)."""
        if self.ggml_parts is not None:
            return dequantize_parts(self.ggml_parts, self.weight.dtype).to(self.weight.device)
        if self.ggml is not None:
            return self.ggml.dense(self.weight.dtype)
        return self.weight

    def use_quantized(self, qweight: Any, quantizer: LinearQuantizer) -> None:
        """Run rows the 4-bit kernel does not take as ``quantizer.linear(x, qweight, bias)``; free the dense weight."""
        self.ggml = self.ggml_parts = None
        self.quantized, self.quantizer = qweight, quantizer
        self.weight = nn.Parameter(self.weight.new_empty(0), requires_grad=False)

    def use_sparse(self, sweight: Any, sparsifier: Sparsifier) -> None:
        """Run every row as ``sparsifier.linear(x, sweight, bias)``; free the dense, 4-bit and int8 copies.

        Those copies hold the unpruned weights: kept, they would serve the
        few-row matmuls of decode and undo the pruning there.
        """
        self.sparse, self.sparsifier = sweight, sparsifier
        self.q4 = None
        self.ggml = self.ggml_parts = None
        self.packed = self.scales_and_zeros = None
        self.int8_weight = self.int8_scales = None
        self.weight = nn.Parameter(self.weight.new_empty(0), requires_grad=False)

    def pack_low_bit(self) -> bool:
        """Build the 4-bit or packed GGML kernel's operands from the kept codes; False where no kernel serves.

        Packed GGML blocks that no kernel can serve (a GPU, no compiler) become the dense weight here.
        """
        if self.ggml_parts is not None:
            return self._pack_ggml(self.ggml_parts)
        q4, self.q4 = self.q4, None
        weight = self.weight
        if q4 is None or weight.device.type != "cpu" or weight.dtype not in LOW_BIT_DTYPES or not low_bit_available():
            return False
        codes = torch.from_numpy(q4.codes.astype("int32"))
        self.packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(codes, 1)
        # The kernel computes (code - 8) * scale + zero, so zero = min + 8 * scale.
        scales = torch.from_numpy(q4.scales).t()
        zeros = torch.from_numpy(q4.mins).t() + 8.0 * scales
        self.scales_and_zeros = torch.stack([scales, zeros], dim=-1).to(weight.dtype).contiguous()
        return True

    def _pack_ggml(self, parts: list[GGMLWeight]) -> bool:
        self.ggml_parts = None
        dtype, device = self.weight.dtype, self.weight.device
        kernels = packed_kernels() if device.type == "cpu" else None
        if kernels is None:
            self.weight = nn.Parameter(dequantize_parts(parts, dtype).to(device), requires_grad=False)
            return False
        self.ggml = GGMLMatmul(parts, kernels)
        return True

    def pack_int8_rows(self) -> bool:
        """Keep an int8 copy (per-row scales) for few rows; False where the kernel cannot serve this weight."""
        weight = self.weight
        if weight.device.type != "cpu" or weight.dtype not in LOW_BIT_DTYPES or not int8_rows_available():
            return False
        scales = weight.float().abs().amax(dim=1).clamp_min(torch.finfo(torch.float32).tiny) / 127.0
        codes = torch.empty(weight.shape, dtype=torch.int8)
        for start in range(0, weight.shape[0], INT8_PACK_ROWS):  # bounded float32 scratch
            rows = slice(start, start + INT8_PACK_ROWS)
            codes[rows] = torch.round(weight[rows].float() / scales[rows, None]).clamp_(-127, 127).to(torch.int8)
        self.int8_weight, self.int8_scales = codes, scales.to(weight.dtype)
        return True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.sparsifier is not None:
            pruned: torch.Tensor = self.sparsifier.linear(x, self.sparse, self.bias)
            return pruned
        if self.ggml_parts is not None:  # run before the model packed it: pack now, on the current device
            self.pack_low_bit()
        packed = self.ggml
        if packed is not None and self.quantizer is None:
            flat = x.reshape(-1, x.shape[-1])
            limit = MAX_PACKED_INT8_ROWS if packed.int8_activations else MAX_PACKED_ROWS.get(x.dtype, 0)
            many = flat.shape[0] > limit
            dense_out = (packed.tiled(flat.float()) if many else packed.packed(flat)).to(x.dtype)
            dense_out = dense_out.view(*x.shape[:-1], dense_out.shape[-1])
            return dense_out if self.bias is None else dense_out + self.bias
        low_bit_rows = MAX_LOW_BIT_ROWS if self.quantizer is None else MAX_LOW_BIT_ROWS_QUANTIZED
        if self.packed is not None and x.shape[0] <= low_bit_rows:
            out: torch.Tensor = torch.ops.aten._weight_int4pack_mm_for_cpu(
                x, self.packed, GROUP_SIZE, self.scales_and_zeros
            )
            return out if self.bias is None else out + self.bias
        scales = self.int8_scales
        if (
            self.int8_weight is not None
            and scales is not None
            and x.shape[0] <= MAX_INT8_ROWS
            and x.dtype == scales.dtype
        ):
            out = torch.ops.aten._weight_int8pack_mm(x.contiguous(), self.int8_weight, scales)
            return out if self.bias is None else out + self.bias
        if self.quantizer is not None:
            quantized: torch.Tensor = self.quantizer.linear(x, self.quantized, self.bias)
            return quantized
        return F.linear(x, self.weight, self.bias)


def int8_rows_available() -> bool:
    return hasattr(torch.ops.aten, "_weight_int8pack_mm")


def low_bit_available() -> bool:
    """The CPU 4-bit kernel ships with torch 2.6 and later."""
    return hasattr(torch.ops.aten, "_weight_int4pack_mm_for_cpu")
