"""A lean GGUF reader: metadata as plain Python values, tensors as views of one read-only memory map.

``gguf.GGUFReader`` keeps two NumPy views per array element: a 262K-token
vocabulary (Gemma 3) cost 667 MB and 12 s to open, twice per load (tokenizer,
weights), which set the load's peak memory and most of its time. This reader
parses the same header into ``str``/``int``/``float`` lists (~40 MB, well
under a second) and gives each tensor the same ``name``/``tensor_type``/
``shape``/``data`` as ``GGUFReader``'s, so the loaders and gguf's own
dequantizer read them unchanged. Little-endian files only (what converters
write); anything malformed raises ``ValueError``.

The map is private (copy-on-write) and writable, so tensors kept as views
(packed GGML blocks, see ``ggml_weights.py``) are plain writable arrays
that cost no copy: their pages are the file's, read in when first used and
counted once in the resident memory, as llama.cpp's mapped weights are.
:meth:`GGUFFile.release` drops the pages of a tensor that was copied out,
so they do not stay resident alongside the copy.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType

MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
SCALARS: dict[GGUFValueType, str] = {
    GGUFValueType.UINT8: "<B",
    GGUFValueType.INT8: "<b",
    GGUFValueType.UINT16: "<H",
    GGUFValueType.INT16: "<h",
    GGUFValueType.UINT32: "<I",
    GGUFValueType.INT32: "<i",
    GGUFValueType.FLOAT32: "<f",
    GGUFValueType.BOOL: "<?",
    GGUFValueType.UINT64: "<Q",
    GGUFValueType.INT64: "<q",
    GGUFValueType.FLOAT64: "<d",
}
# Tensor types NumPy holds as their own element type; every other type is bytes (blocks), as in GGUFReader.
PLAIN_TENSORS: dict[GGMLQuantizationType, type[np.generic]] = {
    GGMLQuantizationType.F32: np.float32,
    GGMLQuantizationType.F16: np.float16,
    GGMLQuantizationType.F64: np.float64,
    GGMLQuantizationType.I8: np.int8,
    GGMLQuantizationType.I16: np.int16,
    GGMLQuantizationType.I32: np.int32,
    GGMLQuantizationType.I64: np.int64,
}


@dataclass(frozen=True, slots=True)
class GGUFTensor:
    """One tensor: ``shape`` in GGUF order (innermost first), ``data`` in NumPy order, blocks as uint8 rows."""

    name: str
    tensor_type: GGMLQuantizationType
    shape: tuple[int, ...]
    data: np.ndarray
    offset: int  # of its first byte in the file


class _Cursor:
    """Sequential little-endian reads over the file's bytes; running past the end raises ValueError."""

    def __init__(self, buffer: memoryview) -> None:
        self.buffer = buffer
        self.offset = 0

    def unpack(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        if self.offset + size > len(self.buffer):
            raise ValueError("the file ends inside its header")
        (value,) = struct.unpack_from(fmt, self.buffer, self.offset)
        self.offset += size
        return value

    def raw(self, size: int) -> bytes:
        if size < 0 or self.offset + size > len(self.buffer):
            raise ValueError("the file ends inside its header")
        data = bytes(self.buffer[self.offset : self.offset + size])
        self.offset += size
        return data

    def string(self) -> bytes:
        return self.raw(self.unpack("<Q"))

    def array(self, fmt: str, count: int) -> list[Any]:
        dtype = np.dtype(fmt)
        size = dtype.itemsize * count
        if count < 0 or self.offset + size > len(self.buffer):
            raise ValueError("the file ends inside its header")
        values = np.frombuffer(self.buffer, dtype=dtype, count=count, offset=self.offset).tolist()
        self.offset += size
        return values  # type: ignore[no-any-return]


class GGUFFile:
    """``metadata`` (every key/value, plus ``GGUF.version``/``tensor_count``/``kv_count``) and ``tensors``."""

    def __init__(self, path: str | Path) -> None:
        with open(path, "rb") as handle:
            self._map = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_COPY)
        cursor = _Cursor(memoryview(self._map))
        if cursor.raw(4) != MAGIC:
            raise ValueError("not a GGUF file (bad magic)")
        version = cursor.unpack("<I")
        if version not in SUPPORTED_VERSIONS:
            raise ValueError(f"GGUF version {version} is not supported (supported: 2, 3; little-endian)")
        tensor_count, kv_count = cursor.unpack("<Q"), cursor.unpack("<Q")
        self.metadata: dict[str, Any] = {
            "GGUF.version": version,
            "GGUF.tensor_count": tensor_count,
            "GGUF.kv_count": kv_count,
        }
        for _ in range(kv_count):
            key = cursor.string().decode("utf-8")
            undecodable: list[bytes] = []
            value = _value(cursor, GGUFValueType(cursor.unpack("<I")), undecodable)
            if not undecodable:  # a text that is not UTF-8 leaves its field out, as GGUFReader's contents() did
                self.metadata[key] = value
        infos = [_tensor_info(cursor) for _ in range(tensor_count)]
        alignment = int(self.metadata.get("general.alignment", DEFAULT_ALIGNMENT))
        if alignment <= 0 or alignment & (alignment - 1):
            raise ValueError(f"invalid general.alignment {alignment}")
        start = -(-cursor.offset // alignment) * alignment
        self.tensors = [self._tensor(start, *info) for info in infos]

    def _tensor(self, start: int, name: str, dims: tuple[int, ...], kind: GGMLQuantizationType, at: int) -> GGUFTensor:
        numpy_shape = tuple(reversed(dims))
        plain = PLAIN_TENSORS.get(kind)
        elements = int(np.prod(dims, dtype=np.int64))
        if plain is not None:
            dtype, count = np.dtype(plain), elements
        else:
            block, type_size = GGML_QUANT_SIZES[kind]
            if numpy_shape[-1] % block:
                raise ValueError(f"tensor {name}: {dims[0]} columns is not a whole number of {kind.name} blocks")
            dtype, count = np.dtype(np.uint8), elements // block * type_size
            numpy_shape = (*numpy_shape[:-1], numpy_shape[-1] // block * type_size)
        offset = start + at
        if offset + count * dtype.itemsize > len(self._map):
            raise ValueError(f"tensor {name} extends past the end of the file (truncated?)")
        data = np.frombuffer(self._map, dtype=dtype, count=count, offset=offset).reshape(numpy_shape)
        return GGUFTensor(name, kind, dims, data, offset)

    def release(self, tensor: GGUFTensor) -> None:
        """Drop ``tensor``'s pages from this process (it was copied out, or is not needed); a later read of
        it faults them in again from the file. Pages shared with a neighbour are kept."""
        page = mmap.PAGESIZE
        start = -(-tensor.offset // page) * page
        stop = (tensor.offset + tensor.data.nbytes) // page * page
        if stop > start and hasattr(mmap, "MADV_DONTNEED"):
            self._map.madvise(mmap.MADV_DONTNEED, start, stop - start)


def _value(cursor: _Cursor, kind: GGUFValueType, undecodable: list[bytes]) -> Any:
    """The next value of type ``kind``; texts that are not UTF-8 are appended to ``undecodable`` (and read
    past, so the header stays in step)."""
    if kind == GGUFValueType.STRING:
        return _text(cursor.string(), undecodable)
    if kind == GGUFValueType.ARRAY:
        item, count = GGUFValueType(cursor.unpack("<I")), cursor.unpack("<Q")
        if item == GGUFValueType.STRING:
            return [_text(cursor.string(), undecodable) for _ in range(count)]
        if item == GGUFValueType.ARRAY:
            return [_value(cursor, GGUFValueType.ARRAY, undecodable) for _ in range(count)]
        return cursor.array(SCALARS[item], count)
    return cursor.unpack(SCALARS[kind])


def _text(raw: bytes, undecodable: list[bytes]) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        undecodable.append(raw)
        return ""


def _tensor_info(cursor: _Cursor) -> tuple[str, tuple[int, ...], GGMLQuantizationType, int]:
    name = cursor.string().decode("utf-8")
    dims = tuple(cursor.unpack("<Q") for _ in range(cursor.unpack("<I")))
    return name, dims, GGMLQuantizationType(cursor.unpack("<I")), cursor.unpack("<Q")
