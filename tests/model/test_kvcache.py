"""Tests for refimpl.model.kvcache (spec/kvcache.md): append equals concatenation, truncate, errors."""

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refimpl import ArgumentError
from refimpl.model.kvcache import KVCache, kv_cache_bytes

CHUNKS = [0, 1, 2, 31, 32, 33, 127, 128, 129]


def _rand(rng, shape):
    return rng.standard_normal(shape).astype(np.float32)


@given(
    st.lists(st.sampled_from(CHUNKS), min_size=1, max_size=6),
    st.sampled_from([(), (1,), (2,), (2, 3)]),
    st.integers(1, 3),
)
def test_append_equals_concatenation(chunks, batch, num_layers):
    hkv, d = 2, 4
    rng = np.random.default_rng(len(chunks) * 7 + len(batch))
    cache = KVCache(num_layers, hkv, d, batch_shape=batch)
    ks = [[] for _ in range(num_layers)]
    vs = [[] for _ in range(num_layers)]
    for t in chunks:
        for layer in range(num_layers):
            k = _rand(rng, batch + (t, hkv, d))
            v = _rand(rng, batch + (t, hkv, d))
            ks[layer].append(k)
            vs[layer].append(v)
            k_all, v_all = cache.append(layer, k, v)
            axis = len(batch)
            np.testing.assert_array_equal(k_all, np.concatenate(ks[layer], axis=axis))
            np.testing.assert_array_equal(v_all, np.concatenate(vs[layer], axis=axis))
            assert k_all.dtype == np.float32 and v_all.dtype == np.float32
    total = sum(chunks)
    assert cache.position == total
    assert [cache.length(layer) for layer in range(num_layers)] == [total] * num_layers
    assert cache.nbytes == 2 * num_layers * int(np.prod(batch)) * total * hkv * d * 4


def test_returned_arrays_are_strided_views_of_one_preallocated_buffer():
    cache = KVCache(1, 2, 4, capacity=64)
    k1, v1 = cache.append(0, np.ones((3, 2, 4)), np.full((3, 2, 4), 2.0))
    buf = cache._k[0]
    assert buf.shape == (2, 64, 4)  # [Hkv, capacity, D]: each head's positions contiguous
    assert k1.shape == (3, 2, 4) and np.shares_memory(k1, buf)  # [T, Hkv, D], a view: no copy
    assert k1.strides == (4 * 4, 64 * 4 * 4, 4)
    k2, v2 = cache.append(0, np.full((1, 2, 4), 5.0), np.full((1, 2, 4), 6.0))
    assert cache._k[0] is buf and np.shares_memory(k2, buf)  # within capacity: no reallocation
    np.testing.assert_array_equal(k2[:3], np.ones((3, 2, 4)))
    np.testing.assert_array_equal(v2[3], np.full((2, 4), 6.0))
    cache.truncate(1)
    k3, _ = cache.append(0, np.full((1, 2, 4), 7.0), np.zeros((1, 2, 4)))
    np.testing.assert_array_equal(k3[1], np.full((2, 4), 7.0))  # a truncated position is overwritten


def test_growth_beyond_capacity_keeps_the_entries():
    cache = KVCache(1, 1, 2, capacity=2)
    k, _ = cache.append(0, np.ones((2, 1, 2)), np.ones((2, 1, 2)))
    k, _ = cache.append(0, np.full((3, 1, 2), 3.0), np.ones((3, 1, 2)))
    assert cache._k[0].shape[-2] >= 5
    np.testing.assert_array_equal(k[:, 0, 0], [1, 1, 3, 3, 3])


def test_truncate_then_append_and_reset():
    rng = np.random.default_rng(0)
    cache = KVCache(2, 3, 8, max_length=200)
    k = _rand(rng, (129, 3, 8))
    v = _rand(rng, (129, 3, 8))
    for layer in range(2):
        cache.append(layer, k, v)
    assert cache.position == 129
    cache.truncate(100)
    assert cache.position == 100 and cache.length(1) == 100
    k_new = _rand(rng, (5, 3, 8))
    v_new = _rand(rng, (5, 3, 8))
    k_all, v_all = cache.append(1, k_new, v_new)
    np.testing.assert_array_equal(k_all, np.concatenate([k[:100], k_new]))
    np.testing.assert_array_equal(v_all, np.concatenate([v[:100], v_new]))
    assert cache.length(0) == 100 and cache.length(1) == 105
    assert cache.position == 100  # position follows layer 0
    cache.truncate(0)
    assert cache.position == 0 and cache.length(1) == 0
    cache.append(0, k[:3], v[:3])
    cache.reset()
    assert cache.position == 0 and cache.nbytes == 0
    k_all, v_all = cache.get(0)
    assert k_all.shape == (0, 3, 8) and v_all.shape == (0, 3, 8)


def test_max_length_boundary():
    cache = KVCache(1, 1, 1, max_length=128)
    cache.append(0, np.zeros((127, 1, 1)), np.zeros((127, 1, 1)))
    cache.append(0, np.zeros((1, 1, 1)), np.zeros((1, 1, 1)))  # exactly max_length is allowed
    assert cache.position == 128
    with pytest.raises(ArgumentError, match=r"^k.*max_length=128"):
        cache.append(0, np.zeros((1, 1, 1)), np.zeros((1, 1, 1)))
    assert cache.position == 128  # a failed append changes nothing


