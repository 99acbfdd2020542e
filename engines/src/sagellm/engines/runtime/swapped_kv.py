"""A swapped-out sequence's KV: which of its block positions wait in the host tier.

Swapping moves only a sequence's *private* blocks (the partial tail, and
full blocks the prefix index did not adopt). Its cached blocks are index
entries shared with the cache; they are released like a recompute
preemption releases them, stay cached while the device has room, and are
demoted rather than dropped when it has not. On readmission a prefix
lookup finds them again, and the swapped blocks continue the hit::

    block size 4, 14 tokens computed when preempted
    positions   | 0 | 1 | 2 | 3 |          3 is the partial tail (tokens 12, 13)
    before      [e0 ][e1 ][e2 ][p3 ]       e = index entries, p = private
    swapped     host_blocks = {3: h9}      e0..e2 released to the cache
    readmitted  hit = e0 e1 e2 (3 blocks)  + run from position 3: h9 -> device
                computed = min((3 + 1) * 4, 14) = 14: nothing to recompute

If the cache lost an entry meanwhile (hit = e0 only), positions 1 and 2
have no KV anywhere; the swapped block after the hole is useless and is
freed, and the sequence recomputes from token 4.
"""

from __future__ import annotations

from dataclasses import dataclass

from sagellm.core.types import BlockId


@dataclass(slots=True)
class SwappedKV:
    """Private KV blocks of a preempted sequence, parked in the host tier until it runs again."""

    num_computed_tokens: int  # KV the sequence had when it was swapped out
    host_blocks: dict[int, BlockId]  # block position in the sequence -> host block id

    def run_after(self, num_hit_blocks: int) -> list[int]:
        """Positions that continue a prefix hit of ``num_hit_blocks`` blocks without a hole."""
        run = []
        position = num_hit_blocks
        while position in self.host_blocks:
            run.append(position)
            position += 1
        return run

    def restorable_tokens(self, num_hit_blocks: int, block_size: int) -> int:
        """Tokens whose KV a hit of ``num_hit_blocks`` plus the swapped run after it would supply."""
        end = num_hit_blocks + len(self.run_after(num_hit_blocks))
        if end == num_hit_blocks:
            return num_hit_blocks * block_size
        return min(end * block_size, self.num_computed_tokens)

    def unused(self, run: list[int]) -> list[BlockId]:
        """Host blocks outside ``run``: covered by the hit, or stranded behind a hole."""
        keep = set(run)
        return [block for position, block in self.host_blocks.items() if position not in keep]
