"""Shared test paths and fixtures."""

from __future__ import annotations

import os

# OpenMP threads that wait for each other by spinning burn their time slices when the machine is
# busy: with the 2 threads below and a load of ~15 on 2 cores, 30 vit encoder passes of the
# sam1_shapes model took 82-122 s instead of 2.7-4.0 s (same numbers either way: the threads
# split the work identically). Set before torch loads its OpenMP runtime, which reads it once.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from PIL import Image

# torch is imported where it is used: the pytest run of tests/test_xdist_groups.py loads this
# file in 3 processes that need no torch (about 2 s each)
if TYPE_CHECKING:
    import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
FIXTURES = SHARED / "fixtures"
IMAGES = SHARED / "images"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("samkit progress")
    group.addoption(
        "--progress-after",
        type=float,
        default=10.0,
        help="name a test still running after this many seconds, and its duration (0: off; "
        "default 10)",
    )
    group.addoption(
        "--progress-every",
        type=float,
        default=60.0,
        help="repeat the running-test line every this many seconds (default 60)",
    )


def pytest_configure(config: pytest.Config) -> None:
    if getattr(config.option, "dist", None) == "loadgroup":
        # the work units go out in the order the workers collected them, which
        # pytest_collection_modifyitems below makes the most expensive first (xdist's default
        # reorders them by test count: the few-test, minute-long groups went last and one
        # worker finished them alone)
        config.option.loadscopereorder = False
    after = config.getoption("--progress-after")
    if after and after > 0 and not hasattr(config, "workerinput"):  # not in an xdist worker
        from tests.progress import Progress

        every = max(1.0, config.getoption("--progress-every"))
        config.pluginmanager.register(Progress(config, after, every), "samkit-progress")


# Tests marked `slow` from here (node-id prefixes), so that `-m "not slow"` is a quick check
# without editing files other people are working on; files and tests may also carry the marker
# themselves. Picked by CPU time per test (about 4 s or more on this project's 2-core machine,
# measured 2026-12-06); the session summary lists unmarked tests that ran over --progress-after.
SLOW = (
    "tests/amg/test_sam2.py::test_candidates_per_point_and_outputs",
    "tests/amg/test_sam.py::test_crop_merging_and_nms_on_constructed_masks",
    "tests/amg/test_coco_format.py::test_auto_writes_coco_by_default_and_sa1b_with_format",
    "tests/amg/test_report.py::test_counts_when_masks_are_kept",
    "tests/amg/test_report.py::test_zero_masks_are_explained",
    "tests/video/test_eval_later_objects.py::test_eval_video_prompts_each_object_where_it_appears",
    "tests/video/test_cli_video.py::test_track_outputs_equal_the_predictor",
    "tests/video/test_cli_video.py::test_eval_video_on_a_tiny_davis_folder",
    "tests/video/test_cli_video.py::test_interrupted_track_leaves_no_partial_file",
    "tests/video/test_cli_video.py::test_track_reverse_both_and_bounded",
    "tests/video/test_eval_later_objects.py::test_first_frame_only_videos_keep_the_joint_pass",
    "tests/distributed/",  # each test starts a local Ray instance
    "tests/server/test_browser",  # Chromium
    "tests/server/test_video_api.py::test_reverse_starts_at_the_last_prompted_frame",
    "tests/server/test_video_api.py::test_open_click_track_download",
    "tests/server/test_sam2_app.py::test_sam2_segment_everything_matches_the_generator",
    "tests/train/test_families.py::test_prepare_accepts_read_only_arrays_silently",
    "tests/train/test_loop.py::test_interrupted_and_resumed_run_matches_uninterrupted",
    "tests/server/test_video_api.py::test_max_frames_counts_the_start_frame",
    "tests/server/test_video_load.py::test_removing_an_object_while_tracking_is_refused",
    "tests/server/test_video_load.py::test_samkit_serve_takes_the_session_limit_and_idle_time",
    "tests/export/test_sam.py::test_interface_names_and_dynamic_points",
    "tests/export/test_sam.py::test_low_precision_models_export_float32_graphs",
    "tests/export/test_sam2.py::test_interface_names_shapes_and_metadata",
    "tests/export/test_ort_sam2.py::test_predict_cases_match_torch",
    "tests/export/test_ort_sam2.py::test_metadata_and_interface",
    "tests/paths/test_paths_agree.py::test_path_agrees_with_fp32[sam1-compile",  # torch.compile
    "tests/paths/test_paths_agree.py::test_path_agrees_with_fp32[sam2-compile",
)