def test_storage_dtype_rounds_bf16_and_float64():
    x = np.array([1.0 + 2.0**-8, 1.0 + 3 * 2.0**-8, 1.0 + 2.0**-9, -3.0], dtype=np.float32).reshape(4, 1, 1)
    cache = KVCache(1, 1, 1, dtype=ml_dtypes.bfloat16)
    k_all, _ = cache.append(0, x, x)
    assert k_all.dtype == ml_dtypes.bfloat16
    # hand-rounded to 8 significant bits, ties to even: 1+2^-8 -> 1, 1+3*2^-8 -> 1+2^-6, 1+2^-9 -> 1
    assert k_all.astype(np.float32).ravel().tolist() == [1.0, 1.0 + 2.0**-6, 1.0, -3.0]
    assert cache.bytes_per_token == 2 * 1 * 1 * 1 * 2
    c64 = KVCache(1, 1, 1, dtype=np.float64)
    k64, _ = c64.append(0, x, x)
    assert k64.dtype == np.float64 and c64.nbytes == 2 * 4 * 8


def test_gpt_oss_20b_bytes():
    # 24 layers, 8 kv heads, head_dim 64, bf16: 2 * 24 * 8 * 64 * 2 = 49152 bytes per token.
    cache = KVCache(24, 8, 64, dtype=ml_dtypes.bfloat16)
    assert cache.bytes_per_token == 49152
    assert kv_cache_bytes(24, 8, 64, 1) == 49152
    assert kv_cache_bytes(24, 8, 64, 2048) == 100663296  # 96 MiB
    assert kv_cache_bytes(24, 8, 64, 131072) == 6 * 2**30  # full context: 6 GiB
    assert kv_cache_bytes(36, 8, 64, 131072) == 9 * 2**30  # gpt-oss-120b: 36 layers
    assert kv_cache_bytes(24, 8, 64, 10, itemsize=4, batch_size=3) == 49152 * 2 * 10 * 3
    with pytest.raises(ArgumentError, match="^num_tokens"):
        kv_cache_bytes(24, 8, 64, -1)
    with pytest.raises(ArgumentError, match="^num_layers"):
        kv_cache_bytes(0, 8, 64, 1)


def test_append_bad_arguments():
    cache = KVCache(2, 2, 4, batch_shape=(3,))
    good = np.zeros((3, 5, 2, 4), dtype=np.float32)
    for bad in [-1, 2, 1.0, True, None]:
        with pytest.raises(ArgumentError, match="^layer"):
            cache.append(bad, good, good)
    with pytest.raises(ArgumentError, match=r"^k: expected shape \(3, T_new, 2, 4\)"):
        cache.append(0, np.zeros((3, 5, 1, 4)), good)
    with pytest.raises(ArgumentError, match="^k"):
        cache.append(0, np.zeros((5, 2, 4)), good)  # batch dims missing
    with pytest.raises(ArgumentError, match="^k"):
        cache.append(0, np.zeros((2, 5, 2, 4)), good)  # wrong batch
    with pytest.raises(ArgumentError, match="^v"):
        cache.append(0, good, np.zeros((3, 5, 2, 3)))
    with pytest.raises(ArgumentError, match="^v"):
        cache.append(0, good, np.zeros((3, 4, 2, 4)))  # different T_new
    with pytest.raises(ArgumentError, match="^k"):
        cache.append(0, np.array([["a"]]), good)
    with pytest.raises(ArgumentError, match="^layer"):
        cache.length(5)
    with pytest.raises(ArgumentError, match="^layer"):
        cache.get(-1)
    assert cache.position == 0 and cache.length(1) == 0  # nothing was written


def test_truncate_bad_arguments():
    cache = KVCache(1, 1, 1)
    cache.append(0, np.zeros((4, 1, 1)), np.zeros((4, 1, 1)))
    for bad in [-1, 5, 2.0, True]:
        with pytest.raises(ArgumentError, match="^length"):
            cache.truncate(bad)
    assert cache.position == 4


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(num_layers=0, num_kv_heads=1, head_dim=1), "num_layers"),
        (dict(num_layers=1, num_kv_heads=0, head_dim=1), "num_kv_heads"),
        (dict(num_layers=1, num_kv_heads=1, head_dim=2.0), "head_dim"),
        (dict(num_layers=1, num_kv_heads=1, head_dim=1, max_length=0), "max_length"),
        (dict(num_layers=1, num_kv_heads=1, head_dim=1, dtype=np.int32), "dtype"),
        (dict(num_layers=1, num_kv_heads=1, head_dim=1, dtype="nonsense"), "dtype"),
        (dict(num_layers=1, num_kv_heads=1, head_dim=1, batch_shape=(0,)), "batch_shape"),
        (dict(num_layers=1, num_kv_heads=1, head_dim=1, batch_shape=2), "batch_shape"),
    ],
)
def test_constructor_bad_arguments(kwargs, name):
    with pytest.raises(ArgumentError, match=f"^{name}"):
        KVCache(**kwargs)


def test_extend_makes_room_for_entries_the_caller_writes():
    c = KVCache(2, 3, 4, max_length=20, capacity=2)
    k = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    c.append(0, k, k + 1)
    kb, vb, old = c.extend(0, 1)  # past the first capacity: the buffers grow, the cached rows kept
    assert old == 2 and c.length(0) == 3 and kb.shape == (3, 4, 4)
    kb[:, old], vb[:, old] = 7.0, 8.0
    ka, va = c.get(0)
    np.testing.assert_array_equal(ka[:2], k)
    np.testing.assert_array_equal(va[:2], k + 1)
    assert (ka[2] == 7).all() and (va[2] == 8).all()
    with pytest.raises(ArgumentError, match="at most max_length=20 cached tokens in layer 1"):
        c.extend(1, 21)
    assert c.length(1) == 0  # nothing changed by the refused call
    for bad in (0, -1, 1.5):
        with pytest.raises(ArgumentError, match="t_new"):
            c.extend(1, bad)
    assert c.length(1) == 0
