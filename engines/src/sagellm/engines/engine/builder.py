"""Assemble an LLMEngine from configuration, purely through the core registry.

No module package is imported here: the pool, prefix index, eviction policy
and IR builder are whatever the config names and the installed entry points
provide. Swapping one is a config change (``SAGELLM__EVICTION_POLICY__IMPLEMENTATION=...``).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Collection

import torch

from sagellm.core import registry
from sagellm.core.config import KernelFusionSection, KVPoolSection, SageLLMConfig
from sagellm.core.errors import ConfigError
from sagellm.core.metrics import MetricsRegistry
from sagellm.core.protocols import (
    CoTAccelerator,
    IRBuilder,
    SpeculativeDecoder,
    SwapCapableIRBuilder,
)
from sagellm.core.types import KVLayout
from sagellm.engines.engine.cpu_placement import detect_topology
from sagellm.engines.engine.device import resolve_device, resolve_dtype
from sagellm.engines.engine.draft_models import EngineDraftModels
from sagellm.engines.engine.eviction import build_eviction_policy
from sagellm.engines.engine.kv_capacity import log_kv_capacity
from sagellm.engines.engine.llm_engine import LLMEngine
from sagellm.engines.engine.quantize import calibration_token_ids, quantize_model
from sagellm.engines.engine.row_cost import calibrated_row_costs, draft_pass_costs
from sagellm.engines.engine.slots import AUTO, ENGINE_KINDS, NO_IMPLEMENTATION, check_slots
from sagellm.engines.engine.sparsify import build_sparsifier, sparsify_model, sparsity_calibration_ids
from sagellm.engines.engine.tensor_parallel import check_tensor_parallel, place_rank, tensor_parallel_size
from sagellm.engines.engine.tensor_parallel_start import rank0_config, tensor_parallel_model
from sagellm.engines.engine.warm_up import warm_up
from sagellm.engines.model.attention import FusedAttention
from sagellm.engines.model.config import ModelConfig
from sagellm.engines.model.fused_ops import FusedElementwise
from sagellm.engines.model.gemma import model_class
from sagellm.engines.model.llama import LlamaForCausalLM
from sagellm.engines.model.loader import LoadedCheckpoint, load_checkpoint, want_progress
from sagellm.engines.model.rope_override import with_rope_override
from sagellm.engines.model.tokenizer_loader import with_chat_template
from sagellm.engines.runtime.allocator import keep_freed_memory, return_freed_heap
from sagellm.engines.runtime.kv_manager import KVManager
from sagellm.engines.runtime.model_runner import ModelRunner
from sagellm.engines.tokenizer import Tokenizer

AUTO_KERNEL_SET = "cpu"  # what kernel_fusion "auto" picks on CPU when installed
DTYPE_NAMES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}


logger = logging.getLogger(__name__)


def build_engine(
    config: SageLLMConfig, show_progress: bool | None = None, wired: Collection[str] = ENGINE_KINDS
) -> LLMEngine:
    """Load the model and assemble an engine; ``wired``: the registry kinds the caller uses (see slots.py)."""
    check_slots(config, wired)  # before seconds of weight loading
    check_tensor_parallel(config)
    build_cot_accelerator(config)  # bad options, or tensor parallelism, fail before the weights load
    sparsifier = build_sparsifier(config)  # a bad pattern or option fails before the weights load
    if tensor_parallel_size(config) > 1:
        torch.set_num_threads(place_rank(config, 0))
    else:
        detect_topology(config)  # logged; one process needs no placement
        if config.model.num_threads:
            torch.set_num_threads(config.model.num_threads)
    device = resolve_device(config.model.device)
    if device.type == "cpu":
        keep_freed_memory()  # per-layer KV gathers would otherwise page-fault on every step
    dtype = resolve_dtype(config.model.dtype, device)
    checkpoint = load_checkpoint(config.model.path, dtype, show_progress)
    checkpoint.config = with_rope_override(checkpoint.config, config.model.rope_scaling)
    tokenizer = with_chat_template(build_tokenizer(checkpoint), config.model.chat_template)
    max_model_len = _max_model_len(config, checkpoint.config)  # fail on a bad one before building the model
    if tensor_parallel_size(config) > 1:
        refuse_tensor_parallel_for(checkpoint.config)
        layout = kv_layout(config, rank0_config(config, checkpoint.config), device, dtype, max_model_len)
        model = tensor_parallel_model(config, checkpoint, layout)
    else:
        model = model_of(config, checkpoint, device)
    if config.quantization.implementation != NO_IMPLEMENTATION:
        quantizer = registry.create_quantizer(config)
        quantize_model(model, quantizer, calibration_token_ids(tokenizer), include_head=config.quantization.lm_head)
    if sparsifier is not None:
        sparsify_model(model, sparsifier, sparsity_calibration_ids(tokenizer), announce=want_progress(show_progress))
    use_fused_kernels(config, model)
    if device.type == "cpu":
        return_freed_heap()  # the load's scratch, before warm-up touches what decoding reuses
    warm_up(config, model, tokenizer, announce=want_progress(show_progress))
    engine = assemble_engine(config, model, tokenizer)
    log_kv_capacity(engine.kv.pool.layout, device)
    return engine


def use_fused_kernels(config: SageLLMConfig, model: LlamaForCausalLM) -> None:
    """Route the configured kernel set's ops into ``model``; a set named explicitly must offer one it uses."""
    kernels = fused_kernel_set(config, model.embed.device)
    if kernels is None:
        return
    used = model.use_fused_kernels(registry.create_fused_kernel(kernels))
    if not used and config.kernel_fusion.implementation != AUTO:
        raise ConfigError(
            f"kernel_fusion '{kernels.implementation}' offers no op this engine can use "
            f"(it uses: {FusedAttention.OP}, {', '.join(FusedElementwise.OPS)})"
        )


