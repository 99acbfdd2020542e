"""Each scenario gives bit-identical tensors with the serial and the threaded manager (small sizes)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from sagellm.overlap_pipeline import SerialOverlapManager, ThreadOverlapManager
from sagellm.overlap_pipeline.scenarios.decoder_layer import LayerShape, make_layers
from sagellm.overlap_pipeline.scenarios.disk_kv_store import DiskKVStore
from sagellm.overlap_pipeline.scenarios.kv_prefetch import PrefetchDecode
from sagellm.overlap_pipeline.scenarios.kv_receiver import KVReceiverProcess
from sagellm.overlap_pipeline.scenarios.kv_shipping import LayerwiseKVShipping, byte_view
from sagellm.overlap_pipeline.scenarios.tp_all_reduce import MicrobatchTP, TPMLPShard, make_shards

SHAPE = LayerShape(hidden=64, intermediate=128, num_heads=4, num_kv_heads=2, head_dim=16)


@pytest.fixture
def managers() -> Iterator[tuple[SerialOverlapManager, ThreadOverlapManager]]:
    serial, threads = SerialOverlapManager(), ThreadOverlapManager(cuda_streams="off")
    yield serial, threads
    serial.close()
    threads.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DiskKVStore]:
    made = DiskKVStore.create(tmp_path / "kv.bin", num_layers=3, kv_shape=(4, 24, 2, 16), seed=7)
    yield made
    made.close()


def test_kv_prefetch_matches_serial(
    store: DiskKVStore, managers: tuple[SerialOverlapManager, ThreadOverlapManager]
) -> None:
    serial, threads = managers
    x0 = torch.randn(4, SHAPE.hidden, generator=torch.Generator().manual_seed(1))
    decode = PrefetchDecode(store, make_layers(SHAPE, 2), x0, steps=2)
    expected = decode.run(serial)
    assert expected.shape == (2, 4, SHAPE.hidden) and torch.isfinite(expected).all()
    assert torch.equal(decode.run(threads), expected)
    assert threads.stats.snapshot()["schedule"].calls == 2 * 3


def test_kv_prefetch_reads_the_layer_it_decodes(
    store: DiskKVStore, managers: tuple[SerialOverlapManager, ThreadOverlapManager]
) -> None:
    serial, _ = managers
    x0 = torch.randn(4, SHAPE.hidden, generator=torch.Generator().manual_seed(1))
    layers = make_layers(SHAPE, 3)
    got = PrefetchDecode(store, layers, x0, steps=1).run(serial)
    buffer, x = store.new_buffer(), x0
    for layer in range(3):  # the same decode with each layer's KV read before it is used
        store.read_into(layer, buffer)
        x = layers[layer].decode(x, *store.views(buffer))
    assert torch.equal(got[0], x)
    assert not torch.equal(PrefetchDecode(store, layers, x0).run(serial, comm=False)[0], x)  # the KV matters


def test_disk_store_rejects_a_file_of_the_wrong_size(store: DiskKVStore) -> None:
    from sagellm.core.errors import ConfigError

    with pytest.raises(ConfigError, match="expected 4 layers"):
        DiskKVStore(store.path, 4, store.kv_shape, store.dtype)
    with pytest.raises(ConfigError, match="layer 3"):
        store.read_into(3, store.new_buffer())


def test_kv_shipping_matches_serial_and_arrives_intact(
    managers: tuple[SerialOverlapManager, ThreadOverlapManager],
) -> None:
    serial, threads = managers
    layers = make_layers(SHAPE, 3)
    x = torch.randn(20, SHAPE.hidden, generator=torch.Generator().manual_seed(2))
    receiver = KVReceiverProcess()
    try:
        prefill = LayerwiseKVShipping(layers, x, receiver)
        out, digests = prefill.run(serial)
        out_t, digests_t = prefill.run(threads)
    finally:
        receiver.close()
    assert torch.equal(out_t, out) and digests_t == digests
    expected, h = [], x
    for layer in layers:  # what the receiver must have seen: each layer's K then V
        h, k, v = layer.prefill(h)
        expected += [hashlib.sha256(byte_view(k)).digest(), hashlib.sha256(byte_view(v)).digest()]
    assert digests == expected


def test_kv_shipping_with_a_cached_prefix_ships_it_and_attends_to_it(
    managers: tuple[SerialOverlapManager, ThreadOverlapManager],
) -> None:
    serial, threads = managers
    layers = make_layers(SHAPE, 2)
    x = torch.randn(6, SHAPE.hidden, generator=torch.Generator().manual_seed(2))
    receiver = KVReceiverProcess()
    try:
        with_prefix = LayerwiseKVShipping(layers, x, receiver, prefix_tokens=10)
        out, digests = with_prefix.run(serial)
        out_t, digests_t = with_prefix.run(threads)
        plain, _ = LayerwiseKVShipping(layers, x, receiver).run(serial)
    finally:
        receiver.close()
    assert torch.equal(out_t, out) and digests_t == digests
    assert not torch.equal(out, plain)  # the prefix changes the attention
    expected, h = [], x
    for layer, (past_k, past_v) in zip(layers, with_prefix.prefix):
        h, k, v = layer.prefill(h, past_k, past_v)
        expected += [hashlib.sha256(byte_view(t)).digest() for t in (past_k, past_v, k, v)]
    assert digests == expected


def test_prefill_over_a_prefix_matches_prefill_of_the_whole_prompt() -> None:
    layer = make_layers(SHAPE, 1)[0]
    prompt = torch.randn(12, SHAPE.hidden, dtype=torch.float64)
    for name in ("w_qkv", "w_o", "w_gate_up", "w_down"):
        setattr(layer, name, getattr(layer, name).double())
    whole, k, v = layer.prefill(prompt)
    tail, k_tail, _ = layer.prefill(prompt[8:], k[:8], v[:8])
    torch.testing.assert_close(tail, whole[8:])
    torch.testing.assert_close(k_tail, k[8:])


def test_kv_receiver_takes_multi_dimensional_buffers_whole() -> None:
    data = bytes(range(256)) * 3
    receiver = KVReceiverProcess()
    try:  # send_bytes alone would size a 2-D view by its row count and desynchronise the stream
        assert receiver.ship(memoryview(data).cast("B", shape=[3, 256])) == [hashlib.sha256(data).digest()]
        assert receiver.ship(memoryview(data)) == [hashlib.sha256(data).digest()]
    finally:
        receiver.close()


def test_kv_receiver_refuses_work_after_close() -> None:
    from sagellm.core.errors import SageLLMError

    receiver = KVReceiverProcess()
    receiver.close()
    receiver.close()
    with pytest.raises(SageLLMError, match="closed"):
        receiver.ship(memoryview(b"kv"))


def test_tp_shards_sum_to_the_full_mlp() -> None:
    x = torch.randn(3, SHAPE.hidden, dtype=torch.float64)
    full = TPMLPShard(SHAPE, seed=5, rank=0, world_size=1)
    halves = [TPMLPShard(SHAPE, seed=5, rank=r, world_size=2) for r in range(2)]
    for shard in (full, *halves):
        shard.w_gate_up, shard.w_down = shard.w_gate_up.double(), shard.w_down.double()
    torch.testing.assert_close(halves[0].partial(x) + halves[1].partial(x), full.partial(x))


def test_microbatch_tp_matches_serial_in_one_process(
    managers: tuple[SerialOverlapManager, ThreadOverlapManager],
) -> None:
    serial, threads = managers
    gen = torch.Generator().manual_seed(3)
    xs = [torch.randn(4, SHAPE.hidden, generator=gen) for _ in range(2)]
    scenario = MicrobatchTP(make_shards(SHAPE, 3, rank=0, world_size=1), xs, all_reduce=lambda t: t.mul_(0.5))
    expected = scenario.run(serial)
    assert torch.equal(scenario.run(threads), expected)
    assert not torch.equal(scenario.run(serial, comm=False), expected)  # the reduction is applied


def _tp_rank(rank: int, world_size: int) -> dict[str, torch.Tensor]:
    from sagellm.overlap_pipeline.scenarios.gloo_ranks import gloo_all_reduce

    gen = torch.Generator().manual_seed(11)  # the same inputs on every rank, as TP needs
    xs = [torch.randn(4, SHAPE.hidden, generator=gen) for _ in range(2)]
    scenario = MicrobatchTP(make_shards(SHAPE, 3, rank, world_size), xs, gloo_all_reduce)
    with _Managers() as (serial, threads):
        return {"serial": scenario.run(serial), "threads": scenario.run(threads)}


class _Managers:
    def __enter__(self) -> tuple[SerialOverlapManager, ThreadOverlapManager]:
        self.made = (SerialOverlapManager(), ThreadOverlapManager(cuda_streams="off"))
        return self.made

    def __exit__(self, *exc: object) -> None:
        for manager in self.made:
            manager.close()


def test_tp_all_reduce_over_two_gloo_ranks_matches_serial() -> None:
    from sagellm.overlap_pipeline.scenarios.gloo_ranks import run_gloo_ranks

    ranks = run_gloo_ranks(_tp_rank, world_size=2)
    for got in ranks:
        assert torch.equal(got["threads"], got["serial"])
    assert torch.equal(ranks[0]["serial"], ranks[1]["serial"])  # the ranks agree after every all-reduce
    gen = torch.Generator().manual_seed(11)
    xs = [torch.randn(4, SHAPE.hidden, generator=gen) for _ in range(2)]
    single = MicrobatchTP(make_shards(SHAPE, 3, 0, 1), xs, all_reduce=lambda t: t).run(SerialOverlapManager())
    torch.testing.assert_close(ranks[0]["serial"], single)  # two shards summed = the unsharded layers
