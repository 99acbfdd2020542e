"""Tensor parallelism for ``build_engine``: what it refuses, one rank's model, and the collectives' backend.

Rank 0 is the engine (scheduler, sampler, server); ranks 1..N-1 are worker
processes (``tensor_parallel_worker.py``) that run their shard of every
forward pass rank 0 runs, fed its inputs over a pipe. Everything outside
the forward pass stays on rank 0, so features that touch the KV tensors
outside it (a host or disk tier, draft models, weights rewritten by a
quantizer or a sparsifier) are refused until they learn to run on every rank.
"""

from __future__ import annotations

import dataclasses
import os
import socket

import torch

from sagellm.core import registry
from sagellm.core.config import SageLLMConfig
from sagellm.core.errors import ConfigError
from sagellm.core.protocols import CommBackend
from sagellm.core.types import KVLayout
from sagellm.engines.engine.cpu_placement import detect_topology, pin, rank_placement
from sagellm.engines.engine.remote_ranks import HOST_LOCAL_BACKENDS, check_remote_ranks
from sagellm.engines.model.llama import LlamaForCausalLM
from sagellm.engines.model.loader import LoadedCheckpoint, load_checkpoint
from sagellm.engines.model.parallel_ops import ParallelOps
from sagellm.engines.model.q4_weights import Q4Weight
from sagellm.engines.model.rope_override import with_rope_override
from sagellm.engines.model.tensor_parallel import TensorShard

PREFERRED_BACKENDS = ("shm", "gloo")  # what collective_ops "none" becomes with several ranks, first installed wins
# (shm only when every rank is on this host)


def tensor_parallel_size(config: SageLLMConfig) -> int:
    return config.collective_ops.world_size


def check_tensor_parallel(config: SageLLMConfig) -> None:
    """Refuse, before any weight loads, what tensor parallelism cannot run yet (and say why)."""
    size = tensor_parallel_size(config)
    if size == 1:
        if config.collective_ops.remote_ranks:
            raise ConfigError("collective_ops.remote_ranks needs tensor_parallel_size above 1 (rank 0 is this process)")
        for section in ("collective_ops", "domestic_interconnect"):
            name = getattr(config, section).implementation
            if name != registry.NO_IMPLEMENTATION:
                raise ConfigError(
                    f"{section}.implementation '{name}' has nothing to connect with one rank; set "
                    "collective_ops.world_size (--tensor-parallel-size) above 1 or leave it 'none'"
                )
        return
    refused = {
        "speculative decoding": config.speculative_decoding.implementation != registry.NO_IMPLEMENTATION,
        "quantization": config.quantization.implementation != registry.NO_IMPLEMENTATION,
        "sparsity": config.sparsity.implementation != registry.NO_IMPLEMENTATION,
        "KV tiers below the device": config.kv_pool.tier_names != ("device",),
        "a device other than the CPU": config.model.device not in ("auto", "cpu") or torch.cuda.is_available(),
    }
    for feature, used in refused.items():
        if used:
            raise ConfigError(
                f"tensor_parallel_size={size} does not run with {feature} yet: rank 0 alone would change "
                "state the other ranks hold; use tensor_parallel_size=1 for it"
            )
    check_remote_ranks(config, backend_name(config))


def backend_name(config: SageLLMConfig) -> str:
    """The collectives' backend: a vendor interconnect, the one configured, else the first PREFERRED_BACKENDS installed."""
    named = config.collective_ops.implementation
    vendor = config.domestic_interconnect.implementation
    if vendor != registry.NO_IMPLEMENTATION:
        if named != registry.NO_IMPLEMENTATION:
            raise ConfigError(
                f"both collective_ops.implementation '{named}' and domestic_interconnect.implementation "
                f"'{vendor}' name the ranks' collectives; set one of them to 'none'"
            )
        return vendor
    installed = registry.available("comm_backend")
    if named != registry.NO_IMPLEMENTATION:
        if named not in installed:
            raise ConfigError(
                f"collective_ops.implementation '{named}' is not installed "
                f"(installed: {', '.join(sorted(installed)) or 'none'}); install sagellm-collective-ops"
            )
        return named
    for name in PREFERRED_BACKENDS:
        if name in installed and not (config.collective_ops.remote_ranks and name in HOST_LOCAL_BACKENDS):
            return name
    raise ConfigError(
        f"tensor_parallel_size={tensor_parallel_size(config)} needs a collective_ops backend "
        f"({', '.join(PREFERRED_BACKENDS)}); install sagellm-collective-ops"
    )


