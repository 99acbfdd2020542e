"""Which slice of a Llama-family model one tensor-parallel rank holds, and cutting a checkpoint to it.

Megatron's split, with the all-reduces a decoder layer then needs::

    qkv      column-parallel   rank r: the q heads of its KV heads, its KV heads
    o_proj   row-parallel      rank r: the input columns of its q heads   -> all-reduce
    gate/up  column-parallel   rank r: its slice of the intermediate size
    down     row-parallel      rank r: the same slice of its input        -> all-reduce
    embed    vocab-parallel    rank r: its vocabulary rows, zero elsewhere -> all-reduce
    lm_head  vocab-parallel    rank r: logits of its rows                 -> all-gather

KV heads are dealt out whole and as evenly as the model allows: SmolLM2 has
3 KV heads (9 query heads), so two ranks hold 2 and 1 (6 and 3 query heads);
a rank's KV pool holds only its heads. Intermediate slices keep GGUF's
32-weight groups whole, so 4-bit codes are cut without repacking. Norms and
the residual stream are replicated: every rank holds the full hidden state
after each all-reduce, so the ranks never drift apart.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from sagellm.core.errors import ConfigError
from sagellm.engines.model.config import ModelConfig
from sagellm.engines.model.q4_weights import GROUP_SIZE, Q4Weight

Span = tuple[int, int]  # [begin, end)


@dataclass(frozen=True, slots=True)
class TensorShard:
    """Rank ``rank`` of ``world_size``: the KV heads, intermediate columns and vocabulary rows it holds."""

    rank: int
    world_size: int
    kv_heads: Span
    q_heads: Span
    intermediate: Span
    vocab: Span
    local_vocab: int  # rows every rank's head has (its vocabulary slice padded with zero rows)

    @classmethod
    def plan(cls, config: ModelConfig, rank: int, world_size: int) -> TensorShard:
        if not 0 <= rank < world_size:
            raise ConfigError(f"tensor-parallel rank {rank} is outside a world of {world_size}")
        if world_size > config.num_kv_heads:
            raise ConfigError(
                f"tensor_parallel_size={world_size} exceeds the model's {config.num_kv_heads} KV heads "
                f"(each rank holds whole KV heads); use at most {config.num_kv_heads}"
            )
        group = config.num_heads // config.num_kv_heads
        kv = even_span(config.num_kv_heads, world_size, rank)
        groups = -(-config.intermediate_size // GROUP_SIZE)
        inter = even_span(groups, world_size, rank)
        local_vocab = -(-config.vocab_size // world_size)
        vocab = (rank * local_vocab, min((rank + 1) * local_vocab, config.vocab_size))
        return cls(
            rank=rank,
            world_size=world_size,
            kv_heads=kv,
            q_heads=(kv[0] * group, kv[1] * group),
            intermediate=(inter[0] * GROUP_SIZE, min(inter[1] * GROUP_SIZE, config.intermediate_size)),
            vocab=vocab,
            local_vocab=local_vocab,
        )

    def local_config(self, config: ModelConfig) -> ModelConfig:
        """The shapes this rank runs: its heads and intermediate slice; vocabulary and hidden size stay whole."""
        return dataclasses.replace(
            config,
            num_heads=_width(self.q_heads),
            num_kv_heads=_width(self.kv_heads),
            intermediate_size=_width(self.intermediate),
        )

    def cut(self, config: ModelConfig, weights: dict[str, torch.Tensor], q4: dict[str, Q4Weight]) -> None:
        """Replace every tensor of ``weights`` and ``q4`` by this rank's slice, in place."""
        hd = config.head_dim
        q_rows, kv_rows = _scaled(self.q_heads, hd), _scaled(self.kv_heads, hd)
        for i in range(config.num_layers):
            prefix = f"model.layers.{i}."
            for name, rows in (("q", q_rows), ("k", kv_rows), ("v", kv_rows)):
                _cut_rows(weights, q4, f"{prefix}self_attn.{name}_proj.weight", rows)
                _cut_rows(weights, {}, f"{prefix}self_attn.{name}_proj.bias", rows)
            _cut_columns(weights, q4, f"{prefix}self_attn.o_proj.weight", q_rows)
            _cut_rows(weights, q4, f"{prefix}mlp.gate_proj.weight", self.intermediate)
            _cut_rows(weights, q4, f"{prefix}mlp.up_proj.weight", self.intermediate)
            _cut_columns(weights, q4, f"{prefix}mlp.down_proj.weight", self.intermediate)
        for name in ("model.embed_tokens.weight", "lm_head.weight"):
            if name in weights:
                weights[name] = self._vocab_rows(weights[name])
            q4.pop(name, None)  # the head runs dense or int8 (see Linear), never from 4-bit codes

    def _vocab_rows(self, table: torch.Tensor) -> torch.Tensor:
        """This rank's vocabulary rows, padded with zero rows to ``local_vocab`` so every rank's logits align."""
        rows = table[self.vocab[0] : self.vocab[1]]
        pad = self.local_vocab - rows.shape[0]
        if pad:
            rows = torch.cat([rows, rows.new_zeros(pad, rows.shape[1])])
        return rows.contiguous()


def even_span(items: int, parts: int, index: int) -> Span:
    """Part ``index`` of ``items`` dealt into ``parts`` contiguous runs, the first runs one longer."""
    base, extra = divmod(items, parts)
    begin = index * base + min(index, extra)
    return begin, begin + base + (1 if index < extra else 0)


def _width(span: Span) -> int:
    return span[1] - span[0]


def _scaled(span: Span, factor: int) -> Span:
    return span[0] * factor, span[1] * factor


def _cut_rows(weights: dict[str, torch.Tensor], q4: dict[str, Q4Weight], name: str, rows: Span) -> None:
    if name in weights:
        weights[name] = weights[name][rows[0] : rows[1]].contiguous()
    if name in q4:
        q4[name] = q4[name].map_rows(lambda a: a[rows[0] : rows[1]].copy())


def _cut_columns(weights: dict[str, torch.Tensor], q4: dict[str, Q4Weight], name: str, columns: Span) -> None:
    """Input columns of a row-parallel weight; 4-bit codes keep whole groups (``columns`` are group-aligned)."""
    begin, end = columns
    if name in weights:
        weights[name] = weights[name][:, begin:end].contiguous()
    if name in q4:
        if begin % GROUP_SIZE or (end % GROUP_SIZE and end != q4[name].shape[1]):
            raise ConfigError(f"{name}: columns [{begin}, {end}) split a {GROUP_SIZE}-weight 4-bit group")
        weight, groups = q4[name], slice(begin // GROUP_SIZE, -(-end // GROUP_SIZE))
        q4[name] = Q4Weight(
            codes=weight.codes[:, begin:end].copy(),
            scales=weight.scales[:, groups].copy(),
            mins=weight.mins[:, groups].copy(),
        )
