"""SAM 3 text encoder: parity with the official language features on the sam3_tiny fixture."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from samkit.modeling.sam3.text_encoder import VETextEncoder
from samkit.text.tokenizer import tokenize
from tests.modeling.sam3.f1_weights import FX, sub_state

STEPS = [  # (case, step key prefix, prompt)
    ("a_text_truck", "s0", None),
    ("a_text_wheel", "s0", None),
    ("b_text_box_groceries", "s0", None),
    ("c_text_pos_neg_dog", "s0", None),
    ("d_box_only_truck", "s0", "visual"),
]


@pytest.fixture(scope="module")
def text_encoder() -> VETextEncoder:
    enc = VETextEncoder(d_model=256, width=64, heads=2, layers=2).eval()
    enc.load_state_dict(sub_state("detector.backbone.language_backbone."), strict=True)
    return enc


@pytest.mark.parametrize(("case", "step", "prompt"), STEPS)
def test_language_outputs_match_official(
    text_encoder: VETextEncoder, case: str, step: str, prompt: str | None
) -> None:
    data = np.load(FX / f"case_{case}.npz")
    if prompt is None:
        prompt = json.loads((FX / "manifest.json").read_text())["cases"][case]["steps"][0]["prompt"]
    ids = tokenize([prompt])
    with torch.inference_mode():
        mask, feats, embeds = text_encoder(ids)
    np.testing.assert_array_equal(mask.numpy(), data[f"{step}_language_mask"])
    np.testing.assert_array_equal(embeds.numpy(), data[f"{step}_language_embeds"])
    assert feats.shape == (32, 1, 256)
    np.testing.assert_allclose(feats.numpy(), data[f"{step}_language_features"], rtol=0, atol=2e-5)


def test_batch_equals_single_prompts(text_encoder: VETextEncoder) -> None:
    with torch.inference_mode():
        _, both, _ = text_encoder(tokenize(["truck", "a black wheel"]))
        _, one, _ = text_encoder(tokenize(["a black wheel"]))
    torch.testing.assert_close(both[:, 1:], one, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    "bad",
    [
        torch.zeros(32, dtype=torch.long),
        torch.zeros(1, 33, dtype=torch.long),
        torch.zeros(1, 32),
        torch.full((1, 32), 49408),
        torch.full((1, 32), -1),
    ],
)
def test_bad_token_ids(text_encoder: VETextEncoder, bad: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="token"):
        text_encoder(bad)
