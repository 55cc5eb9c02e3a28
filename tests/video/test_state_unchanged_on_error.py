"""Every call of the video predictor that raises a ValueError leaves the inference state exactly
as it was (issue 24): the typed session is snapshotted deeply (dataclass fields by name, tensors
by value, dicts in order, sets, lists), the error triggered, and the snapshot compared.

`test_every_raise_site_is_exercised` reads the `raise ValueError` statements of the predictor's
modules and fails when one is not reached by a case below, so a new error needs a case here.
The constructor's checks (no state yet) and `init_state`'s (it makes the state) are not cases.
"""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import samkit.video as video_pkg
from samkit.modeling.video_memory import Clicks, FrameOutput
from samkit.video.frames.live import LiveFrames
from samkit.video.frames.sources import open_video
from samkit.video.session import InferenceSession, ObjectState
from tests.video.clips import write_jpeg_folder
from tests.video.conftest import random_frames

PREDICTOR_MODULES = ("predictor.py", "corrections.py", "objects.py", "live.py", "session.py")
PREDICTOR_MODULES += ("prompts.py", "tracker.py")
NOT_A_STATE_CALL = {("predictor.py", "__init__")}  # checks of the constructor's arguments


# ------------------------------------------------------------------ deep snapshot
def snapshot(x: Any) -> Any:
    """A deep, comparable copy: dataclasses (the session, its objects, their outputs) as
    their fields in order, tensors cloned, dicts as ordered items, the frame source by identity
    and length."""
    if isinstance(x, torch.Tensor):
        return ("tensor", x.detach().clone())
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        items = [(f.name, snapshot(getattr(x, f.name))) for f in dataclasses.fields(x)]
        return ("dataclass " + type(x).__name__, items)
    if isinstance(x, dict):
        return (type(x).__name__, [(k, snapshot(v)) for k, v in x.items()])
    if isinstance(x, (list, tuple)):
        return (type(x).__name__, [snapshot(v) for v in x])
    if isinstance(x, (set, frozenset)):
        return ("set", frozenset(x))
    if x is None or isinstance(x, (bool, int, float, str, np.integer, torch.device)):
        return x
    return ("object", type(x).__name__, id(x), len(x) if hasattr(x, "__len__") else None)


def assert_same(a: Any, b: Any, path: str = "state") -> None:
    if isinstance(a, tuple) and a and a[0] == "tensor":
        assert isinstance(b, tuple) and b[0] == "tensor", path
        ta, tb = a[1], b[1]
        assert (ta.dtype, ta.shape, ta.device) == (tb.dtype, tb.shape, tb.device), path
        assert torch.equal(ta, tb), f"{path}: tensor values changed"
        return
    if isinstance(a, tuple) and len(a) == 2 and isinstance(a[1], list):
        assert type(b) is tuple and len(b) == 2 and a[0] == b[0], f"{path}: type changed"
        if a[0] not in ("list", "tuple"):  # dict, OrderedDict, dataclass: named items
            assert [k for k, _ in a[1]] == [k for k, _ in b[1]], f"{path}: keys changed"
            for (k, va), (_, vb) in zip(a[1], b[1], strict=True):
                assert_same(va, vb, f"{path}[{k!r}]")
        else:
            assert len(a[1]) == len(b[1]), f"{path}: length changed"
            for i, (va, vb) in enumerate(zip(a[1], b[1], strict=True)):
                assert_same(va, vb, f"{path}[{i}]")
        return
    assert a == b, f"{path}: {a!r} != {b!r}"


def _toy_session(frames: Any) -> InferenceSession:
    """A session with one object, one click and one stored output (no model needed)."""
    s = InferenceSession.open(frames, torch.device("cpu"))
    obj = ObjectState(1)
    obj.point_inputs[0] = Clicks(torch.zeros(1, 1, 2), torch.ones(1, 1, dtype=torch.int32))
    obj.memory.cond_frame_outputs[0] = FrameOutput(
        torch.zeros(1, 1, 4, 4), torch.zeros(1, 8), torch.ones(1, 1)
    )
    obj.frames_tracked[0] = False
    s.put_object(obj)
    return s


