"""Every entry point reads image files through `samkit.io.images`: the files of
`tests/io/image_cases.py` through `samkit embed / segment / auto`, the web app's upload, the
fine-tuning datasets and examples/quickstart.py, each checked against the expected 8-bit picture
(exactly: a recorded pixel hash, equal encoder features, or equal masks)."""

from __future__ import annotations

import importlib.util
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from samkit import SamAutomaticMaskGenerator, SamPredictor
from samkit.cli import main
from samkit.io.embeddings import features_of, load_embedding, rgb_sha256
from samkit.io.images import decode_image
from samkit.server.app import create_app
from samkit.train.datasets import DataError, FolderDataset
from tests.conftest import FIXTURES, ROOT
from tests.io.image_cases import cases, refused
from tests.server.conftest import coco_decode

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:.*frames \\(pages\\).*:UserWarning"),
]
SHAPES = FIXTURES / "sam1_shapes"
MODEL = ["--model", str(SHAPES / "config.json"), "--checkpoint", str(SHAPES / "sam1_shapes.pth")]
CASES = cases()
BY_NAME = {c.name: c for c in CASES}


def reference(case) -> np.ndarray:
    """The picture an entry point must see: the expected one (lossless formats), else the
    decoder's own picture, which `tests/io/test_images.py` checks against the expected one."""
    return case.expected if not case.atol else decode_image(case.data)


@pytest.fixture(scope="module")
def predictor(sam1_shapes):

    return SamPredictor(sam1_shapes)


@pytest.fixture(scope="module")
def embedded(tmp_path_factory) -> dict[str, Path]:
    """`samkit embed` over every case file (stretch cases with --stretch); name -> .safetensors."""
    root = tmp_path_factory.mktemp("embed")
    out: dict[str, Path] = {}
    for stretch in (False, True):
        src = root / f"in_{stretch}"
        src.mkdir()
        for c in CASES:
            if c.stretch == stretch:
                c.write(src)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # the multi-frame notes
            code = main(
                ["embed", str(src), "--out", str(root / "out"), *MODEL] + ["--stretch"] * stretch
            )
        assert code == 0
        out.update(
            {c.name: root / "out" / f"{c.name}.safetensors" for c in CASES if c.stretch == stretch}
        )
    return out


def test_cli_embed_reads_every_format(embedded):
    for c in CASES:
        emb = load_embedding(embedded[c.name])
        assert emb.image_sha256 == rgb_sha256(reference(c)), c.name
        assert emb.original_size == reference(c).shape[:2], c.name


def test_cli_embed_and_segment_refuse_what_the_rule_cannot_place(tmp_path, capsys):
    for name, suffix, data, _ in refused():
        (tmp_path / f"{name}{suffix}").write_bytes(data)
    code = main(["embed", str(tmp_path), "--out", str(tmp_path / "out"), *MODEL])
    err = capsys.readouterr().err
    assert code == 1
    for name, suffix, _, reason in refused():
        line = next(ln for ln in err.splitlines() if f"{name}{suffix}" in ln)
        assert reason in line, line
    path = tmp_path / "float_wide_tiff.tif"
    code = main(["segment", str(path), "--point", "5,5", "--out", str(tmp_path / "s"), *MODEL])
    err = capsys.readouterr().err
    assert code == 2 and "--stretch" in err and "[0, 1]" in err
    # with the stretch it is a picture
    code = main(
        ["segment", str(path), "--point", "5,5", "--stretch", "--out", str(tmp_path / "s"), *MODEL]
    )
    assert code == 0, capsys.readouterr().err


@pytest.mark.parametrize(
    "name", ["rgb16_tiff", "grey16_exif6_png", "cmyk_jpeg", "rgb16_dim_png_stretch"]
)
def test_cli_segment_reads_like_embed(name, embedded, predictor, tmp_path, capsys):
    # `segment --embedding` checks the decoded picture's hash against the one `embed` recorded;
    # the masks must then be the predictor's on the expected picture.
    c = BY_NAME[name]
    path = c.write(tmp_path)
    stretch = ["--stretch"] * c.stretch
    argv = ["segment", str(path), "--point", "40,30", "--out", str(tmp_path / "o"), *MODEL]
    code = main([*argv, "--embedding", str(embedded[name]), *stretch])
    assert code == 0, capsys.readouterr().err
    got = np.array(Image.open(tmp_path / "o" / f"{path.stem}_mask_0.png")) > 0
    predictor.set_image(reference(c))
    masks, _, _ = predictor.predict(np.array([[40.0, 30.0]]), np.array([1]), multimask_output=False)
    np.testing.assert_array_equal(got, masks[0])
    if c.stretch:  # the same file without --stretch is another picture: the hash check says so
        code = main([*argv, "--embedding", str(embedded[name])])
        assert code == 2 and "different image" in capsys.readouterr().err


