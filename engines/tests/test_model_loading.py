"""Loading checkpoints: typed errors for bad files, and Hugging Face safetensors directories.

The safetensors tests build tiny random ``LlamaForCausalLM`` and
``Qwen2ForCausalLM`` models with transformers (GQA: 4 query heads over 2 KV
heads; Qwen2 adds q/k/v biases and ties the embeddings; a non-default
RoPE theta), save them with a small BPE ``tokenizer.json``, load the
directory with our engine and require transformers' greedy tokens and
logits (as close to the float64 model's as transformers' own float32 rows,
within ``NOISE_FACTOR``) across batching, chunked prefill and multi-block
contexts.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from logits_reference import float64_copy
from tiny_hf import TINY, assert_serves_like_transformers, bpe_tokenizer, hf_greedy, randomise, tiny_engine

from sagellm.core.errors import ConfigError, ModelLoadError
from sagellm.engines import LLM
from sagellm.engines.engine.device import resolve_device
from sagellm.engines.model.loader import load_checkpoint, resolve_model_path

NEW_TOKENS = 24
QWEN3_HEAD_DIM = 32


# ---------------------------------------------------------------------- bad files


def test_missing_file_is_a_model_load_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        LLM(model=str(tmp_path / "absent.gguf"), show_progress=False)


def test_random_bytes_are_a_model_load_error(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.gguf"
    corrupt.write_bytes(
        torch.randint(0, 256, (4096,), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)).numpy().tobytes()
    )
    with pytest.raises(ModelLoadError, match="not a readable GGUF"):
        LLM(model=str(corrupt), show_progress=False)


@pytest.mark.parametrize("keep", [64, 1 << 20])
def test_truncated_gguf_is_a_model_load_error(tmp_path: Path, model_path: Path, keep: int) -> None:
    truncated = tmp_path / "truncated.gguf"
    with model_path.open("rb") as src:
        truncated.write_bytes(src.read(keep))
    with pytest.raises(ModelLoadError):
        load_checkpoint(truncated, torch.float32, show_progress=False)


def test_directory_without_a_model_is_a_model_load_error(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("no model here")
    with pytest.raises(ModelLoadError, match="neither config.json nor exactly one .gguf"):
        resolve_model_path(tmp_path)


def test_directory_with_one_gguf_resolves_to_it(tmp_path: Path, model_path: Path) -> None:
    link = tmp_path / model_path.name
    link.symlink_to(model_path)
    assert resolve_model_path(tmp_path) == link


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"model_type": "gpt2", "vocab_size": 10}, "not supported"),
        ({"model_type": "llama", "vocab_size": 10}, "missing or has a bad field"),
        ("{ not json", "cannot parse"),
    ],
)
def test_bad_config_json_is_a_model_load_error(tmp_path: Path, config: Any, match: str) -> None:
    (tmp_path / "config.json").write_text(config if isinstance(config, str) else json.dumps(config))
    with pytest.raises(ModelLoadError, match=match):
        load_checkpoint(tmp_path, torch.float32, show_progress=False)


def test_config_without_weights_is_a_model_load_error(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "vocab_size": 10, **TINY}))
    with pytest.raises(ModelLoadError, match="no \\*.safetensors"):
        load_checkpoint(tmp_path, torch.float32, show_progress=False)


def test_corrupt_safetensors_is_a_model_load_error(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "vocab_size": 10, **TINY}))
    (tmp_path / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00garbage")
    with pytest.raises(ModelLoadError, match="cannot read"):
        load_checkpoint(tmp_path, torch.float32, show_progress=False)


def test_device_errors_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown device"):
        resolve_device("tpu-9000")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA"):
            resolve_device("cuda")


# ---------------------------------------------------------------------- safetensors vs transformers


def save_tiny_model(architecture: str, directory: Path) -> Any:
    transformers = pytest.importorskip("transformers")
    vocab = bpe_tokenizer(directory)
    if architecture == "llama":
        config = transformers.LlamaConfig(vocab_size=vocab, tie_word_embeddings=False, **TINY)
        model = transformers.LlamaForCausalLM(config)
        shard = "40KB"  # several safetensors files
    elif architecture == "qwen3":  # q/k norms, and a head_dim that is not hidden_size / heads
        config = transformers.Qwen3Config(vocab_size=vocab, tie_word_embeddings=False, head_dim=QWEN3_HEAD_DIM, **TINY)
        model = transformers.Qwen3ForCausalLM(config)
        shard = "10GB"
    else:
        config = transformers.Qwen2Config(vocab_size=vocab, tie_word_embeddings=True, **TINY)
        model = transformers.Qwen2ForCausalLM(config)
        shard = "10GB"
    randomise(model)
    model.save_pretrained(directory, max_shard_size=shard)
    return model.eval()


@pytest.mark.slow
@pytest.mark.parametrize("architecture", ["llama", "qwen2", "qwen3"])
def test_safetensors_directory_matches_transformers(architecture: str, tmp_path: Path) -> None:
    hf_model = save_tiny_model(architecture, tmp_path)
    files = sorted(p.name for p in tmp_path.glob("*.safetensors"))
    assert len(files) > 1 if architecture == "llama" else len(files) == 1
    generator = torch.Generator().manual_seed(1)
    vocab = hf_model.config.vocab_size
    prompts = [torch.randint(3, vocab, (n,), generator=generator).tolist() for n in (5, 23, 40, 9)]
    exact_model = float64_copy(hf_model)
    references = [hf_greedy(hf_model, exact_model, p, NEW_TOKENS) for p in prompts]
    spread = torch.cat([r.logits for r in references]).std()
    assert spread > 1.0  # the comparison below is not trivially met by near-zero logits

    llm = tiny_engine(tmp_path)
    config = llm.engine.model_config
    head_dim = QWEN3_HEAD_DIM if architecture == "qwen3" else 16
    assert (config.architecture, config.num_heads, config.num_kv_heads, config.head_dim) == (
        architecture,
        4,
        2,
        head_dim,
    )
    assert config.qk_norm is (architecture == "qwen3")
    assert config.attention_bias is (architecture == "qwen2")
    assert config.tie_word_embeddings is (architecture == "qwen2")
    assert config.rope_theta == 5000.0
    assert 2 in llm.tokenizer.eos_token_ids

    assert_serves_like_transformers(llm, prompts, references, NEW_TOKENS, "max |logit - float64|")


def test_safetensors_directory_without_tokenizer_is_a_model_load_error(tmp_path: Path) -> None:
    save_tiny_model("qwen2", tmp_path)
    (tmp_path / "tokenizer.json").unlink()
    with pytest.raises(ModelLoadError, match="no tokenizer.json"):
        LLM(
            model={"path": str(tmp_path), "dtype": "float32", "device": "cpu"},
            kv_pool={"num_blocks": 8},
            show_progress=False,
        )


def test_unknown_architecture_in_gguf_is_a_model_load_error(tmp_path: Path, model_path: Path) -> None:
    """Rewrite general.architecture of a copy of the real file: the loader must refuse it, not guess."""
    gguf = pytest.importorskip("gguf")
    copy = tmp_path / "renamed.gguf"
    shutil.copyfile(model_path, copy)
    reader = gguf.GGUFReader(str(copy), "r+")
    field = reader.fields["general.architecture"]
    value = field.parts[field.data[0]]
    value[:] = list(b"bloom" + b" " * (len(value) - 5))[: len(value)]
    del reader
    with pytest.raises(ModelLoadError, match="not supported"):
        load_checkpoint(copy, torch.float32, show_progress=False)


@pytest.mark.slow
def test_qwen3_runs_through_the_fused_bf16_kernels(tmp_path: Path) -> None:
    """q/k norms sit between the qkv projection and RoPE, so the fused RoPE kernel is bypassed for them."""
    from teacher_forcing import agreement, teacher_forced_logits

    save_tiny_model("qwen3", tmp_path)
    prompt, continuation = list(range(5, 25)), list(range(30, 46))
    rows = {}
    for dtype, fusion in (("float32", "none"), ("bfloat16", "auto"), ("float32", "auto")):
        llm = LLM(
            model={"path": str(tmp_path), "dtype": dtype, "device": "cpu"},
            kv_pool={"num_blocks": 32, "block_size": 8},
            kernel_fusion={"implementation": fusion},
            show_progress=False,
        )
        assert (llm.engine.runner.model.layers[0].fused_ops is not None) is (fusion == "auto")
        rows[dtype, fusion] = teacher_forced_logits(llm.engine, [prompt], [continuation]).logits
    matched = agreement(rows["bfloat16", "auto"], rows["float32", "none"])  # the unfused float32 reference
    assert matched.top1 >= 0.9 and matched.mean_kl < 0.01, matched
    torch.testing.assert_close(rows["float32", "auto"], rows["float32", "none"], rtol=1e-4, atol=1e-4)


def test_a_sliding_window_does_not_cap_the_context() -> None:
    """Windowed layers mask what lies before their window, so the context runs to the model's positions."""
    from sagellm.core.config import load_config
    from sagellm.engines.engine.builder import _max_model_len
    from sagellm.engines.model.config import ModelConfig
    from sagellm.engines.model.safetensors_loader import _window

    mistral = ModelConfig("mistral", 100, 64, 128, 2, 4, 2, 16, max_position_embeddings=32768, sliding_window=4096)
    assert _max_model_len(load_config(), mistral) == 32768
    assert _max_model_len(load_config(model={"max_model_len": 8192}), mistral) == 8192
    with pytest.raises(ConfigError, match="positions"):
        _max_model_len(load_config(model={"max_model_len": 65536}), mistral)
    assert _window(4096, True) == 4096 and _window(4096, False) is None and _window(None, True) is None