def test_snapshot_sees_every_kind_of_change():
    state = {"a": {0: torch.zeros(2)}, "ids": [1], "gone": {3}, "n": 2}
    before = snapshot(state)
    for change in (
        lambda s: s["a"][0].add_(1),
        lambda s: s["a"].__setitem__(1, torch.zeros(2)),
        lambda s: s["ids"].append(2),
        lambda s: s["gone"].add(4),
        lambda s: s.__setitem__("n", 3),
    ):
        s = {"a": {0: torch.zeros(2)}, "ids": [1], "gone": {3}, "n": 2}
        change(s)
        with pytest.raises(AssertionError):
            assert_same(before, snapshot(s))
    assert_same(before, snapshot(state))


@pytest.mark.parametrize(
    "change",
    [
        lambda s: s.objects[0].point_inputs[0].coords.add_(1),
        lambda s: s.objects[0].memory.cond_frame_outputs[0].object_score_logits.neg_(),
        lambda s: setattr(s.objects[0].memory.cond_frame_outputs[0], "obj_ptr", None),
        lambda s: s.objects[0].pending.non_cond_frame_outputs.update(
            {1: s.objects[0].memory.cond_frame_outputs[0]}
        ),
        lambda s: s.objects[0].frames_tracked.__setitem__(0, True),
        lambda s: s.put_object(ObjectState(2)),
        lambda s: s.put_object(ObjectState(1)),  # the object started over
        lambda s: s.removed_obj_ids.add(7),
        lambda s: setattr(s, "num_frames", 4),
        lambda s: setattr(s, "maskmem_pos_enc", torch.zeros(1)),
    ],
)
def test_snapshot_sees_every_kind_of_session_change(change):
    frames = open_video(random_frames(3), 128)
    before = snapshot(_toy_session(frames))
    assert_same(before, snapshot(_toy_session(frames)))
    s = _toy_session(frames)
    change(s)
    with pytest.raises(AssertionError):
        assert_same(before, snapshot(s))


