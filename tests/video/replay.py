"""The recorded official video sessions of the SAM 2-style families, replayed call by call.

One recording per family, each the calls of ../shared/fixtures/sam2_video on its frames:

- `sam2`: ../shared/fixtures/sam2_video (official sam2 1.1.0; float32 logits at stride 4,
  full-resolution masks);
- `efficienttam`: tests/fixtures/efficienttam (the official EfficientTAMVideoPredictor; the
  sessions with the pooled `efficient1` cross-attention, plus `two_objects_forward` with the
  `rope` and `efficient2` ones);
- `edgetam`: tests/fixtures/edgetam (EdgeTAM's batched, sam2 1.0-era SAM2VideoPredictor).

The light recordings store float16 logits at the session's stride and masks at a stride with
their areas (their READMEs). `replay` sends a session's calls to any predictor with the official
video API and compares every returned frame and object score with the recording;
tests/video/test_parity.py replays every session with the torch predictors,
tests/export/test_ort_video.py with the onnxruntime ones (next to the torch outputs)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from tests.conftest import FIXTURES, ROOT

FRAMES = FIXTURES / "sam2_video" / "frames"
LOGIT_ATOL = 1e-4  # the bfloat16 memories amplify upstream drift (sam2_video README)
FP16_RTOL = 2.0**-10  # float16 stored logits: one ulp relative
SCORE_ATOL = 1e-5
MASK_MISMATCH = 1e-4


@dataclass(frozen=True)
class Recording:
    """Where a family's recorded sessions are and how their logits are stored."""

    family: str
    folder: Path
    logits_key: str  # `<call>_<logits_key>`: the stored subsampled logits
    logits_rtol: float  # 0 for float32 storage, one float16 ulp for float16

    def manifest(self) -> dict:
        return _manifest(self.folder)

    def sessions(self) -> list[dict]:
        return self.manifest()["sessions"] if (self.folder / "manifest.json").is_file() else []

    def session(self, name: str) -> dict:
        return next(s for s in self.sessions() if s["name"] == name)

    def logit_stride(self, session: dict) -> int:
        return int(session.get("logit_stride", self.manifest().get("logit_stride", 1)))

    def mask_stride(self) -> int:
        return int(self.manifest().get("storage", {}).get("video_mask_stride", 1))


RECORDINGS = {
    r.family: r
    for r in (
        Recording("sam2", FIXTURES / "sam2_video", "logits_stride4", 0.0),
        Recording(
            "efficienttam", ROOT / "tests" / "fixtures" / "efficienttam", "logits", FP16_RTOL
        ),
        Recording("edgetam", ROOT / "tests" / "fixtures" / "edgetam", "logits", FP16_RTOL),
    )
}


@cache
def _manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


@lru_cache(maxsize=1)
def _frame_shape() -> tuple[int, int, int]:
    """(frames, H, W) of the recorded clip (../shared/fixtures/sam2_video's manifest)."""
    names = RECORDINGS["sam2"].manifest()["frames"]
    return len(names), *np.asarray(Image.open(FRAMES / names[0])).shape[:2]


_PREDICTORS: dict[tuple[str, str], Any] = {}


def torch_predictor(family: str, session: dict | None = None) -> Any:
    """samkit's torch video predictor for a family's recording (built once per process), with
    the recording's predictor settings; EfficientTAM's with the session's cross-attention."""
    rec = RECORDINGS[family]
    settings = rec.manifest()["predictor_settings"]
    kind = ""
    if family == "efficienttam":
        kind = {
            "RoPEAttention": "rope",
            "EfficientRoPEAttention1": "efficient1",
            "EfficientRoPEAttention2": "efficient2",
        }[(session or rec.sessions()[0])["cross_attention"].rsplit(".", 1)[-1]]
    if (family, kind) in _PREDICTORS:
        return _PREDICTORS[family, kind]
    if family == "sam2":
        from samkit.video.build import build_sam2_video_predictor

        config = FIXTURES / "sam2_tiny"
        built = build_sam2_video_predictor(
            config / "config.json",
            config / "sam2_tiny.pt",
            fill_hole_area=settings["fill_hole_area"],
            non_overlap_masks=settings["non_overlap_masks"],
            clear_non_cond_mem_around_input=settings["clear_non_cond_mem_around_input"],
            add_all_frames_to_correct_as_cond=settings["add_all_frames_to_correct_as_cond"],
        )
    elif family == "efficienttam":
        from samkit.build.efficienttam import resolve_efficienttam_config
        from samkit.video.efficienttam import build_efficienttam_video_predictor

        cfg, _ = resolve_efficienttam_config(rec.folder / "config.json")
        built = build_efficienttam_video_predictor(
            dataclasses.replace(cfg, cross_attention=kind),
            rec.folder / "efficienttam_tiny.pt",
            fill_hole_area=settings["fill_hole_area"],
            add_all_frames_to_correct_as_cond=False,
        )
    else:
        from samkit.video.edgetam import build_edgetam_video_predictor

        built = build_edgetam_video_predictor(
            checkpoint=rec.folder / "edgetam_tiny.pt",
            fill_hole_area=settings["fill_hole_area"],
            add_all_frames_to_correct_as_cond=False,
        )
    _PREDICTORS[family, kind] = built
    return built


