"""`ConceptTracker`'s bookkeeping on a scripted stand-in for `Sam3VideoPredictor` (the real one is
tested end to end in test_track_concepts.py): concepts in their own sessions merged per frame,
track ids in order of appearance, reverse passes with their start frame, clicks, removal, and
the refusals. No model: each official output is a known mask."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from samkit.video.formats import VisRecorder
from samkit.video.track import vis_document
from samkit.video.track_concepts import ConceptTracker

N, H, W = 4, 6, 8


def _mask(k: int, t: int) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[k % H, t : t + 2] = True
    return m


class Scripted:
    """Official-looking answers: session of text "a" has official objects 0, 1 (1 from frame 2
    on), text "b" has object 0; object o of session s on frame t is `_mask(2 * s + o, t)`."""

    def __init__(self) -> None:
        self.sessions: dict[str, dict] = {}
        self.requests: list[dict] = []

    def handle_request(self, r: dict) -> dict:
        self.requests.append(r)
        kind = r["type"]
        if kind == "start_session":
            sid = f"s{len(self.sessions)}"
            self.sessions[sid] = {"n": len(r["resource_path"]), "objs": [], "removed": set()}
            return {"session_id": sid}
        s = self.sessions[r["session_id"]]
        if kind == "add_prompt":
            if "points" in r:
                s["objs"].append(r["obj_id"])
            else:
                s["text"] = r.get("text")
                s["objs"] = [0] if r.get("text") != "a" else [0, 1]
            return {
                "frame_index": r["frame_index"],
                "outputs": self._out(r["session_id"], r["frame_index"]),
            }
        if kind == "remove_object":
            s["removed"].add(r["obj_id"])
            return {"is_success": True}
        if kind == "close_session":
            del self.sessions[r["session_id"]]
            return {"is_success": True}
        raise AssertionError(kind)

    def handle_stream_request(self, r: dict) -> Iterator[dict]:
        self.requests.append(r)
        n, start = self.sessions[r["session_id"]]["n"], r["start_frame_index"]
        order = (
            range(start - 1, -1, -1)
            if r["propagation_direction"] == "backward"
            else range(start, n)
        )
        for t in order:
            yield {"frame_index": t, "outputs": self._out(r["session_id"], t)}

    def _out(self, sid: str, t: int) -> dict:
        s, k = self.sessions[sid], int(sid[1:])
        ids = [
            o
            for o in s["objs"]
            if o not in s["removed"] and not (s.get("text") == "a" and o == 1 and t < 2)
        ]
        return {
            "out_obj_ids": np.array(ids, np.int64),
            "out_probs": np.array([0.5 + 0.1 * o for o in ids], np.float32),
            "out_binary_masks": np.stack([_mask(2 * k + o, t) for o in ids]) if ids else np.zeros((0, H, W), bool),
        }  # fmt: skip


@pytest.fixture
def tracker() -> ConceptTracker:
    return ConceptTracker(Scripted())


def _state(tracker: ConceptTracker):
    return tracker.init_state([np.zeros((H, W, 3), np.uint8) for _ in range(N)])


def test_two_concepts_merge_per_frame_with_ids_in_order_of_appearance(tracker):
    s = _state(tracker)
    t, ids, masks = tracker.find(s, 0, "a")
    assert (t, ids) == (0, [1]) and masks.shape == (1, 1, H, W)
    _, ids, _ = tracker.find(s, 0, "b")
    assert ids == [1, 2]  # the frame's objects of every concept
    got = {t: (ids, m) for t, ids, m in tracker.propagate_in_video(s, start_frame_idx=0)}
    assert sorted(got) == list(range(N))
    assert got[0][0] == [1, 2] and got[3][0] == [1, 2, 3]  # "a"'s object 1 appears on frame 2
    assert s.predictor_id(3) == (0, 1) and s.predictor_id(2) == (1, 0)
    np.testing.assert_array_equal(got[3][1][2, 0].numpy(), _mask(1, 3))
    assert [s.category(i) for i in (1, 2, 3)] == ["a", "b", "a"]
    rec = VisRecorder(N, H, W)
    for t, (ids, m) in got.items():
        rec.add(t, ids, m[:, 0].numpy())
    doc = vis_document(rec, s, "clip")
    assert [c["name"] for c in doc["categories"]] == ["a", "b"]
    assert [(a["object_id"], a["category_id"]) for a in doc["annotations"]] == [
        (1, 1),
        (2, 2),
        (3, 1),
    ]
    scores = tracker.get_object_scores(s, 3)
    assert np.isclose(1 / (1 + np.exp(-scores[3])), 0.6)


def test_reverse_pass_yields_its_start_frame_first(tracker):
    s = _state(tracker)
    tracker.find(s, 2, "b")
    frames = [t for t, _, _ in tracker.propagate_in_video(s, start_frame_idx=2, reverse=True)]
    assert frames == [2, 1, 0]
    back = [r for r in tracker.predictor.requests if r["type"] == "propagate_in_video"]
    assert back[0]["propagation_direction"] == "backward" and back[0]["start_frame_index"] == 2
    # both directions from an unprompted frame: the reverse pass starts with the forward
    # pass's outputs of it; a start frame without outputs is not yielded
    fwd = {t: ids for t, ids, _ in tracker.propagate_in_video(s, start_frame_idx=1)}
    rev = [(t, ids) for t, ids, _ in tracker.propagate_in_video(s, start_frame_idx=1, reverse=True)]
    assert rev[0] == (1, fwd[1]) and fwd[1] == [1]
    s2 = _state(tracker)
    tracker.find(s2, 3, "b")
    assert [t for t, _, _ in tracker.propagate_in_video(s2, 1, reverse=True)] == [0]


def test_clicks_refine_found_objects_or_start_new_ones_and_removal(tracker):
    s = _state(tracker)
    tracker.find(s, 0, "b")  # track 1 = ("b", 0)
    pts, labs = np.array([[4.0, 3.0]]), np.array([1])
    tracker.add_new_points_or_box(s, 1, 1, points=pts, labels=labs)
    req = tracker.predictor.requests[-1]
    assert req["obj_id"] == 0 and req["points"] == [[0.5, 0.5]] and req["session_id"] == "s0"
    _, ids, _ = tracker.add_new_points_or_box(s, 1, 7, points=pts, labels=labs)
    assert 7 in ids and s.category(7) == "clicked object"
    assert tracker.predictor.requests[-1]["obj_id"] == 7  # in a session without text
    tracker.remove_object(s, 1)
    assert s.obj_ids == [7]
    with pytest.raises(ValueError, match="object 1 was removed"):
        tracker.add_new_points_or_box(s, 0, 1, points=pts, labels=labs)
    with pytest.raises(ValueError, match="unknown object id 5"):
        tracker.remove_object(s, 5)


def test_refusals(tracker):
    s = _state(tracker)
    with pytest.raises(ValueError, match="find needs a text"):
        tracker.find(s, 0)
    with pytest.raises(ValueError, match="non-empty noun phrase"):
        tracker.find(s, 0, "  ")
    with pytest.raises(ValueError, match="frame 4 is outside the video"):
        tracker.find(s, 4, "a")
    with pytest.raises(ValueError, match=r"box .* must satisfy"):
        tracker.find(s, 0, None, (0, 0, 9, 3))
    with pytest.raises(ValueError, match="reads a box as a visual exemplar"):
        tracker.add_new_points_or_box(s, 0, 1, box=np.array([0, 0, 4, 4]))
    with pytest.raises(ValueError, match="takes no mask prompts"):
        tracker.add_new_mask(s, 0, 1, np.ones((H, W), bool))
    with pytest.raises(ValueError, match="no prompt yet"):
        next(tracker.propagate_in_video(s))
    assert s.sessions == []  # a refused find leaves no session behind
    _, ids, _ = tracker.find(s, 1, None, (1, 1, 5, 4))  # an exemplar box alone
    req = tracker.predictor.requests[-1]
    assert req["bounding_boxes"] == [[1 / W, 1 / H, 4 / W, 3 / H]] and "text" not in req
    assert s.category(ids[0]) == "exemplar"


@pytest.mark.parametrize("keep", [True, False])
def test_a_click_after_tracking_merges_the_other_concepts_kept_masks(keep):
    tracker = ConceptTracker(Scripted(), keep_outputs=keep)
    s = _state(tracker)
    tracker.find(s, 0, "a")
    tracker.find(s, 0, "b")
    list(tracker.propagate_in_video(s, start_frame_idx=0))
    pts, labs = np.array([[4.0, 3.0]]), np.array([1])
    _, ids, masks = tracker.add_new_points_or_box(s, 3, 2, points=pts, labels=labs)  # "b"'s
    # "a"'s objects on frame 3 come from the kept (bit-packed) outputs of the pass
    assert ids == ([1, 2, 3] if keep else [2])
    if keep:
        np.testing.assert_array_equal(masks[2, 0].numpy(), _mask(1, 3))
    assert 0 in s.last and 3 in s.last and (2 in s.last) == keep  # prompt frames always
