"""Gemma 2, Gemma 3 and Mistral against transformers: their layer shapes and real sliding-window attention.

Each family gets a tiny random transformers model whose window (8 tokens)
is far shorter than the prompts (up to 40) and generations (24 tokens), so
most positions attend to a cut context; the block size (8) and a 16-token
prefill budget make windows fall across blocks and across prefill chunks
that read earlier chunks from the pool. Gemma 3 mixes windowed and full
layers with two RoPE bases and a ``query_pre_attn_scalar`` that is not
``head_dim``; Gemma 2 adds soft-capping of attention scores and logits, set
low enough here to bite. Greedy tokens must equal transformers' and every
logit row must lie within the noise-floor bound of the float64 model
(logits_reference.py). ``test_the_window_changes_the_reference`` shows the
comparison can fail: the same weights without the window give logits far
outside the bound.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from logits_reference import exact_rows, float64_copy, logits_bound
from tiny_hf import TINY, assert_serves_like_transformers, bpe_tokenizer, hf_greedy, randomise, tiny_engine

from sagellm.engines import LLM

NEW_TOKENS = 24
WINDOW = 8
HEAD_DIM = 16
PROMPT_LENGTHS = (5, 23, 40, 9)
GEMMA = {
    **{k: v for k, v in TINY.items() if k not in ("rope_theta", "num_hidden_layers")},
    "num_hidden_layers": 3,
    "head_dim": HEAD_DIM,
    "query_pre_attn_scalar": 24,  # not head_dim: the attention scale must come from it
    "sliding_window": WINDOW,
}


def tiny_model(family: str, directory: Path, window: int | None = WINDOW) -> Any:
    transformers = pytest.importorskip("transformers")
    directory.mkdir(exist_ok=True)
    vocab = bpe_tokenizer(directory)
    if family == "gemma3":
        config = transformers.Gemma3TextConfig(
            vocab_size=vocab,
            **{**GEMMA, "sliding_window": window or 4096},
            layer_types=["sliding_attention", "full_attention", "sliding_attention"],
            rope_parameters={
                "sliding_attention": {"rope_type": "default", "rope_theta": 1000.0},
                "full_attention": {"rope_type": "default", "rope_theta": 5000.0},
            },
        )
        model = transformers.Gemma3ForCausalLM(config)
    elif family == "gemma2":
        config = transformers.Gemma2Config(
            vocab_size=vocab,
            **{**GEMMA, "sliding_window": window or 4096},
            attn_logit_softcapping=2.0,
            final_logit_softcapping=6.0,
            attn_implementation="eager",
        )
        model = transformers.Gemma2ForCausalLM(config)
    else:
        config = transformers.MistralConfig(vocab_size=vocab, tie_word_embeddings=False, sliding_window=window, **TINY)
        model = transformers.MistralForCausalLM(config)
    randomise(model)
    model.save_pretrained(directory)
    return model.eval()


def prompts_for(vocab: int) -> list[list[int]]:
    generator = torch.Generator().manual_seed(1)
    return [torch.randint(3, vocab, (n,), generator=generator).tolist() for n in PROMPT_LENGTHS]


@pytest.mark.slow
@pytest.mark.parametrize("family", ["gemma3", "gemma2", "mistral"])
def test_matches_transformers_past_the_window(family: str, tmp_path: Path) -> None:
    hf_model = tiny_model(family, tmp_path)
    prompts = prompts_for(hf_model.config.vocab_size)
    exact_model = float64_copy(hf_model)
    references = [hf_greedy(hf_model, exact_model, p, NEW_TOKENS) for p in prompts]
    assert torch.cat([r.logits for r in references]).std() > 1.0

    llm = tiny_engine(tmp_path)
    config = llm.engine.model_config
    assert config.sliding_window == WINDOW
    expected_local = {"gemma3": (0, 2), "gemma2": (0, 2), "mistral": None}[family]
    assert config.local_layers == expected_local
    assert llm.engine.max_model_len > WINDOW  # the window no longer caps the context

    assert_serves_like_transformers(llm, prompts, references, NEW_TOKENS, f"{family} max |logit - float64|")


@pytest.mark.slow
@pytest.mark.parametrize("family", ["gemma3", "mistral"])
def test_the_window_changes_the_reference(family: str, tmp_path: Path) -> None:
    """Without the window the same weights give logits far outside the bound: the test above tells them apart."""
    windowed = tiny_model(family, tmp_path / "windowed")
    full = tiny_model(family, tmp_path / "full", window=None)
    prompt = prompts_for(windowed.config.vocab_size)[2]
    reference = hf_greedy(windowed, float64_copy(windowed), prompt, NEW_TOKENS)
    rows = exact_rows(float64_copy(full), prompt, reference.token_ids)
    assert float((rows - reference.exact).abs().max()) > 100 * logits_bound([reference])


@pytest.mark.slow
@pytest.mark.parametrize("cache_dtype", ["auto", "int8"])
def test_gemma3_in_bfloat16_through_the_fused_kernels(cache_dtype: str, tmp_path: Path) -> None:
    """bf16 runs the fused kernels on full layers and the masked PyTorch paths on windowed ones; both
    agree with float32 (the token-exact path above) on contexts three times the window."""
    from teacher_forcing import agreement, teacher_forced_logits

    tiny_model("gemma3", tmp_path)
    prompts, continuations = [list(range(5, 25)), list(range(40, 47))], [list(range(30, 46)), list(range(60, 80))]
    rows = {}
    for dtype in ("float32", "bfloat16"):
        llm = LLM(
            model={"path": str(tmp_path), "dtype": dtype, "device": "cpu"},
            kv_pool={"num_blocks": 32, "block_size": 8, "cache_dtype": cache_dtype if dtype != "float32" else "auto"},
            scheduler_ir={"max_num_batched_tokens": 16},
            show_progress=False,
        )
        full_layer = llm.engine.runner.model.layers[1]
        assert full_layer.window is None and full_layer.fused_attention is not None  # it serves bf16 only
        rows[dtype] = teacher_forced_logits(llm.engine, prompts, continuations, arrivals=[0, 1]).logits
    matched = agreement(rows["bfloat16"], rows["float32"])
    assert matched.top1 >= 0.9 and matched.mean_kl < 0.02, matched


# llama.cpp's Gemma tensor names (convert_hf_to_gguf.py / llama-arch.cpp), written out here rather than taken from
# the loader, so that a wrong mapping there cannot cancel out against the same mapping here.
GGUF_GEMMA_NAMES = {
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "post_attention_norm",
    "pre_feedforward_layernorm": "ffn_norm",
    "post_feedforward_layernorm": "post_ffw_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "self_attn.q_norm": "attn_q_norm",
    "self_attn.k_norm": "attn_k_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def gguf_name(hf_name: str) -> str:
    if hf_name == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf_name == "model.norm.weight":
        return "output_norm.weight"
    _, _, layer, rest = hf_name.split(".", 3)
    module = rest.removesuffix(".weight")
    return f"blk.{layer}.{GGUF_GEMMA_NAMES[module]}.weight"


def write_gemma3_gguf(model: Any, path: Path) -> None:
    """``model`` as llama.cpp's converter writes it: norm weights + 1, the default model's tokenizer fields."""
    from gguf import GGUFReader, GGUFValueType, GGUFWriter

    from sagellm.engines.model.default_model import default_model_path

    cfg = model.config
    writer = GGUFWriter(str(path), "gemma3")
    for key, field in GGUFReader(str(default_model_path())).fields.items():
        if key.startswith("tokenizer.") and key != "tokenizer.chat_template":
            sub = {"sub_type": field.types[-1]} if field.types[0] == GGUFValueType.ARRAY else {}
            writer.add_key_value(key, field.contents(), field.types[0], **sub)
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_key_length(cfg.head_dim)
    writer.add_value_length(cfg.head_dim)
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_rope_freq_base(cfg.rope_parameters["full_attention"]["rope_theta"])
    writer.add_sliding_window(cfg.sliding_window)
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight":
            continue  # tied
        data = tensor.float() + 1.0 if name.endswith("norm.weight") else tensor.float()
        writer.add_tensor(gguf_name(name), data.numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@pytest.mark.slow
def test_gemma3_gguf_matches_transformers(tmp_path: Path) -> None:
    """A Gemma 3 GGUF (llama.cpp's names, folded norms, its fixed window pattern and local RoPE base)."""
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("gguf")
    from gguf import GGUFReader

    from sagellm.engines.model.default_model import default_model_path

    vocab = len(GGUFReader(str(default_model_path())).fields["tokenizer.ggml.tokens"].contents())
    config = transformers.Gemma3TextConfig(
        vocab_size=vocab,
        **{**GEMMA, "num_hidden_layers": 6, "query_pre_attn_scalar": HEAD_DIM},  # llama.cpp: head_dim below 27B
        rope_parameters={
            "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},  # llama.cpp's fixed local base
            "full_attention": {"rope_type": "default", "rope_theta": 5000.0},
        },
    )
    hf_model = transformers.Gemma3ForCausalLM(config)
    randomise(hf_model)
    hf_model.eval()
    path = tmp_path / "tiny-gemma3.gguf"
    write_gemma3_gguf(hf_model, path)
    prompts = prompts_for(300)
    exact_model = float64_copy(hf_model)
    references = [hf_greedy(hf_model, exact_model, p, NEW_TOKENS) for p in prompts]

    llm = tiny_engine(path)
    assert llm.engine.model_config.local_layers == (0, 1, 2, 3, 4)
    assert_serves_like_transformers(llm, prompts, references, NEW_TOKENS, "gemma3 GGUF max |logit - float64|")
