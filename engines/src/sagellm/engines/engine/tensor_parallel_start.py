"""Start tensor parallelism: spawn ranks 1..N-1, join them as rank 0, and hand back rank 0's model.

The workers load their shards while rank 0 loads its own, so start-up
takes about as long as one load. Rank 0's model mirrors every forward to
the workers; they stop when the model is garbage-collected or the process
exits (and on their own if rank 0 dies: their pipe closes).
"""

from __future__ import annotations

import weakref

from sagellm.core.config import SageLLMConfig
from sagellm.core.protocols import CommBackend
from sagellm.core.types import KVLayout
from sagellm.engines.engine.tensor_parallel import connect, free_init_method, shard_model, tensor_parallel_size
from sagellm.engines.engine.tensor_parallel_group import TensorParallelGroup
from sagellm.engines.model.config import ModelConfig
from sagellm.engines.model.llama import LlamaForCausalLM
from sagellm.engines.model.loader import LoadedCheckpoint
from sagellm.engines.model.tensor_parallel import TensorShard


def rank0_config(config: SageLLMConfig, full: ModelConfig) -> ModelConfig:
    """The shapes rank 0 runs: the largest shard, since the first ranks take the KV heads that do not divide."""
    return TensorShard.plan(full, 0, tensor_parallel_size(config)).local_config(full)


def tensor_parallel_model(
    config: SageLLMConfig, checkpoint: LoadedCheckpoint, rank0_layout: KVLayout
) -> LlamaForCausalLM:
    """Rank 0's shard, joined to freshly started workers that hold pools of ``rank0_layout``'s blocks."""
    init_method = config.collective_ops.init_method or free_init_method()
    group = TensorParallelGroup.start(config, init_method, rank0_layout)
    try:
        comm = connect(config, 0, init_method)
        model = shard_model(config, checkpoint, 0, comm)
        group.wait_ready(config.collective_ops.timeout_s)
    except BaseException:
        group.close()
        raise
    model.mirror = group.mirror
    model.max_kv_blocks = group.num_blocks
    weakref.finalize(model, _stop, group, comm)
    return model


def _stop(group: TensorParallelGroup, comm: CommBackend) -> None:
    group.close()
    comm.close()
