"""Read a GGUF file: architecture metadata, tokenizer fields and dequantized weights.

Weights come back under Hugging Face names (``model.layers.0.self_attn.q_proj.weight``)
so one model class serves GGUF and safetensors checkpoints alike. llama.cpp
stores Llama q/k projections permuted for its interleaved RoPE; we undo that
so the model can use the Hugging Face rotate-half RoPE and match it exactly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sagellm.core.errors import ModelLoadError
from sagellm.engines.model.config import GEMMA_ARCHITECTURES, ModelConfig
from sagellm.engines.model.gemma_gguf import GEMMA_NORM_NAMES, gemma_fields
from sagellm.engines.model.ggml_weights import ggml_from_gguf
from sagellm.engines.model.gguf_file import GGUFFile
from sagellm.engines.model.lazy_weights import DequantizingWeights
from sagellm.engines.model.q4_weights import Q4Weight, q4_from_gguf
from sagellm.engines.model.rope_scaling import RopeScaling, scaling_from_gguf

SUPPORTED_ARCHITECTURES = ("llama", "qwen2", "qwen3", "mistral", *GEMMA_ARCHITECTURES)
# Architectures whose q/k weights llama.cpp's converter permuted.
PERMUTED_QK_ARCHITECTURES = ("llama", "mistral")

_LAYER_NAMES = {
    "attn_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_q.bias": "self_attn.q_proj.bias",
    "attn_k.bias": "self_attn.k_proj.bias",
    "attn_v.bias": "self_attn.v_proj.bias",
    "attn_output.weight": "self_attn.o_proj.weight",
    "attn_q_norm.weight": "self_attn.q_norm.weight",
    "attn_k_norm.weight": "self_attn.k_norm.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}
_GEMMA_LAYER_NAMES = {**_LAYER_NAMES, **GEMMA_NORM_NAMES}
_GLOBAL_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}


@dataclass(frozen=True, slots=True)
class GGUFCheckpoint:
    config: ModelConfig
    metadata: dict[str, Any]  # scalar and string fields, plus tokenizer lists
    weights: dict[str, torch.Tensor]
    q4_weights: dict[str, Q4Weight]  # the Q4_0/Q4_1 tensors again, as codes (see q4_weights.py)


def open_reader(path: Path) -> GGUFFile:
    """Open a GGUF file (see ``gguf_file.py``), turning every low-level failure into ModelLoadError."""
    if not path.is_file():
        raise ModelLoadError(f"model file not found: {path}")
    try:
        return GGUFFile(path)
    except Exception as exc:  # ValueError, struct and enum errors on garbage
        raise ModelLoadError(f"{path} is not a readable GGUF file: {exc}") from None


def read_metadata(reader: GGUFFile) -> dict[str, Any]:
    """All key/value fields; token lists as Python lists."""
    return dict(reader.metadata)


def config_from_metadata(metadata: dict[str, Any], path: Path) -> ModelConfig:
    arch = metadata.get("general.architecture")
    if arch not in SUPPORTED_ARCHITECTURES:
        raise ModelLoadError(
            f"{path}: architecture {arch!r} is not supported (supported: {', '.join(SUPPORTED_ARCHITECTURES)})"
        )

    def need(key: str) -> Any:
        full = f"{arch}.{key}"
        if full not in metadata:
            raise ModelLoadError(f"{path}: GGUF metadata lacks {full}")
        return metadata[full]

    hidden = int(need("embedding_length"))
    num_heads = int(need("attention.head_count"))
    context_length = int(need("context_length"))
    scaling = scaling_from_gguf(metadata, arch, context_length)
    tokens = metadata.get("tokenizer.ggml.tokens") or []
    eos = metadata.get("tokenizer.ggml.eos_token_id")
    return ModelConfig(
        architecture=arch,
        vocab_size=int(metadata.get(f"{arch}.vocab_size", len(tokens))),
        hidden_size=hidden,
        intermediate_size=int(need("feed_forward_length")),
        num_layers=int(need("block_count")),
        num_heads=num_heads,
        num_kv_heads=int(metadata.get(f"{arch}.attention.head_count_kv", num_heads)),
        head_dim=int(metadata.get(f"{arch}.attention.key_length", hidden // num_heads)),
        max_position_embeddings=scaling.max_positions(context_length) if scaling else context_length,
        rms_norm_eps=float(need("attention.layer_norm_rms_epsilon")),
        rope_theta=float(metadata.get(f"{arch}.rope.freq_base", 10000.0)),
        rope_scaling=scaling,
        attention_bias=arch == "qwen2",
        qk_norm=arch in ("qwen3", "gemma3"),
        sliding_window=_opt_int(metadata.get(f"{arch}.attention.sliding_window")) or None,
        **(gemma_fields(metadata, arch) if arch in GEMMA_ARCHITECTURES else {}),
        tie_word_embeddings=True,  # corrected below once we know whether output.weight exists
        bos_token_id=_opt_int(metadata.get("tokenizer.ggml.bos_token_id")),
        eos_token_ids=(int(eos),) if eos is not None else (),
        name=str(metadata.get("general.name", path.stem)),
    )


ROPE_FREQS = "rope_freqs.weight"


def with_freq_factors(config: ModelConfig, factors: np.ndarray) -> ModelConfig:
    """``config`` with a GGUF's ``rope_freqs`` divisors (a file that also names a scaling type is refused)."""
    if config.rope_scaling is not None:
        raise ModelLoadError(f"GGUF has both rope_freqs and RoPE scaling {config.rope_scaling.rope_type!r}")
    scaling = RopeScaling("freq_factors", freq_factors=tuple(float(f) for f in factors.reshape(-1)))
    return dataclasses.replace(config, rope_scaling=scaling)


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def hf_name(gguf_name: str, architecture: str = "llama") -> str | None:
    if gguf_name in _GLOBAL_NAMES:
        return _GLOBAL_NAMES[gguf_name]
    if gguf_name.startswith("blk."):
        _, layer, rest = gguf_name.split(".", 2)
        names = _GEMMA_LAYER_NAMES if architecture in GEMMA_ARCHITECTURES else _LAYER_NAMES
        if rest in names:
            return f"model.layers.{layer}.{names[rest]}"
    return None