# With pytest-xdist (`-n 2 --dist loadgroup`, the README's test command) a file's tests run in one
# worker, so its module-scoped models are built once. The Ray tests share one worker (one local Ray
# instance at a time), and so do the two files that read `sam3_tiny_runs` (computed once), and the
# two that replay the SAM 2 video sessions with torch (tests/video/replay.py compares a session
# with the recording once per process: test_ort_video, collected first, keeps the torch outputs
# and test_parity then has the comparison already; in two workers both replayed them; the two
# ORT video files also read one video export, tests/export/conftest.py), and so do the two that
# read that conftest's SAM 2 image export (in two workers each exported the model), and the two
# browser files that open pages on one `samkit serve` of sam1_shapes (tests/server/conftest.py),
# and the two that read tests/paths/backends.py's reference models and ONNX exports (made once
# per process; sam2_tiny's encoder graph takes the longest).
XDIST_GROUPS = {
    "tests/distributed/": "ray",
    "tests/predict/test_parity_sam3.py": "sam3_tiny_runs",
    "tests/paths/test_sam3_paths.py": "sam3_tiny_runs",
    "tests/export/test_ort_video.py": "sam2_video_replays",
    "tests/export/test_ort_video_keys_s9.py": "sam2_video_replays",
    "tests/video/test_parity.py": "sam2_video_replays",
    "tests/export/test_sam2.py": "sam2_onnx_export",
    "tests/export/test_ort_sam2.py": "sam2_onnx_export",
    "tests/server/test_browser.py": "sam1_shapes_served",
    "tests/server/test_browser_says.py": "sam1_shapes_served",
    "tests/io/test_provenance.py": "paths_backends",
    "tests/paths/test_paths_agree.py": "paths_backends",
}


# What a test is taken to cost when the xdist work units are ordered (seconds on 2 idle cores, a
# rough mean: slow-marked tests take about 4-90 s, the others mostly well under a second). Only
# the order depends on it: the largest estimated units first, so that the last ones to start are
# small and the two workers finish together (longest-processing-time-first scheduling).
SLOW_TEST_COST = 15.0
TEST_COST = 0.5
# Unmarked tests known to take much longer than TEST_COST (node-id prefixes -> seconds, idle;
# from the summary's "tests over 10 s not marked slow" of a loaded whole-suite run, halved):
# estimated at TEST_COST, a file with one of them went last, and one worker ran it alone at the end
# (tests/test_xdist_groups.py, 12 s, finished the 2026-12-06 runs).
LONG_TESTS = {
    "tests/test_xdist_groups.py::": 11.0,
    "tests/test_progress.py::test_a_long_test_is_named_while_it_runs_and_when_it_ends[xdist]": 6.0,
    "tests/runtime/test_accel.py::test_tune_malloc_page_faults_fewer_big_temporaries": 10.0,
    "tests/runtime/test_accel.py::test_build_sam2_bf16_keeps_masks": 6.0,
    "tests/light/test_onnx.py::test_mobile_sam_onnx_matches_torch": 6.0,
    "tests/cli/test_load_errors_s9.py::test_the_real_cli_prints_one_error_line": 5.0,
}


