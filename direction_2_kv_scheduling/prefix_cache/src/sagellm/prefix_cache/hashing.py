"""Stable hash-chain keys for block-aligned token prefixes.

A prefix of ``n`` full blocks gets one 64-bit key per block, each folding in
the key before it, so the key of block ``i`` stands for the whole prefix up
to and including that block::

    tokens   | t0 .. t15 | t16 .. t31 | t32 .. t47 | t48 t49      (block_size 16)
    blocks   |  block 0  |  block 1   |  block 2   | partial: never keyed
    keys       k0 = H(r,  b0)
                           k1 = H(k0, b1)
                                        k2 = H(k1, b2)
    r        = H_ns(namespace)   (root key: model / adapter / tenant)

Why blake2b with an 8-byte digest over ``parent_key + packed tokens``:

* *Stable*: Python's ``hash()`` of str/bytes is salted per process
  (``PYTHONHASHSEED``) and its tuple hash is an implementation detail that has
  changed between versions. blake2b is specified (RFC 7693), ships in
  ``hashlib`` everywhere, and gives the same key in every process, machine and
  Python version, so keys can name blocks across workers (KV transfer, routing
  requests to the worker that holds their prefix, ``KVBlockMeta.prefix_hash``).
* *Cheap*: one 72-byte message is a single blake2b compression; in CPython the
  cost (~0.7 us per block) is dominated by the call, not the digest size.
* *64 bits* fit an int and keep the dict small. A 64-bit key can collide, so
  the index never trusts a key alone: it checks the stored tokens and the
  parent block on every match (see :mod:`sagellm.prefix_cache.cached_block`).
  A collision therefore costs a missed reuse, never a wrong KV block.

Tokens are packed as little-endian uint32 (every real vocabulary fits), so the
bytes hashed do not depend on the machine's byte order.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Sequence
from hashlib import blake2b

from sagellm.core.errors import InvalidRequestError

KEY_BYTES = 8
TOKEN_BYTES = 4
_NAMESPACE_PERSON = b"sagellm.prefix"  # domain separation: a root key is never a block key

if array("I").itemsize != TOKEN_BYTES:  # pragma: no cover - no mainstream platform differs
    raise ImportError("sagellm.prefix_cache needs a 4-byte array('I') to pack token ids")


def namespace_key(namespace: str) -> bytes:
    """Root of every chain in ``namespace``: different namespaces never share a key chain."""
    return blake2b(namespace.encode("utf-8"), digest_size=KEY_BYTES, person=_NAMESPACE_PERSON).digest()


def block_key(parent_key: bytes, block_tokens: bytes) -> bytes:
    """Key of one block given its parent's key and its packed tokens."""
    return blake2b(parent_key + block_tokens, digest_size=KEY_BYTES).digest()


def pack_tokens(tokens: Sequence[int]) -> bytes:
    """Token ids as little-endian uint32 bytes; rejects ids outside ``[0, 2**32)``."""
    try:
        packed = array("I", tokens)
    except (OverflowError, TypeError) as exc:
        raise InvalidRequestError(f"token ids must be integers in [0, 2**32): {exc}") from None
    if sys.byteorder == "big":  # pragma: no cover - exercised only on big-endian hosts
        packed.byteswap()
    return packed.tobytes()


def key_to_int(key: bytes) -> int:
    """A key as an unsigned int (the form stored in ``KVBlockMeta.prefix_hash``)."""
    return int.from_bytes(key, "big")


def hash_block_chain(tokens: Sequence[int], block_size: int, namespace: str = "") -> list[int]:
    """Keys of every full block of ``tokens``, as ints, identical in every process.

    The index uses the same function, so a worker can compute which blocks a
    peer holds for a prompt without asking it.
    """
    if block_size < 1:
        raise InvalidRequestError(f"block_size must be >= 1, got {block_size}")
    num_blocks = len(tokens) // block_size
    packed = pack_tokens(tokens[: num_blocks * block_size])
    stride = block_size * TOKEN_BYTES
    keys: list[int] = []
    parent = namespace_key(namespace)
    for start in range(0, num_blocks * stride, stride):
        parent = block_key(parent, packed[start : start + stride])
        keys.append(key_to_int(parent))
    return keys
