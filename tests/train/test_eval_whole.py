"""`samkit eval` evaluates the whole folder and agrees with a loop over the predictor.

The reference loop below runs `SamPredictor` / `Sam2ImagePredictor.predict` one instance at a
time with the documented click protocol (samkit.train.evaluate): click 1 at the instance pixel
farthest from its boundary with multimask output (best predicted IoU kept), then a click on the
farther of the false-negative / false-positive regions with all clicks so far, the previous low-res
logits as `mask_input` and single-mask output; and the tight box with single-mask output.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from samkit import build_sam, build_sam2
from samkit.checkpoint import save_checkpoint
from samkit.cli import main
from samkit.train.evaluate import farthest_point, iou, next_click, tight_box
from samkit.train.synthetic import (
    make_shapes_dataset,
    small_sam2_config,
    small_sam_config,
    write_folder_dataset,
)

CLICKS = 3


def _reference(predictor, image: np.ndarray, gts: np.ndarray) -> list[tuple[list[float], float]]:
    """(IoU after each click, box IoU) per instance, one predictor call per prompt."""
    predictor.set_image(image)
    out = []
    for gt in gts:
        pts, lbl = [farthest_point(gt)[1]], [1]
        masks, scores, low = predictor.predict(
            point_coords=np.array(pts, float), point_labels=np.array(lbl), multimask_output=True
        )
        best = int(np.argmax(scores))
        pred, low = masks[best] > 0, low[best][None]
        curve = [iou(pred, gt)]
        for _ in range(1, CLICKS):
            click = next_click(pred, gt)
            if click is not None:
                pts.append(click[0])
                lbl.append(click[1])
                masks, _, low = predictor.predict(
                    point_coords=np.array(pts, float),
                    point_labels=np.array(lbl),
                    mask_input=low,
                    multimask_output=False,
                )
                pred = masks[0] > 0
            curve.append(iou(pred, gt))
        masks, _, _ = predictor.predict(box=tight_box(gt), multimask_output=False)
        out.append((curve, iou(masks[0] > 0, gt)))
    return out


def _perturbed(model: torch.nn.Module) -> torch.nn.Module:
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


@pytest.mark.parametrize("family", ["sam1", "sam2"])
def test_eval_cli_covers_the_whole_folder_and_matches_the_predictor(
    family, tmp_path, capsys
) -> None:
    data = write_folder_dataset(make_shapes_dataset(6, seed=3, size=(48, 64)), tmp_path / "d")
    cfg = tmp_path / "model.json"
    if family == "sam1":
        cfg.write_text(json.dumps(small_sam_config(img_size=64, dim=32)))
        model = _perturbed(build_sam(cfg))
    else:
        cfg.write_text(json.dumps(small_sam2_config(64, 32, window_spec=(4, 4, 2, 2))))
        model = _perturbed(build_sam2(cfg))
    ckpt = save_checkpoint(model, tmp_path / "model.safetensors")
    out = tmp_path / "eval"
    args = ["eval", "--data", str(data), "--model", str(cfg), "--checkpoint", str(ckpt)]
    rc = main([*args, "--out", str(out), "--clicks", str(CLICKS), "--no-progress"])
    assert rc == 0
    names = sorted(p.stem for p in (data / "images").iterdir())
    err = capsys.readouterr().err
    assert f"evaluated 6 of 6 images of {data} (split all): {', '.join(names)}" in err
    met = json.loads((out / "metrics.json").read_text())
    assert met["split"] == "all" and met["images"] == names and met["num_images"] == 6

    model.eval()
    if family == "sam1":
        from samkit import SamPredictor

        predictor = SamPredictor(model)
    else:
        from samkit import Sam2ImagePredictor

        predictor = Sam2ImagePredictor(model)
    ref = []
    for name in names:
        image = np.array(Image.open(data / "images" / f"{name}.png").convert("RGB"))
        ids = np.array(Image.open(data / "masks" / f"{name}.png"))
        gts = np.stack([ids == k for k in range(1, ids.max() + 1)])
        ref += _reference(predictor, image, gts)
    assert len(ref) == met["num_instances"]
    got = [(r["iou_per_click"], r["iou_box"]) for r in met["per_instance"]]
    for (c_ref, b_ref), (c_got, b_got) in zip(ref, got):
        np.testing.assert_allclose(c_got, c_ref, rtol=0, atol=1e-9)
        assert b_got == pytest.approx(b_ref, abs=1e-9)
    curve = np.mean([c for c, _ in ref], axis=0)
    assert met["miou_1pt"] == pytest.approx(curve[0], abs=1e-12)
    assert met["miou_3pt"] == pytest.approx(curve[2], abs=1e-12)
    assert met["miou_box"] == pytest.approx(np.mean([b for _, b in ref]), abs=1e-12)
    # the model is not trivial: the curves vary
    assert len({round(c[0], 6) for c, _ in ref}) > 1

    # --split val picks one side of the fine-tuning split, and says so
    out_val = tmp_path / "eval_val"
    rc = main([*args, "--out", str(out_val), "--split", "val", "--no-progress", "--clicks", "1"])
    assert rc == 0
    val = json.loads((out_val / "metrics.json").read_text())
    assert val["split"] == "val" and val["num_images"] == 1 and val["val_fraction"] == 0.2
    assert val["images"][0] in names
    assert "evaluated 1 of 6 images" in capsys.readouterr().err


def test_model_family_detection(tmp_path) -> None:
    from samkit.train.families import model_family

    s2 = tmp_path / "s2.json"
    s2.write_text(json.dumps(small_sam2_config(64, 32, window_spec=(4, 4, 2, 2))))
    s1 = tmp_path / "s1.json"
    s1.write_text(json.dumps(small_sam_config(64, 32)))
    assert model_family(str(s2)) == "sam2" and model_family(str(s1)) == "sam1"
    assert model_family("sam2.1_hiera_t") == "sam2" and model_family("vit_b") == "sam1"
    ck = save_checkpoint(build_sam2(s2), tmp_path / "c.safetensors")
    assert model_family(None, str(ck)) == "sam2"
    ck1 = save_checkpoint(build_sam(s1), tmp_path / "c1.safetensors")
    assert model_family(None, str(ck1)) == "sam1"
    with pytest.raises(ValueError, match="variant"):
        model_family("not_a_model")
    fixture = Path(__file__).resolve().parents[2].parent / "shared/fixtures/sam2_tiny/config.json"
    assert model_family(str(fixture)) == "sam2"