# ------------------------------------------------------------------ states
def _broken_state(p, folder: Path) -> InferenceSession:
    """4 frames whose frame 2 has its JPEG data cut (the header, read at open, is intact);
    object 1 clicked on frame 0."""
    write_jpeg_folder(folder, random_frames(4, seed=4))
    data = (folder / "00002.jpg").read_bytes()
    (folder / "00002.jpg").write_bytes(data[: len(data) // 2])
    state = p.init_state(str(folder))
    p.add_new_points_or_box(state, 0, 1, points=[[20, 20]], labels=[1])
    return state


@pytest.fixture(scope="module")
def states(small, tmp_path_factory) -> dict[str, InferenceSession]:
    p = small
    frames = random_frames(6, seed=3)
    tracked = p.init_state(frames)
    p.add_new_points_or_box(tracked, 0, 1, points=[[20, 20]], labels=[1])
    p.add_new_points_or_box(tracked, 0, 2, box=[30, 10, 60, 40])
    p.add_new_points_or_box(tracked, 1, 3, points=[[40, 30]], labels=[1])
    list(p.propagate_in_video(tracked))
    p.remove_object(tracked, 3)
    # not yet propagated: a correction, a mask prompt and a new object
    p.add_new_points_or_box(tracked, 3, 1, points=[[25, 22]], labels=[0], clear_old_points=False)
    p.add_new_mask(tracked, 2, 2, np.ones((48, 64), bool))
    p.add_new_points_or_box(tracked, 4, 5, points=[[10, 10]], labels=[1])

    unprompted = p.init_state(frames)  # object 2 lost its only prompt; object 1 has a new click
    p.add_new_points_or_box(unprompted, 0, 1, points=[[20, 20]], labels=[1])
    p.add_new_points_or_box(unprompted, 0, 2, points=[[50, 30]], labels=[1])
    list(p.propagate_in_video(unprompted))
    p.clear_all_prompts_in_frame(unprompted, 0, 2)
    p.add_new_points_or_box(unprompted, 2, 1, points=[[22, 20]], labels=[1])

    broken = _broken_state(p, tmp_path_factory.mktemp("broken"))

    live2 = p.init_state(LiveFrames(p.image_size))
    for f in random_frames(2, seed=5):
        p.add_frame(live2, f)
    return {
        "tracked": tracked,
        "fresh": p.init_state(frames),
        "unprompted": unprompted,
        "broken": broken,
        "live0": p.init_state(LiveFrames(p.image_size)),
        "live2": live2,
    }


def _pts(**kw: Any) -> Callable:
    return lambda p, s: p.add_new_points_or_box(s, **kw)


def _next(**kw: Any) -> Callable:
    return lambda p, s: next(p.propagate_in_video(s, **kw))


ONE = {"points": [[20, 20]], "labels": [1]}
H, W = 48, 64
# (case id, state, call, message)
CASES: list[tuple[str, str, Callable, str]] = [
    ("points_frame_not_int", "tracked", _pts(frame_idx="0", obj_id=1, **ONE), "must be an int"),
    ("points_frame_bool", "tracked", _pts(frame_idx=True, obj_id=1, **ONE), "must be an int"),
    ("points_frame_after_end", "tracked", _pts(frame_idx=6, obj_id=1, **ONE), "outside"),
    ("points_frame_negative", "tracked", _pts(frame_idx=-1, obj_id=1, **ONE), "outside"),
    ("points_no_labels", "tracked", _pts(frame_idx=3, obj_id=1, points=[[1, 2]]), "together"),
    ("labels_no_points", "tracked", _pts(frame_idx=3, obj_id=1, labels=[1]), "together"),
    ("no_points_no_box", "tracked", _pts(frame_idx=3, obj_id=1), "or a box"),
    (
        "points_not_numeric",
        "tracked",
        _pts(frame_idx=3, obj_id=1, points="abc", labels=[1]),
        "must be numeric",
    ),
    (
        "points_nan",
        "tracked",
        _pts(frame_idx=3, obj_id=1, points=[[np.nan, 2]], labels=[1]),
        "NaN",
    ),
    (
        "points_not_nx2",
        "tracked",
        _pts(frame_idx=3, obj_id=1, points=[[1, 2, 3]], labels=[1]),
        "Nx2",
    ),
    (
        "labels_count",
        "tracked",
        _pts(frame_idx=3, obj_id=1, points=[[1, 2]], labels=[1, 0]),
        "one label per point",
    ),
    (
        "labels_value",
        "tracked",
        _pts(frame_idx=3, obj_id=1, points=[[1, 2]], labels=[2]),
        "1 \\(positive\\) or 0",
    ),
    (
        "box_without_clearing",
        "tracked",
        _pts(frame_idx=3, obj_id=1, box=[1, 2, 30, 40], clear_old_points=False),
        "clear_old_points=True",
    ),
    ("box_three_numbers", "tracked", _pts(frame_idx=3, obj_id=1, box=[1, 2, 3]), "4|x0, y0"),
    ("box_inf", "tracked", _pts(frame_idx=3, obj_id=1, box=[1, 2, np.inf, 4]), "infinite"),
    ("box_inverted", "tracked", _pts(frame_idx=3, obj_id=1, box=[30, 30, 10, 10]), "x1 >= x0"),
    ("points_removed_object", "tracked", _pts(frame_idx=3, obj_id=3, **ONE), "was removed"),
    ("points_unhashable_object", "tracked", _pts(frame_idx=3, obj_id=[1], **ONE), "hashable"),
    (
        "points_frame_not_decodable",
        "broken",
        _pts(frame_idx=2, obj_id=1, **ONE),
        "not a readable image",
    ),
    (
        "mask_frame_outside",
        "tracked",
        lambda p, s: p.add_new_mask(s, 9, 1, np.ones((H, W), bool)),
        "outside",
    ),
    ("mask_3d", "tracked", lambda p, s: p.add_new_mask(s, 2, 1, np.ones((1, H, W))), "2-D"),
    ("mask_size", "tracked", lambda p, s: p.add_new_mask(s, 2, 1, np.ones((H, 9))), "video size"),
    (
        "mask_removed_object",
        "tracked",
        lambda p, s: p.add_new_mask(s, 2, 3, np.ones((H, W))),
        "was removed",
    ),
    ("propagate_no_prompt", "fresh", _next(), "no prompts yet"),
    ("propagate_object_without_prompt", "unprompted", _next(), "object id 2 has no prompts"),
    ("propagate_start_outside", "tracked", _next(start_frame_idx=6), "outside"),
    ("propagate_start_not_int", "tracked", _next(start_frame_idx=1.0), "must be an int"),
    ("propagate_max_negative", "tracked", _next(max_frame_num_to_track=-1), "must be an int >= 0"),
    ("propagate_max_float", "tracked", _next(max_frame_num_to_track=2.5), "must be an int >= 0"),
    (
        "clear_frame_outside",
        "tracked",
        lambda p, s: p.clear_all_prompts_in_frame(s, 6, 1),
        "outside",
    ),
    (
        "clear_unknown_object",
        "tracked",
        lambda p, s: p.clear_all_prompts_in_frame(s, 0, 7),
        "unknown object id 7",
    ),
    (
        "clear_removed_object",
        "tracked",
        lambda p, s: p.clear_all_prompts_in_frame(s, 0, 3),
        "was removed",
    ),
    (
        "remove_unknown_strict",
        "tracked",
        lambda p, s: p.remove_object(s, 7, strict=True),
        "unknown object id 7",
    ),
    (
        "remove_unhashable_strict",
        "tracked",
        lambda p, s: p.remove_object(s, [1], strict=True),
        "unknown object id",
    ),
    (
        "add_frame_not_live",
        "tracked",
        lambda p, s: p.add_frame(s, random_frames(1)[0]),
        "needs a live state",
    ),
    (
        "add_frame_other_size",
        "live2",
        lambda p, s: p.add_frame(s, random_frames(1, h=20)[0]),
        "same size",
    ),
    (
        "add_frame_not_uint8",
        "live2",
        lambda p, s: p.add_frame(s, random_frames(1)[0].astype(np.float32)),
        "uint8",
    ),
    ("track_frame_no_frame", "live0", lambda p, s: p.track_frame(s), "no frame has arrived"),
    ("track_frame_not_arrived", "live2", lambda p, s: p.track_frame(s, 5), "outside"),
    ("track_frame_no_prompt", "live2", lambda p, s: p.track_frame(s), "no prompts yet"),
    (
        "track_frame_object_without_prompt",
        "unprompted",
        lambda p, s: p.track_frame(s, 1),
        "object id 2 has no prompts",
    ),
    (
        "track_new_frame_no_prompt",
        "live2",
        lambda p, s: p.track_new_frame(s, random_frames(1)[0]),
        "no prompts yet",
    ),
]


def _raise_site(e: BaseException) -> tuple[str, str, int]:
    tb = e.__traceback__
    while tb.tb_next is not None:
        tb = tb.tb_next
    code = tb.tb_frame.f_code
    return Path(code.co_filename).name, code.co_name, tb.tb_lineno


def _run_case(small, states, state_name, call, match) -> tuple[str, str, int]:
    s = states[state_name]
    before = snapshot(s)
    with pytest.raises(ValueError, match=match) as info:
        call(small, s)
    assert_same(before, snapshot(s))
    return _raise_site(info.value)


@pytest.mark.parametrize(
    ("state_name", "call", "match"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_a_refused_call_leaves_the_state_as_it_was(small, states, state_name, call, match):
    _run_case(small, states, state_name, call, match)


def _value_error_sites() -> set[tuple[str, str, int]]:
    """(file, function, line) of every `raise ValueError` in the predictor's modules."""
    sites = set()
    root = Path(video_pkg.__file__).parent
    for name in PREDICTOR_MODULES:
        tree = ast.parse((root / name).read_text())
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                exc = getattr(node, "exc", None) if isinstance(node, ast.Raise) else None
                if isinstance(exc, ast.Call) and getattr(exc.func, "id", "") == "ValueError":
                    sites.add((name, fn.name, node.lineno))
    return {s for s in sites if s[:2] not in NOT_A_STATE_CALL}


def test_every_raise_site_is_exercised(small, states):
    expected = _value_error_sites()
    assert len(expected) >= 20  # the parse found the predictor's checks
    reached = set()
    for _, state_name, call, match in CASES:
        reached.add(_run_case(small, states, state_name, call, match))
    assert expected <= reached, sorted(expected - reached)


def test_a_frame_that_fails_to_decode_mid_propagation_is_not_half_tracked(small, tmp_path):
    """Frames 0 and 1 are tracked and yielded; frame 2 does not decode: nothing of it is stored
    (the frames already yielded stay tracked)."""
    s = _broken_state(small, tmp_path)
    got = []
    with pytest.raises(ValueError, match="not a readable image"):
        for f, _, _ in small.propagate_in_video(s):
            got.append(f)
    assert got == [0, 1]
    assert sorted(s.objects[0].frames_tracked) == [0, 1]
    outs = s.objects[0].memory
    assert sorted(outs.cond_frame_outputs) == [0] and sorted(outs.non_cond_frame_outputs) == [1]