def _cost(item: pytest.Item) -> float:
    """The estimated seconds of `item` (for the order of the xdist work units only)."""
    if item.get_closest_marker("slow") is not None:
        return SLOW_TEST_COST
    return next((c for p, c in LONG_TESTS.items() if item.nodeid.startswith(p)), TEST_COST)


@pytest.hookimpl(tryfirst=True)  # before xdist's worker reads the groups off the items
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    groups = []
    for item in items:
        if item.nodeid.startswith(SLOW) and item.get_closest_marker("slow") is None:
            item.add_marker(pytest.mark.slow)
        path = item.nodeid.split("::", 1)[0]
        group = next((g for p, g in XDIST_GROUPS.items() if path.startswith(p)), path)
        item.add_marker(pytest.mark.xdist_group(group))
        groups.append(group)
    if hasattr(config, "workerinput"):  # an xdist worker: its collection order is the queue's
        cost: dict[str, float] = {}
        first: dict[str, int] = {}
        for i, (item, group) in enumerate(zip(items, groups)):
            cost[group] = cost.get(group, 0.0) + _cost(item)
            first.setdefault(group, i)
        order = sorted(range(len(items)), key=lambda i: (-cost[groups[i]], first[groups[i]], i))
        items[:] = [items[i] for i in order]


def load_rgb(name: str) -> np.ndarray:
    """An image of ../shared/images (or a fixture PNG path) as HxWx3 uint8 RGB."""
    path = Path(name) if Path(name).is_absolute() else IMAGES / name
    return np.array(Image.open(path).convert("RGB"))


def manifest(model_dir: str) -> dict:
    return json.loads((FIXTURES / model_dir / "manifest.json").read_text())


@pytest.fixture(autouse=True, scope="session")
def _two_threads() -> None:
    # The fixtures were recorded with 2 intra-op threads.
    import torch

    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def sam1_tiny():
    from samkit import build_sam

    d = FIXTURES / "sam1_tiny"
    return build_sam(d / "config.json", checkpoint=d / "sam1_tiny.pth")


@pytest.fixture(scope="session")
def sam1_shapes():
    from samkit import build_sam

    d = FIXTURES / "sam1_shapes"
    return build_sam(d / "config.json", checkpoint=d / "sam1_shapes.pth")


class Sam3Runs:
    """`benchmarks.sam3_pipeline.run_fixture_cases` per dtype, each run once: `runs(dtype)` ->
    (arrays per step, the `keep` dict); `release()` forgets them (a few hundred MB)."""

    def __init__(self) -> None:
        self._runs: dict[torch.dtype, tuple[dict, dict]] = {}

    def __call__(self, dtype: torch.dtype) -> tuple[dict, dict]:
        from benchmarks.sam3_pipeline import run_fixture_cases

        if dtype not in self._runs:
            keep: dict = {}
            self._runs[dtype] = (run_fixture_cases(dtype, keep), keep)
        return self._runs[dtype]

    def release(self) -> None:
        self._runs.clear()


@pytest.fixture(scope="session")
def sam3_tiny_runs() -> Sam3Runs:
    """The SAM 3 fixture cases replayed once per dtype for the session: the float32 run is
    checked against the official recording (tests/predict/test_parity_sam3.py, which releases
    them when done) and is the bfloat16 run's reference (tests/paths/test_sam3_paths.py, the
    module just before it); the bfloat16 run is also checked against the recording."""
    return Sam3Runs()


@pytest.fixture(scope="session")
def sam3_small(tmp_path_factory) -> Path:
    """A 336 px SAM 3 checkpoint (the sam3_tiny weights with their RoPE tables for 24x24 tokens;
    tests/fixtures/sam3_small.py), written once per session (per xdist worker): for the product
    tests whose claim is not parity with the official recordings. Its config.json is beside it."""
    from tests.fixtures.sam3_small import SOURCE, write_small_sam3

    if not SOURCE.is_file():
        pytest.skip("no ../shared/fixtures/sam3_tiny")
    return write_small_sam3(tmp_path_factory.mktemp("sam3_small"))
