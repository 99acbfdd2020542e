"""Write a GGUF with only the first N layers of another (real weights, smaller file).

A GPU box reached through a copy of the work tree cannot take the 98 MB
default model; its first 6 layers (45 MB) keep real weights, the tokenizer
and the chat template, so transformers and sageLLM can still be compared
token for token there::

    python engines/benchmarks/gpu/truncate_gguf.py .gpu/smollm2-6l.gguf --layers 6
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gguf import GGUFReader, GGUFValueType, GGUFWriter

from sagellm.engines.model.default_model import default_model_path


def truncate(source: Path, target: Path, num_layers: int) -> None:
    reader = GGUFReader(str(source))
    arch = reader.fields["general.architecture"].contents()
    writer = GGUFWriter(str(target), arch)
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue  # written by GGUFWriter itself
        value = num_layers if key == f"{arch}.block_count" else field.contents()
        if field.types[0] == GGUFValueType.ARRAY:
            writer.add_key_value(key, value, field.types[0], sub_type=field.types[-1])
        else:
            writer.add_key_value(key, value, field.types[0])
    for tensor in reader.tensors:
        if tensor.name.startswith("blk.") and int(tensor.name.split(".")[1]) >= num_layers:
            continue
        writer.add_tensor(tensor.name, tensor.data, raw_shape=tensor.data.shape, raw_dtype=tensor.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", type=Path, help="GGUF file to write")
    parser.add_argument("--layers", type=int, default=6, help="decoder layers to keep (default 6)")
    parser.add_argument("--source", type=Path, default=None, help="GGUF to cut (default: the embedded model)")
    args = parser.parse_args()
    if args.layers < 1:
        parser.error("--layers must be at least 1")
    truncate(args.source or default_model_path(), args.target, args.layers)


if __name__ == "__main__":
    main()
