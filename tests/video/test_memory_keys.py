"""Memory keys kept between frames (`samkit.modeling.memory_keys`, issue 21): same numbers."""

from __future__ import annotations

import pytest
import torch

from samkit.layers.rope import RoPEAttention
from samkit.modeling.memory_keys import MemoryKeyCache, MemoryKeys
from tests.video.clips import moving_shapes
from tests.video.fixture_model import fixture_model_predictor


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cached_key_parts_plus_slot_offset_give_the_attention_output(dtype):
    torch.manual_seed(0)
    attn = RoPEAttention(64, 1, kv_in_dim=16, rope_k_repeat=True).to(dtype).eval()
    side, frames, n_ptr = 8, 3, 4
    n = side * side
    q = torch.randn(2, n, 64).to(dtype)
    mems = [torch.randn(2, 16, side, side).to(torch.bfloat16) for _ in range(frames)]
    pos = torch.randn(1, 16, side, side).expand(2, -1, -1, -1)
    tpos = [torch.randn(16) for _ in range(frames)]
    ptr, ptr_pos = torch.randn(2, n_ptr, 16).to(dtype), torch.randn(2, n_ptr, 16).to(dtype)
    tok = [m.flatten(2).transpose(1, 2).to(dtype) for m in mems]
    tok_pos = [pos.flatten(2).transpose(1, 2).to(dtype) + t.to(dtype) for t in tpos]
    memory = torch.cat([*tok, ptr], dim=1)
    memory_pos = torch.cat([*tok_pos, ptr_pos], dim=1)
    cache = MemoryKeyCache()
    keys = MemoryKeys(cache, [attn], list(zip(tpos, mems, [pos] * frames)), n_ptr, dtype)
    with torch.inference_mode():
        want = attn(q, memory + memory_pos, memory, num_k_exclude_rope=n_ptr)
        got = attn(q, ptr + ptr_pos, memory, num_k_exclude_rope=n_ptr, memory_keys=keys[0])
        again = attn(q, ptr + ptr_pos, memory, num_k_exclude_rope=n_ptr, memory_keys=keys[0])
    tol = 1e-5 if dtype == torch.float32 else 0.03 * float(want.float().abs().max())
    torch.testing.assert_close(got.float(), want.float(), atol=tol, rtol=0)
    torch.testing.assert_close(again, got, atol=0, rtol=0)
    assert len(cache.tensors()) == frames  # one entry per memory, reused by the second call
    cache.end_frame()
    assert len(cache.tensors()) == frames
    cache.end_frame()  # nothing read since: dropped
    assert cache.tensors() == []


def test_tracking_with_kept_keys_matches_recomputed_keys(monkeypatch):
    pred = fixture_model_predictor(add_all_frames_to_correct_as_cond=False)
    frames = moving_shapes(10)
    computed = []
    part = RoPEAttention.memory_key_part
    monkeypatch.setattr(
        RoPEAttention, "memory_key_part", lambda self, x: computed.append(1) or part(self, x)
    )
    runs = {}
    for keep in (False, True):
        pred.tracker.cache_memory_keys = keep
        state = pred.init_state(frames)
        pred.add_new_points_or_box(state, 0, 1, points=[[10, 20]], labels=[1])
        pred.add_new_points_or_box(state, 0, 2, points=[[50, 36]], labels=[1])
        runs[keep] = {f: m.clone() for f, _, m in pred.propagate_in_video(state)}
        if keep:
            layers = len(pred.model.memory_attention.layers)
            # each object's memory (1 conditioning + one per tracked frame but the last) is
            # projected once per layer, not once per frame that reads it (up to 7 frames)
            assert len(computed) == layers * 2 * (1 + len(frames) - 2)
            per_object = len(state.key_cache.tensors()) // (layers * 2)
            assert per_object == pred.model.num_maskmem
    assert runs[True].keys() == runs[False].keys()
    for f in runs[False]:
        torch.testing.assert_close(runs[True][f], runs[False][f], atol=1e-4, rtol=0)
