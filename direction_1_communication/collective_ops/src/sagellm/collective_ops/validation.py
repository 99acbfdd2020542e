"""Argument checks every backend shares, so bad input is the same ConfigError whichever backend runs.

They run before any rank waits on a peer: every rank rejects the same call
locally, and the group stays in step.
"""

from __future__ import annotations

from sagellm.core.errors import ConfigError
from sagellm.core.protocols.communication import REDUCE_OPS

#: The code the shm kernel takes for each op (its ``Op`` enum).
OP_CODES: dict[str, int] = {"sum": 0, "max": 1, "min": 2}
assert tuple(OP_CODES) == REDUCE_OPS


def op_code(op: str) -> int:
    """The kernel code of ``op``; ConfigError for anything outside REDUCE_OPS."""
    code = OP_CODES.get(op)
    if code is None:
        raise ConfigError(f"unknown reduce op {op!r}; use one of {', '.join(REDUCE_OPS)}")
    return code


def check_group(rank: int, world_size: int) -> None:
    """A rank and world size a group can be built from."""
    if not isinstance(world_size, int) or world_size < 1:
        raise ConfigError(f"world_size must be a positive int, got {world_size!r}")
    if not isinstance(rank, int) or not 0 <= rank < world_size:
        raise ConfigError(f"rank must be in 0..{world_size - 1}, got {rank!r}")


def check_peer(peer: int, world_size: int, what: str) -> None:
    """``peer`` (a src or dst) names a rank of the group."""
    if not isinstance(peer, int) or not 0 <= peer < world_size:
        raise ConfigError(f"{what} must be a rank in 0..{world_size - 1}, got {peer!r}")


def check_other_peer(peer: int, rank: int, world_size: int, what: str) -> None:
    """A send/recv partner: a rank of the group other than this one."""
    check_peer(peer, world_size, what)
    if peer == rank:
        raise ConfigError(f"{what} {peer} is this rank: send/recv need another rank")


def check_has_rows(shape: tuple[int, ...], what: str) -> None:
    """The dim-0 collectives (all_gather, reduce_scatter) need a dim 0."""
    if not shape:
        raise ConfigError(f"{what} needs a tensor with at least one dimension, got a 0-d tensor")


def scatter_rows(shape: tuple[int, ...], world_size: int) -> int:
    """Rows of dim 0 each rank keeps after reduce_scatter; ConfigError if dim 0 does not split evenly."""
    check_has_rows(shape, "reduce_scatter")
    if shape[0] % world_size:
        raise ConfigError(f"reduce_scatter: dim 0 ({shape[0]}) is not divisible by world_size ({world_size})")
    return shape[0] // world_size
