"""samkit.checkpoint.load: reading, strict loading and writing of checkpoints."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from samkit.checkpoint import (
    LoadReport,
    load_state_dict_into,
    read_metadata,
    read_state_dict,
    save_checkpoint,
)
from tests.conftest import FIXTURES, IMAGES

SAM1_PTH = FIXTURES / "sam1_tiny" / "sam1_tiny.pth"
SAM2_PT = FIXTURES / "sam2_tiny" / "sam2_tiny.pt"


# ---------------------------------------------------------------------------- reading fixtures


def test_sam1_fixture_reads_flat_state_dict():
    sd = read_state_dict(SAM1_PTH)
    assert len(sd) == 202
    assert all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in sd.items())
    assert sd["image_encoder.blocks.0.attn.rel_pos_h"].dtype == torch.float32
    assert "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix" in sd
    assert "pixel_mean" not in sd  # non-persistent buffer in the reference


def test_sam1_fixture_matches_plain_torch_load():
    ours = read_state_dict(str(SAM1_PTH))  # str paths work too
    ref = torch.load(SAM1_PTH, map_location="cpu", weights_only=True)
    assert list(ours) == list(ref)
    for k in ref:
        torch.testing.assert_close(ours[k], ref[k], rtol=0, atol=0)


def test_sam2_fixture_model_wrapper_is_unwrapped():
    sd = read_state_dict(SAM2_PT)
    assert len(sd) == 324
    assert any(k.startswith("image_encoder.trunk.") for k in sd)
    assert "no_mem_embed" in sd
    assert "model" not in sd


def test_state_dict_wrapper_and_extra_entries(tmp_path):
    p = tmp_path / "lightning.ckpt"
    torch.save({"state_dict": {"w": torch.ones(2)}, "epoch": 3, "lr": 0.1}, p)
    sd = read_state_dict(p)
    assert list(sd) == ["w"]


def test_legacy_non_zip_torch_save(tmp_path):
    p = tmp_path / "legacy.pt"
    torch.save({"w": torch.arange(4.0)}, p, _use_new_zipfile_serialization=False)
    torch.testing.assert_close(read_state_dict(p)["w"], torch.arange(4.0))


def test_bin_extension_and_safetensors_content_sniffed(tmp_path):
    p = tmp_path / "pytorch_model.bin"
    torch.save({"w": torch.ones(3)}, p)
    assert list(read_state_dict(p)) == ["w"]
    q = tmp_path / "weights.pth"  # safetensors content behind a torch-like name
    save_file({"v": torch.zeros(2, 2)}, str(q))
    assert read_state_dict(q)["v"].shape == (2, 2)


# ---------------------------------------------------------------------------- bad files


def test_missing_file_names_path(tmp_path):
    p = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError, match=r"nope\.pth"):
        read_state_dict(p)


def test_directory_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="directory"):
        read_state_dict(tmp_path)


def test_truncated_pth_is_value_error_naming_file(tmp_path):
    data = SAM1_PTH.read_bytes()
    p = tmp_path / "half.pth"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"half\.pth.*truncated or corrupt"):
        read_state_dict(p)


def test_truncated_legacy_pickle(tmp_path):
    p = tmp_path / "legacy_half.pt"
    torch.save({"w": torch.ones(64)}, p, _use_new_zipfile_serialization=False)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"legacy_half\.pt"):
        read_state_dict(p)


def test_truncated_safetensors(tmp_path):
    p = tmp_path / "w.safetensors"
    save_file({"w": torch.ones(100)}, str(p))
    p.write_bytes(p.read_bytes()[:-50])
    with pytest.raises(ValueError, match=r"w\.safetensors.*safetensors"):
        read_state_dict(p)


def test_jpeg_is_rejected_with_what_was_found(tmp_path):
    with pytest.raises(ValueError, match=r"dog\.jpg.*JPEG image.*Expected"):
        read_state_dict(IMAGES / "dog.jpg")
    renamed = tmp_path / "model.pth"  # the extension does not fool the reader
    renamed.write_bytes((IMAGES / "dog.jpg").read_bytes())
    with pytest.raises(ValueError, match=r"model\.pth.*JPEG"):
        read_state_dict(renamed)


def test_text_file_is_rejected(tmp_path):
    p = tmp_path / "notes.pth"
    p.write_text("this is not a checkpoint\n")
    with pytest.raises(ValueError, match=r"notes\.pth.*text file.*this is not a checkpoint"):
        read_state_dict(p)


def test_html_error_page_and_empty_file(tmp_path):
    p = tmp_path / "sam.pth"
    p.write_text("<!DOCTYPE html><html><body>404</body></html>")
    with pytest.raises(ValueError, match="HTML"):
        read_state_dict(p)
    e = tmp_path / "empty.pth"
    e.write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        read_state_dict(e)


class _Evil:
    """Pickles to a call of os.system; executing the pickle would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("zip_format", [True, False])
