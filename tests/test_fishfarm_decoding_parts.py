"""The lean decoding loop's parts on their own: the KV cache, the padding and shared-prefix
helpers the HF backend and the loop share, and the table of model families."""
from __future__ import annotations

import pytest
import torch

from fishfarm.backends.batching import pad_batch, shared_prefix
from fishfarm.backends.families import LEAN_DECODING_TYPES, MODEL_FAMILIES, SUPPORTED_MODEL_TYPES
from fishfarm.backends.kv_cache import KVCache


def a_cache(rows=4, columns=6):
    return KVCache(layers=2, rows=rows, kv_heads=3, columns=columns, head_dim=5, dtype=torch.float32, device="cpu")


def written(cache: KVCache, layer: int, start: int, t: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    k, v = (torch.randn(cache.rows, 3, t, 5, generator=gen) for _ in range(2))
    cache.write(layer, k, v, start)
    return k, v


def test_a_cache_returns_what_was_written_and_keeps_rows_in_place():
    cache = a_cache()
    first = [written(cache, layer, 0, 2, seed=layer) for layer in range(2)]  # a prompt pass of 2 columns
    assert cache.length == 2
    second = [written(cache, layer, 2, 1, seed=10 + layer) for layer in range(2)]  # one step
    assert cache.length == 3
    for layer in range(2):
        keys, values = cache.view(layer)
        assert keys.shape == (4, 3, 3, 5)
        torch.testing.assert_close(keys, torch.cat([first[layer][0], second[layer][0]], dim=2), rtol=0, atol=0)
        torch.testing.assert_close(values, torch.cat([first[layer][1], second[layer][1]], dim=2), rtol=0, atol=0)
    expected = [cache.view(layer) for layer in range(2)]
    expected = [(k[[1, 3]].clone(), v[[1, 3]].clone()) for k, v in expected]
    buffer = cache.keys.data_ptr()
    cache.keep([1, 3])  # rows 0 and 2 ended
    assert cache.rows == 2 and cache.length == 3 and cache.keys.data_ptr() == buffer  # moved in place
    for layer in range(2):
        keys, values = cache.view(layer)
        torch.testing.assert_close(keys, expected[layer][0], rtol=0, atol=0)
        torch.testing.assert_close(values, expected[layer][1], rtol=0, atol=0)
    k, _ = written(cache, 0, 3, 1, seed=20)  # the kept rows go on where they were
    torch.testing.assert_close(cache.view(0)[0][:, :, 3:], k, rtol=0, atol=0)
    torch.testing.assert_close(cache.view(0)[1][:, :, :3], expected[0][1], rtol=0, atol=0)


def test_a_shared_prefix_written_once_reaches_every_row():
    prefix, cache = a_cache(rows=1, columns=2), a_cache()
    ks = [written(prefix, layer, 0, 2, seed=layer)[0] for layer in range(2)]
    cache.write_prefix(prefix)
    assert cache.length == 2
    for layer in range(2):
        torch.testing.assert_close(cache.view(layer)[0], ks[layer].expand(4, -1, -1, -1), rtol=0, atol=0)


def test_pad_batch_pads_left_or_right_and_masks_the_real_tokens():
    rows = [[5, 6, 7], [8], (9, 10)]
    ids, mask = pad_batch(rows, 0, left=True)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8], [0, 9, 10]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1], [0, 1, 1]]
    ids, mask = pad_batch(rows, 0, left=False)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0], [9, 10, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0], [1, 1, 0]]
    ids, mask = pad_batch([[1], []], 2, left=True, width=3)
    assert ids.tolist() == [[2, 2, 1], [2, 2, 2]] and mask.sum().item() == 1
    assert ids.dtype == mask.dtype == torch.long


@pytest.mark.parametrize("rows, minimum, shared", [
    ([[1, 2, 3, 4], [1, 2, 3, 5]], 1, 3),
    ([[1, 2, 3, 4], [1, 2, 3, 5]], 4, 0),       # fewer than the minimum: not worth a pass
    ([[1, 2, 3], [1, 2, 3, 4]], 1, 2),          # the shortest row keeps its last token
    ([[1, 2, 3], [1, 2, 3]], 1, 2),
    ([[1, 2, 3], [9, 2, 3]], 1, 0),
    ([[1, 2, 3, 4]], 1, 0),                      # one row: nothing to share
    ([[1, 2, 3, 4], [1, 2, 3, 5]], 0, 0),       # 0 turns it off
])
def test_shared_prefix(rows, minimum, shared):
    assert shared_prefix(rows, minimum) == shared


def test_one_table_of_model_families():
    assert SUPPORTED_MODEL_TYPES == ("llama", "mistral", "qwen2", "qwen3")
    assert LEAN_DECODING_TYPES == ("llama", "mistral", "qwen2")
    for family in MODEL_FAMILIES.values():
        modeling = family.modeling()
        assert callable(modeling.apply_rotary_pos_emb)
        assert isinstance(getattr(modeling, family.rms_norm), type)
