"""ChannelStats: the running totals every KV transfer channel keeps, whatever carries its bytes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class ChannelStats:
    """Running totals of one channel (block bytes only; metadata not counted)."""

    num_sent: int = 0
    bytes_sent: int = 0
    stage_s: float = 0.0  # sender: copying blocks into the staging area
    num_received: int = 0
    bytes_received: int = 0
    copy_s: float = 0.0  # receiver: copying staged blocks into its KV

    def count_sent(self, nbytes: int, stage_s: float) -> None:
        """One transfer staged and posted (the caller holds the channel's lock)."""
        self.num_sent += 1
        self.bytes_sent += nbytes
        self.stage_s += stage_s

    def count_received(self, nbytes: int, copy_s: float) -> None:
        """One transfer accepted into the receiver's KV (the caller holds the channel's lock)."""
        self.num_received += 1
        self.bytes_received += nbytes
        self.copy_s += copy_s