def test_malicious_pickle_is_refused_and_not_executed(tmp_path, zip_format):
    marker = tmp_path / "pwned"
    p = tmp_path / "evil.pth"
    torch.save(
        {"w": torch.ones(2), "payload": _Evil(marker)},
        p,
        _use_new_zipfile_serialization=zip_format,
    )
    with pytest.raises(ValueError, match=r"evil\.pth.*refused.*execute code") as info:
        read_state_dict(p)
    assert "system" in str(info.value)  # names what it would have called
    assert not marker.exists()


def test_pickled_module_is_refused(tmp_path):
    p = tmp_path / "whole_model.pth"
    torch.save(nn.Linear(2, 2), p)
    with pytest.raises(ValueError, match=r"refused.*Linear.*state_dict"):
        read_state_dict(p)


def test_non_dict_and_non_tensor_values(tmp_path):
    p = tmp_path / "list.pth"
    torch.save([torch.ones(1)], p)
    with pytest.raises(ValueError, match="found list"):
        read_state_dict(p)
    q = tmp_path / "mixed.pth"
    torch.save({"w": torch.ones(1), "step": 7, "name": "x"}, q)
    with pytest.raises(ValueError, match=r"2 of 3 entries are not tensors: 'step' \(int\)"):
        read_state_dict(q)
    r = tmp_path / "emptydict.pth"
    torch.save({}, r)
    with pytest.raises(ValueError, match="empty dict"):
        read_state_dict(r)


# ---------------------------------------------------------------------------- load_state_dict_into


class _Small(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.norm = nn.LayerNorm(4)
        self.head = nn.Linear(4, 2)
        self.register_buffer("scale", torch.tensor(2.0))
        self.register_buffer("mean", torch.zeros(3), persistent=False)


def _small_sd(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return {k: torch.randn_like(v) for k, v in _Small().state_dict().items()}


def test_load_into_copies_values_and_keeps_nonpersistent_buffers():
    model = _Small()
    sd = _small_sd(1)
    report = load_state_dict_into(model, sd, source="small.pth")
    assert report == LoadReport(loaded=7, unused=(), source="small.pth")
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, sd[k], rtol=0, atol=0)
    assert torch.equal(model.mean, torch.zeros(3))  # non-persistent, not in the checkpoint
    assert isinstance(model.head.weight, nn.Parameter) and model.head.weight.requires_grad


def test_load_into_fixture_keys_by_name():
    sd = read_state_dict(SAM1_PTH)

    class Holder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            for k, v in sd.items():
                self.register_buffer(k.replace(".", "_"), torch.empty_like(v))

    model = Holder()
    renamed = {k.replace(".", "_"): v for k, v in sd.items()}
    assert load_state_dict_into(model, renamed, source=str(SAM1_PTH)).loaded == 202
    torch.testing.assert_close(
        model.image_encoder_pos_embed, sd["image_encoder.pos_embed"], rtol=0, atol=0
    )


def test_missing_keys_listed_with_counts():
    sd = _small_sd()
    for k in ("head.weight", "head.bias", "scale"):
        del sd[k]
    with pytest.raises(ValueError) as info:
        load_state_dict_into(_Small(), sd, source="ckpt_missing.pth")
    msg = str(info.value)
    assert "ckpt_missing.pth" in msg
    assert "3 missing keys" in msg
    assert "head.weight" in msg and "head.bias" in msg and "scale" in msg
    assert "mean" not in msg  # non-persistent buffers never count


def test_unexpected_keys_listed_first_five_and_total():
    sd = _small_sd()
    sd.update({f"extra.{i}": torch.ones(1) for i in range(8)})
    model = _Small()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError) as info:
        load_state_dict_into(model, sd, source="ckpt_extra.pth")
    msg = str(info.value)
    assert "8 unexpected keys" in msg and "ckpt_extra.pth" in msg
    assert "extra.0" in msg and "extra.4" in msg and "extra.5" not in msg
    assert "3 more" in msg
    assert "ignore_prefixes" in msg
    for k, v in model.state_dict().items():  # nothing was loaded
        assert torch.equal(v, before[k])


