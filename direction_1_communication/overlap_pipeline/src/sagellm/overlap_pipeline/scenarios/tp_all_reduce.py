"""Scenario (c): tensor-parallel MLP layers whose all-reduce runs while the other micro-batch computes.

Each rank holds a column slice of the MLP's gate/up projection and the
matching row slice of its down projection, so a layer's output is the sum
of every rank's partial: one all-reduce per layer. A single batch has
nothing to compute while its own all-reduce runs, so the batch is split in
two micro-batches that take turns (as in two-batch overlap)::

    caller:  mb0: partial(l) | mb1: partial(l) | mb0: wait, partial(l+1) | mb1: wait, partial(l+1)
    worker:                  | all_reduce(mb0) | all_reduce(mb1)         | all_reduce(mb0)

Every all-reduce is waited just before its micro-batch's next layer uses
it. Both ranks start their all-reduces in the same order, and a manager
with one worker issues them in that order, as collectives require.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from sagellm.core.errors import ConfigError
from sagellm.core.protocols import OverlapManager, PendingResult
from sagellm.overlap_pipeline.scenarios.decoder_layer import LayerShape, rms_norm

AllReduce = Callable[[torch.Tensor], torch.Tensor]


class TPMLPShard:
    """Rank ``rank``'s slice of one seeded MLP layer (the full weights are the same on every rank)."""

    def __init__(self, shape: LayerShape, seed: int, rank: int, world_size: int, dtype: torch.dtype = torch.float32):
        if shape.intermediate % world_size:
            raise ConfigError(f"intermediate size {shape.intermediate} does not split over {world_size} ranks")
        gen = torch.Generator().manual_seed(seed)
        scale = shape.hidden**-0.5
        gate = torch.randn(shape.hidden, shape.intermediate, generator=gen) * scale
        up = torch.randn(shape.hidden, shape.intermediate, generator=gen) * scale
        down = torch.randn(shape.intermediate, shape.hidden, generator=gen) * scale
        part = slice(rank * shape.intermediate // world_size, (rank + 1) * shape.intermediate // world_size)
        self.w_gate_up = torch.cat([gate[:, part], up[:, part]], dim=1).to(dtype).contiguous()
        self.w_down = down[part].to(dtype).contiguous()

    def partial(self, x: torch.Tensor) -> torch.Tensor:
        """This rank's share of the layer's output; the sum over ranks is the full MLP."""
        gate, up = (rms_norm(x) @ self.w_gate_up).chunk(2, dim=-1)
        out: torch.Tensor = (F.silu(gate) * up) @ self.w_down
        return out


def make_shards(shape: LayerShape, num_layers: int, rank: int, world_size: int, seed: int = 0) -> list[TPMLPShard]:
    return [TPMLPShard(shape, seed + i, rank, world_size) for i in range(num_layers)]


class MicrobatchTP:
    """The layers of one rank over micro-batches ``xs``, each all-reduce overlapped with the next micro-batch."""

    def __init__(self, shards: list[TPMLPShard], xs: list[torch.Tensor], all_reduce: AllReduce) -> None:
        self.shards = shards
        self.xs = xs
        self.all_reduce = all_reduce

    def run(self, manager: OverlapManager, *, compute: bool = True, comm: bool = True) -> torch.Tensor:
        """The micro-batches' outputs concatenated; bit-identical with any manager."""
        hidden = list(self.xs)
        pending: list[PendingResult | None] = [None] * len(hidden)
        for shard in self.shards:
            for m, x in enumerate(hidden):
                hidden[m] = x = self._collect(x, pending[m])  # waited just before this micro-batch uses it
                partial = shard.partial(x) if compute else torch.zeros_like(x)
                pending[m] = manager.start(self._reduce(partial, comm))
        return torch.cat([self._collect(x, p) for x, p in zip(hidden, pending)])

    def _reduce(self, partial: torch.Tensor, on: bool) -> Callable[[], torch.Tensor]:
        return (lambda: self.all_reduce(partial)) if on else (lambda: partial)

    @staticmethod
    def _collect(x: torch.Tensor, pending: PendingResult | None) -> torch.Tensor:
        return x if pending is None else x + pending.wait()
