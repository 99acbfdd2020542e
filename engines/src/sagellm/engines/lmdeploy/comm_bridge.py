"""A sageLLM CommBackend behind LMDeploy's ``set_comm_backend`` (patch 0004).

The two contracts differ in shape, not in meaning, so the bridge only
reshapes: LMDeploy's wrappers follow ``torch.distributed`` (fill an output
tensor or list in place, take a ``ReduceOp`` and an optional async handle),
sageLLM's ``CommBackend`` returns tensors (``all_gather`` concatenates along
dim 0 in rank order, ``reduce_scatter`` keeps this rank's chunk)::

    all_gather(list, t)              <- comm.all_gather(t.reshape(1, -1)) row r -> list[r]
    all_gather_into_tensor(out, t)   <- comm.all_gather(t.reshape(1, -1)) -> out
    reduce_scatter(out, list, op)    <- comm.reduce_scatter(stack(list flattened), op) -> out
    all_gather_object                -> torch.distributed, as LMDeploy does (no object collective in sageLLM)

A sageLLM backend is one group (its ``world_size`` ranks); a call on another
group of a different size is refused rather than sent to the wrong ranks.
The class is made on first use so that importing the adapter never imports
LMDeploy.
"""

from __future__ import annotations

from typing import Any

from sagellm.core.errors import NotSupportedError
from sagellm.core.protocols import CommBackend


class DoneHandle:
    """What an ``async_op=True`` call returns: sageLLM's collectives have finished when they return."""

    def wait(self, timeout: Any = None) -> bool:
        return True

    def is_completed(self) -> bool:
        return True


def reduce_op_name(op: Any) -> str:
    """torch's ``ReduceOp`` as sageLLM's op name; others (product, average, ...) are not in the contract."""
    from torch.distributed import ReduceOp

    for name in ("sum", "max", "min"):
        if op == getattr(ReduceOp, name.upper()):
            return name
    raise NotSupportedError(f"reduce op {op!r} has no sageLLM CommBackend equivalent (sum, max, min)")


def bridge_class(base: type) -> type:
    """A subclass of LMDeploy's ``distributed.CommBackend`` that sends collectives to a sageLLM backend."""

    class SageLLMCommBackend(base):  # type: ignore[misc, valid-type]
        """LMDeploy's CommBackend over sageLLM's (see the module docstring for the shapes)."""

        def __init__(self, comm: CommBackend) -> None:
            self.comm = comm

        def all_reduce(self, tensor: Any, op: Any, group: Any, async_op: bool) -> Any:
            self._check_group(group)
            _into(tensor, self.comm.all_reduce(tensor, reduce_op_name(op)))
            return _handle(async_op)

        def broadcast(self, tensor: Any, src: int, group: Any, async_op: bool) -> Any:
            self._check_group(group)
            _into(tensor, self.comm.broadcast(tensor, src))
            return _handle(async_op)

        def all_gather(self, tensor_list: list[Any], tensor: Any, group: Any, async_op: bool) -> Any:
            self._check_group(group)
            rows = self.comm.all_gather(tensor.reshape(1, -1))
            for out, row in zip(tensor_list, rows, strict=True):
                out.copy_(row.reshape(out.shape))
            return _handle(async_op)

        def all_gather_into_tensor(self, output_tensor: Any, input_tensor: Any, group: Any, async_op: bool) -> Any:
            self._check_group(group)
            output_tensor.copy_(self.comm.all_gather(input_tensor.reshape(1, -1)).reshape(output_tensor.shape))
            return _handle(async_op)

        def reduce_scatter(self, output: Any, input_list: list[Any], op: Any, group: Any, async_op: bool) -> Any:
            import torch

            self._check_group(group)
            stacked = torch.stack([part.reshape(-1) for part in input_list])
            output.copy_(self.comm.reduce_scatter(stacked, reduce_op_name(op)).reshape(output.shape))
            return _handle(async_op)

        def _check_group(self, group: Any) -> None:
            if group is None:
                return
            from torch import distributed

            size = distributed.get_world_size(group)
            if size != self.comm.world_size:
                raise NotSupportedError(
                    f"LMDeploy called a collective on a group of {size} ranks; the sageLLM backend "
                    f"'{self.comm.name}' spans {self.comm.world_size}"
                )

    return SageLLMCommBackend


def _into(tensor: Any, result: Any) -> None:
    """sageLLM's in-place ops return the tensor they were given; copy only if a backend returned another one."""
    if result is not tensor:
        tensor.copy_(result)


def _handle(async_op: bool) -> DoneHandle | None:
    return DoneHandle() if async_op else None
