"""Ranks 1..N-1 of tensor parallelism: a process that runs its shard of every forward pass rank 0 runs.

Started by rank 0 as ``python -m sagellm.engines.engine.tensor_parallel_main``
with one end of a socket pair (``SAGELLM_TP_FD``)::

    receive WorkerSetup -> join the group (rendezvous) -> load and cut the checkpoint
    -> build its KV pool -> send ("ready", None) | ("error", text)
    -> loop: receive a forward's inputs, run them (collectives join rank 0's pass)
    -> stop on the STOP message, or when rank 0 is gone (end-of-file)

Rank 0 never waits on a reply per step: the collectives inside the forward
pass are the only synchronisation, so a step costs one socket write more
than a single-process step.
"""

from __future__ import annotations

import os
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection

import torch

from sagellm.core import registry
from sagellm.core.config import SageLLMConfig
from sagellm.core.types import KVLayout
from sagellm.engines.engine.device import resolve_dtype
from sagellm.engines.engine.forward_wire import decode_forward
from sagellm.engines.engine.tensor_parallel import connect, load_shard, place_rank, rank_kv_layout
from sagellm.engines.model.llama import LlamaForCausalLM
from sagellm.engines.runtime.model_runner import ModelRunner

READY = "ready"
ERROR = "error"
CONTROL_FD_ENV = "SAGELLM_TP_FD"
RANK_ENV = "SAGELLM_TP_RANK"


@dataclass(frozen=True, slots=True)
class WorkerSetup:
    """What rank 0 sends first: the configuration, the rendezvous, and the KV pool to mirror."""

    config_json: str
    init_method: str
    rank0_layout: KVLayout


def main() -> int:
    conn = Connection(int(os.environ[CONTROL_FD_ENV]))
    rank = int(os.environ[RANK_ENV])
    try:
        setup: WorkerSetup = conn.recv()
    except EOFError:
        return 1
    return run_worker(setup, rank, conn)


def run_worker(setup: WorkerSetup, rank: int, conn: Connection) -> int:
    """Build this rank, report, then serve forwards until told to stop; the exit code."""
    try:
        config = SageLLMConfig.model_validate_json(setup.config_json)
        torch.set_num_threads(place_rank(config, rank))
        comm = connect(config, rank, setup.init_method)
        model = load_shard(config, rank, comm, resolve_dtype(config.model.dtype, torch.device("cpu")))
        use_fused_kernels(config, model)
        runner = rank_runner(config, model, setup.rank0_layout)
    except BaseException:  # noqa: BLE001  (whatever stopped this rank, rank 0 reports it)
        conn.send((ERROR, f"tensor-parallel rank {rank} failed to start:\n{traceback.format_exc()}"))
        return 1
    conn.send((READY, None))
    try:
        serve_forwards(runner, conn)
    except BaseException:  # noqa: BLE001
        conn.send((ERROR, f"tensor-parallel rank {rank} failed:\n{traceback.format_exc()}"))
        return 1
    finally:
        comm.close()
    return 0


def use_fused_kernels(config: SageLLMConfig, model: LlamaForCausalLM) -> None:
    from sagellm.engines.engine import builder  # the builder imports this module (via the group)

    builder.use_fused_kernels(config, model)


def rank_runner(config: SageLLMConfig, model: LlamaForCausalLM, rank0_layout: KVLayout) -> ModelRunner:
    """This rank's KV views over a pool of rank 0's blocks with this rank's heads."""
    from sagellm.engines.engine.builder import kv_pool_section

    layout = rank_kv_layout(rank0_layout, model)
    pool = registry.create_kv_pool(kv_pool_section(config, layout), layout=layout)
    return ModelRunner(model, pool, torch.device("cpu"))


def serve_forwards(runner: ModelRunner, conn: Connection) -> None:
    model, kv_caches = runner.model, runner.kv_caches
    while True:
        try:
            message = conn.recv_bytes()
        except EOFError:  # rank 0 is gone
            return
        args = decode_forward(message)
        if args is None:
            return
        model(args.input_ids, args.positions, args.meta, kv_caches, args.logits_idx, args.layers)