def load_draft_model(config: SageLLMConfig, target: LlamaForCausalLM, path: str) -> tuple[LlamaForCausalLM, Tokenizer]:
    """A draft model file, run like the target: its device and dtype, 4-bit kernels and fused ops as configured."""
    checkpoint = load_checkpoint(path, target.dtype, show_progress=False)
    model = model_of(config, checkpoint, target.embed.device)
    use_fused_kernels(config, model)
    return model, build_tokenizer(checkpoint)


def model_of(config: SageLLMConfig, checkpoint: LoadedCheckpoint, device: torch.device) -> LlamaForCausalLM:
    """The checkpoint's model on ``device``, keeping 4-bit codes for the low-bit kernels unless configured off."""
    q4_weights = checkpoint.q4_weights if config.model.low_bit_matmul else None
    model = model_class(checkpoint.config)(checkpoint.config, checkpoint.weights, device, q4_weights)
    model.use_ggml_activations(config.model.ggml_activations)
    return model


def fused_kernel_set(config: SageLLMConfig, device: torch.device) -> KernelFusionSection | None:
    """The kernel_fusion section to build, or None. ``auto``: the installed ``cpu`` set, on CPU only."""
    section = config.kernel_fusion
    if section.implementation == NO_IMPLEMENTATION:
        return None
    if section.implementation != AUTO:
        return section
    if device.type != "cpu" or AUTO_KERNEL_SET not in registry.available("fused_kernel"):
        return None
    return section.model_copy(update={"implementation": AUTO_KERNEL_SET})


