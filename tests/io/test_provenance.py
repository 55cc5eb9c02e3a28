"""Files samkit writes are checked where they are read: every writer x every wrong reader.

Writers: embedding files (`save_embedding`, what `samkit embed` writes), ONNX exports, and one
fine-tuning run's step checkpoint, merged `model.safetensors` and `adapters.safetensors`.
Readers: the torch and onnxruntime predictors (`ImageEmbedding.apply`), the onnxruntime
predictors' constructors, `build_sam` / `build_sam2`, `Trainer.load`, `load_adapters`. A right
pair works; every wrong pair raises a ValueError that names both sides (`Provenance.describe`).
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
import torch

from samkit import Sam2ImagePredictor, SamPredictor, build_sam, build_sam2
from samkit.build.sam import resolve_sam_config
from samkit.export.ort_sam import OnnxSamPredictor
from samkit.export.ort_sam2 import OnnxSam2Predictor
from samkit.export.sam import export_decoder
from samkit.io.embeddings import features_of, load_embedding, restore_features, save_embedding
from samkit.io.provenance import (
    METADATA_KEY,
    Provenance,
    arch_signature,
    check,
    from_json,
    of_model,
    read_file_metadata,
)
from samkit.runtime.accel import optimize
from samkit.train.loop import TrainConfig, Trainer
from samkit.train.lora import add_adapters, apply_lora, configure_trainable, load_adapters
from samkit.train.synthetic import make_shapes_dataset
from tests.conftest import FIXTURES
from tests.families import tiny_sam_config
from tests.paths.backends import _onnx_files

IMAGE = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)


def _both_sides(found: Provenance, expected: Provenance) -> str:
    """A regex requiring the file's and the user's descriptions, in that order."""
    return f"(?s){re.escape(found.describe())}.*but.*{re.escape(expected.describe())}"


def _deeper(cfg):
    """The same architecture with one more encoder block: same sizes, other signature."""
    enc = dataclasses.replace(cfg.image_encoder, depth=cfg.image_encoder.depth + 1)
    return dataclasses.replace(cfg, image_encoder=enc)


# ------------------------------------------------------------------------------ models


@pytest.fixture(scope="module")
def models(sam1_tiny, sam1_shapes):
    """Four models: two SAM 1 with the same embedding shape (256x64x64) and image size, one
    SAM 1 with another shape, one SAM 2 with the same shape as the first two."""
    cfg, _ = resolve_sam_config(FIXTURES / "sam1_tiny" / "config.json")
    d = FIXTURES / "sam2_tiny"
    return {
        "sam1_tiny": sam1_tiny,
        "sam1_tiny_deeper": build_sam(_deeper(cfg)),
        "sam1_shapes": sam1_shapes,
        "sam2_tiny": build_sam2(d / "config.json", checkpoint=d / "sam2_tiny.pt"),
    }


def test_signature_ignores_precision_and_finetuning_parts_only(models):
    base = of_model(models["sam1_shapes"])
    d = FIXTURES / "sam1_shapes"
    same = [
        build_sam(d / "config.json", dtype=torch.bfloat16),
        optimize(build_sam(d / "config.json"), int8=True),
    ]
    lora = build_sam(d / "config.json")
    apply_lora(lora, rank=2)
    add_adapters(lora, 8)
    for m in [*same, lora]:
        assert of_model(m) == base
    assert base.family == "sam1" and base.embedding_shape == (256, 16, 16) and base.img_size == 256
    tiny, deeper = of_model(models["sam1_tiny"]), of_model(models["sam1_tiny_deeper"])
    assert tiny.mismatch(deeper) == "architecture"
    assert tiny.mismatch(of_model(models["sam2_tiny"])) == "family"
    assert tiny.mismatch(base) == "embedding shape"
    assert arch_signature(models["sam1_tiny"]) != arch_signature(models["sam2_tiny"])
    assert of_model(build_sam("vit_b")).describe() == "sam1 vit_b (embedding 256x64x64, image 1024)"


def test_unreadable_provenance_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match=METADATA_KEY):
        from_json("{not json", "x.safetensors")
    with pytest.raises(ValueError, match="not a samkit provenance"):
        from_json('{"family": "SAM 9", "embedding_shape": [1, 2, 3], "img_size": 4}')
    pth = tmp_path / "w.pth"
    torch.save({"a": torch.zeros(2)}, pth)
    assert read_file_metadata(pth) == {}  # not a safetensors file: nothing recorded
    check(None, of_model(build_sam(tiny_sam_config())), "w.pth", "x")  # nothing to check


# ------------------------------------------------------------------------------ embeddings

EMBEDDERS = ["sam1_tiny", "sam1_shapes", "sam2_tiny", "sam1_shapes_legacy"]
TORCH_USERS = ["sam1_tiny", "sam1_tiny_deeper", "sam1_shapes", "sam2_tiny"]
ONNX_USERS = ["onnx_sam1_shapes", "onnx_sam2_tiny"]


@pytest.fixture(scope="module")
def embeddings(models, tmp_path_factory):
    """name -> embedding file; `sam1_shapes_legacy` has no provenance (an older file)."""
    root = tmp_path_factory.mktemp("emb")
    files = {}
    for name in EMBEDDERS:
        model_name = name.removesuffix("_legacy")
        model = models[model_name]
        family = of_model(model).family
        p = SamPredictor(model) if family == "sam1" else Sam2ImagePredictor(model)
        p.set_image(IMAGE)
        size = of_model(model).img_size
        files[name] = save_embedding(
            root / f"{name}.safetensors",
            features_of(p, family),
            variant=model_name,
            family=family,
            original_size=IMAGE.shape[:2],
            input_size=getattr(p, "input_size", None) or (size, size),
            img_size=size,
            provenance=None if name.endswith("_legacy") else of_model(model),
        )
    return files


@pytest.fixture(scope="module")
def onnx_predictors():
    pytest.importorskip("onnxruntime")

    sam1, sam2 = _onnx_files("sam1", False), _onnx_files("sam2", False)
    return {
        "onnx_sam1_shapes": OnnxSamPredictor(None, sam1["decoder"]),
        "onnx_sam2_tiny": OnnxSam2Predictor(None, sam2["decoder"]),
    }


def _user(name, models, onnx_predictors):
    """(predictor, the name of the model it holds)."""
    if name in ONNX_USERS:
        return onnx_predictors[name], name.removeprefix("onnx_")
    model = models[name]
    return (SamPredictor if of_model(model).family == "sam1" else Sam2ImagePredictor)(model), name


@pytest.mark.parametrize("user", TORCH_USERS + ONNX_USERS)
@pytest.mark.parametrize("writer", EMBEDDERS)
def test_embedding_file_checked_by_every_predictor(
    writer, user, embeddings, models, onnx_predictors
):
    emb = load_embedding(embeddings[writer])
    predictor, held = _user(user, models, onnx_predictors)
    made_by = writer.removesuffix("_legacy")
    found, expected = emb.provenance, of_model(models[held])
    legacy_blind = writer.endswith("_legacy") and found.mismatch(expected) is None
    if made_by == held or legacy_blind:
        emb.apply(predictor)  # a right pair: the features are set
        assert predictor.get_image_embedding().shape[1:] == found.embedding_shape
        return
    with pytest.raises(ValueError, match=_both_sides(found, expected)) as info:
        emb.apply(predictor)
    assert str(embeddings[writer]) in str(info.value)


def test_legacy_embedding_is_checked_on_family_and_shape(embeddings, models):
    emb = load_embedding(embeddings["sam1_shapes_legacy"])
    assert METADATA_KEY in emb.metadata and emb.provenance.signature == ""
    with pytest.raises(ValueError, match="family differs"):
        emb.apply(Sam2ImagePredictor(models["sam2_tiny"]))
    with pytest.raises(ValueError, match="embedding shape differs"):
        emb.apply(SamPredictor(models["sam1_tiny"]))


# ------------------------------------------------------------------------------ ONNX


def test_onnx_files_checked_by_the_predictors(models, tmp_path):
    pytest.importorskip("onnxruntime")

    sam1, sam2 = _onnx_files("sam1", False), _onnx_files("sam2", False)
    shapes, s2 = of_model(models["sam1_shapes"]), of_model(models["sam2_tiny"])
    assert OnnxSamPredictor(sam1["encoder"], sam1["decoder"]).provenance == shapes
    assert OnnxSam2Predictor(sam2["encoder"], sam2["decoder"]).provenance == s2
    with pytest.raises(ValueError, match=f"{re.escape(s2.describe())}.*OnnxSam2Predictor"):
        OnnxSamPredictor(sam2["encoder"], sam2["decoder"])
    with pytest.raises(ValueError, match=f"{re.escape(shapes.describe())}.*OnnxSamPredictor"):
        OnnxSam2Predictor(sam1["encoder"], sam1["decoder"])
    # an encoder and a decoder of two different models (same family)
    tiny = of_model(models["sam1_tiny"])
    other = export_decoder(models["sam1_tiny"], tmp_path / "decoder.onnx")
    with pytest.raises(ValueError, match=_both_sides(shapes, tiny)):
        OnnxSamPredictor(sam1["encoder"], other)


def test_files_without_provenance_are_read_as_before(models, embeddings, tmp_path):
    """Official ONNX files carry no samkit metadata: nothing to check, the embedding still fits."""
    pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    proto = onnx.load(str(_onnx_files("sam1", False)["decoder"]))
    del proto.metadata_props[:]
    onnx.save(proto, str(tmp_path / "official.onnx"))
    p = OnnxSamPredictor(None, tmp_path / "official.onnx")
    assert p.provenance is None
    load_embedding(embeddings["sam1_shapes"]).apply(p)
    assert p.is_image_set and p.original_size == IMAGE.shape[:2]


# ------------------------------------------------------------------------------ fine-tuning


def _tiny(deeper: bool = False, peft: bool = False):
    torch.manual_seed(0)
    m = build_sam(_deeper(tiny_sam_config()) if deeper else tiny_sam_config())
    if peft:
        apply_lora(m, rank=2)
        add_adapters(m, 4)
        configure_trainable(m, "none", peft=True)
    return m


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """One finished fine-tuning run (LoRA + adapters) of the tiny 64 px SAM 1."""
    out = tmp_path_factory.mktemp("run")
    data = make_shapes_dataset(2, seed=0, size=(48, 64))
    cfg = TrainConfig(steps=1, images_per_step=1, prompts_per_image=2, progress=False)
    Trainer(_tiny(peft=True), data, cfg, out).fit()
    return out


def test_finetune_files_record_their_model(run_dir):
    base = of_model(_tiny())
    for f in (
        "model.safetensors",
        "adapters.safetensors",
        "checkpoints/step_0000001/model.safetensors",
    ):
        assert from_json(read_file_metadata(run_dir / f)[METADATA_KEY]) == base, f
    assert build_sam(tiny_sam_config(), checkpoint=run_dir / "model.safetensors").image_encoder
    assert len(load_adapters(_tiny(), run_dir / "adapters.safetensors")) == 2


def test_merged_model_checked_by_build(run_dir, models):
    path = run_dir / "model.safetensors"
    base = of_model(_tiny())
    with pytest.raises(ValueError, match=_both_sides(base, of_model(_tiny(deeper=True)))):
        build_sam(_deeper(tiny_sam_config()), checkpoint=path)
    # the other family is named before any architecture detail (samkit.build.family)
    with pytest.raises(ValueError, match="is a SAM 1 checkpoint, not a SAM 2 one"):
        build_sam2(FIXTURES / "sam2_tiny" / "config.json", checkpoint=path)


def test_adapters_checked_by_load_adapters(run_dir, models):
    path = run_dir / "adapters.safetensors"
    base = of_model(_tiny())
    for wrong in (_tiny(deeper=True), models["sam1_shapes"], models["sam2_tiny"]):
        with pytest.raises(ValueError, match=_both_sides(base, of_model(wrong))):
            load_adapters(wrong, path)


def test_step_checkpoint_checked_by_trainer_load(run_dir, tmp_path):
    ckpt = run_dir / "checkpoints" / "step_0000001"
    data = make_shapes_dataset(1, seed=0, size=(48, 64))
    cfg = TrainConfig(steps=1, images_per_step=1, prompts_per_image=2, progress=False)
    Trainer(_tiny(peft=True), data, cfg, tmp_path / "same").load(ckpt)
    base = of_model(_tiny())
    deeper = _tiny(deeper=True, peft=True)
    with pytest.raises(ValueError, match=_both_sides(base, of_model(deeper))):
        Trainer(deeper, data, cfg, tmp_path / "deeper").load(ckpt)
    # same architecture, another LoRA rank: a ValueError, not torch's RuntimeError
    other_rank = _tiny()
    apply_lora(other_rank, rank=3)
    add_adapters(other_rank, 4)
    configure_trainable(other_rank, "none", peft=True)
    with pytest.raises(ValueError, match="does not match the model"):
        Trainer(other_rank, data, cfg, tmp_path / "rank").load(ckpt)


def test_restore_features_of_the_other_family_is_a_value_error(models):
    """The in-memory path (the web app's cache) names the families instead of an AttributeError."""

    t = {"image_embedding": torch.zeros(1, 256, 64, 64)}
    with pytest.raises(ValueError, match="sam2 image features but the predictor holds a sam1"):
        restore_features(SamPredictor(models["sam1_tiny"]), "sam2", t, (60, 80))
    with pytest.raises(ValueError, match="sam1 image features but the predictor holds a sam2"):
        restore_features(Sam2ImagePredictor(models["sam2_tiny"]), "sam1", t, (60, 80), (48, 64))