def threads_per_rank(config: SageLLMConfig) -> int:
    """Configured threads, else the machine's cores shared out: two ranks on two cores get one each."""
    if config.model.num_threads:
        return config.model.num_threads
    return max(1, (os.cpu_count() or 1) // tensor_parallel_size(config))


def place_rank(config: SageLLMConfig, rank: int) -> int:
    """Pin a worker rank to its share of the CPUs (see cpu_placement.py); the torch threads it should run."""
    topology = detect_topology(config)
    if topology is None:
        return threads_per_rank(config)
    placement = rank_placement(topology, rank, tensor_parallel_size(config))
    if rank > 0:
        pin(placement)
    return config.model.num_threads or placement.threads


def free_init_method() -> str:
    """A rendezvous on a free local port (ranks of one host)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{probe.getsockname()[1]}"


def connect(config: SageLLMConfig, rank: int, init_method: str) -> CommBackend:
    """This rank's end of the group; a rank that never joins fails within collective_ops.timeout_s.

    A vendor's collective library (``domestic_interconnect``, e.g. Ascend's
    HCCL) replaces the generic backends when configured: it is a CommBackend
    too, built with the same rendezvous.
    """
    name = backend_name(config)
    deps = {
        "rank": rank,
        "world_size": tensor_parallel_size(config),
        "init_method": init_method,
        "timeout_s": config.collective_ops.timeout_s,
    }
    if config.domestic_interconnect.implementation != registry.NO_IMPLEMENTATION:
        return registry.create_interconnect_backend(config, **deps)
    return registry.create_comm_backend(config.collective_ops.model_copy(update={"implementation": name}), **deps)


def shard_model(config: SageLLMConfig, checkpoint: LoadedCheckpoint, rank: int, comm: CommBackend) -> LlamaForCausalLM:
    """Rank ``rank``'s shard of the checkpoint, joined to the others through ``comm``."""
    full = checkpoint.config
    shard = TensorShard.plan(full, rank, comm.world_size)
    # Shards cut Q4_0/Q4_1 codes; blocks kept packed (GGMLWeight) are read dense through checkpoint.weights.
    q4 = (
        {n: w for n, w in checkpoint.q4_weights.items() if isinstance(w, Q4Weight)}
        if config.model.low_bit_matmul
        else {}
    )
    shard.cut(full, checkpoint.weights, q4)
    model = LlamaForCausalLM(shard.local_config(full), checkpoint.weights, torch.device("cpu"), q4 or None)
    model.use_tensor_parallel(ParallelOps(shard, comm, full.vocab_size))
    return model


def load_shard(config: SageLLMConfig, rank: int, comm: CommBackend, dtype: torch.dtype) -> LlamaForCausalLM:
    checkpoint = load_checkpoint(config.model.path, dtype, show_progress=False)
    checkpoint.config = with_rope_override(checkpoint.config, config.model.rope_scaling)
    return shard_model(config, checkpoint, rank, comm)


def rank_kv_layout(rank0_layout: KVLayout, model: LlamaForCausalLM) -> KVLayout:
    """A rank's KV pool: rank 0's number of blocks (block ids are rank 0's), this rank's KV heads."""
    return dataclasses.replace(rank0_layout, num_kv_heads=model.config.num_kv_heads)
