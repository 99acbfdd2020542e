"""A checkpoint's name -> tensor dict whose packed GGML entries turn dense only when someone reads them.

The GGUF loader keeps Q5_0/Q8_0/K-quant weights packed (``ggml_weights.py``)
and hands them to the model through ``q4_weights``; the model then never
reads their dense form. Every other reader of ``weights`` (the model built
with ``low_bit_matmul`` off, tensor-parallel slicing, the embedding table)
still gets what it got before: a dense tensor of the model dtype, made on
first read from the same blocks. An entry never read costs nothing beyond
the blocks, which the packed weight shares.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from sagellm.engines.model.ggml_weights import GGMLWeight

_MISSING = object()


class DequantizingWeights(dict[str, torch.Tensor]):
    """A ``dict[str, Tensor]``; entries added with :meth:`keep_packed` are dequantized on first read."""

    def __init__(self) -> None:
        super().__init__()
        self.packed: dict[str, GGMLWeight] = {}

    def keep_packed(self, name: str, weight: GGMLWeight) -> None:
        super().__setitem__(name, torch.empty(0, dtype=weight.dtype))  # a placeholder: ``name in weights`` holds
        self.packed[name] = weight

    def _dense(self, name: str) -> None:
        weight = self.packed.pop(name, None)
        if weight is not None:
            from sagellm.engines.model.ggml_matmul import dequantize_parts

            super().__setitem__(name, dequantize_parts([weight], weight.dtype))

    def __getitem__(self, name: str) -> torch.Tensor:
        self._dense(name)
        return super().__getitem__(name)

    def __setitem__(self, name: str, value: torch.Tensor) -> None:
        self.packed.pop(name, None)
        super().__setitem__(name, value)

    def __delitem__(self, name: str) -> None:
        self.packed.pop(name, None)
        super().__delitem__(name)

    def __iter__(self) -> Iterator[str]:  # defined so dict(weights) / {**weights} go through __getitem__
        return iter(list(super().keys()))

    def get(self, name: str, default: Any = None) -> Any:
        try:
            return self[name]
        except KeyError:
            return default

    def pop(self, name: str, default: Any = _MISSING) -> Any:
        if name not in self:
            if default is _MISSING:
                raise KeyError(name)
            return default
        self._dense(name)
        self.packed.pop(name, None)
        return super().pop(name)

    def values(self) -> Any:
        return [self[name] for name in list(super().keys())]

    def items(self) -> Any:
        return [(name, self[name]) for name in list(super().keys())]

    def copy(self) -> dict[str, torch.Tensor]:
        return dict(self.items())
