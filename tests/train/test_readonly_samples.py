"""Read-only sample arrays (what decoded image files give) prepare without torch's warning.

torch warns about a non-writable NumPy array once per process, so each check runs in a fresh
interpreter (an earlier test in this process may already have used up the warning).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import warnings
import numpy as np
from samkit import build_sam, build_sam2
from samkit.train.datasets import Sample
from samkit.train.families import family_ops
from tests.families import tiny_sam2_config, tiny_sam_config

rng = np.random.default_rng(0)
image = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
masks = np.zeros((1, 40, 60), bool)
masks[0, 10:30, 20:50] = True
image.flags.writeable = False
masks.flags.writeable = False
model = build_sam(tiny_sam_config()) if "{family}" == "sam1" else build_sam2(tiny_sam2_config())
with warnings.catch_warnings():
    warnings.simplefilter("error")
    prep = family_ops(model).prepare(Sample("ro", image, masks))
assert prep.gt.shape[0] == 1 and bool(prep.gt.any())
"""


@pytest.mark.parametrize("family", ["sam1", "sam2"])
def test_prepare_accepts_read_only_arrays_silently(family):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(family=family)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
