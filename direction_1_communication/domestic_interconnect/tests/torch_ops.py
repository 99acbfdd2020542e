"""TensorOps for the core conformance suite: CPU torch tensors (the fake vendor backends run on CPU)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "int64": torch.int64}
_NAMES = {v: k for k, v in _DTYPES.items()}


class TorchTensorOps:
    def make(self, values: Sequence[float], dtype: str) -> Any:
        return torch.tensor(list(values), dtype=_DTYPES[dtype])

    def values(self, tensor: Any) -> list[float]:
        return [float(v) for v in tensor.reshape(-1).tolist()]

    def rows(self, tensor: Any, n_rows: int) -> Any:
        return tensor.reshape(n_rows, -1)

    def shape(self, tensor: Any) -> tuple[int, ...]:
        return tuple(tensor.shape)

    def dtype(self, tensor: Any) -> str:
        return _NAMES[tensor.dtype]
