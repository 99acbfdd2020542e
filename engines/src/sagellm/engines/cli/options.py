"""Command-line options shared by the subcommands, and their mapping to config."""

from __future__ import annotations

import argparse
import json
from typing import Any

from sagellm.core import registry
from sagellm.core.config import SageLLMConfig, load_config
from sagellm.core.errors import InvalidRequestError
from sagellm.core.types import SamplingParams
from sagellm.core.yaml_scalars import load_yaml


def add_engine_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model and engine")
    group.add_argument(
        "--model",
        "-m",
        help="a .gguf file or a Hugging Face model directory (default: the embedded SmolLM2-135M-Instruct)",
    )
    group.add_argument("--config", help="YAML config file (SAGELLM__SECTION__KEY env vars override it)")
    group.add_argument(
        "--chat-template",
        metavar="TEMPLATE",
        help="a Jinja chat template file, or the template inline, used instead of the model's own "
        "(default: the GGUF's tokenizer.chat_template, chat_template.jinja or tokenizer_config.json; else ChatML)",
    )
    group.add_argument(
        "--dtype",
        choices=["auto", "float32", "bfloat16", "float16"],
        help="compute dtype (auto: bf16 on GPU and bf16-capable CPUs, else float32)",
    )
    group.add_argument("--device", help="auto, cpu, cuda or cuda:N (default: auto)")
    group.add_argument("--threads", type=int, help="CPU threads for PyTorch (per rank with --tensor-parallel-size)")
    group.add_argument(
        "--tensor-parallel-size",
        "-tp",
        type=int,
        help="ranks the model is split across, one process each (default 1; SmolLM2 splits up to 3)",
    )
    group.add_argument(
        "--collective-backend",
        help=f"collectives between tensor-parallel ranks ({_installed('comm_backend', 'shm, else gloo')})",
    )
    group.add_argument(
        "--dist-init-method",
        help="rendezvous of the ranks, tcp://HOST:PORT (default: a free port on 127.0.0.1)",
    )
    group.add_argument("--max-model-len", type=int, help="context length limit (default: the model's)")
    group.add_argument(
        "--rope-scaling",
        metavar="JSON",
        help="RoPE scaling replacing the model's own, as config.json spells it (raises the model's positions), "
        'e.g. \'{"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 8192}\'; '
        "types: linear, dynamic, yarn, llama3",
    )
    group.add_argument(
        "--ggml-activations",
        choices=("int8", "float32"),
        help="what GGUF weights kept packed (K-quants, Q5_0, Q8_0; Q4_0/Q4_1 in float32) multiply with at small "
        "batches: int8 (default; activations quantized per 32 as llama.cpp does; faster decode) or float32 "
        "(exact to float rounding: the dense model's results)",
    )
    group.add_argument("--block-size", type=int, help="tokens per KV block (default 16)")
    group.add_argument("--num-blocks", type=int, help="KV blocks in the pool (default: from --kv-memory-gb)")
    group.add_argument("--kv-memory-gb", type=float, help="memory for the KV pool in GiB (default 1.0)")
    group.add_argument(
        "--kv-tiers",
        metavar="TIERS",
        help="KV storage tiers, fastest first: device (default), device,host or device,host,disk; "
        "host memory takes swapped-out sequences and demoted prefix-cache blocks, disk more demoted blocks",
    )
    group.add_argument("--kv-host-gb", type=float, help="size of the host (RAM) KV tier in GiB (default 4.0)")
    group.add_argument("--kv-disk-gb", type=float, help="size of the disk KV tier in GiB (default 16.0)")
    group.add_argument("--kv-disk-dir", help="where the disk tier keeps its files (default: the system temp dir)")
    group.add_argument(
        "--kv-cache-dtype",
        choices=["auto", "float32", "bfloat16", "float16", "int8"],
        help="KV cache storage (auto: the compute dtype; int8: codes + per-block scales, ~half of bf16's bytes)",
    )
    group.add_argument(
        "--quantization",
        "-q",
        help="quantize the linear layers, e.g. w8a8: int8 weights + per-token int8 activations (SmoothQuant, "
        f"calibrated at load; ~2x bf16's matmul rate on VNNI/AMX CPUs) ({_installed('quantizer', 'none')})",
    )
    group.add_argument(
        "--quantization-option", action="append", default=[], metavar="KEY=VALUE", help="quantizer option (alpha=0.5)"
    )
    group.add_argument(
        "--quantization-dense-lm-head",
        action="store_true",
        help="keep the LM head dense when --quantization is on (by default it is quantized too: ~1.8x faster at "
        "64 rows, 4.5x at one, for ~0.5-1 %% more perplexity)",
    )
    group.add_argument(
        "--sparsity",
        metavar="NAME",
        help="prune the decoder's linears at load, calibrated block by block on shipped text (~1 min for "
        "SmolLM2-135M); magnitude, wanda, sparsegpt; option pattern=2:4|4:8|unstructured, sparsity=0.5, "
        f"kernel=auto|dense|int8|bf16 ({_installed('sparsifier', 'none')})",
    )
    group.add_argument(
        "--sparsity-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="sparsifier option, repeatable (pattern=2:4, sparsity=0.5, kernel=int8; wanda: update=true, "
        "owl_lambda=0.08)",
    )
    group.add_argument(
        "--cot-acceleration",
        metavar="NAME",
        help="chain-of-thought acceleration for requests that ask for it (a request's cot option: early exit "
        "by answer probes sharing the request's KV, a token budget, early-stopping self-consistency) "
        f"({_installed('cot_accelerator', 'none')})",
    )
    group.add_argument(
        "--cot-acceleration-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="CoT accelerator option, repeatable",
    )
    group.add_argument(
        "--kernel-fusion",
        help="fused kernels: auto (default: the installed cpu set on CPU), none, or a name; cpu = paged decode "
        "attention reading KV blocks in place + one-pass RMSNorm/SiLU/RoPE, bf16/fp16 only, C++ compiled once "
        f"per machine (~30 s) ({_installed('fused_kernel', 'auto')})",
    )
    group.add_argument(
        "--speculative",
        metavar="METHOD",
        help="speculative decoding: drafts checked by the model in one pass, each kept token the model's own choice; "
        "ngram = prompt lookup over the request's own tokens + a suffix table shared across requests; "
        "self = the model's own layers, a subset chosen by calibration at start-up (option layers=0-11,14 to "
        "choose); draft = a smaller model with the same tokenizer (option model=PATH); "
        "K adapts per step and speculation turns itself off where it would not pay (large batches, low "
        f"acceptance) ({_installed('speculative_decoder', 'none')})",
    )
    group.add_argument(
        "--num-speculative-tokens", type=int, metavar="K", help="most drafts verified per sequence and step (default 4)"
    )
    group.add_argument(
        "--speculative-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="speculative decoder option, repeatable (ngram: prompt_lookup_min=2, prompt_lookup_max=4; "
        "self: layers=0-11,14; draft: model=PATH)",
    )
    group.add_argument(
        "--speculative-config",
        metavar="JSON",
        help='vLLM\'s spelling of the three above: \'{"method": "ngram", "num_speculative_tokens": 4, '
        '"prompt_lookup_max": 4}\' or \'{"method": "draft_model", "model": "draft.gguf"}\'',
    )
    group.add_argument("--no-prefix-cache", action="store_true", help="disable prefix reuse")
    group.add_argument("--prefix-cache", help=f"prefix index ({_installed('prefix_index', 'hash_chain')})")
    group.add_argument("--eviction", help=f"eviction policy ({_installed('eviction_policy', 'lru')})")
    group.add_argument(
        "--lifetime-predictor",
        help=f"block-reuse predictor for a learned eviction policy ({_installed('lifetime_predictor', 'none')})",
    )
    group.add_argument("--scheduler", help=f"scheduling policy ({_installed('ir_builder', 'fifo')})")
    group.add_argument(
        "--scheduler-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="scheduler option, repeatable (e.g. ttft_slo_ms=500, tpot_slo_ms=100, aging_rate=2, prefix_window=8)",
    )
    group.add_argument(
        "--eviction-option", action="append", default=[], metavar="KEY=VALUE", help="eviction option, repeatable"
    )
    group.add_argument("--max-num-seqs", type=int, help="sequences per step (default 64)")
    group.add_argument("--max-num-batched-tokens", type=int, help="token budget per step (default 512)")


def add_sampling_options(parser: argparse.ArgumentParser, max_tokens: int = 256) -> None:
    group = parser.add_argument_group("sampling")
    group.add_argument("--max-tokens", type=int, default=max_tokens, help=f"new tokens at most (default {max_tokens})")
    group.add_argument("--temperature", "-t", type=float, default=0.7, help="0 = greedy (default 0.7)")
    group.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (default 1.0)")
    group.add_argument("--top-k", type=int, default=0, help="keep the k most likely tokens (0 = off)")
    group.add_argument("--min-p", type=float, default=0.0, help="drop tokens below min-p x the top probability")
    group.add_argument("--repetition-penalty", type=float, default=1.0, help="transformers-style (default 1.0)")
    group.add_argument("--presence-penalty", type=float, default=0.0, help="OpenAI-style, in [-2, 2]")
    group.add_argument("--frequency-penalty", type=float, default=0.0, help="OpenAI-style, in [-2, 2]")
    group.add_argument("--seed", type=int, help="random seed for reproducible sampling")
    group.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    group.add_argument("--ignore-eos", action="store_true", help="keep generating past end-of-sequence")


def config_from_args(args: argparse.Namespace) -> SageLLMConfig:
    sections: dict[str, dict[str, Any]] = {}

    def put(section: str, key: str, value: Any) -> None:
        if value is not None:
            sections.setdefault(section, {})[key] = value

    put("model", "path", args.model)
    put("model", "dtype", args.dtype)
    put("model", "device", args.device)
    put("model", "num_threads", args.threads)
    put("model", "max_model_len", args.max_model_len)
    put("model", "chat_template", args.chat_template)
    put("model", "rope_scaling", json_object(args.rope_scaling, "--rope-scaling"))
    put("model", "ggml_activations", args.ggml_activations)
    put("collective_ops", "world_size", args.tensor_parallel_size)
    put("collective_ops", "implementation", args.collective_backend)
    put("collective_ops", "init_method", args.dist_init_method)
    put("kv_pool", "block_size", args.block_size)
    put("kv_pool", "num_blocks", args.num_blocks)
    put("kv_pool", "memory_gb", args.kv_memory_gb)
    put("kv_pool", "tiers", args.kv_tiers)
    put("kv_pool", "host_memory_gb", args.kv_host_gb)
    put("kv_pool", "disk_memory_gb", args.kv_disk_gb)
    put("kv_pool", "disk_dir", args.kv_disk_dir)
    put("kv_pool", "cache_dtype", args.kv_cache_dtype)
    put("quantization", "implementation", args.quantization)
    put("quantization", "options", key_values(args.quantization_option, "--quantization-option"))
    put("quantization", "lm_head", False if args.quantization_dense_lm_head else None)
    put("sparsity", "implementation", args.sparsity)
    put("sparsity", "options", key_values(args.sparsity_option, "--sparsity-option"))
    put("cot_acceleration", "implementation", args.cot_acceleration)
    put("cot_acceleration", "options", key_values(args.cot_acceleration_option, "--cot-acceleration-option"))
    put("kernel_fusion", "implementation", args.kernel_fusion)
    for key, value in speculative_settings(args).items():
        put("speculative_decoding", key, value)
    put("prefix_cache", "enabled", False if args.no_prefix_cache else None)
    put("prefix_cache", "implementation", args.prefix_cache)
    put("eviction_policy", "implementation", args.eviction)
    put("eviction_policy", "options", key_values(args.eviction_option, "--eviction-option"))
    put("lifetime_predictor", "implementation", args.lifetime_predictor)
    put("scheduler_ir", "implementation", args.scheduler)
    put("scheduler_ir", "options", key_values(args.scheduler_option, "--scheduler-option"))
    put("scheduler_ir", "max_num_seqs", args.max_num_seqs)
    put("scheduler_ir", "max_num_batched_tokens", args.max_num_batched_tokens)
    return load_config(args.config, **sections)


VLLM_METHODS = {"draft_model": "draft"}  # vLLM's --speculative-config method names that sageLLM spells otherwise


def speculative_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The speculative_decoding section from --speculative-config (vLLM) or the separate flags, not both."""
    separate = args.speculative or args.num_speculative_tokens is not None or args.speculative_option
    if args.speculative_config is None:
        return {
            "implementation": args.speculative,
            "num_speculative_tokens": args.num_speculative_tokens,
            "options": key_values(args.speculative_option, "--speculative-option"),
        }
    if separate:
        raise InvalidRequestError(
            "give --speculative-config or --speculative/--num-speculative-tokens/--speculative-option, not both"
        )
    options = json_object(args.speculative_config, "--speculative-config")
    if options is None or "method" not in options:
        raise InvalidRequestError(
            '--speculative-config must be a JSON object with a "method", e.g. {"method": "ngram"}'
        )
    method = options.pop("method")
    return {
        "implementation": VLLM_METHODS.get(method, method),
        "num_speculative_tokens": options.pop("num_speculative_tokens", None),
        "options": options or None,
    }


def _installed(kind: str, default: str) -> str:
    """'installed: a, b, c; default x' -- what the entry points offer right now."""
    names = sorted(registry.available(kind))
    return f"installed: {', '.join(names) or 'none'}; default {default}"


def json_object(text: str | None, flag: str) -> dict[str, Any] | None:
    """A flag's JSON object value (None when the flag was not given)."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidRequestError(f"{flag} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidRequestError(f"{flag} must be a JSON object, got {text!r}")
    return value


def key_values(items: list[str], flag: str) -> dict[str, Any] | None:
    """KEY=VALUE pairs, values read as YAML scalars (500 -> int, true -> bool, 2:4 -> "2:4")."""
    if not items:
        return None
    options: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InvalidRequestError(f"{flag} expects KEY=VALUE, got {item!r}")
        options[key.strip()] = load_yaml(value) if value.strip() else ""
    return options


def sampling_from_args(args: argparse.Namespace) -> SamplingParams:
    return SamplingParams(
        max_tokens=args.max_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        top_k=args.top_k,
        min_p=args.min_p,
        repetition_penalty=args.repetition_penalty,
        presence_penalty=args.presence_penalty,
        frequency_penalty=args.frequency_penalty,
        seed=args.seed,
        stop=tuple(args.stop),
        ignore_eos=args.ignore_eos,
    )
