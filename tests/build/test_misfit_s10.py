"""The "checkpoint of another size" advice names the variant to use on its first line, the one a
user reads: a SAM 1 vit_l checkpoint given as vit_b says "this checkpoint is vit_l (...), not
'vit_b': ... --model vit_l" (it said "a 1024-wide, 24-block ViT ... leave --model out", and
only the CLI's last line named vit_l), for the families whose builders read a config from the
tensors (SAM 1, HQ-SAM) as for those that read a variant name (SAM 2, EfficientTAM).

The checkpoints are the official layouts written as zero-stride tensors (a few hundred KB on
disk): the advice reads only names and shapes, and every model is built on the meta device."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from samkit.build.loaded import load_family_model
from samkit.build.misfit import AdviceError
from samkit.cli import main


def layout_checkpoint(folder: Path, family: str, variant: str) -> Path:
    """`variant`'s tensor names and shapes in a .pth file, every tensor one stored zero."""
    net = load_family_model(family, variant, None, True, "meta")
    state = {k: torch.zeros((), dtype=v.dtype).expand(v.shape) for k, v in net.state_dict().items()}
    path = folder / f"{variant}_layout.pth"
    torch.save(state, path)
    return path


@pytest.fixture(scope="module")
def vit_l(tmp_path_factory) -> Path:
    return layout_checkpoint(tmp_path_factory.mktemp("vit_l"), "sam1", "vit_l")


@pytest.mark.parametrize(
    ("family", "have", "given", "builder", "what"),
    [
        ("sam1", "vit_l", "vit_b", "build_sam", "a 1024-wide, 24-block ViT"),
        ("sam_hq", "sam_hq_vit_tiny", "sam_hq_vit_b", "build_sam_hq", "an HQ-SAM of another size"),
    ],
)
def test_first_line_names_the_variant(tmp_path, vit_l, family, have, given, builder, what):
    path = vit_l if have == "vit_l" else layout_checkpoint(tmp_path, family, have)
    with pytest.raises(AdviceError) as e:
        load_family_model(family, given, path, False, "meta")
    first = str(e.value).split("\n")[0]
    head = f"this checkpoint is {have} ({what}), not {given!r}: "
    assert first == (
        f"{head}call {builder}({have!r}, checkpoint=...) or {builder}(checkpoint=...) without a "
        f"variant (CLI: pass --model {have}, or leave --model out)"
    ), first
    assert e.value.cli == f"{head}pass --model {have}, or leave --model out"
    load_family_model(family, have, path, False, "meta")  # the advice works


def test_cli_says_the_variant_first(vit_l, tmp_path, capsys):
    image = tmp_path / "im.png"
    Image.new("RGB", (64, 48)).save(image)
    argv = ["segment", "--model", "vit_b", "--checkpoint", str(vit_l), "--point", "5,5"]
    code = main([*argv, "--out", str(tmp_path / "out.png"), str(image)])
    first = capsys.readouterr().err.split("\n")[0]
    assert code == 2
    assert first == (
        "samkit segment: error: this checkpoint is vit_l (a 1024-wide, 24-block ViT), not "
        "'vit_b': pass --model vit_l, or leave --model out"
    ), first