def test_cli_auto_reads_16bit_float_and_cmyk(tmp_path, sam1_shapes, capsys):

    names = ["rgba16_tiff", "float_unit_tiff", "cmyk_jpeg"]
    src = tmp_path / "in"
    src.mkdir()
    for n in names:
        BY_NAME[n].write(src)
    opts = ["--points-per-side", "3", "--pred-iou-thresh", "0.2", "--stability-score-thresh", "0.5"]
    code = main(["auto", str(src), "--out", str(tmp_path / "out"), "--quiet", *opts, *MODEL])
    assert code == 0, capsys.readouterr().err
    gen = SamAutomaticMaskGenerator(
        sam1_shapes, points_per_side=3, pred_iou_thresh=0.2, stability_score_thresh=0.5
    )
    for n in names:
        c = BY_NAME[n]
        doc = json.loads((tmp_path / "out" / f"{n}.json").read_text())
        expected = gen.generate(reference(c))
        assert len(doc["annotations"]) == len(expected) > 0, n
        for a, e in zip(doc["annotations"], expected):
            np.testing.assert_array_equal(coco_decode(a["segmentation"]), e["segmentation"])


SERVER_CASES = [
    "rgba8_png",
    "p_transparency_png",
    "cmyk_jpeg",
    "exif6_png",
    "grey16_png",
    "greyalpha16_png",
    "rgb16_tiff",
    "rgb16_be_tiff",
    "float_unit_tiff",
    "int32_tiff",
    "multipage_tiff",
    "animated_gif",
]


def test_web_upload_reads_every_format(sam1_shapes, predictor):

    refs: dict[bytes, dict[str, torch.Tensor]] = {}

    def features(picture: np.ndarray) -> dict[str, torch.Tensor]:
        key = picture.tobytes() + bytes(picture.shape)
        if key not in refs:
            predictor.set_image(picture)
            refs[key] = {k: v.clone() for k, v in features_of(predictor, "sam1").items()}
        return refs[key]

    for stretch, names in ((None, SERVER_CASES), (True, ["rgb16_dim_exif6_png_stretch"])):
        app = create_app(sam1_shapes, cache_bytes=256 * 2**20, stretch=stretch)
        with TestClient(app) as client:
            for n in names:
                c = BY_NAME[n]
                r = client.post("/api/images", content=c.data)
                assert r.status_code == 200, (n, r.text)
                h, w = reference(c).shape[:2]
                assert (r.json()["height"], r.json()["width"]) == (h, w), n
                entry = app.state.engine.get(r.json()["image_id"])
                for k, v in features(reference(c)).items():
                    torch.testing.assert_close(entry.features[k], v, msg=f"{n} {k}")
            if stretch is None:
                for name, _, data, reason in refused():
                    r = client.post("/api/images", content=data)
                    assert r.status_code == 400 and reason in r.json()["detail"], (name, r.text)


def test_finetune_datasets_read_every_format(tmp_path):

    for stretch in (False, True):
        root = tmp_path / f"data_{stretch}"
        (root / "images").mkdir(parents=True)
        (root / "masks").mkdir()
        for c in CASES:
            if c.stretch != stretch:
                continue
            c.write(root / "images")
            h, w = c.expected.shape[:2]
            mask = np.zeros((h, w), np.uint8)
            mask[h // 4 : h // 2, w // 4 : w // 2] = 1
            Image.fromarray(mask).save(root / "masks" / f"{c.name}.png")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            ds = FolderDataset(root, stretch=True if stretch else None)
            for c in CASES:
                if c.stretch == stretch:
                    np.testing.assert_array_equal(ds.load(c.name).image, reference(c), c.name)
    bad = tmp_path / "bad"
    (bad / "images").mkdir(parents=True)
    (bad / "masks").mkdir()
    name, suffix, data, reason = refused()[0]
    (bad / "images" / f"{name}{suffix}").write_bytes(data)
    Image.fromarray(np.ones((72, 96), np.uint8)).save(bad / "masks" / f"{name}.png")
    with pytest.raises(DataError, match=reason):
        FolderDataset(bad)


def test_quickstart_reads_16bit_files(tmp_path, predictor, capsys):
    spec = importlib.util.spec_from_file_location("quickstart", ROOT / "examples" / "quickstart.py")
    quickstart = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(quickstart)
    for name in ("grey16_png", "rgb16_tiff"):
        c = BY_NAME[name]
        path = c.write(tmp_path)
        argv = [str(path), "--point", "40,30", "--checkpoint", str(SHAPES / "sam1_shapes.pth")]
        assert quickstart.main([*argv, "--out", str(tmp_path / "out")]) == 0, capsys.readouterr()
        got = np.array(Image.open(tmp_path / "out" / f"{path.stem}_mask.png")) > 0
        predictor.set_image(c.expected)
        masks, scores, _ = predictor.predict(np.array([[40.0, 30.0]]), np.array([1]))
        np.testing.assert_array_equal(got, masks[int(np.argmax(scores))], name)
