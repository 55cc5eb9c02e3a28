"""The "does not fit" advice (`samkit.build.misfit`) is given in one place, the build pipeline
(`samkit.build.pipeline.build_model`): every family built there gets it once, a family added
through the registry alone included, and no builder wraps it again."""

from __future__ import annotations

import ast
import os
from pathlib import Path
from typing import Any

import pytest

import samkit.build
from samkit.build.misfit import AdviceError
from samkit.build.pipeline import build_model, reset_pixel_normalization
from samkit.build.registry import Family, register, unregister
from samkit.build.sam import infer_sam_config, resolve_sam_config, sam_from_config
from samkit.checkpoint import read_state_dict
from tests.conftest import FIXTURES, ROOT

SAM1 = FIXTURES / "sam1_tiny" / "sam1_tiny.pth"
LOCAL = ROOT / "tests" / "fixtures"


def build_fake9(
    spec: Any = None,
    checkpoint: str | os.PathLike | None = None,
    device: Any = None,
    dtype: Any = None,
) -> Any:
    """A new family's builder: SAM 1's model, and nothing about misfits of its own."""
    state = read_state_dict(checkpoint) if checkpoint is not None else None
    cfg = infer_sam_config(state) if spec is None else resolve_sam_config(spec)[0]
    return build_model(
        lambda: sam_from_config(cfg),
        state,
        checkpoint,
        reset_buffers=lambda m: reset_pixel_normalization(m, cfg),
        init_weights=lambda m: None,
        user=f"the model of build_fake9({spec!r})",
        family="fake9",
        spec=spec,
        infer=infer_sam_config,
        device=device,
        dtype=dtype,
    )


@pytest.fixture
def fake9():
    family = register(
        Family(
            name="fake9",
            display="Fake 9",
            checkpoint_prefixes=("fake9.",),
            builder_hint="build_fake9",
            model="samkit.modeling.sam:Sam",
            loader=f"{__name__}:build_fake9",
        )
    )
    yield family
    unregister("fake9")


def test_a_family_added_through_the_registry_gets_the_advice(fake9):
    with pytest.raises(AdviceError) as e:
        build_fake9("vit_b", SAM1, device="meta")
    first, report = str(e.value).split("\n", 1)
    assert first == (
        "this checkpoint is a 64-wide, 4-block ViT, not 'vit_b': call build_fake9(checkpoint=...)"
        " without a variant (CLI: leave --model out)"
    ), first
    assert "does not fit" in report and "this checkpoint is" not in report
    assert e.value.cli.startswith("this checkpoint is a 64-wide, 4-block ViT, not 'vit_b': leave")
    build_fake9(None, SAM1, device="meta")  # the advice works
    # the architecture read from the checkpoint: the loader's report, no advice
    with pytest.raises(ValueError) as e:
        build_model(
            lambda: sam_from_config(resolve_sam_config("vit_b")[0]),
            read_state_dict(SAM1),
            SAM1,
            reset_buffers=lambda m: None,
            init_weights=lambda m: None,
            user="x",
            family="fake9",
            spec=None,
            device="meta",
        )
    assert not isinstance(e.value, AdviceError) and "does not fit" in str(e.value)


@pytest.mark.parametrize(
    ("builder", "variant", "checkpoint"),
    [
        ("build_sam", "vit_b", SAM1),
        ("build_sam2", "sam2.1_hiera_t", FIXTURES / "sam2_tiny" / "sam2_tiny.pt"),
        ("build_efficienttam", "efficienttam_s", LOCAL / "efficienttam" / "efficienttam_tiny.pt"),
        ("build_edgetam", "edgetam", LOCAL / "edgetam" / "edgetam_tiny.pt"),
        ("build_mobile_sam", "mobile_sam", LOCAL / "mobile_sam" / "mobile_sam_tiny.pt"),
        ("build_sam_hq", "sam_hq_vit_b", LOCAL / "sam_hq" / "vit_b" / "sam_hq_vit_b_tiny.pth"),
    ],
)
def test_every_builder_gives_the_advice_once(builder, variant, checkpoint):
    import samkit

    with pytest.raises(AdviceError) as e:
        getattr(samkit, builder)(variant, checkpoint=checkpoint, device="meta")
    text = str(e.value)
    assert text.startswith("this checkpoint is ") and f"not {variant!r}" in text, text
    assert text.count("this checkpoint is ") == 1 and text.count("does not fit") == 1, text
    assert f"call {builder}(" in text.split("\n")[0]


def _calls(path: Path, names: set[str]) -> list[int]:
    tree = ast.parse(path.read_text())
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name | ast.Attribute)
        and (node.func.id if isinstance(node.func, ast.Name) else node.func.attr) in names
    ]


def test_the_advice_is_given_in_the_pipeline_only():
    build = Path(samkit.build.__file__).parent
    callers = {
        p.name: lines
        for p in sorted(build.glob("*.py"))
        if (lines := _calls(p, {"misfit_error", "family_misfit"}))
    }
    assert set(callers) == {"misfit.py", "pipeline.py"}, callers
    assert len(callers["pipeline.py"]) == 1, callers