def assemble_engine(config: SageLLMConfig, model: LlamaForCausalLM, tokenizer: Tokenizer) -> LLMEngine:
    """A fresh engine (pool, prefix index, eviction policy, IR builder) around an already-loaded model.

    Loading dominates start-up, and the model holds no per-request state
    (the KV lives in the pool), so tests and benchmarks that compare pool or
    scheduler settings load once and assemble many engines. The model's own
    device and dtype win over ``config.model``.
    """
    model_config = model.config
    device, dtype = model.embed.device, model.dtype
    max_model_len = _max_model_len(config, model_config)
    layout = kv_layout(config, model_config, device, dtype, max_model_len)
    if model.max_kv_blocks is not None and layout.num_blocks > model.max_kv_blocks:
        raise ConfigError(
            f"this pool needs {layout.num_blocks} KV blocks, but the other tensor-parallel ranks hold "
            f"{model.max_kv_blocks}; build the engine again with the larger pool"
        )
    pool = registry.create_kv_pool(kv_pool_section(config, layout), layout=layout)
    index = registry.create_prefix_index(config, block_size=layout.block_size) if config.prefix_cache.enabled else None
    policy = build_eviction_policy(config) if index is not None else None
    kv = KVManager(pool, index, policy)
    draft_models = EngineDraftModels(
        model, tokenizer, layout.num_blocks * layout.block_size, functools.partial(load_draft_model, config, model)
    )
    decoder = build_speculative_decoder(config, draft_models)
    step_costs = draft_cost = draft_agreement = None
    if decoder is not None:  # the largest step speculation can make: every sequence verifying K drafts
        max_rows = config.scheduler_ir.max_num_seqs * (config.speculative_decoding.num_speculative_tokens + 1)
        step_costs = calibrated_row_costs(config, model, tokenizer, max_rows)
        if draft_models.opened:  # drafts cost a pass each (a row per drafting sequence); how often are they kept?
            draft = draft_models.opened[-1]
            draft_cost = draft_pass_costs(draft, config.scheduler_ir.max_num_seqs)
            draft_agreement = draft_models.agreement(draft)
    return LLMEngine(
        model_config=model_config,
        tokenizer=tokenizer,
        runner=ModelRunner(model, pool, device),
        kv=kv,
        ir_builder=build_ir_builder(config, layout, can_swap=kv.can_swap),
        max_model_len=max_model_len,
        max_waiting=config.scheduler_ir.max_waiting,
        max_num_seqs=config.scheduler_ir.max_num_seqs,
        metrics=MetricsRegistry(),
        model_name=model_config.name,
        speculative_decoder=decoder,
        num_speculative_tokens=config.speculative_decoding.num_speculative_tokens,
        step_costs=step_costs,
        draft_cost=draft_cost,
        draft_agreement=draft_agreement,
        cot_accelerator=build_cot_accelerator(config),
    )


def build_cot_accelerator(config: SageLLMConfig) -> CoTAccelerator | None:
    """The configured chain-of-thought accelerator, or None (``cot_acceleration.implementation: none``).

    It only decides; the engine forks probes and samples for the requests
    that ask (``add_request(..., reasoning=...)``), so building one changes
    nothing for the others.
    """
    if config.cot_acceleration.implementation == NO_IMPLEMENTATION:
        return None
    if tensor_parallel_size(config) > 1:  # a fork copies a KV block in rank 0's pool only
        raise ConfigError(
            "cot_acceleration does not run with tensor_parallel_size > 1 yet: its forks copy KV blocks that "
            "every rank holds a shard of; use tensor_parallel_size=1 for it"
        )
    return registry.create_cot_accelerator(config)


def build_speculative_decoder(
    config: SageLLMConfig, draft_models: EngineDraftModels | None = None
) -> SpeculativeDecoder | None:
    """The configured proposer, or None when speculation is off (``speculative_decoding.implementation: none``).

    ``draft_models`` is lent to a proposer that drafts with a model (``self``, ``draft``).
    """
    if config.speculative_decoding.implementation == NO_IMPLEMENTATION:
        return None
    return registry.create_speculative_decoder(config, draft_models=draft_models)


def kv_pool_section(config: SageLLMConfig, layout: KVLayout) -> KVPoolSection:
    """``config.kv_pool`` with its lower tiers sized in blocks of ``layout``, as pool options.

    ``kv_pool.tiers`` names the tiers and ``host_*`` / ``disk_*`` size them
    in GiB (or blocks); a tiered pool (``paged``) takes them as
    ``options: {host_blocks, disk_blocks, disk_dir}``. Those options may
    still be given directly when ``tiers`` is left at ``device`` (the
    engine uses whatever tiers the pool has), but not both ways at once.
    """
    section = config.kv_pool
    tiers = section.tier_names
    if tiers == ("device",):
        return section
    clash = sorted(set(section.options) & {"host_blocks", "disk_blocks", "disk_dir"})
    if clash:
        raise ConfigError(
            f"kv_pool.options {clash} conflict with kv_pool.tiers={section.tiers}: size the tiers with "
            "kv_pool.host_memory_gb / host_num_blocks / disk_memory_gb / disk_num_blocks / disk_dir instead"
        )
    options = dict(section.options)
    if "host" in tiers:
        options["host_blocks"] = _tier_blocks("host", section.host_num_blocks, section.host_memory_gb, layout)
    if "disk" in tiers:
        options["disk_blocks"] = _tier_blocks("disk", section.disk_num_blocks, section.disk_memory_gb, layout)
        if section.disk_dir is not None:
            options["disk_dir"] = section.disk_dir
    return section.model_copy(update={"options": options})