def unpermute_qk(weight: np.ndarray, num_heads: int) -> np.ndarray:
    """Undo llama.cpp's permutation of q/k rows (interleaved -> rotate-half layout)::

    rows per head:  [x0 y0 x1 y1 ...]  ->  [x0 x1 ... | y0 y1 ...]
    """
    half = weight.shape[0] // num_heads // 2
    w = weight.reshape(num_heads, half, 2, *weight.shape[1:])
    return w.swapaxes(2, 1).reshape(weight.shape)


def dequantize_tensor(tensor: Any) -> np.ndarray:
    """Any GGML type the gguf package knows (Q4_0, Q4_1, Q8_0, F16, F32, K-quants...) to float32."""
    from gguf.quants import dequantize

    try:
        array = dequantize(tensor.data, tensor.tensor_type)
    except NotImplementedError as exc:
        raise ModelLoadError(f"tensor {tensor.name}: {tensor.tensor_type.name} cannot be dequantized: {exc}") from None
    shape = tuple(int(d) for d in reversed(tensor.shape))
    return np.asarray(array, dtype=np.float32).reshape(shape)


def load_gguf(path: Path, dtype: torch.dtype, progress: Callable[[int, int], None] | None = None) -> GGUFCheckpoint:
    reader = open_reader(path)
    metadata = read_metadata(reader)
    config = config_from_metadata(metadata, path)
    weights: dict[str, torch.Tensor] = DequantizingWeights()  # packed entries turn dense only when read
    q4_weights: dict[str, Any] = {}  # Q4Weight codes, and GGMLWeight blocks kept packed (see ggml_weights.py)
    total = len(reader.tensors)
    for i, tensor in enumerate(reader.tensors):
        if tensor.name == ROPE_FREQS:  # Llama 3's scaling, precomputed by the converter
            config = with_freq_factors(config, dequantize_tensor(tensor))
            continue
        name = hf_name(tensor.name, config.architecture)
        if name is None:
            continue
        fix_rows = _row_fix(name, config)
        if not _keep_packed(reader, weights, q4_weights, name, tensor, dtype, fix_rows):
            # copy: F32 tensors come back as views of the memory-mapped file
            dense = np.array(fix_rows(dequantize_tensor(tensor)), dtype=np.float32)
            weights[name] = torch.from_numpy(dense).to(dtype)
            q4 = q4_from_gguf(tensor)
            if q4 is not None:
                q4_weights[name] = q4.map_rows(fix_rows)
            reader.release(tensor)  # copied out: its file pages need not stay resident
        if progress is not None:
            progress(i + 1, total)
    tied = "lm_head.weight" not in weights
    config = _with_tied(config, tied)
    return GGUFCheckpoint(config=config, metadata=metadata, weights=weights, q4_weights=q4_weights)


def _row_fix(name: str, config: ModelConfig) -> Callable[[np.ndarray], np.ndarray]:
    """The row permutation a tensor needs (llama.cpp's q/k order undone), or the identity."""
    if config.architecture in PERMUTED_QK_ARCHITECTURES:
        if name.endswith("q_proj.weight"):
            return lambda rows: unpermute_qk(rows, config.num_heads)
        if name.endswith("k_proj.weight"):
            return lambda rows: unpermute_qk(rows, config.num_kv_heads)
    return lambda rows: rows


def _with_tied(config: ModelConfig, tied: bool) -> ModelConfig:
    from dataclasses import replace

    return replace(config, tie_word_embeddings=tied)


def _keep_packed(
    reader: GGUFFile,
    weights: dict[str, torch.Tensor],
    q4_weights: dict[str, Any],
    name: str,
    tensor: Any,
    dtype: torch.dtype,
    fix_rows: Callable[[np.ndarray], np.ndarray],
) -> bool:
    """Keep a Q5_0/Q8_0/K-quant tensor as its blocks (no dense copy); False for every other tensor."""
    packed = ggml_from_gguf(tensor, dtype)
    if packed is None or not isinstance(weights, DequantizingWeights):
        return False
    reordered = packed.map_rows(fix_rows)
    if reordered.blocks is not packed.blocks:  # q/k rows moved into a copy: the file's pages are not used
        reader.release(tensor)
    weights.keep_packed(name, reordered)
    q4_weights[name] = reordered
    return True
