"""The lean GGUF reader reads what gguf's own GGUFReader reads, and refuses what it cannot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gguf import GGMLQuantizationType, GGUFReader, GGUFWriter
from gguf.quants import quantize

from sagellm.engines.model.default_model import default_model_path
from sagellm.engines.model.gguf_file import GGUFFile


def assert_same_as_gguf(path: Path) -> None:
    ours, theirs = GGUFFile(path), GGUFReader(str(path))
    assert ours.metadata == {key: field.contents() for key, field in theirs.fields.items()}
    assert [t.name for t in ours.tensors] == [t.name for t in theirs.tensors]
    for mine, reference in zip(ours.tensors, theirs.tensors, strict=True):
        assert mine.tensor_type == reference.tensor_type
        assert mine.shape == tuple(int(d) for d in reference.shape)
        assert mine.data.dtype == reference.data.dtype and mine.data.shape == reference.data.shape
        np.testing.assert_array_equal(mine.data, reference.data)


def test_the_embedded_model_reads_as_gguf_reads_it() -> None:
    assert_same_as_gguf(default_model_path())


def write_sample(path: Path, bad_text: bool = False) -> Path:
    writer = GGUFWriter(str(path), "llama")
    writer.add_uint32("sample.count", 7)
    writer.add_float32("sample.scale", 0.5)
    writer.add_bool("sample.flag", True)
    writer.add_array("sample.ints", [1, -2, 3])
    writer.add_array("sample.words", ["a", "déjà", ""])
    if bad_text:
        writer.add_key_value("sample.bad", [b"ok", b"\xff\xfe"], 9, sub_type=8)  # ARRAY of STRING, not UTF-8
    writer.add_string("sample.after", "still read")
    rng = np.random.default_rng(0)
    writer.add_tensor("plain", rng.standard_normal((3, 5)).astype(np.float32))
    writer.add_tensor("half", rng.standard_normal((2, 4)).astype(np.float16))
    blocks = quantize(rng.standard_normal((4, 64)).astype(np.float32), GGMLQuantizationType.Q8_0)
    writer.add_tensor("blocks", blocks, raw_dtype=GGMLQuantizationType.Q8_0)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_every_value_and_tensor_kind_reads_as_gguf_reads_it(tmp_path: Path) -> None:
    path = write_sample(tmp_path / "s.gguf")
    assert_same_as_gguf(path)
    metadata = GGUFFile(path).metadata
    assert metadata["sample.words"] == ["a", "déjà", ""] and metadata["sample.ints"] == [1, -2, 3]


def test_a_text_that_is_not_utf8_leaves_only_its_field_out(tmp_path: Path) -> None:
    metadata = GGUFFile(write_sample(tmp_path / "bad.gguf", bad_text=True)).metadata
    assert "sample.bad" not in metadata and metadata["sample.after"] == "still read"


@pytest.mark.parametrize("keep", [3, 20, 200, -40])
def test_a_truncated_file_is_a_value_error(tmp_path: Path, keep: int) -> None:
    raw = write_sample(tmp_path / "s.gguf").read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(raw[:keep])
    with pytest.raises(ValueError):
        GGUFFile(cut)


def test_packed_blocks_are_views_of_the_map_and_released_pages_read_again(tmp_path: Path) -> None:
    """No copy of kept blocks (their pages are the file's); a released tensor still reads back from the file."""
    import torch

    from sagellm.engines.model.ggml_weights import ggml_from_gguf

    path = write_sample(tmp_path / "s.gguf")
    reader = GGUFFile(path)
    blocks = next(t for t in reader.tensors if t.name == "blocks")
    kept = ggml_from_gguf(blocks, torch.float32)
    assert kept is not None and np.shares_memory(kept.blocks, blocks.data) and kept.blocks.flags.writeable
    plain = next(t for t in reader.tensors if t.name == "plain")
    before = plain.data.copy()
    reader.release(plain)
    reader.release(blocks)
    np.testing.assert_array_equal(plain.data, before)
    np.testing.assert_array_equal(kept.blocks, GGUFReader(str(path)).tensors[2].data)