def _tier_blocks(tier: str, num_blocks: int | None, memory_gb: float, layout: KVLayout) -> int:
    if num_blocks is not None:
        return num_blocks
    blocks = int(memory_gb * 1024**3 // layout.bytes_per_block)
    if blocks < 1:
        raise ConfigError(
            f"kv_pool.{tier}_memory_gb={memory_gb} holds no KV block (one is {layout.bytes_per_block} bytes)"
        )
    return blocks


def build_ir_builder(config: SageLLMConfig, layout: KVLayout, can_swap: bool) -> IRBuilder:
    """The configured scheduler, told it may swap when the pool has a host tier and the scheduler can.

    Swap or recompute is then the scheduler's choice per victim (by its
    cost model, with this model's KV bytes per token); a scheduler that
    cannot swap, or is configured not to, recomputes.
    """
    builder = registry.create_ir_builder(config)
    if can_swap and isinstance(builder, SwapCapableIRBuilder):
        builder.use_swap(layout.bytes_per_token)
    return builder


def build_tokenizer(checkpoint: LoadedCheckpoint) -> Tokenizer:
    if checkpoint.format == "gguf":
        return Tokenizer.from_gguf_metadata(checkpoint.gguf_metadata, checkpoint.path)
    return Tokenizer.from_hf_dir(checkpoint.path, checkpoint.config.eos_token_ids)


def _max_model_len(config: SageLLMConfig, model_config: ModelConfig) -> int:
    """The context limit: the configured one, within the model's positions.

    A sliding window does not bound it: windowed layers mask what lies
    before their window (attention_window.py).
    """
    limit = model_config.max_position_embeddings
    wanted = config.model.max_model_len or limit
    if wanted > limit:
        raise ConfigError(f"model.max_model_len={wanted} exceeds the model's {limit} positions")
    return wanted


def refuse_tensor_parallel_for(model_config: ModelConfig) -> None:
    """Tensor parallelism shards the Llama layer only; Gemma's extra norms and soft-caps are not cut yet."""
    if model_config.is_gemma:
        raise ConfigError(
            f"tensor_parallel_size > 1 does not support {model_config.architecture} models yet; "
            "use tensor_parallel_size=1"
        )


def kv_layout(
    config: SageLLMConfig, model_config: ModelConfig, device: torch.device, dtype: torch.dtype, max_model_len: int
) -> KVLayout:
    """Size the pool: explicit num_blocks, else as many blocks as memory_gb holds."""
    cache_dtype = DTYPE_NAMES[dtype] if config.kv_pool.cache_dtype == "auto" else config.kv_pool.cache_dtype
    block_size = config.kv_pool.block_size
    probe = KVLayout(
        model_config.num_layers, model_config.num_kv_heads, model_config.head_dim, block_size, 1, cache_dtype
    )
    num_blocks = config.kv_pool.num_blocks or int(config.kv_pool.memory_gb * 1024**3 // probe.bytes_per_block)
    if num_blocks < 2:
        raise ConfigError(f"kv_pool.memory_gb={config.kv_pool.memory_gb} holds fewer than 2 blocks")
    return KVLayout(
        num_layers=model_config.num_layers,
        num_kv_heads=model_config.num_kv_heads,
        head_dim=model_config.head_dim,
        block_size=block_size,
        num_blocks=num_blocks,
        dtype=cache_dtype,
        device=str(device),
    )
