"""SAM 3 interactive head (`predict_inst`): parity with the official clicks / boxes on the truck."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from samkit.modeling.sam3.interactive import Sam3TrackerHeads, build_tracker_heads
from samkit.predict.sam2 import ImageNotSetError
from samkit.predict.sam3_interactive import Sam3InteractivePredictor
from tests.modeling.sam3.f1_weights import FX, image_backbone_out, sub_state

pytestmark = pytest.mark.slow  # one tiny-backbone run on the truck, then decoder passes

MANIFEST = json.loads((FX / "manifest.json").read_text())
INST = MANIFEST["inst_cases"]
TRUCK_HW = tuple(MANIFEST["images"]["truck"]["hw"])


@pytest.fixture(scope="module")
def heads() -> Sam3TrackerHeads:
    h = build_tracker_heads().eval()
    h.load_tracker_state(sub_state("tracker."))
    return h


@pytest.fixture(scope="module")
def state(heads: Sam3TrackerHeads) -> dict:
    bo = dict(image_backbone_out("truck"))
    with torch.inference_mode():
        bo["sam2_backbone_out"] = heads.project_sam2_levels(bo["sam2_backbone_out"])
    return {"backbone_out": bo, "original_height": TRUCK_HW[0], "original_width": TRUCK_HW[1]}


@pytest.fixture(scope="module")
def predictor(heads: Sam3TrackerHeads) -> Sam3InteractivePredictor:
    return Sam3InteractivePredictor(heads, max_hole_area=MANIFEST["inst_max_hole_area"])


def _kwargs(case: str) -> dict:
    kw = dict(INST[case]["kwargs"])
    for k in ("point_coords", "box"):
        if k in kw:
            kw[k] = np.array(kw[k], dtype=np.float32)
    if "point_labels" in kw:
        kw["point_labels"] = np.array(kw["point_labels"], dtype=np.int64)
    return kw


@pytest.mark.parametrize("case", sorted(INST))
def test_predict_inst_matches_official(
    predictor: Sam3InteractivePredictor, state: dict, case: str
) -> None:
    ref = np.load(FX / f"case_{case}.npz")
    masks, iou, low = predictor.predict_inst(state, **_kwargs(case))
    np.testing.assert_allclose(low, ref["low_res_masks"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(iou, ref["iou_predictions"], rtol=0, atol=1e-5)
    logits, iou2, _ = predictor.predict_inst(state, **_kwargs(case), return_logits=True)
    np.testing.assert_array_equal(iou2, iou)
    assert masks.shape == logits.shape == tuple(ref["masks_shape"])
    assert masks.dtype == np.float32 and set(np.unique(masks)) <= {0.0, 1.0}
    np.testing.assert_allclose(logits[:, ::16, ::16], ref["mask_logits_sampled"], rtol=0, atol=1e-5)
    stats = np.stack(
        [
            [x.mean(), x.std(ddof=1), x.min(), x.max(), np.abs(x).mean()]
            for x in logits.astype(np.float64)
        ]
    )
    np.testing.assert_allclose(stats, ref["mask_logits_stats"], rtol=0, atol=1e-5)
    want = np.unpackbits(ref["masks"], axis=-1)[..., : TRUCK_HW[1]].astype(bool)
    clear = np.abs(logits) > 1e-5
    np.testing.assert_array_equal((masks > 0)[clear], want[clear])


def test_batch_state_and_several_boxes(
    predictor: Sam3InteractivePredictor, state: dict, heads: Sam3TrackerHeads
) -> None:
    one_m, _one_iou, one_low = predictor.predict_inst(state, **_kwargs("f_box"))
    boxes = np.array([INST["f_box"]["kwargs"]["box"], [100, 100, 900, 700]], np.float32)
    m, iou, low = predictor.predict_inst(state, box=boxes, multimask_output=False)
    assert m.shape == (2, 1, *TRUCK_HW) and iou.shape == (2, 1) and low.shape == (2, 1, 288, 288)
    np.testing.assert_allclose(low[0], one_low, rtol=0, atol=1e-5)
    # a batch state of one image answers predict_inst_batch the same way
    batch = {
        "backbone_out": state["backbone_out"],
        "original_heights": [TRUCK_HW[0]],
        "original_widths": [TRUCK_HW[1]],
    }
    bm, _biou, blow = predictor.predict_inst_batch(
        batch, box_batch=[INST["f_box"]["kwargs"]["box"]], multimask_output=False
    )
    np.testing.assert_allclose(blow[0], one_low, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(bm[0], one_m)


def test_bad_calls(predictor: Sam3InteractivePredictor, state: dict) -> None:
    with pytest.raises(ImageNotSetError):
        predictor.predict_inst({}, point_coords=[[1, 2]], point_labels=[1])
    with pytest.raises(ValueError, match="point_labels"):
        predictor.predict_inst(state, point_coords=[[1, 2]])
    with pytest.raises(ValueError, match="no prompt"):
        predictor.predict_inst(state)
    with pytest.raises(ValueError, match=r"finite|NaN|numeric"):
        predictor.predict_inst(state, box=[0, 0, float("nan"), 5])
    with pytest.raises(ValueError, match="mask_input"):
        predictor.predict_inst(state, mask_input=np.zeros((1, 256, 256), np.float32))
    with pytest.raises(ValueError, match="processor"):
        predictor.set_image(np.zeros((8, 8, 3), np.uint8))
    no_sam2 = {**state, "backbone_out": {**state["backbone_out"], "sam2_backbone_out": None}}
    with pytest.raises(ValueError, match="interactive"):
        predictor.predict_inst(no_sam2, point_coords=[[1, 2]], point_labels=[1])


def test_mask_input_round_trip(predictor: Sam3InteractivePredictor, state: dict) -> None:
    _, iou, low = predictor.predict_inst(state, **_kwargs("f_point"))
    best = low[int(np.argmax(iou))][None]
    m, _iou2, low2 = predictor.predict_inst(
        state, point_coords=[[500, 375]], point_labels=[1], mask_input=best, multimask_output=False
    )
    assert m.shape == (1, *TRUCK_HW) and np.isfinite(low2).all()


def test_tracker_keys_and_default_hole_filling(heads: Sam3TrackerHeads) -> None:
    tracker = sub_state("tracker.")
    used = [k for k in tracker if Sam3TrackerHeads.is_used_tracker_key(k)]
    assert set(used) == set(heads.state_dict())
    assert any(k.startswith("maskmem_backbone.") for k in tracker if k not in used)
    with pytest.raises(ValueError, match="lacks"):
        build_tracker_heads().load_tracker_state({k: tracker[k] for k in used[1:]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert Sam3InteractivePredictor(heads).max_hole_area in (256.0, 0.0)
    with pytest.raises(ValueError, match="max_hole_area"):
        Sam3InteractivePredictor(heads, max_hole_area=-1)
