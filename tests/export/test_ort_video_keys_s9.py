"""The ONNX video predictor keeps its memories' keys (samkit.export.video_keys): the key graphs
against the torch key cache and the full memory-attention graph, the kept-key store, exports
without the key graphs (the fixture sessions next to the torch predictor, with kept keys, are
replayed in tests/export/test_ort_video.py)."""

from __future__ import annotations

import gc
import json
import shutil

import pytest
import torch

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from samkit.configs.sam2 import sam2_config_from_official  # noqa: E402
from samkit.export.ort_video import OnnxSam2VideoPredictor  # noqa: E402
from samkit.export.sam2_video import MANIFEST_FILE, export_sam2_video_onnx  # noqa: E402
from samkit.export.video_keys import (  # noqa: E402
    KEYED_ATTENTION_INPUTS,
    KEYS_FILES,
    KEYS_INPUTS,
    MemoryKeyStore,
    reuses_memory_keys,
)
from samkit.modeling.memory_keys import MemoryKeyCache  # noqa: E402
from samkit.video.build import build_sam2_video_predictor  # noqa: E402
from tests.video import replay as rp  # noqa: E402
from tests.video.conftest import CONFIG, manifest  # noqa: E402

SETTINGS = manifest()["predictor_settings"]
KW = {
    "fill_hole_area": SETTINGS["fill_hole_area"],
    "add_all_frames_to_correct_as_cond": SETTINGS["add_all_frames_to_correct_as_cond"],
}
PART_ATOL = 1e-5  # as tests/export/test_ort_video.py (the parts vs torch on random inputs)
# The recorded sessions through the ORT predictor with kept keys (the official recording, the
# torch outputs, the key-graph run counts) are tests/export/test_ort_video.py's session test:
# its predictor keeps keys by default. EfficientTAM's cheapest session names its cross-attention.
CHEAP = "mask_prompt_reverse"


@pytest.fixture(scope="module")
def torch_predictor():
    return rp.torch_predictor("sam2")


@pytest.fixture(scope="module")
def export_dir(sam2_video_onnx_dir):
    # the export of tests/export/test_ort_video.py (tests/export/conftest.py), the same
    # sam2_tiny fixture model as torch_predictor's
    return sam2_video_onnx_dir


@pytest.fixture(scope="module")
def onnx_predictor(export_dir):
    return OnnxSam2VideoPredictor(export_dir, **KW)


def _bank(model, g, frames, ptrs, batch=1):
    c, cm, (h, w) = model.hidden_dim, model.mem_dim, model.sam_prompt_encoder.image_embedding_size
    pos = torch.randn(1, cm, h, w, generator=g).expand(batch, -1, -1, -1)
    mems = [(t, torch.randn(batch, cm, h, w, generator=g).bfloat16(), pos) for t in range(frames)]
    pointers = [(i + 1, torch.randn(batch, c, generator=g)) for i in range(ptrs)]
    return mems, pointers


def test_key_graphs_only_where_torch_keeps_keys(export_dir, onnx_predictor):
    m = json.loads((export_dir / MANIFEST_FILE).read_text())
    assert m["memory_key_files"] == KEYS_FILES
    assert "memory_keys" not in m["files"] and "memory_attention_keys" not in m["files"]
    assert onnx_predictor.model.reuse_memory_keys
    sessions = onnx_predictor.model.sessions
    for part, names in (
        ("memory_keys", KEYS_INPUTS),
        ("memory_attention_keys", KEYED_ATTENTION_INPUTS),
    ):
        assert [i.name for i in sessions[part].get_inputs()] == names
    keys = sessions["memory_attention_keys"].get_inputs()[3]
    assert keys.shape[1] == "objects" and keys.shape[3] == "memory_tokens"
    assert reuses_memory_keys(rp.torch_predictor("sam2").model)
    # EfficientTAM's pooled / EdgeTAM's perceiver cross-attention: no kept keys in torch either
    eff = rp.RECORDINGS["efficienttam"].session(CHEAP)
    assert not reuses_memory_keys(rp.torch_predictor("efficienttam", eff).model)
    assert not reuses_memory_keys(rp.torch_predictor("edgetam").model)


