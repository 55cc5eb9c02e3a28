"""The evaluation click protocol on hand-made masks, with a scripted model, and `samkit eval` on a
folder against a loop over each family's predictor."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from samkit.checkpoint import save_checkpoint
from samkit.cli import main
from samkit.train.datasets import Sample
from samkit.train.evaluate import (
    evaluate,
    farthest_point,
    iou,
    next_click,
    plot_miou_curve,
    tight_box,
)
from samkit.train.synthetic import (
    make_shapes_dataset,
    small_sam2_config,
    small_sam_config,
    write_folder_dataset,
)
from tests.families import parametrize_families


def test_farthest_point_counts_the_image_border_as_boundary() -> None:
    full = np.ones((5, 5), bool)
    assert farthest_point(full) == (3.0, (2, 2))
    left = np.zeros((7, 7), bool)
    left[:, :3] = True  # touches the top, left and bottom borders
    d, p = farthest_point(left)
    assert d == 2.0 and p == (1, 1)  # first (row-major) of the pixels at distance 2
    assert farthest_point(np.zeros((3, 3), bool)) == (0.0, None)


def test_farthest_point_ties_go_to_the_first_in_row_major_order() -> None:
    m = np.zeros((6, 8), bool)
    m[1:3, 1:7] = True  # a 2 x 6 bar: every pixel is at distance 1
    assert farthest_point(m) == (1.0, (1, 1))
    two = np.zeros((9, 9), bool)
    two[5:8, 1:4] = True  # two equal 3x3 squares; the upper-right one comes first
    two[1:4, 5:8] = True
    assert farthest_point(two) == (2.0, (6, 2))


def test_next_click_picks_the_farther_error_and_its_label() -> None:
    gt = np.zeros((20, 20), bool)
    gt[2:12, 2:12] = True
    pred = gt.copy()
    pred[2:12, 7:12] = False  # 10x5 false negative: distance 3
    pred[14:17, 14:17] = True  # 3x3 false positive: distance 2
    assert next_click(pred, gt) == ((9, 4), 1)
    pred[14:19, 13:20] = True  # 5x7 false positive touching the border: distance 3 -> tie
    assert next_click(pred, gt) == ((9, 4), 1)  # ties go to the false negative
    pred[2:12, 7:12] = True  # fixed the false negative
    assert next_click(pred, gt)[1] == 0
    assert next_click(gt, gt) is None


class _ScriptedModel(torch.nn.Module):
    """Mimics the Sam interface on 64x64 images; returns scripted full-resolution masks."""

    family = "sam1"  # what every samkit model says of itself (samkit.build.registry)
    image_size = img_size = 64
    mask_threshold = 0.0

    def __init__(self, multimask: list[np.ndarray], scores: list[float], singles: list[np.ndarray]):
        super().__init__()
        self.multimask, self.scores, self.singles = multimask, scores, singles
        self.calls: list[dict] = []
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        model = self

        class PE:
            def __call__(self, points, boxes, masks):
                model.calls.append({"points": points, "boxes": boxes, "mask_input": masks})
                return None, None

            def get_dense_pe(self):
                return None

        class Dec:
            def __call__(self, emb, pe, sparse, dense, multimask):
                call = model.calls[-1]
                call["multimask"] = multimask
                n = len(model.calls)
                if multimask:
                    low = torch.stack([_logits(m) for m in model.multimask])[None]
                    return low, torch.tensor([model.scores])
                i = min(n - 2, len(model.singles) - 1)
                return _logits(model.singles[i])[None, None], torch.ones(1, 1)

        self.prompt_encoder, self.mask_decoder = PE(), Dec()
        self.image_encoder = lambda x: x

    @property
    def device(self):
        return torch.device("cpu")

    @property
    def dtype(self):
        return torch.float32

    def preprocess(self, x):
        return x

    def postprocess_masks(self, low, input_size, original_size):
        assert tuple(input_size) == tuple(original_size) == (64, 64)
        return low


def _logits(mask: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.where(mask, 1.0, -1.0)).float()


def _rect(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((64, 64), bool)
    m[y0:y1, x0:x1] = True
    return m


def test_click_protocol_end_to_end(tmp_path) -> None:
    gt = _rect(10, 30, 10, 40)  # 20 rows x 30 cols
    left_half = _rect(10, 30, 10, 25)
    with_fp = gt | _rect(40, 50, 10, 20)
    model = _ScriptedModel(
        multimask=[_rect(0, 5, 0, 5), left_half, _rect(0, 64, 0, 64)],
        scores=[0.1, 0.9, 0.5],  # the highest score is the left half
        singles=[with_fp, gt, np.zeros((64, 64), bool)],
    )
    sample = Sample("s", np.zeros((64, 64, 3), np.uint8), gt[None])
    met = evaluate(model, [sample], clicks=5)
    calls = model.calls
    # click 1: farthest from the boundary of the 20x30 rectangle, multimask
    first = calls[0]["points"]
    assert first[0].tolist() == [[[19.0, 19.0]]] and first[1].tolist() == [[1.0]]
    assert calls[0]["multimask"] and calls[0]["mask_input"] is None
    # click 2: the 20x15 false-negative half, centre at distance 8 -> (x=32, y=17), positive
    pts, lbl = calls[1]["points"]
    assert pts[0].tolist() == [[19.0, 19.0], [32.0, 17.0]] and lbl[0].tolist() == [1.0, 1.0]
    assert not calls[1]["multimask"]
    torch.testing.assert_close(calls[1]["mask_input"], _logits(left_half)[None, None])
    # click 3: the 10x10 false-positive block, distance 5 -> (x=14, y=44), negative
    pts, lbl = calls[2]["points"]
    assert pts[0, -1].tolist() == [14.0, 44.0] and lbl[0, -1].item() == 0.0
    torch.testing.assert_close(calls[2]["mask_input"], _logits(with_fp)[None, None])
    # after click 3 the prediction is exact: later (garbage) outputs are ignored
    per = met["per_instance"][0]
    assert per["iou_per_click"] == [0.5, 600 / 700, 1.0, 1.0, 1.0]
    assert met["miou_1pt"] == 0.5 and met["miou_3pt"] == 1.0 and met["miou_5pt"] == 1.0
    # the box prompt: the tight box, single mask output
    box_call = calls[-1]
    assert box_call["points"] is None and not box_call["multimask"]
    assert box_call["boxes"].tolist() == [[10.0, 10.0, 39.0, 29.0]]
    assert tuple(tight_box(gt)) == (10, 10, 39, 29)
    # baselines: whole image and filled box
    assert met["baseline_whole_image"] == gt.sum() / gt.size and met["baseline_box"] == 1.0
    json.dumps(met)  # serialisable
    png = plot_miou_curve(met, tmp_path / "curve.png")
    from PIL import Image

    assert Image.open(png).size == (560, 400)


def test_evaluate_real_model_is_deterministic(tiny_sam) -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (48, 80, 3), dtype=np.uint8)
    masks = np.zeros((2, 48, 80), bool)
    masks[0, 5:30, 5:40] = True
    masks[1, 20:45, 50:78] = True
    s = Sample("r", img, masks)
    a = evaluate(tiny_sam, [s], clicks=3)
    b = evaluate(tiny_sam, [s], clicks=3)
    assert a == b
    assert a["num_instances"] == 2 and len(a["miou_per_click"]) == 3
    assert "miou_5pt" not in a
    # the first click of each instance is its farthest-from-boundary pixel
    for k in range(2):
        assert a["per_instance"][k]["clicks"][0] == [*farthest_point(masks[k])[1], 1]


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


# a small architecture per family, as a config.json
SMALL = {
    "sam1": lambda: small_sam_config(img_size=64, dim=32),
    "sam2": lambda: small_sam2_config(64, 32, window_spec=(4, 4, 2, 2)),
}


@parametrize_families()
def test_eval_cli_covers_the_whole_folder_and_matches_the_predictor(
    family, tmp_path, capsys
) -> None:
    """`samkit eval` evaluates the whole folder and agrees with `_reference`, a loop over the
    family's predictor, one instance at a time, with the documented click protocol: click 1 at
    the instance pixel farthest from its boundary with multimask output (best predicted IoU
    kept), then a click on the farther of the false-negative / false-positive regions with all
    clicks so far, the previous low-res logits as `mask_input` and single-mask output; and the
    tight box with single-mask output."""
    data = write_folder_dataset(make_shapes_dataset(6, seed=3, size=(48, 64)), tmp_path / "d")
    cfg = tmp_path / "model.json"
    cfg.write_text(json.dumps(SMALL[family.name]()))
    model = _perturbed(family.build(cfg))
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
    predictor = family.predictor(model)
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
