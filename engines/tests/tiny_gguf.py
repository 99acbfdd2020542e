"""Tiny random Llama GGUF files with the embedded model's tokenizer: draft/target pairs for speculation tests.

Written with the ``gguf`` package, as a user's own small model would be:
the tokenizer fields are copied from the default model, the weights are
random (float32), so two files made with different seeds disagree often
and the same file agrees with itself exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter
from gguf.quants import quantize

from sagellm.engines.model.default_model import default_model_path

ARCH = "llama"
HIDDEN, HEADS, KV_HEADS, FFN = 64, 4, 2, 128


def write_tiny_llama(
    path: Path,
    num_layers: int,
    seed: int,
    swap_tokens: tuple[int, int] | None = None,
    quant: str | None = None,
    tied: bool = False,
) -> Path:
    """A ``num_layers``-layer random model; ``swap_tokens``: two token ids trade texts (a foreign vocabulary);
    ``quant``: every matrix stored as that GGML type (``Q8_0``: rows of 64 take only 32-wide blocks);
    ``tied``: no ``output.weight``, the head reads the embedding table."""
    reader = GGUFReader(str(default_model_path()))
    writer = GGUFWriter(str(path), ARCH)
    vocab = 0
    for key, field in reader.fields.items():
        if not key.startswith("tokenizer."):
            continue
        value = field.contents()
        if key == "tokenizer.ggml.tokens":
            vocab = len(value)
            if swap_tokens is not None:
                value = list(value)
                a, b = swap_tokens
                value[a], value[b] = value[b], value[a]
        if field.types[0] == GGUFValueType.ARRAY:
            writer.add_key_value(key, value, field.types[0], sub_type=field.types[-1])
        else:
            writer.add_key_value(key, value, field.types[0])
    writer.add_name(f"tiny-random-{num_layers}l-{seed}")
    writer.add_context_length(512)
    writer.add_embedding_length(HIDDEN)
    writer.add_block_count(num_layers)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_freq_base(10000.0)
    rng = np.random.default_rng(seed)
    head_dim = HIDDEN // HEADS

    def add(name: str, *shape: int, scale: float = 0.1) -> None:
        values = (rng.standard_normal(shape) * scale).astype(np.float32)
        if quant is None:
            writer.add_tensor(name, values)
        else:
            kind = GGMLQuantizationType[quant]
            writer.add_tensor(name, quantize(values, kind), raw_dtype=kind)

    add("token_embd.weight", vocab, HIDDEN, scale=1.0)
    if not tied:  # untied by default: a tied head makes a random model echo its input
        add("output.weight", vocab, HIDDEN, scale=1.0)
    writer.add_tensor("output_norm.weight", np.ones(HIDDEN, dtype=np.float32))
    for layer in range(num_layers):
        blk = f"blk.{layer}."
        writer.add_tensor(blk + "attn_norm.weight", np.ones(HIDDEN, dtype=np.float32))
        writer.add_tensor(blk + "ffn_norm.weight", np.ones(HIDDEN, dtype=np.float32))
        add(blk + "attn_q.weight", HEADS * head_dim, HIDDEN)
        add(blk + "attn_k.weight", KV_HEADS * head_dim, HIDDEN)
        add(blk + "attn_v.weight", KV_HEADS * head_dim, HIDDEN)
        add(blk + "attn_output.weight", HIDDEN, HEADS * head_dim)
        add(blk + "ffn_gate.weight", FFN, HIDDEN)
        add(blk + "ffn_up.weight", FFN, HIDDEN)
        add(blk + "ffn_down.weight", HIDDEN, FFN)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