def test_keyed_attention_matches_torch_and_full_graph(torch_predictor, onnx_predictor):
    """Banks of 1..7 frames and 0..16 pointers: the keyed graph equals the torch key-cache path,
    the torch full path and the full graph; each memory's keys are computed once."""
    m, o = torch_predictor.model, onnx_predictor.model
    g = torch.Generator().manual_seed(1)
    c, (h, w) = m.hidden_dim, m.sam_prompt_encoder.image_embedding_size
    feat, pos = torch.randn(1, c, h, w, generator=g), torch.randn(1, c, h, w, generator=g)
    store = o.memory_keys
    for frames, ptrs in ((1, 1), (2, 3), (7, 16), (3, 0)):
        mems, pointers = _bank(m, g, frames, ptrs)
        with torch.inference_mode():
            full = m.condition_on_memory(feat, pos, mems, pointers, 16)
            cached = m.condition_on_memory(feat, pos, mems, pointers, 16, MemoryKeyCache())
            runs = store.runs
            keyed = o.condition_on_memory(feat, pos, mems, pointers, 16)
            assert store.runs == runs + frames  # one memory_keys run per new memory
            again = o.condition_on_memory(feat, pos, mems[::-1], pointers, 16)
            assert store.runs == runs + frames  # kept, in any order
            o.reuse_memory_keys = False
            try:
                graph = o.condition_on_memory(feat, pos, mems, pointers, 16)
            finally:
                o.reuse_memory_keys = True
        for x in (cached, keyed, graph):
            torch.testing.assert_close(x, full, rtol=0, atol=PART_ATOL)
        torch.testing.assert_close(keyed, cached, rtol=0, atol=PART_ATOL)
        # the memories in reverse order (and their slots with them): the same attention
        torch.testing.assert_close(again, keyed, rtol=0, atol=PART_ATOL)


def test_memory_key_graph_is_the_torch_key_part(torch_predictor, onnx_predictor):
    m, o = torch_predictor.model, onnx_predictor.model
    g = torch.Generator().manual_seed(2)
    (mems, _) = _bank(m, g, 1, 0, batch=2)
    _, mem, pos = mems[0]
    (keys,) = o._run("memory_keys", ["memory_keys"], {"memory": mem, "memory_pos": pos})
    x = mem.float().flatten(2).transpose(1, 2) + pos.flatten(2).transpose(1, 2)
    with torch.inference_mode():
        for i, layer in enumerate(m.memory_attention.layers):
            want = layer.cross_attn_image.memory_key_part(x)
            torch.testing.assert_close(keys[i], want, rtol=0, atol=PART_ATOL)


def test_batched_objects_use_the_full_graph(torch_predictor, onnx_predictor):
    """A batch of objects (a new tensor every frame) is not kept: the full graph, same numbers."""
    m, o = torch_predictor.model, onnx_predictor.model
    g = torch.Generator().manual_seed(3)
    c, (h, w) = m.hidden_dim, m.sam_prompt_encoder.image_embedding_size
    feat, pos = torch.randn(2, c, h, w, generator=g), torch.randn(2, c, h, w, generator=g)
    mems, pointers = _bank(m, g, 3, 2, batch=2)
    runs = o.memory_keys.runs
    with torch.inference_mode():
        got = o.condition_on_memory(feat, pos, mems, pointers, 16)
        want = m.condition_on_memory(feat, pos, mems, pointers, 16)
    assert o.memory_keys.runs == runs
    torch.testing.assert_close(got, want, rtol=0, atol=PART_ATOL)


def test_store_keeps_what_the_last_frame_read():
    calls = []

    def compute(mem, pos):
        calls.append(mem)
        return mem.float().reshape(1, 1, 1, -1, 1) + pos.float().sum()

    store = MemoryKeyStore(compute)
    pos = torch.zeros(1, 1, 2, 2)
    a, b, c = (torch.full((1, 1, 2, 2), float(v)) for v in (1, 2, 3))
    store.new_frame(0)
    out = store.keys([(0, a, pos), (1, b, pos)])
    assert out.shape == (1, 1, 1, 8, 1) and out[0, 0, 0, :4, 0].tolist() == [1.0] * 4
    store.new_frame(0)  # the same frame (another object): nothing dropped
    store.keys([(0, c, pos)])
    assert store.runs == 3 and len(store.tensors()) == 3
    store.new_frame(1)  # a new frame keeps what frame 0 read
    store.keys([(0, a, pos)])
    assert store.runs == 3
    store.new_frame(2)  # b and c were not read on frame 1: dropped
    assert len(store.tensors()) == 1
    store.keys([(0, b, pos)])
    assert store.runs == 4
    other = torch.ones(1, 1, 2, 2)  # another position encoding: recomputed
    store.keys([(0, b, other)])
    assert store.runs == 5
    del a, calls[:]
    gc.collect()
    store.keys([(0, b, other)])  # a's entry went with a
    assert len(store.tensors()) == 1 and store.runs == 5
    store.clear()
    assert store.tensors() == []