def test_shape_mismatch_lists_expected_and_found():
    sd = _small_sd()
    sd["head.weight"] = torch.zeros(3, 4)
    sd["conv.weight"] = torch.zeros(4, 3, 5, 5)
    with pytest.raises(ValueError) as info:
        load_state_dict_into(_Small(), sd, source="ckpt_shapes.pth")
    msg = str(info.value)
    assert "2 shape mismatches" in msg
    assert "head.weight: expected (2, 4), found (3, 4)" in msg
    assert "conv.weight: expected (4, 3, 3, 3), found (4, 3, 5, 5)" in msg


def test_all_problem_kinds_in_one_error():
    sd = _small_sd()
    del sd["norm.bias"]
    sd["bogus"] = torch.ones(1)
    sd["head.bias"] = torch.ones(5)
    with pytest.raises(ValueError) as info:
        load_state_dict_into(_Small(), sd)
    msg = str(info.value)
    assert "1 missing keys" in msg and "norm.bias" in msg
    assert "1 unexpected keys" in msg and "bogus" in msg
    assert "1 shape mismatches" in msg and "head.bias" in msg


def test_incompatible_dtype_is_rejected():
    class WithCount(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("count", torch.zeros((), dtype=torch.long))

    with pytest.raises(ValueError, match=r"count: expected torch.int64, found torch.float32"):
        load_state_dict_into(WithCount(), {"count": torch.tensor(1.5)})


def test_dtype_cast_to_model_dtype():
    model = _Small().to(torch.bfloat16)
    sd = _small_sd(2)  # float32
    load_state_dict_into(model, sd)
    assert model.head.weight.dtype == torch.bfloat16
    torch.testing.assert_close(model.head.weight, sd["head.weight"].to(torch.bfloat16))
    model64 = _Small()
    half = {k: v.half() for k, v in sd.items()}
    load_state_dict_into(model64, half)
    assert model64.conv.weight.dtype == torch.float32
    torch.testing.assert_close(model64.conv.weight, half["conv.weight"].float(), rtol=0, atol=0)


def test_meta_model_gets_tensors_assigned():
    with torch.device("meta"):
        model = _Small()
    sd = {k: v.double() for k, v in _small_sd(3).items()}
    load_state_dict_into(model, sd)
    assert model.head.weight.device.type == "cpu"
    assert model.head.weight.dtype == torch.float32
    assert isinstance(model.head.weight, nn.Parameter) and model.head.weight.requires_grad
    torch.testing.assert_close(model.head.weight, sd["head.weight"].float())


def test_ignore_prefixes_reported_as_unused_and_logged_once(caplog):
    sd = _small_sd()
    extra = {
        "memory_attention.layers.0.w": torch.ones(2),
        "memory_attention.layers.1.w": torch.ones(2),
        "memory_encoder.fuser.w": torch.ones(3),
    }
    sd.update(extra)
    with caplog.at_level(logging.INFO, logger="samkit"):
        report = load_state_dict_into(
            _Small(),
            sd,
            source="sam2_like.pt",
            ignore_prefixes=("memory_attention.", "memory_encoder.", "not_present."),
        )
    assert report.loaded == 7
    assert sorted(report.unused) == sorted(extra)
    records = [r for r in caplog.records if r.name == "samkit"]
    assert len(records) == 1
    line = records[0].getMessage()
    assert records[0].levelno == logging.INFO
    assert "sam2_like.pt" in line and "3" in line
    assert "memory_attention." in line and "memory_encoder." in line
    assert "not_present." not in line  # only prefixes that matched


def test_ignore_prefixes_do_not_hide_missing_model_keys():
    sd = _small_sd()
    del sd["head.weight"]
    with pytest.raises(ValueError, match=r"head\.weight"):
        load_state_dict_into(_Small(), sd, ignore_prefixes=("head.",))


def test_no_log_line_without_unused(caplog):
    with caplog.at_level(logging.INFO, logger="samkit"):
        load_state_dict_into(_Small(), _small_sd(), ignore_prefixes=("memory_attention.",))
    assert not [r for r in caplog.records if r.name == "samkit"]


# ---------------------------------------------------------------------------- save_checkpoint


def test_safetensors_round_trip_with_metadata(tmp_path):
    sd = read_state_dict(SAM1_PTH)
    out = save_checkpoint(sd, tmp_path / "sam1_tiny.safetensors", {"variant": "sam1_tiny"})
    assert out == tmp_path / "sam1_tiny.safetensors"
    back = read_state_dict(out)
    assert sorted(back) == sorted(sd)  # safetensors stores keys sorted
    for k in sd:
        assert back[k].dtype == sd[k].dtype
        torch.testing.assert_close(back[k], sd[k], rtol=0, atol=0)
    meta = read_metadata(out)
    assert meta["variant"] == "sam1_tiny"
    assert meta["format"] == "pt"
    assert [p.name for p in tmp_path.iterdir()] == ["sam1_tiny.safetensors"]  # no temp left


def test_save_module_with_tied_and_view_tensors(tmp_path):
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(4, 4, bias=False)
            self.b = nn.Linear(4, 4, bias=False)
            self.b.weight = self.a.weight  # tied
            self.register_buffer("t", torch.arange(12.0).reshape(3, 4).t())  # non-contiguous

    m = Tied()
    out = save_checkpoint(m, tmp_path / "sub" / "tied.safetensors")
    back = read_state_dict(out)
    torch.testing.assert_close(back["a.weight"], m.a.weight.detach(), rtol=0, atol=0)
    torch.testing.assert_close(back["b.weight"], m.a.weight.detach(), rtol=0, atol=0)
    torch.testing.assert_close(back["t"], m.t, rtol=0, atol=0)
    views = {"x": torch.arange(10.0)[2:5], "y": torch.arange(10.0)}
    back2 = read_state_dict(save_checkpoint(views, tmp_path / "views.safetensors"))
    torch.testing.assert_close(back2["x"], torch.tensor([2.0, 3.0, 4.0]))


def test_save_replaces_atomically_and_rejects_bad_input(tmp_path):
    dest = tmp_path / "w.safetensors"
    save_checkpoint({"w": torch.ones(2)}, dest)
    save_checkpoint({"w": torch.zeros(3)}, dest)
    torch.testing.assert_close(read_state_dict(dest)["w"], torch.zeros(3))
    with pytest.raises(ValueError, match="metadata"):
        save_checkpoint({"w": torch.ones(1)}, dest, {"epoch": 3})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="'n'"):
        save_checkpoint({"w": torch.ones(1), "n": 3}, dest)  # type: ignore[dict-item]
    torch.testing.assert_close(read_state_dict(dest)["w"], torch.zeros(3))  # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.safetensors"]
