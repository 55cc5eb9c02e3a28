"""The trainer's per-family operations (`samkit.train.families`), run per family."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from samkit import build_sam, build_sam2
from samkit.checkpoint import save_checkpoint
from samkit.train.families import model_family
from samkit.train.synthetic import small_sam2_config, small_sam_config
from tests.conftest import ROOT
from tests.families import FAMILIES, FAMILY_NAMES

# torch warns about a non-writable NumPy array once per process, so the check runs in a fresh
# interpreter (an earlier test in this process may already have used up the warning). One
# interpreter serves every family: a warning from any of them is an error, so a family can only
# find it used up by an earlier family that already failed the check.
READ_ONLY_SCRIPT = """
import warnings
import numpy as np
from samkit.train.datasets import Sample
from samkit.train.families import family_ops
from tests.families import FAMILIES

rng = np.random.default_rng(0)
image = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
masks = np.zeros((1, 40, 60), bool)
masks[0, 10:30, 20:50] = True
image.flags.writeable = False
masks.flags.writeable = False
for name in {families!r}:
    family = FAMILIES[name]
    model = family.build(family.tiny_config())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prep = family_ops(model).prepare(Sample("ro", image, masks))
    assert prep.gt.shape[0] == 1 and bool(prep.gt.any()), name
    print("checked", name)
"""


def test_prepare_accepts_read_only_arrays_silently():
    """Read-only sample arrays (what decoded image files give) prepare without torch's warning,
    for every family."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    run = subprocess.run(
        [sys.executable, "-c", READ_ONLY_SCRIPT.format(families=FAMILY_NAMES)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split() == [w for name in FAMILY_NAMES for w in ("checked", name)]


def test_model_family_detection(tmp_path) -> None:
    s2 = tmp_path / "s2.json"
    s2.write_text(json.dumps(small_sam2_config(64, 32, window_spec=(4, 4, 2, 2))))
    s1 = tmp_path / "s1.json"
    s1.write_text(json.dumps(small_sam_config(64, 32)))
    assert model_family(str(s2)) == "sam2" and model_family(str(s1)) == "sam1"
    assert model_family("sam2.1_hiera_t") == "sam2" and model_family("vit_b") == "sam1"
    ck = save_checkpoint(build_sam2(s2), tmp_path / "c.safetensors")
    assert model_family(None, str(ck)) == "sam2"
    ck1 = save_checkpoint(build_sam(s1), tmp_path / "c1.safetensors")
    assert model_family(None, str(ck1)) == "sam1"
    with pytest.raises(ValueError, match="variant"):
        model_family("not_a_model")
    assert model_family(str(FAMILIES["sam2"].dir / "config.json")) == "sam2"
