"""A checkpoint alone says its family (SAM 1 / SAM 2) and variant; the other family is named."""

from __future__ import annotations

import pytest
import torch

from samkit import build_sam, build_sam2
from samkit.build.family import check_family, checkpoint_family, state_dict_family
from samkit.build.sam import sam_from_config
from samkit.build.sam2 import infer_sam2_variant, sam2_from_config
from samkit.cli import CliError, load_model, main
from samkit.configs.sam import get_variant
from tests.conftest import FIXTURES, IMAGES

SAM1 = FIXTURES / "sam1_tiny" / "sam1_tiny.pth"
SAM2 = FIXTURES / "sam2_tiny" / "sam2_tiny.pt"
SAM2_CONFIG = FIXTURES / "sam2_tiny" / "config.json"


def _meta_state_dict(name: str) -> dict[str, torch.Tensor]:
    v = get_variant(name)
    build = sam2_from_config if v.family == "sam2" else sam_from_config
    with torch.device("meta"):
        return build(v.config).state_dict()


@pytest.mark.parametrize(
    "name",
    ["vit_b", "vit_h", "sam2_hiera_t", "sam2.1_hiera_s", "sam2.1_hiera_b+", "sam2.1_hiera_l"],
)
def test_official_layouts_give_family_and_variant(name):
    sd = _meta_state_dict(name)
    family = get_variant(name).family
    assert state_dict_family(sd) == family
    if family == "sam2":
        # the image model has no video tensors, so 2 and 2.1 layouts are the same shapes
        inferred = infer_sam2_variant(sd)
        assert get_variant(inferred).config.trunk == get_variant(name).config.trunk


def test_fixture_checkpoints_give_their_family():
    assert checkpoint_family(SAM1) == "sam1"
    assert checkpoint_family(SAM2) == "sam2"
    assert state_dict_family(["foo.weight", "bar"]) is None
    check_family(["foo.weight"], "sam1")  # unknown keys: left to the loader's key report


def test_builders_name_the_other_family():
    with pytest.raises(
        ValueError, match=r"is a SAM 2 checkpoint, not a SAM 1 one: load it with build_sam2"
    ):
        build_sam(checkpoint=SAM2)
    with pytest.raises(ValueError, match=r"is a SAM 2 checkpoint, not a SAM 1 one"):
        build_sam("vit_b", checkpoint=SAM2)
    with pytest.raises(
        ValueError, match=r"is a SAM 1 checkpoint, not a SAM 2 one: load it with build_sam\b"
    ):
        build_sam2(checkpoint=SAM1)
    with pytest.raises(ValueError, match=r"is a SAM 1 checkpoint"):
        build_sam2(SAM2_CONFIG, checkpoint=SAM1)


def test_custom_sam2_checkpoint_alone_asks_for_its_config(capsys):
    with pytest.raises(CliError, match=r"custom SAM 2 architecture needs its config") as e:
        load_model(None, str(SAM2))
    assert "--model CONFIG.json" in str(e.value) and "SAM 1" not in str(e.value)
    code = main(
        ["embed", str(IMAGES / "dog.jpg"), "--out", "/nonexistent/x", "--checkpoint", str(SAM2)]
    )
    err = capsys.readouterr().err
    assert code == 2 and "needs its config" in err and "patch_embed" not in err
    lm = load_model(str(SAM2_CONFIG), str(SAM2))
    assert lm.family == "sam2"


def test_cli_model_and_checkpoint_of_different_families():
    with pytest.raises(CliError, match="is a SAM 2 checkpoint, not a SAM 1 one"):
        load_model("vit_b", str(SAM2))
    with pytest.raises(CliError, match="is a SAM 1 checkpoint, not a SAM 2 one"):
        load_model("sam2.1_hiera_t", str(SAM1))


@pytest.mark.slow
def test_official_sam2_checkpoint_alone_is_enough(tmp_path):
    # An official-layout SAM 2.1 tiny checkpoint (random weights, 39 M parameters) given alone.
    from samkit.checkpoint import save_checkpoint

    ref = build_sam2("sam2.1_hiera_t")
    path = save_checkpoint(ref, tmp_path / "sam2.1_tiny_like.safetensors")
    lm = load_model(None, str(path))
    # the full official layout: the image model and the video memory modules
    assert lm.family == "sam2" and type(lm.model).__name__ == "Sam2Video"
    assert len(lm.model.image_encoder.trunk.blocks) == 12  # hiera_t: stages 1, 2, 7, 2
    for (k, a), (_, b) in zip(ref.state_dict().items(), lm.model.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)


def test_an_embedding_of_the_other_family_says_so(tmp_path, sam1_tiny):
    from samkit import Sam2ImagePredictor, SamPredictor
    from samkit.io.embeddings import load_embedding, save_embedding

    sam2 = build_sam2(SAM2_CONFIG, checkpoint=SAM2)
    path = save_embedding(
        tmp_path / "e.safetensors",
        torch.zeros(1, 256, 64, 64),
        variant="vit_b",
        family="sam1",
        original_size=(10, 10),
        input_size=(1024, 1024),
        img_size=1024,
    )
    emb = load_embedding(path)
    with pytest.raises(
        ValueError, match=r"is a SAM 1 embedding \(vit_b\), but the predictor is SAM 2"
    ):
        emb.apply(Sam2ImagePredictor(sam2))
    pe, side = sam1_tiny.prompt_encoder, sam1_tiny.image_encoder.img_size
    ok = save_embedding(
        tmp_path / "ok.safetensors",
        torch.zeros(1, pe.embed_dim, *pe.image_embedding_size),
        variant="tiny",
        family="sam1",
        original_size=(10, 10),
        input_size=(side, side),
        img_size=side,
    )
    predictor = SamPredictor(sam1_tiny)
    load_embedding(ok).apply(predictor)  # the same family is accepted
    assert predictor.is_image_set
