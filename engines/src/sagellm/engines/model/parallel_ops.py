"""The collectives a tensor-parallel rank's model runs, over whatever CommBackend the registry built.

Three of them, in the places ``tensor_parallel.py`` draws: an all-reduce of
each row-parallel output (two per layer), an all-reduce of the
vocabulary-parallel embedding, and an all-gather of the head's logits.
Every rank calls them in the same order, which holds because every rank
runs the same forward pass on the same inputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sagellm.core.errors import EngineDeadError
from sagellm.core.protocols import CommBackend
from sagellm.engines.model.tensor_parallel import TensorShard


class RankFailedError(EngineDeadError):
    """Another tensor-parallel rank failed or stopped answering: this engine cannot step any more.

    Any failure of a collective means a peer is gone (the ranks run the same
    pass on the same inputs), so it is fatal for the engine rather than for
    one request: a server exits on it instead of serving errors.
    """


class ParallelOps:
    """Rank-local halves of the embedding, the row-parallel sums and the head, joined through ``comm``."""

    def __init__(self, shard: TensorShard, comm: CommBackend, vocab_size: int) -> None:
        self.shard = shard
        self.comm = comm
        self.vocab_size = vocab_size

    def all_reduce(self, partial: torch.Tensor) -> torch.Tensor:
        """The sum over ranks of a row-parallel output (every rank gets the same bits)."""
        try:
            reduced: torch.Tensor = self.comm.all_reduce(partial)
        except Exception as exc:
            raise RankFailedError(f"tensor-parallel all-reduce failed ({self.comm.name}): {exc}") from exc
        return reduced

    def embed(self, input_ids: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """Rows of the full embedding: each rank looks up the ids it holds, zeros elsewhere, summed.

        One rank contributes each row and the others add exact zeros, so the
        result equals the unsharded lookup bit for bit.
        """
        begin, end = self.shard.vocab
        held = (input_ids >= begin) & (input_ids < end)
        local = torch.where(held, input_ids - begin, torch.zeros_like(input_ids))
        rows = F.embedding(local, table)
        rows = rows * held.unsqueeze(-1).to(rows.dtype)
        return self.all_reduce(rows)

    def gather_logits(self, local: torch.Tensor) -> torch.Tensor:
        """[S, local_vocab] from every rank -> [S, vocab]: rank-ordered slices, padding rows dropped."""
        rows, width = local.shape
        try:
            gathered: torch.Tensor = self.comm.all_gather(local.contiguous())
        except Exception as exc:
            raise RankFailedError(f"tensor-parallel all-gather failed ({self.comm.name}): {exc}") from exc
        per_rank = gathered.view(self.shard.world_size, rows, width).transpose(0, 1)
        return per_rank.reshape(rows, -1)[:, : self.vocab_size]