# id(model) -> (the model, kept alive so that its id is not reused; its outputs by input), for
# the last MEMO_MODELS models used, oldest first: the torch and the ORT SAM 2 predictors
# alternate session by session in tests/export/test_ort_video
MEMO_MODELS = 2
_ENCODED: dict[int, tuple[Any, dict[bytes, dict]]] = {}


@contextmanager
def encoder_memo(model: Any) -> Iterator[None]:
    """Every session replays the same 10 frames: while it lasts, the model's `forward_image` (a
    pure function of the input image: the torch encoder, or the ORT predictor's image-encoder
    graph) answers an input it has seen, bit for bit, from its earlier output instead of
    encoding it again (the session's own feature cache and all that follows the encoder run as
    in any other call). The outputs of the last `MEMO_MODELS` models are kept (about 16 MB a
    frame each, the image-independent position encodings once)."""
    _, seen = _ENCODED.pop(id(model), (model, {}))
    while len(_ENCODED) >= MEMO_MODELS:
        del _ENCODED[next(iter(_ENCODED))]
    _ENCODED[id(model)] = (model, seen)
    encode = model.forward_image

    def forward_image(image: torch.Tensor) -> dict:
        x = image.detach().contiguous()
        key = hashlib.sha256(x.cpu().numpy().tobytes()).digest() + str((x.shape, x.dtype)).encode()
        if key not in seen:
            out = encode(image)
            pos = out["vision_pos_enc"]
            for earlier in seen.values():  # the same position encodings: keep one copy
                if all(torch.equal(a, b) for a, b in zip(earlier["vision_pos_enc"], pos)):
                    out = {**out, "vision_pos_enc": earlier["vision_pos_enc"]}
                    break
            seen[key] = out
        return seen[key]

    model.forward_image = forward_image
    try:
        yield
    finally:
        del model.forward_image


def unpack(a: np.ndarray, width: int) -> np.ndarray:
    """Bit-packed masks (..., ceil(W/8)) uint8 -> (..., W) bool."""
    return np.unpackbits(a, axis=-1)[..., :width].astype(bool)


class Checker:
    """Compares returned frames with one recorded session and notes the arrays compared."""

    def __init__(self, rec: Recording, session: dict):
        self.rec = rec
        self.ref = np.load(rec.folder / session["file"])
        self.ls, self.ms = rec.logit_stride(session), rec.mask_stride()
        self.checked: set[str] = set()

    def masks(self, prefix: str, frame_idx: int, obj_ids: list, masks: torch.Tensor) -> None:
        """A returned frame: ids, subsampled logits, their largest magnitude, masks (and their
        areas where stored) against `<prefix>_*`."""
        r = self.ref
        assert np.asarray(r[f"{prefix}_frame_idx"]).reshape(-1).tolist() == [frame_idx], prefix
        assert list(r[f"{prefix}_obj_ids"]) == list(obj_ids), prefix
        logits = masks[:, 0].float().numpy()
        stored = r[f"{prefix}_{self.rec.logits_key}"].astype(np.float32)
        np.testing.assert_allclose(
            logits[:, :: self.ls, :: self.ls],
            stored,
            rtol=self.rec.logits_rtol,
            atol=LOGIT_ATOL,
            err_msg=prefix,
        )
        absmax = np.abs(logits).reshape(len(obj_ids), -1).max(-1)
        np.testing.assert_allclose(absmax, r[f"{prefix}_logits_absmax"], rtol=1e-5, atol=LOGIT_ATOL)
        sub = logits[:, :: self.ms, :: self.ms] > 0
        ref_masks = unpack(r[f"{prefix}_masks"], sub.shape[-1])
        assert ref_masks.shape == sub.shape, prefix
        assert np.mean(ref_masks != sub) <= MASK_MISMATCH, (prefix, np.mean(ref_masks != sub))
        if f"{prefix}_masks_area" in r.files:
            area = (logits > 0).reshape(len(obj_ids), -1).sum(-1)
            tol = MASK_MISMATCH * logits.shape[-1] * logits.shape[-2]
            assert np.all(np.abs(area - r[f"{prefix}_masks_area"]) <= tol), prefix
        self.checked.update(k for k in r.files if k.startswith(prefix + "_"))

    def scores(self, key: str, state: Any) -> dict[str, float]:
        """Every object's stored score logit after propagation call `key`."""
        scores = object_scores(state)
        ref = {
            k[len(key) + len("_objscore_") :]: float(self.ref[k].reshape(()))
            for k in self.ref.files
            if k.startswith(f"{key}_objscore_")
        }
        assert set(scores) == set(ref), key
        for k, v in ref.items():
            assert abs(scores[k] - v) <= SCORE_ATOL, (key, k, scores[k], v)
        self.checked.update(k for k in self.ref.files if k.startswith(f"{key}_objscore_"))
        return scores


