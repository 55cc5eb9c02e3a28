"""Hiera keeps its resized position embedding between images when no gradient is needed (#21)."""

from __future__ import annotations

import torch

from samkit.modeling.hiera import Hiera


def _trunk() -> Hiera:
    torch.manual_seed(0)
    trunk = Hiera(
        embed_dim=8,
        num_heads=1,
        q_pool=1,
        stages=(1, 1),
        window_pos_embed_bkg_spatial_size=(3, 3),
        window_spec=(4, 2),
        global_att_blocks=(),
    )
    with torch.no_grad():
        trunk.pos_embed.normal_()
        trunk.pos_embed_window.normal_()
    return trunk


def test_kept_between_calls_and_equal_to_a_fresh_resize():
    trunk = _trunk()
    with torch.inference_mode():
        first = trunk._get_pos_embed((16, 16))
        assert trunk._get_pos_embed((16, 16)) is first
        torch.testing.assert_close(first, trunk._compute_pos_embed((16, 16)), rtol=0, atol=0)
        other = trunk._get_pos_embed((8, 12))
        assert other.shape == (1, 8, 12, 8)
        torch.testing.assert_close(other, trunk._compute_pos_embed((8, 12)), rtol=0, atol=0)


def test_recomputed_after_the_weights_change():
    trunk = _trunk()
    with torch.no_grad():
        before = trunk._get_pos_embed((16, 16)).clone()
        trunk.pos_embed_window.add_(1.0)  # in place: same storage, new version
        after = trunk._get_pos_embed((16, 16))
    torch.testing.assert_close(after, before + 1.0)
    trunk.load_state_dict(_trunk().state_dict())
    with torch.no_grad():
        torch.testing.assert_close(trunk._get_pos_embed((16, 16)), before)
    trunk = trunk.to(torch.bfloat16)
    with torch.no_grad():
        assert trunk._get_pos_embed((16, 16)).dtype == torch.bfloat16


def test_gradients_reach_the_position_parameters():
    trunk = _trunk()
    with torch.no_grad():
        trunk._get_pos_embed((16, 16))  # a cached value must not stand in for training
    out = trunk(torch.randn(1, 3, 64, 64))
    sum(o.sum() for o in out).backward()
    assert trunk.pos_embed.grad is not None and trunk.pos_embed.grad.abs().sum() > 0
    assert trunk.pos_embed_window.grad.abs().sum() > 0
