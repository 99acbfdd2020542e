"""Chain keys are stable across processes and depend on prefix, position and namespace."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from sagellm.core.errors import InvalidRequestError
from sagellm.prefix_cache import HashChainPrefixIndex, hash_block_chain

TOKENS = list(range(5000, 5000 + 70))  # 4 full blocks of 16 + 6 tokens


def _keys_in_subprocess(seed: str) -> list[int]:
    code = (
        "import json; from sagellm.prefix_cache import hash_block_chain; "
        f"print(json.dumps(hash_block_chain({TOKENS!r}, 16, 'model-a')))"
    )
    env = {**os.environ, "PYTHONHASHSEED": seed}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return list(json.loads(out.stdout))


def test_keys_identical_across_processes_and_hash_seeds() -> None:
    here = hash_block_chain(TOKENS, 16, "model-a")
    assert len(here) == 4
    assert _keys_in_subprocess("1") == here
    assert _keys_in_subprocess("12345") == here


def test_known_values_pin_the_scheme() -> None:
    """Changing the packing or the digest would silently split caches across versions and workers."""
    assert hash_block_chain(list(range(32)), 16) == [0x1AD38FC7774ED056, 0x1F4E34CAC74C79CA]
    assert hash_block_chain(list(range(32)), 16, "model-a") == [0xE3249CAB176784CB, 0xD358D9C8487B8C28]
    assert all(0 <= key < 2**64 for key in hash_block_chain(TOKENS, 16))


def test_key_depends_on_whole_prefix_and_namespace() -> None:
    a = hash_block_chain([1] * 16 + [2] * 16, 16)
    b = hash_block_chain([3] * 16 + [2] * 16, 16)
    assert a[1] != b[1], "same block after different parents must differ"
    assert hash_block_chain([1] * 32, 16, "x") != hash_block_chain([1] * 32, 16, "y")
    assert hash_block_chain([1] * 32, 16)[0] == hash_block_chain([1] * 16, 16)[0]


def test_index_exposes_the_same_keys() -> None:
    index = HashChainPrefixIndex(block_size=16)
    index.insert(TOKENS, [0, 1, 2, 3, 4], namespace="model-a")
    metas = [index.block_meta(block_id) for block_id in range(4)]
    assert [meta.prefix_hash for meta in metas if meta] == hash_block_chain(TOKENS, 16, "model-a")
    assert [meta.prefix_depth for meta in metas if meta] == [0, 1, 2, 3]
    assert index.block_meta(4) is None


@pytest.mark.parametrize("bad", [[-1], [2**32], ["a"]])
def test_bad_token_ids_are_rejected(bad: list[object]) -> None:
    with pytest.raises(InvalidRequestError):
        hash_block_chain(bad * 16, 16)  # type: ignore[arg-type]
