"""SAM 3's CLIP BPE tokenizer: the official ids, truncation, bad prompts, the shipped vocabulary."""

from __future__ import annotations

import hashlib
import json
import warnings
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch

from samkit.text.tokenizer import (
    ClipTokenizer,
    PromptTruncatedWarning,
    clean_text,
    default_tokenizer,
    tokenize,
)
from tests.conftest import FIXTURES

FX = FIXTURES / "sam3_tiny"
CASES = json.loads((Path(__file__).parent / "tokenizer_cases.json").read_text())["cases"]
VOCAB_SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"


def _row(ids: list[int], n: int = 32) -> list[int]:
    return ids + [0] * (n - len(ids))


def test_manifest_prompts_match_official_ids() -> None:
    tokens = json.loads((FX / "manifest.json").read_text())["tokens"]
    assert set(tokens) >= {"truck", "a black wheel", "bottle", "dog", "visual"}
    for prompt, ids in tokens.items():
        assert tokenize(prompt)[0].tolist() == ids, prompt


@pytest.mark.parametrize(
    "case", ["a_text_truck", "a_text_wheel", "b_text_box_groceries", "c_text_pos_neg_dog"]
)
def test_case_token_ids(case: str) -> None:
    data = np.load(FX / f"case_{case}.npz")
    man = json.loads((FX / "manifest.json").read_text())["cases"][case]
    prompt = man["steps"][0]["prompt"]
    got = tokenize([prompt])
    assert got.dtype == torch.long and got.shape == (1, 32)
    np.testing.assert_array_equal(got.numpy(), data["s0_token_ids"])


def test_visual_prompt_of_box_only_case() -> None:
    data = np.load(FX / "case_d_box_only_truck.npz")
    np.testing.assert_array_equal(tokenize("visual").numpy(), data["s0_token_ids"])


@pytest.mark.parametrize("case", CASES, ids=lambda c: ascii(c["text"])[:40])
def test_official_ids(case: dict) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PromptTruncatedWarning)
        got = tokenize(case["text"])[0].tolist()
    assert got == _row(case["ids"])


def test_long_prompt_truncated_like_official_with_warning() -> None:
    text = "the quick brown fox jumps over the lazy dog " * 4
    tok = default_tokenizer()
    full = tok.encode(text)
    assert len(full) == 36
    with pytest.warns(PromptTruncatedWarning, match="38 tokens"):
        row = tokenize(text)[0].tolist()
    assert row == [tok.sot_token_id, *full[:30], tok.eot_token_id]
    assert next(c for c in CASES if c["text"] == text)["ids"] == row


def test_exactly_full_context_is_not_truncated() -> None:
    text = " ".join(["dog"] * 30)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        row = tokenize(text)[0].tolist()
    assert row[0] == 49406 and row[-1] == 49407 and row[1:31] == [1929] * 30


def test_batch_and_other_context() -> None:
    ids = tokenize(["dog", "a black wheel"])
    assert ids.shape == (2, 32)
    assert ids[1, :5].tolist() == [49406, 320, 1449, 6744, 49407]
    short = ClipTokenizer(context_length=77)(["dog"])
    assert short.shape == (1, 77) and short[0, :3].tolist() == [49406, 1929, 49407]


@pytest.mark.parametrize("bad", ["", "   ", "\t\n", "\x07", "\x1b[31m"])
def test_empty_prompt_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="empty"):
        tokenize(bad)


@pytest.mark.parametrize("bad", [None, 3, b"dog", ["dog", 5], [], ("dog", None)])
def test_non_string_prompt_is_refused(bad: object) -> None:
    with pytest.raises(ValueError, match=r"string|list"):
        tokenize(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [0, 2, -1, 3.5, True, "32"])
def test_bad_context_length(bad: object) -> None:
    with pytest.raises(ValueError, match="context_length"):
        tokenize("dog", context_length=bad)  # type: ignore[arg-type]


def test_decode_round_trip() -> None:
    tok = default_tokenizer()
    assert tok.decode(tok.encode("A Yellow school-bus!")).strip() == "a yellow school - bus !"
    assert clean_text("  Ｆｕｌｌ\u2019s  \ufb01sh &amp; co ") == "full's fish & co"


def test_vocabulary_is_shipped_with_its_licence() -> None:
    folder = resources.files("samkit.text")
    data = folder.joinpath("bpe_simple_vocab_16e6.txt.gz").read_bytes()
    assert hashlib.sha256(data).hexdigest() == VOCAB_SHA256
    licence = folder.joinpath("LICENSE-open_clip.txt").read_text()
    assert "Permission is hereby granted" in licence and VOCAB_SHA256 in licence
    tok = default_tokenizer()
    assert tok.vocab_size == 49408 and (tok.sot_token_id, tok.eot_token_id) == (49406, 49407)
