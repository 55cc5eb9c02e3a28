"""The loading steps every family shares: `load_family_model` (the official checkpoint, then the
registry loader; a family's opt-out) and `resolve_family_config` (names of another family)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import samkit.checkpoint as ckpt
from samkit.build.family import resolve_family_config
from samkit.build.loaded import load_family_model
from samkit.build.registry import Family, register, unregister
from samkit.configs.sam import SamConfig, sam_config_from_official

CALLS: list[tuple[Any, ...]] = []


class _Model:
    def eval(self) -> _Model:
        return self


def build_fake(spec: Any, checkpoint: Any = None, device: Any = None, dtype: Any = None) -> _Model:
    """A registry loader of the shared path: `(spec, checkpoint=, device=, dtype=)`."""
    CALLS.append(("builder", spec, checkpoint, device, dtype))
    return _Model()


def load_own(spec: Any, checkpoint: Any, random_weights: bool, device: Any, dtype: Any) -> _Model:
    """A loader that finds its checkpoint itself (`loader_finds_checkpoint`)."""
    CALLS.append(("own", spec, checkpoint, random_weights, device, dtype))
    return _Model()


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> Any:
    base = {"checkpoint_prefixes": ("fake.",), "builder_hint": "x", "model": f"{__name__}:_Model"}
    register(Family(name="fakeshared", display="Fake", loader=f"{__name__}:build_fake", **base))
    register(
        Family(
            name="fakeown",
            display="Own",
            loader=f"{__name__}:load_own",
            loader_finds_checkpoint=True,
            **base,
        )
    )
    fetched: list[str] = []
    monkeypatch.setattr(ckpt, "fetch_checkpoint", lambda spec: fetched.append(spec) or "off.pt")
    CALLS.clear()
    yield fetched
    unregister("fakeshared")
    unregister("fakeown")


def test_the_official_checkpoint_is_fetched_for_a_variant_and_passed_to_the_builder(fakes):
    load_family_model("fakeshared", "vit_b", device="cpu", dtype="bfloat16")
    load_family_model("fakeshared", "vit_b", checkpoint="mine.pt")
    load_family_model("fakeshared", "vit_b", random_weights=True)
    load_family_model("fakeshared", SamConfig())
    assert fakes == ["vit_b"]  # only when no checkpoint is given and weights are wanted
    assert CALLS[0] == ("builder", "vit_b", "off.pt", "cpu", torch.bfloat16)
    assert [c[2] for c in CALLS[1:]] == ["mine.pt", None, None]


def test_a_family_that_finds_its_checkpoint_gets_the_arguments_as_given(fakes):
    load_family_model("fakeown", "vit_b", None, True, "cpu")
    load_family_model("fakeown", "vit_b")
    assert fakes == []
    assert CALLS == [
        ("own", "vit_b", None, True, "cpu", None),
        ("own", "vit_b", None, False, None, None),
    ]


@pytest.mark.parametrize(
    ("spec", "family", "match"),
    [
        (
            "mobile_sam",
            "sam1",
            r"'mobile_sam' is a MobileSAM variant; .*use samkit\.build_mobile_sam",
        ),
        ("edgetam", "sam1", r"is an EdgeTAM variant; SAM 1 variants are .*vit_b"),
        (3.5, "sam1", r"expected a SAM 1 variant name \(e\.g\. 'vit_b'\), a SamConfig"),
    ],
)
def test_another_familys_name_is_a_value_error_naming_both(spec, family, match):
    with pytest.raises(ValueError, match=match):
        resolve_family_config(spec, family, SamConfig, sam_config_from_official)