def test_export_without_key_graphs_still_runs(tmp_path, export_dir, torch_predictor):
    """An export of an older samkit (no `memory_key_files`) runs the full graph; a manifest
    that lists key graphs the folder lacks, or others, is refused."""
    m = json.loads((export_dir / MANIFEST_FILE).read_text())
    old = tmp_path / "old"
    old.mkdir()
    for name in m["files"].values():
        shutil.copy(export_dir / name, old / name)
    (old / MANIFEST_FILE).write_text(
        json.dumps({k: v for k, v in m.items() if k != "memory_key_files"})
    )
    pred = OnnxSam2VideoPredictor(old, **KW)
    assert pred.model.memory_keys is None and not pred.model.reuse_memory_keys
    g = torch.Generator().manual_seed(4)
    mod = torch_predictor.model
    c, (h, w) = mod.hidden_dim, mod.sam_prompt_encoder.image_embedding_size
    feat, pos = torch.randn(1, c, h, w, generator=g), torch.randn(1, c, h, w, generator=g)
    mems, pointers = _bank(mod, g, 4, 5)
    with torch.inference_mode():
        torch.testing.assert_close(
            pred.model.condition_on_memory(feat, pos, mems, pointers, 16),
            mod.condition_on_memory(feat, pos, mems, pointers, 16),
            rtol=0,
            atol=PART_ATOL,
        )
    (old / MANIFEST_FILE).write_text(json.dumps(m))
    with pytest.raises(ValueError, match=r"'memory_keys' \(memory_keys.onnx\) is missing"):
        OnnxSam2VideoPredictor(old)
    bad = {**m, "memory_key_files": {"memory_keys": "memory_keys.onnx"}}
    (old / MANIFEST_FILE).write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="memory_key_files"):
        OnnxSam2VideoPredictor(old)


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    """The fixture layout at 128 px with the official cross-attention width (a 256-wide head on
    64-wide memories: the keyed graph weighs the values before projecting them) and 2 layers,
    random weights, exported: (torch model, ORT adapter)."""
    cfg = json.loads(CONFIG.read_text())
    cfg["model"]["image_size"] = 128
    cfg["model"]["memory_attention"]["num_layers"] = 2
    for attention in ("self_attention", "cross_attention"):
        cfg["model"]["memory_attention"]["layer"][attention]["downsample_rate"] = 1
    torch.manual_seed(0)
    model = build_sam2_video_predictor(sam2_config_from_official(cfg), fill_hole_area=0).model
    out = tmp_path_factory.mktemp("ort_video_keys_wide")
    export_sam2_video_onnx(model, out)
    return model, OnnxSam2VideoPredictor(out, fill_hole_area=0).model


def test_late_values_match_torch(wide):
    m, o = wide
    attn = m.memory_attention.layers[1].cross_attn_image
    assert attn.kv_in_dim < attn.internal_dim // attn.num_heads  # the late-value case
    g = torch.Generator().manual_seed(5)
    c, (h, w) = m.hidden_dim, m.sam_prompt_encoder.image_embedding_size
    feat, pos = torch.randn(1, c, h, w, generator=g), torch.randn(1, c, h, w, generator=g)
    for frames, ptrs in ((1, 0), (7, 16)):
        mems, pointers = _bank(m, g, frames, ptrs)
        with torch.inference_mode():
            full = m.condition_on_memory(feat, pos, mems, pointers, 16)
            cached = m.condition_on_memory(feat, pos, mems, pointers, 16, MemoryKeyCache())
            runs = o.memory_keys.runs
            keyed = o.condition_on_memory(feat, pos, mems, pointers, 16)
            assert o.memory_keys.runs == runs + frames
            o.reuse_memory_keys = False
            graph = o.condition_on_memory(feat, pos, mems, pointers, 16)
            o.reuse_memory_keys = True
        for x in (cached, keyed, graph):
            torch.testing.assert_close(x, full, rtol=0, atol=PART_ATOL)