def object_scores(state: Any) -> dict[str, float]:
    """`o<i>_<cond|non_>_f<t>` -> the object score logit of every output a session keeps."""
    out = {}
    for idx, obj in enumerate(state.objects):
        for kind, is_cond in (("cond", True), ("non_", False)):
            for t, o in obj.memory.frames(is_cond).items():
                out[f"o{idx}_{kind}_f{t:03d}"] = float(o.object_score_logits.reshape(()))
    return out


@dataclass
class Replayed:
    """What a replay returned: every frame `(key, frame, ids, masks)` in order, the object scores
    after each propagation call, each object's tracked frames at the end."""

    outputs: list[tuple[str, int, list, torch.Tensor]] = field(default_factory=list)
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    tracked: list[set[int]] = field(default_factory=list)


Output = Callable[[int, str, int, list, torch.Tensor], None]


def replay(
    predictor: Any,
    family: str,
    session: dict,
    keep: bool = False,
    on_output: Output | None = None,
) -> Replayed:
    """Send a recorded session's calls to `predictor` (the JPEG folder, as the recording) and
    compare every returned frame and the object scores after every propagation with it; every
    stored array must be compared. `on_output(i, key, frame, ids, masks)` sees the i-th returned
    frame; `keep` keeps the returned frames in the result."""
    rec = RECORDINGS[family]
    check = Checker(rec, session)
    ref = check.ref
    done = Replayed()
    state = predictor.init_state(str(FRAMES))
    n, h, w = _frame_shape()
    assert state["num_frames"] == n
    assert (state["video_height"], state["video_width"]) == (h, w)

    def returned(key: str, f: int, ids: list, masks: torch.Tensor) -> None:
        check.masks(key, f, ids, masks)
        if on_output is not None:
            on_output(len(done.outputs), key, f, list(ids), masks)
        done.outputs.append((key, f, list(ids), masks if keep else None))

    for call in session["calls"]:
        op, key = call["op"], call["key"]
        if op == "add_new_points_or_box":
            kw = {k: call[k] for k in ("points", "labels", "box", "clear_old_points") if k in call}
            f, ids, masks = predictor.add_new_points_or_box(
                state, call["frame_idx"], call["obj_id"], **kw
            )
            assert (f, list(ids)) == (call["returns"]["frame_idx"], call["returns"]["obj_ids"])
            returned(key, f, ids, masks)
        elif op == "add_new_mask":
            x0, y0, x1, y1 = call["rect"]
            m = np.zeros((h, w), dtype=bool)
            m[y0:y1, x0:x1] = True
            assert np.array_equal(unpack(ref[f"{key}_input_mask"], w), m)
            check.checked.add(f"{key}_input_mask")
            f, ids, masks = predictor.add_new_mask(state, call["frame_idx"], call["obj_id"], m)
            assert (f, list(ids)) == (call["returns"]["frame_idx"], call["returns"]["obj_ids"])
            returned(key, f, ids, masks)
        elif op == "propagate_in_video":
            names = ("start_frame_idx", "max_frame_num_to_track", "reverse")
            kw = {k: call[k] for k in names if k in call}
            yielded = []
            for f, ids, masks in predictor.propagate_in_video(state, **kw):
                yielded.append(f)
                returned(f"{key}_f{f:03d}", f, ids, masks)
            assert yielded == call["frames_yielded"], key
            done.scores[key] = check.scores(key, state)
        elif op == "remove_object":
            ids, _ = predictor.remove_object(state, call["obj_id"])
            assert list(ids) == call["returns"]["obj_ids"]
        elif op == "reset_state":
            predictor.reset_state(state)
            assert state["obj_ids"] == []
        else:
            raise AssertionError(f"unknown op {op}")
    assert check.checked == set(ref.files), set(ref.files) - check.checked
    done.tracked = [set(o.memory.non_cond_frame_outputs) for o in state.objects]
    return done


_COMPARED: set[tuple[str, str]] = set()


def torch_replay(family: str, name: str, keep: bool = False) -> Replayed | None:
    """The torch predictor's replay of session `name`, compared with the recording.

    The comparison runs once per test process: tests/export/test_ort_video.py needs the torch
    outputs of the SAM 2 sessions (`keep=True`, compared here first) and
    tests/video/test_parity.py the comparison alone, which a replay compared earlier in the
    same process has made (returns None then; a failed one is not remembered, so it fails
    again there)."""
    if not keep and (family, name) in _COMPARED:
        return None
    rec = RECORDINGS[family]
    session = rec.session(name)
    predictor = torch_predictor(family, session)
    with encoder_memo(predictor.model):
        done = replay(predictor, family, session, keep=keep)
    _COMPARED.add((family, name))
    return done
