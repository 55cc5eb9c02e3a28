"""Objects tracked in one batch per frame (issue 21): the same numbers as one by one."""

from __future__ import annotations

import pytest
import torch

from tests.video.clips import moving_shapes
from tests.video.fixture_model import fixture_model_predictor

ATOL = 1e-5  # float32 rounding of larger matmuls; the logits are O(1-10)


def _track(pred, frames, monkeypatch, batched: bool) -> tuple[dict, list[int]]:
    """Logits per (frame, object) of a session: objects 1 and 2 clicked on frame 0, object 3
    on frame 2; and the batch size of every tracking step."""
    sizes: list[int] = []
    step = type(pred.model).track_step

    def counted(self, frame_idx, is_init, feats, *a, **k):
        sizes.append(int(feats.image_embed.shape[0]))
        return step(self, frame_idx, is_init, feats, *a, **k)

    with monkeypatch.context() as m:
        m.setattr(type(pred.model), "track_step", counted)
        m.setattr(pred.tracker, "batch_objects", batched)
        state = pred.init_state(frames)
        pred.add_new_points_or_box(state, 0, 1, points=[[10, 20]], labels=[1])
        pred.add_new_points_or_box(state, 0, 2, points=[[50, 36]], labels=[1])
        pred.add_new_points_or_box(state, 2, 3, points=[[20, 22]], labels=[1])
        out = {}
        for f, ids, masks in pred.propagate_in_video(state):
            for row, obj in enumerate(ids):
                out[f, obj] = masks[row].clone()
    return out, sizes


@pytest.fixture(scope="module")
def pred():
    return fixture_model_predictor(add_all_frames_to_correct_as_cond=False)


def test_objects_with_the_same_memory_frames_are_tracked_in_one_batch(pred, monkeypatch):
    # default: batched off the CPU only (no faster on a CPU, BENCHMARKS.md issue 21)
    assert pred.tracker.batch_objects is None
    frames = moving_shapes(6)
    one, one_sizes = _track(pred, frames, monkeypatch, batched=False)
    many, many_sizes = _track(pred, frames, monkeypatch, batched=True)
    assert max(one_sizes) == 1
    # objects 1 and 2 share their memory frames: batched from frame 1 on; object 3 (prompted
    # on frame 2) keeps its own batch (its conditioning frame differs)
    assert 2 in many_sizes and max(many_sizes) == 2
    assert len(many_sizes) < len(one_sizes)
    assert one.keys() == many.keys()
    for key in one:
        torch.testing.assert_close(many[key], one[key], atol=ATOL, rtol=0, msg=str(key))
    present = sum(bool((v > 0).any()) for v in many.values())
    assert present > len(many) // 2  # the clicks find objects: the comparison is not of empties


def test_first_layer_self_attention_runs_once_for_an_expanded_batch(pred):
    """An expanded batch (one frame for B objects) gives what the same tokens copied give."""
    ma = pred.model.memory_attention
    g = torch.Generator().manual_seed(0)
    n, c = 16 * 16, pred.model.hidden_dim
    mem_dim = pred.model.mem_dim
    curr = torch.randn(1, n, c, generator=g)
    pos = torch.randn(1, n, c, generator=g)
    memory = torch.randn(3, 2 * n + 4, mem_dim, generator=g)
    mpos = torch.randn(3, 2 * n + 4, mem_dim, generator=g)
    calls = []
    hook = ma.layers[0].self_attn.register_forward_hook(lambda m, a, o: calls.append(o.shape[0]))
    try:
        with torch.inference_mode():
            shared = ma(curr.expand(3, -1, -1), memory, pos.expand(3, -1, -1), mpos, 4)
            copied = ma(curr.repeat(3, 1, 1), memory, pos.repeat(3, 1, 1), mpos, 4)
    finally:
        hook.remove()
    assert calls == [1, 3]
    torch.testing.assert_close(shared, copied, atol=1e-5, rtol=0)
