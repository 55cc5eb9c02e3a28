"""Sam3Image.forward_grounding on a small random detector: batching rules (prompts per image,
several concepts on one image), box padding, the typed output, and clear errors."""

from __future__ import annotations

import pytest
import torch

from samkit.modeling.sam3.decoder import TransformerDecoder
from samkit.modeling.sam3.encoder import TransformerEncoderFusion
from samkit.modeling.sam3.geometry_encoder import SequenceGeometryEncoder
from samkit.modeling.sam3.sam3_image import GeometricPrompt, Sam3Image, Sam3Transformer
from samkit.modeling.sam3.scoring import DotProductScoring
from samkit.modeling.sam3.segmentation_head import UniversalSegmentationHead

D, Q = 32, 6
SIZES = [(16, 16), (8, 8), (4, 4)]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # hundreds of tiny ops: a second intra-op thread only adds wake-up waits (seconds per pass
    # on a busy machine)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def model() -> Sam3Image:
    torch.manual_seed(0)
    m = Sam3Image(
        backbone=None,
        geometry_encoder=SequenceGeometryEncoder(D, 4, 64, 1),
        transformer=Sam3Transformer(
            TransformerEncoderFusion(D, 4, 64, 1), TransformerDecoder(D, 4, 64, 2, Q)
        ),
        segmentation_head=UniversalSegmentationHead(D, 4),
        dot_prod_scoring=DotProductScoring(D, D, 64),
    ).eval()
    with torch.no_grad():  # the official init zeroes the box head's last layer; make boxes move
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return m


