"""SAM 3 in the command line: `samkit segment --text / --box / --point`, `samkit auto --text`
(one COCO dataset, a category per concept), model naming (`--model sam3`, a SAM 3 config.json, a
sam3.pt alone) and the errors for what does not fit.

Naming and errors use the `sam3_tiny` fixture model. The runs use the 336 px SAM 3 checkpoint of
the product tests (the `sam3_small` fixture, tests/fixtures/sam3_small.py: the sam3_tiny weights
at 24x24 tokens instead of 72x72, a ninth of the work): their claim is the command line against
samkit's own API on the same model, not parity with the official recording (that is
tests/predict/test_parity_sam3.py). The weights are random: scores are about 0.2-0.27 (the
fixture README; the same range at 336 px), so the runs pass a low --threshold; masks are noise,
but files, counts, categories, COCO loading and the equality with the `Sam3Processor` /
`Sam3Processor.predict_inst` API are checked exactly.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from samkit.build.sam3_models import read_sam3_config, sam3_build_kwargs, sam3_config_from_json
from samkit.cli import main
from samkit.cli.common import CliError, load_model, model_family
from samkit.configs.sam3 import SAM3_OFFICIAL, sam3_config_from_state_dict
from samkit.jobs import DATASET_NAME
from tests.cli.test_parser import _probe
from tests.conftest import FIXTURES, IMAGES
from tests.fixtures.sam3_small import IMG_SIZE

mu = pytest.importorskip("pycocotools.mask")
coco_mod = pytest.importorskip("pycocotools.coco")

FX = FIXTURES / "sam3_tiny"
CKPT = FX / "sam3_tiny.pt"
MODEL = ["--model", str(FX / "config.json"), "--checkpoint", str(CKPT)]
THRESHOLD = 0.24  # between the fixture's scores (0.2-0.27): some instances, not all 16


def small_image(folder: Path, name: str = "truck", long_side: int = 160) -> Path:
    """A small PNG copy of ../shared/images/<name>.jpg."""
    folder.mkdir(parents=True, exist_ok=True)
    with Image.open(IMAGES / f"{name}.jpg") as im:
        s = long_side / max(im.size)
        small = im.convert("RGB").resize((round(im.width * s), round(im.height * s)))
    path = folder / f"{name}.png"
    small.save(path)
    return path


# ------------------------------------------------------------------------------ model naming


def test_the_fixture_config_json_is_the_checkpoints_architecture():
    from samkit.checkpoint import read_state_dict

    cfg = read_sam3_config(FX / "config.json")
    assert cfg == sam3_config_from_state_dict(read_state_dict(CKPT))
    assert (cfg.vit_embed_dim, cfg.vit_depth, cfg.num_queries) == (64, 4, 16)
    own = sam3_config_from_json({"family": "sam3", "config": {"vit_global_att_blocks": [1, 3]}})
    assert own.vit_global_att_blocks == (1, 3) and own.vit_depth == SAM3_OFFICIAL.vit_depth
    for bad, words in [
        ({"family": "sam2"}, "not a SAM 3 config"),
        ({"family": "sam3", "config": {"depth": 4}}, "not a Sam3Config field"),
        ({"family": "sam3", "config": {"vit_depth": 0}}, "positive integer"),
        ({"family": "sam3", "builder_overrides": {"_create_vit_backbone": {"ViT": {"x": 1}}}},
         "not an argument"),
    ]:  # fmt: skip
        with pytest.raises(ValueError, match=words):
            sam3_config_from_json(bad)


def test_sam3_names_and_the_checkpoint_alone(tmp_path, monkeypatch):
    # the full-size official architecture for --model sam3 --random-weights (not built here:
    # 848M parameters); a config file; the family read off a sam3.pt-layout checkpoint
    assert sam3_build_kwargs("sam3", None, True) == {
        "checkpoint_path": None,
        "config": SAM3_OFFICIAL,
    }
    assert sam3_build_kwargs("SAM3", str(CKPT)) == {"checkpoint_path": str(CKPT), "config": None}
    assert sam3_build_kwargs(str(FX / "config.json"), None, True)["config"].vit_depth == 4
    assert model_family(None, str(CKPT)) == "sam3"
    assert model_family("sam3") == model_family(str(FX / "config.json")) == "sam3"
    monkeypatch.setenv("SAMKIT_CACHE", str(tmp_path))  # no sam3.pt there: say how to get it
    with pytest.raises(ValueError, match=r"huggingface.co/facebook/sam3.*--checkpoint"):
        sam3_build_kwargs("sam3")
    (tmp_path / "sam3.pt").write_bytes(b"")  # found in the cache
    assert sam3_build_kwargs("sam3")["checkpoint_path"] == str(tmp_path / "sam3.pt")


def test_random_weights_build_the_official_full_size_model(capsys):
    # on the meta device (no memory): the full architecture, e.g. the official ViT + dual neck's
    # 461,841,920 parameters (F1's count of the official module)
    lm = load_model("sam3", random_weights=True, device="meta", families=("sam3",))
    assert (lm.family, lm.name, lm.random_weights, lm.img_size()) == ("sam3", "sam3", True, 1008)
    vision = lm.model.backbone.vision_backbone
    assert sum(p.numel() for p in vision.parameters()) == 461_841_920
    assert lm.model.tracker is not None  # the interactive head: clicks work
    assert "RANDOM weights" in capsys.readouterr().err


def test_a_sam3_checkpoint_in_a_sam1_builder_is_named():
    from samkit.build.sam import build_sam

    with pytest.raises(ValueError, match=r"is a SAM 3 checkpoint.*build_sam3_image_model"):
        build_sam("vit_b", checkpoint=str(CKPT))


def test_commands_that_cannot_use_sam3_refuse_it_by_name(capsys):
    pytest.importorskip("onnx")
    argv = ["export", "onnx", "--out", "o", "--checkpoint", str(CKPT)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "cannot use a SAM 3 model" in err, err
    assert "samkit segment" in err and "samkit auto --text" in err
    with pytest.raises(CliError, match="cannot use a SAM 3 model"):
        load_model(None, str(CKPT))  # e.g. samkit export: SAM 1 / SAM 2 only by default
    from samkit.cli.video import load_video_predictor

    # samkit track takes SAM 3 (concepts, tests/video/test_track_concepts.py), but not without
    # the tracker's weights
    ns = argparse.Namespace(
        command="track", model="sam3", checkpoint=None, random_weights=True, dtype=None
    )
    ns.device = None
    with pytest.raises(CliError, match="SAM 3 video tracking needs a checkpoint"):
        load_video_predictor(ns)


# ------------------------------------------------------------------------------ usage errors


def test_bad_sam3_options_are_usage_errors_without_torch(tmp_path):
    # answered by the parser: no torch / numpy / PIL import, exit status 2
    o = str(tmp_path / "o")
    cases = [
        ["segment", "x.png", "--out", o, "--text", ""],
        ["segment", "x.png", "--out", o, "--text", "   "],
        ["segment", "x.png", "--out", o, "--text", "dog", "--threshold", "1.5"],
        ["segment", "x.png", "--out", o, "--text", "dog", "--threshold", "nan"],
        ["segment", "x.png", "--out", o, "--box", "1,2,30,40,2"],
        ["auto", "x", "--out", o, "--text", "dog", "--threshold", "-0.1"],
    ]
    report = _probe(cases)
    for row in report:
        assert row["loaded"] == [] and row["code"] == 2, row
    assert "noun phrase" in report[0]["err"] and "noun phrase" in report[1]["err"]
    within = "between 0 and 1 (exclusive)"  # the web app's Find words too (sam3_thresholds)
    assert within in report[2]["err"] and within in report[3]["err"]
    assert "LABEL must be 1" in report[4]["err"] and within in report[5]["err"]


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--model", "vit_b", "--text", "dog"], "--text needs a SAM 3 model (--model sam3"),
        (["--model", "vit_b", "--point", "5,5", "--threshold", "0.3"], "--threshold is SAM 3"),
        (["--model", "vit_b", "--box", "1,1,9,9,0"], "a LABEL marks a SAM 3 exemplar"),
        ([*MODEL, "--text", "dog", "--point", "5,5"], "run them separately"),
        ([*MODEL, "--point", "5,5", "--box", "1,1,9,9,1"], "apply to --text / exemplar boxes"),
        ([*MODEL], "give --text PHRASE"),
        ([*MODEL, "--text", "dog", "--multimask"], "--multimask applies to clicks"),
        ([*MODEL, "--text", "dog", "--text", "dog"], "'dog' is given twice"),
        ([*MODEL, "--text", "dog", "--box", "100,10,200,50"], "reaches outside the 160x107"),
        ([*MODEL, "--box", "10,10,10,50"], "needs X1 > X0"),
    ],
)
def test_segment_errors_name_what_to_do(tmp_path, capsys, extra, words):
    img = small_image(tmp_path)
    assert main(["segment", str(img), "--out", str(tmp_path / "o"), *extra]) == 2
    err = capsys.readouterr().err
    assert words in err, err
    assert not (tmp_path / "o").exists()  # refused before anything was written


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--model", "vit_b", "--text", "dog"], "--text needs a SAM 3 model"),
        ([*MODEL], "a SAM 3 model labels concepts: give --text"),
        ([*MODEL, "--text", "dog", "--points-per-side", "8"], "--points-per-side: SAM 1 / SAM 2"),
        ([*MODEL, "--text", "dog", "--use-m2m"], "--use-m2m: SAM 1 / SAM 2"),
        ([*MODEL, "--text", "dog", "--format", "sa1b"], "only the coco layout"),
        ([*MODEL, "--text", "car", "--text", "car"], "given twice"),
    ],
)
def test_auto_errors_name_what_to_do(tmp_path, capsys, extra, words):
    img = small_image(tmp_path / "in")
    assert main(["auto", str(img.parent), "--out", str(tmp_path / "o"), *extra]) == 2
    err = capsys.readouterr().err
    assert words in err, err
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------------------ the runs


@pytest.fixture(scope="module")
def model():
    from samkit.build.sam3 import build_sam3_image_model

    return build_sam3_image_model(checkpoint_path=CKPT)


@pytest.fixture(scope="module")
def small(sam3_small) -> list[str]:
    """The command-line options of the 336 px checkpoint (its config.json and sam3_small.pt)."""
    return ["--model", str(sam3_small.parent / "config.json"), "--checkpoint", str(sam3_small)]


@pytest.fixture(scope="module")
def small_model(sam3_small):
    from samkit.build.sam3 import build_sam3_image_model

    return build_sam3_image_model(checkpoint_path=sam3_small)


@pytest.fixture(scope="module")
def truck(small_model, tmp_path_factory):
    """(the small truck PNG, the `Sam3Processor` state of its image): the official-API side of
    the runs below, its image encoded once for the module (each test prompts a copy)."""
    from samkit.predict.sam3 import Sam3Processor

    img = small_image(tmp_path_factory.mktemp("truck"))
    proc = Sam3Processor(small_model, resolution=IMG_SIZE)
    return img, proc.set_image(np.array(Image.open(img)))


@pytest.mark.slow
def test_segment_text_and_exemplars_write_every_instance(
    tmp_path, capsys, small, small_model, truck
):
    from samkit.predict.sam3 import Sam3Processor, Sam3State

    img, encoded = truck
    out = tmp_path / "out"
    boxes = ["--box", "10,10,60,50", "--box", "70,20,100,60,0"]
    argv = ["segment", str(img), "--out", str(out), *small, "--threshold", str(THRESHOLD)]
    assert main([*argv, "--text", "truck", "--text", "wheel", *boxes]) == 0
    printed = capsys.readouterr().out

    doc = json.loads((out / "truck.json").read_text())
    anns = doc["annotations"]
    n = len(anns)
    assert n > 0 and f"truck_mask_{n - 1}.png" in printed
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"truck_mask_{i}.png" for i in range(n)]
        + ["truck.json", "truck_instances.png", "truck_overlay.png"]
    )
    coco = coco_mod.COCO(str(out / "truck.json"))  # loads with pycocotools
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["truck", "wheel"]
    assert doc["images"][0]["samkit"]["boxes"] == [[10, 10, 60, 50, 1], [70, 20, 100, 60, 0]]
    h, w = 107, 160
    label = np.array(Image.open(out / "truck_instances.png"))
    assert label.shape == (h, w) and label.max() <= n
    assert Image.open(out / "truck_overlay.png").size == (w, h)
    for i, a in enumerate(anns):
        mask = np.array(Image.open(out / f"truck_mask_{i}.png"))
        assert (coco.annToMask(a).astype(bool) == mask).all()
        assert a["bbox"] == mu.toBbox(a["segmentation"]).tolist()
        assert a["area"] == int(mu.area(a["segmentation"])) == int(mask.sum())
        assert a["score"] > THRESHOLD and a["category_id"] in (1, 2)
        assert (label[mask] > 0).all()  # every instance pixel is labelled ...
        assert (label == i + 1).sum() <= mask.sum()  # ... instance i only inside its mask
        assert mask[label == i + 1].all()

    # The same instances as the official API: both concepts, then the two exemplars one by one.
    proc = Sam3Processor(small_model, resolution=IMG_SIZE, confidence_threshold=THRESHOLD)
    state = Sam3State(encoded)  # = proc.set_image(np.array(Image.open(img)))
    proc.set_text_prompts(["truck", "wheel"], state)
    proc.add_geometric_prompt([10, 10, 60, 50], True, state, box_format="xyxy")
    proc.add_geometric_prompt([70, 20, 100, 60], False, state, box_format="xyxy")
    for cat, r in zip((1, 2), state["results_per_prompt"]):
        got = [a["score"] for a in anns if a["category_id"] == cat]
        assert got == sorted(r["scores"].tolist(), reverse=True)  # by descending score
        order = np.argsort(-r["scores"].numpy(), kind="stable")
        mine = [a for a in anns if a["category_id"] == cat]
        for a, k in zip(mine, order):
            assert (coco.annToMask(a).astype(bool) == r["masks"][k, 0].numpy()).all()
            assert a["box_xyxy"] == r["boxes"][k].tolist()


@pytest.mark.slow
def test_segment_clicks_on_sam3_go_through_the_interactive_head(
    tmp_path, capsys, small, small_model, truck
):
    from samkit.predict.sam3 import Sam3Processor, Sam3State

    img, encoded = truck
    out = tmp_path / "out"
    argv = ["segment", str(img), "--out", str(out), *small, "--point", "80,50", "--multimask"]
    assert main(argv) == 0
    doc = json.loads((out / "truck.json").read_text())
    assert [m["file"] for m in doc["masks"]] == [f"truck_mask_{i}.png" for i in range(3)]
    proc = Sam3Processor(small_model, resolution=IMG_SIZE)
    state = Sam3State(encoded)  # = proc.set_image(np.array(Image.open(img)))
    masks, scores, _ = proc.predict_inst(
        state, point_coords=np.array([[80.0, 50.0]]), point_labels=np.array([1])
    )
    for i, m in enumerate(doc["masks"]):
        assert (np.array(Image.open(out / m["file"])) == masks[i].astype(bool)).all()
        assert m["score"] == pytest.approx(float(scores[i]), abs=0)


@pytest.mark.slow
def test_auto_text_labels_a_folder_into_one_coco_dataset(tmp_path, capsys, small):
    src = tmp_path / "in"
    small_image(src, "truck")
    small_image(src, "dog", long_side=120)
    out = tmp_path / "out"
    argv = ["auto", str(src), "--out", str(out), *small, "--text", "car", "--text", "person"]
    assert main([*argv, "--threshold", str(THRESHOLD), "--quiet"]) == 0
    assert "2 images segmented, 0 skipped" in capsys.readouterr().out
    path = out / DATASET_NAME
    coco = coco_mod.COCO(str(path))
    assert [(c["id"], c["name"]) for c in coco.loadCats(coco.getCatIds())] == [
        (1, "car"),
        (2, "person"),
    ]
    assert [(i["id"], i["file_name"]) for i in coco.dataset["images"]] == [
        (1, "dog.png"),
        (2, "truck.png"),
    ]
    anns = coco.dataset["annotations"]
    assert [a["id"] for a in anns] == list(range(1, len(anns) + 1)) and anns
    per_image = {
        im: json.loads((out / f"{Path(im).stem}.json").read_text())
        for im in ("dog.png", "truck.png")
    }
    assert sum(len(d["annotations"]) for d in per_image.values()) == len(anns)
    for d in per_image.values():
        assert [c["name"] for c in d["categories"]] == ["car", "person"]
        assert d["images"][0]["samkit"]["text_prompts"] == ["car", "person"]
        assert all(a["score"] > THRESHOLD for a in d["annotations"])
    assert {a["category_id"] for a in anns} <= {1, 2}
    for a in anns:
        assert a["bbox"] == mu.toBbox(a["segmentation"]).tolist()

    # a rerun skips both images and writes the same dataset bytes; another threshold redoes them
    before = path.read_bytes()
    assert main([*argv, "--threshold", str(THRESHOLD), "--quiet"]) == 0
    assert "0 images segmented, 2 skipped" in capsys.readouterr().out
    assert path.read_bytes() == before
    assert main([*argv, "--threshold", "0.99", "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "2 images segmented" in captured.out
    assert "no query scored above the confidence threshold 0.99" in captured.err
    assert "--threshold" in captured.err
    assert json.loads(path.read_text())["annotations"] == []


@pytest.mark.slow
def test_embed_then_segment_from_the_embedding(tmp_path, capsys, small):
    from samkit.io.embeddings import load_embedding

    img = small_image(tmp_path)
    emb_dir = tmp_path / "emb"
    assert main(["embed", str(img), "--out", str(emb_dir), *small]) == 0
    emb = load_embedding(emb_dir / "truck.safetensors")
    assert emb.family == "sam3" and emb.original_size == (107, 160)
    assert emb.provenance.embedding_shape == (256, 24, 24)  # 336 px / 14
    assert emb.provenance.arch == "SAM 3 ViT 64 wide x 4 blocks"
    assert sorted(emb.tensors) == sorted(
        ["image_embedding", "backbone_fpn_0", "backbone_fpn_1"]
        + [f"sam2_backbone_fpn_{i}" for i in range(3)]
    )
    # text and clicks from the file give the bytes of a run that encodes the image
    for prompt in (["--text", "truck", "--threshold", str(THRESHOLD)], ["--point", "80,50"]):
        base = ["segment", str(img), *small, *prompt]
        with_emb, plain = tmp_path / "with", tmp_path / "plain"
        emb_args = ["--embedding", str(emb_dir / "truck.safetensors")]
        assert main([*base, "--out", str(with_emb), *emb_args]) == 0
        assert main([*base, "--out", str(plain)]) == 0
        files = {p.name: p.read_bytes() for p in sorted(plain.iterdir())}
        assert len(files) >= 3
        assert {p.name: p.read_bytes() for p in sorted(with_emb.iterdir())} == files
        for d in (with_emb, plain):
            for f in d.iterdir():
                f.unlink()
    capsys.readouterr()
    # a SAM 3 embedding with a SAM 1 model: named
    sam1 = ["--model", str(FIXTURES / "sam1_tiny" / "config.json")]
    sam1 += ["--checkpoint", str(FIXTURES / "sam1_tiny" / "sam1_tiny.pth")]
    argv = ["segment", str(img), "--out", str(tmp_path / "x"), "--point", "5,5", *sam1]
    assert main([*argv, "--embedding", str(emb_dir / "truck.safetensors")]) == 2
    assert "is a SAM 3 embedding" in capsys.readouterr().err


def test_an_embedding_of_another_sam3_architecture_is_refused(tmp_path, model):
    # no forward pass: synthetic features stamped with the fixture model's provenance
    import dataclasses

    import torch

    from samkit.amg.sam3 import sam3_state_from_embedding
    from samkit.build.sam3 import build_sam3_image_model
    from samkit.io.embeddings import save_embedding
    from samkit.io.provenance import of_model

    shapes = {"image_embedding": (256, 72, 72), "backbone_fpn_0": (256, 288, 288),
              "backbone_fpn_1": (256, 144, 144), "sam2_backbone_fpn_0": (32, 288, 288),
              "sam2_backbone_fpn_1": (64, 144, 144), "sam2_backbone_fpn_2": (256, 72, 72)}  # fmt: skip
    feats = {k: torch.randn(1, *v) for k, v in shapes.items()}
    path = save_embedding(
        tmp_path / "x.safetensors", feats, variant="tiny", family="sam3", original_size=(50, 70),
        input_size=(1008, 1008), img_size=1008, provenance=of_model(model),
    )  # fmt: skip
    state = sam3_state_from_embedding(path, model)
    assert (state["original_height"], state["original_width"]) == (50, 70)
    bo = state["backbone_out"]
    assert torch.equal(bo["backbone_fpn"][0], feats["backbone_fpn_0"])
    assert [tuple(p.shape[-2:]) for p in bo["vision_pos_enc"]] == [(288, 288), (144, 144), (72, 72)]
    assert torch.equal(bo["sam2_backbone_out"]["backbone_fpn"][1], feats["sam2_backbone_fpn_1"])
    cfg = dataclasses.replace(read_sam3_config(FX / "config.json"), vit_depth=2)
    cfg = dataclasses.replace(cfg, vit_global_att_blocks=(1,))
    other = build_sam3_image_model(config=cfg)
    with pytest.raises(ValueError, match=r"SAM 3 ViT 64 wide x 4 blocks.*SAM 3 ViT 64 wide x 2"):
        sam3_state_from_embedding(path, other)
