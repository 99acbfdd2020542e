"""Tiny Hugging Face models and tokenizer directories, for tests of what loads from one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from engines_helpers import drive, no_eos
from logits_reference import Reference, exact_rows, logits_bound
from margins import record_margin

from sagellm.core.types import SamplingParams
from sagellm.engines import LLM

TINY = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 256,
    "rope_theta": 5000.0,
    "rms_norm_eps": 1e-5,
    "bos_token_id": 1,
    "eos_token_id": 2,
}


def bpe_tokenizer(directory: Path) -> int:
    """A small byte-level BPE saved as tokenizer.json; returns its vocabulary size."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(["the quick brown fox jumps over the lazy dog, hello world"] * 20, trainer)
    tokenizer.save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|im_end|>", "bos_token": None}))
    return int(tokenizer.get_vocab_size())


def randomise(model: torch.nn.Module) -> None:
    """Weights large enough that logits spread over several units (the default init gives ~0.01)."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            if name.endswith("norm.weight"):
                param.copy_(1.0 + 0.2 * noise)
            elif "embed_tokens" in name:
                param.copy_(noise)
            elif name.startswith("lm_head"):
                param.copy_(noise * 0.4)
            else:
                param.copy_(noise * 0.3 / param.shape[-1] ** 0.5 if param.dim() > 1 else noise * 0.2)


def hf_greedy(model: Any, exact_model: Any, prompt: list[int], new_tokens: int) -> Reference:
    """transformers' greedy continuation of ``prompt`` with its float32 logits and the float64 rows of the same."""
    input_ids = torch.tensor([prompt])
    with no_eos(model), torch.inference_mode():
        out = model.generate(
            input_ids,
            attention_mask=torch.ones_like(input_ids),
            max_new_tokens=new_tokens,
            do_sample=False,
            output_logits=True,
            return_dict_in_generate=True,
        )
    tokens = out.sequences[0, len(prompt) :].tolist()
    return Reference(tokens, torch.cat(out.logits).float(), exact_rows(exact_model, prompt, tokens))


def tiny_engine(path: Path) -> LLM:
    """A tiny model served float32 with 8-token blocks and 16-token prefill chunks (longer prompts are split)."""
    return LLM(
        model={"path": str(path), "dtype": "float32", "device": "cpu"},
        kv_pool={"num_blocks": 64, "block_size": 8},
        scheduler_ir={"max_num_batched_tokens": 16},
        show_progress=False,
    )


def assert_serves_like_transformers(
    llm: LLM, prompts: list[list[int]], references: list[Reference], new_tokens: int, label: str
) -> None:
    """Four prompts arriving at steps 0, 0, 2 and 5: transformers' greedy tokens, every logits row within the
    float32 noise bound of the float64 model, and at least one prompt split across prefill chunks."""
    params = SamplingParams(temperature=0.0, max_tokens=new_tokens, ignore_eos=True)
    result = drive(llm.engine, prompts, arrivals=[0, 0, 2, 5], sampling=params, references=references)
    for i, ref in enumerate(references):
        assert result.token_ids[i] == ref.token_ids, f"prompt {i}"
    assert result.probe.rows_checked == len(prompts) * new_tokens
    assert result.probe.split_prompt_chunks > 0
    worst, bound = max(result.probe.max_abs_err.values()), logits_bound(references)
    record_margin(label, worst, bound)
    assert worst <= bound, f"max abs logits error {worst:.2e} > {bound:.2e}"
