"""A forward pass's inputs as bytes, for the pipe from rank 0 to the other tensor-parallel ranks.

A step's inputs are a dozen small index tensors. Pickling them as torch does
for multiprocessing moves each into a shared-memory file (a syscall or more
per tensor); as NumPy arrays they pickle into the message itself, which
costs a few microseconds per step instead.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

import numpy as np
import torch

from sagellm.engines.model.forward_args import ForwardArgs

STOP = None  # the message that ends a worker's loop
_NOT_NUMPY = (torch.bfloat16,)  # pickled the default way


class _TensorsAsArrays(pickle.Pickler):
    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, torch.Tensor) and obj.dtype not in _NOT_NUMPY:
            return _tensor_from_array, (obj.detach().cpu().numpy(),)
        return NotImplemented


def _tensor_from_array(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(array)


def encode_forward(args: ForwardArgs | None) -> bytes:
    buffer = io.BytesIO()
    _TensorsAsArrays(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(args)
    return buffer.getvalue()


def decode_forward(message: bytes) -> ForwardArgs | None:
    decoded: ForwardArgs | None = pickle.loads(message)
    return decoded