def features(n_img: int, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    fpn = [torch.randn(n_img, D, h, w, generator=g) for h, w in SIZES]
    pos = torch.randn(n_img, D, *SIZES[-1], generator=g)
    return fpn, pos


def text(b: int, seed: int = 2):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(b, 5, D, generator=g)
    mask = torch.zeros(b, 5, dtype=torch.bool)
    mask[:, 3:] = True
    return feats, mask


def assert_rows_equal(out, row: int, ref, ref_row: int = 0) -> None:
    for key in ("pred_logits", "presence_logit_dec", "pred_boxes", "pred_masks", "semantic_seg"):
        torch.testing.assert_close(out[key][row], ref[key][ref_row], rtol=0, atol=1e-5, msg=key)


@torch.inference_mode()
def test_output_shapes_and_official_key_access(model) -> None:
    fpn, pos = features(1)
    feats, mask = text(1)
    out = model.forward_grounding(fpn, pos, feats, mask)
    assert out["pred_logits"].shape == (1, Q, 1)
    assert out.presence_logit_dec.shape == (1, 1)
    assert out.pred_boxes.shape == out.pred_boxes_xyxy.shape == (1, Q, 4)
    assert out.pred_masks.shape == (1, Q, 16, 16) and out.semantic_seg.shape == (1, 1, 16, 16)
    assert out.encoder_hidden_states.shape == (1, 16, D)
    assert out.prompt.shape == (1, 6, D)  # 5 text tokens + the geometry CLS token
    expected = out.pred_logits[..., 0].sigmoid() * out.presence_logit_dec.sigmoid()
    torch.testing.assert_close(out.scores, expected)
    with pytest.raises(KeyError):
        out["nope"]


@torch.inference_mode()
def test_concepts_on_one_image_equal_one_pass_each(model) -> None:
    fpn, pos = features(1)
    feats, mask = text(3)
    batch = model.forward_grounding(fpn, pos, feats, mask)
    for i in range(3):
        single = model.forward_grounding(fpn, pos, feats[i : i + 1], mask[i : i + 1])
        assert_rows_equal(batch, i, single)


@torch.inference_mode()
def test_img_ids_pick_the_image_of_each_prompt(model) -> None:
    fpn, pos = features(2)
    feats, mask = text(3)
    out = model.forward_grounding(fpn, pos, feats, mask, img_ids=torch.tensor([1, 0, 1]))
    for i, img in enumerate([1, 0, 1]):
        single = model.forward_grounding(
            [f[img : img + 1] for f in fpn], pos[img : img + 1], feats[i : i + 1], mask[i : i + 1]
        )
        assert_rows_equal(out, i, single)


@torch.inference_mode()
def test_padded_boxes_are_ignored(model) -> None:
    """A prompt whose second box is padding answers as the prompt with one box."""
    fpn, pos = features(1)
    feats, mask = text(1)
    one = GeometricPrompt.empty(1).with_boxes(
        torch.tensor([[[0.4, 0.5, 0.3, 0.2]]]), torch.tensor([[True]])
    )
    padded = GeometricPrompt(
        boxes=torch.tensor([[[0.4, 0.5, 0.3, 0.2], [0.9, 0.9, 0.1, 0.1]]]),
        box_labels=torch.tensor([[True, False]]),
        box_mask=torch.tensor([[False, True]]),
    )
    a = model.forward_grounding(fpn, pos, feats, mask, one)
    b = model.forward_grounding(fpn, pos, feats, mask, padded)
    assert_rows_equal(b, 0, a)
    neg = model.forward_grounding(
        fpn,
        pos,
        feats,
        mask,
        one.with_boxes(torch.tensor([[[0.9, 0.9, 0.1, 0.1]]]), torch.tensor([[False]])),
    )
    assert not torch.allclose(neg.pred_logits, a.pred_logits)  # a real second box counts


def test_bad_input(model) -> None:
    fpn, pos = features(2)
    feats, mask = text(3)
    with pytest.raises(ValueError, match="pass img_ids"):
        model.forward_grounding(fpn, pos, feats, mask)
    with pytest.raises(ValueError, match="img_ids must be 3 indices"):
        model.forward_grounding(fpn, pos, feats, mask, img_ids=torch.tensor([0, 2, 1]))
    with pytest.raises(ValueError, match="text_mask"):
        model.forward_grounding(fpn, pos, feats, mask[:, :2], img_ids=torch.zeros(3))
    with pytest.raises(ValueError, match="backbone_fpn"):
        model.forward_grounding([], pos, feats, mask)
    with pytest.raises(ValueError, match="at least one prompt"):
        model.forward_grounding(fpn[:1], pos[:1], feats[:0], mask[:0])
    with pytest.raises(ValueError, match=r"boxes must be \(B, N, 4\)"):
        GeometricPrompt(torch.zeros(1, 4), torch.zeros(1, 1), torch.zeros(1, 1))
    with pytest.raises(ValueError, match="box_mask must be"):
        GeometricPrompt(torch.zeros(1, 2, 4), torch.zeros(1, 2), torch.zeros(1, 3))
    with pytest.raises(ValueError, match="point_labels must be"):
        GeometricPrompt.empty(1).__class__(
            torch.zeros(1, 0, 4), torch.zeros(1, 0), torch.zeros(1, 0), torch.zeros(1, 2, 2)
        )
    with pytest.raises(ValueError, match="expand a prompt of batch 2"):
        GeometricPrompt.empty(2).expand(3)
    with pytest.raises(ValueError, match="no backbone"):
        model(torch.zeros(1, 3, 32, 32), torch.zeros(1, 32, dtype=torch.long))
    # nn.Modules only: clicks are `Sam3Processor.predict_inst` (samkit.predict)
    assert not hasattr(model, "predict_inst") and not hasattr(model, "inst_interactive_predictor")


def test_pixel_decoder_split_equals_the_direct_stages() -> None:
    """conv3x3(level + up(x)) == conv3x3(level) + conv3x3_after_nearest_up2(x) (float64)."""
    from samkit.modeling.sam3.segmentation_head import PixelDecoder, conv3x3_after_nearest_up2

    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 16, 9, 7, generator=g, dtype=torch.float64)
    w = torch.randn(5, 16, 3, 3, generator=g, dtype=torch.float64)
    up = torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")
    ref = torch.nn.functional.conv2d(up, w, padding=1)
    torch.testing.assert_close(conv3x3_after_nearest_up2(x, w), ref, rtol=0, atol=1e-12)
    pd = PixelDecoder(16).double().eval()
    with torch.no_grad():
        for p in pd.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g, dtype=torch.float64))
    feats = [torch.randn(2, 16, s, s + 2, generator=g, dtype=torch.float64) for s in (20, 10, 5)]
    exact_2x = [feats[0][..., :10, :12], feats[1][..., :5, :6], feats[2][..., :3, :3]]
    other = [feats[0][..., :18, :18], feats[1][..., :9, :11], feats[2]]  # not 2x: interpolate
    for levels in (exact_2x, other):
        direct = pd(levels)
        split = pd(levels, pd.image_terms(levels[:-1]))
        torch.testing.assert_close(split, direct, rtol=0, atol=1e-10)
