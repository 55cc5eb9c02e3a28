"""The family seam (`samkit.build.registry`): one registry entry is all a family needs.

Two halves:

* A fake fourth family, "sam4" (SAM 1's architecture under another name, as MobileSAM or HQ-SAM
  reuse SAM's decoder, with its own model class, loader and predictor defined here), is added
  with `register` and nothing else; it then goes through the shared paths: CLI model naming and
  loading, Ray's model resolution, embedding files (`samkit embed`'s job, `ImageEmbedding.apply`),
  automatic masks (`mask_generator_for`, the AMG adapter), the web app's engine, and refusals by
  name where it has no piece (fine-tuning, ONNX export). Its numbers equal SAM 1's on the same
  weights, so the shared paths ran it, not a copy.
* A static count over src/samkit of the places that branch on the family (rule below) outside
  the registry: zero. And the registry's strings: every one lives in its slot's folder and
  resolves, and no module below a slot's layer asks for that slot (`.load("<slot>")`), so the
  resolution is always the downward import it replaces.
"""

from __future__ import annotations

import ast
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from samkit import SamAutomaticMaskGenerator, SamPredictor, build_sam
from samkit.amg.select import mask_generator_for
from samkit.build.registry import (
    FAMILY_NAMES,
    SLOT_FOLDERS,
    Family,
    families,
    family_of,
    register,
    resolve,
    spec_family,
    state_dict_family,
    unregister,
)
from samkit.cli.common import CliError, families_with, load_model, model_family
from samkit.distributed.models import resolve_model
from samkit.io.embeddings import features_of, load_embedding, rgb_sha256, save_embedding
from samkit.io.provenance import of_model
from samkit.jobs import EmbedJob, make_predictor
from samkit.modeling.sam import Sam
from samkit.train.families import family_ops
from tests.families import tiny_sam_config
from tests.test_import_layers import LAYERS, PKG, layer_of

# ----------------------------------------------------------------------- the fake fourth family


class Sam4(Sam):
    """The fake family's model: SAM 1's modules, its own family name."""

    family = "sam4"


class Sam4Predictor(SamPredictor):
    """The fake family's predictor: SAM 1's surface (features, `decode_low_res`, `predict`)."""


def _sam1_twin(seed: int = 0) -> Sam:
    torch.manual_seed(seed)
    return build_sam(tiny_sam_config())


def load_sam4(
    spec: Any,
    checkpoint: Any = None,
    random_weights: bool = False,
    device: Any = None,
    dtype: Any = None,
) -> Sam4:
    """The fake family's registry loader: a seeded tiny model (no weights files)."""
    base = _sam1_twin()
    return Sam4(base.image_encoder, base.prompt_encoder, base.mask_decoder).to(device or "cpu")


SAM4 = Family(
    name="sam4",
    display="SAM 4",
    checkpoint_prefixes=("sam4_encoder.",),
    builder_hint="load_sam4 (a test family)",
    model=f"{__name__}:Sam4",
    loader=f"{__name__}:load_sam4",
    predictor=f"{__name__}:Sam4Predictor",
    amg_generator="samkit.amg.sam:SamAutomaticMaskGenerator",
    names=("sam4",),
    default_model="sam4",
)


@pytest.fixture
def sam4() -> Any:
    register(SAM4)
    yield SAM4
    unregister("sam4")


@pytest.fixture
def twins() -> tuple[Sam, Sam4]:
    """A SAM 1 model and a SAM 4 model sharing the same modules (same weights)."""
    base = _sam1_twin()
    return base.eval(), Sam4(base.image_encoder, base.prompt_encoder, base.mask_decoder).eval()


def _image(h: int = 48, w: int = 64) -> np.ndarray:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
    img[10:30, 20:45] = (200, 180, 40)
    return img


def test_the_registry_names_loads_and_refuses_the_new_family(sam4, tmp_path):
    assert FAMILY_NAMES["sam4"] == "SAM 4" and "sam4" in families_with("predictor")
    assert spec_family(" SAM4 ") == model_family("sam4") == "sam4"
    assert state_dict_family(["sam4_encoder.a", "sam4_encoder.b", "mask_decoder.x"]) == "sam4"

    lm = load_model("sam4", random_weights=True, families=families_with("predictor"))
    assert (lm.family, lm.name, lm.img_size()) == ("sam4", "sam4", 64)
    predictor = make_predictor(lm.model, lm.family)  # what `samkit segment` / `embed` use
    assert isinstance(lm.model, Sam4) and isinstance(predictor, Sam4Predictor)
    assert family_of(lm.model) is sam4 and family_of(predictor) is sam4
    run = resolve_model("sam4", random_weights=True)  # the Ray driver's model
    assert run.family == "sam4" and isinstance(run.model, Sam4)
    assert resolve_model(lm.model).family == "sam4"  # a built model says its family

    # the pieces it lacks are refused by name
    with pytest.raises(CliError, match="not SAM 4"):
        load_model("sam4", random_weights=True)  # the default: the whole image toolkit
    with pytest.raises(ValueError, match="SAM 4 models have no fine-tuning"):
        family_ops(lm.model)
    with pytest.raises(ValueError, match=r"use_m2m is a SAM 2\b.* setting; this is a SAM 4 model"):
        mask_generator_for(lm.model, use_m2m=True)
    unregister("sam4")
    with pytest.raises(ValueError, match="unknown model family 'sam4'"):
        family_of(lm.model)


def test_embedding_files_carry_the_new_family(sam4, twins, tmp_path):
    base, model = twins
    image = _image()
    path = EmbedJob(tmp_path, "sam4", "sam4", model.image_size).run(
        Sam4Predictor(model), image, "photo.png"
    )
    emb = load_embedding(path)
    assert emb.family == emb.provenance.family == "sam4"
    assert emb.provenance == of_model(model) and emb.image_sha256 == rgb_sha256(image)

    fresh = make_predictor(model, "sam4")
    emb.apply(fresh)
    reference = SamPredictor(base)  # the same weights as SAM 1
    reference.set_image(image)
    pts, labels = np.array([[30.0, 20.0]]), np.array([1])
    got = fresh.predict(point_coords=pts, point_labels=labels)
    want = reference.predict(point_coords=pts, point_labels=labels)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    assert torch.equal(features_of(fresh, "sam4")["image_embedding"], reference.features)

    with pytest.raises(
        ValueError, match=r"is a SAM 4 embedding \(sam4\), but the predictor is SAM 1"
    ):
        emb.apply(SamPredictor(base))
    other = tmp_path / "sam1.safetensors"
    save_embedding(
        other,
        features_of(reference),
        variant="tiny",
        family="sam1",
        original_size=image.shape[:2],
        input_size=reference.input_size,
        img_size=64,
        provenance=of_model(base),
    )
    with pytest.raises(ValueError, match=r"is a SAM 1 embedding .* but the predictor is SAM 4"):
        load_embedding(other).apply(fresh)


def test_automatic_masks_and_the_web_engine_run_the_new_family(sam4, twins):
    pytest.importorskip("pydantic")
    from samkit.server.engine import Engine

    base, model = twins
    image = _image()
    settings = {"points_per_side": 4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}
    gen = mask_generator_for(model, output_mode="coco_rle", **settings)
    assert type(gen) is SamAutomaticMaskGenerator and isinstance(gen.predictor, Sam4Predictor)
    got = gen.generate(image)
    want = SamAutomaticMaskGenerator(base, output_mode="coco_rle", **settings).generate(image)
    assert len(got) == len(want) > 0
    for g, w in zip(got, want):
        assert g["segmentation"] == w["segmentation"]
        assert g["predicted_iou"] == w["predicted_iou"]

    engine = Engine(model, cache_bytes=64 * 2**20, max_upload_bytes=2**20, threads=1)
    try:
        assert engine.family == "sam4"
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="PNG")
        _, future = engine.submit_image(buf.getvalue())
        entry, _ = future.result(timeout=120)
        out = engine.predict(entry, [(30.0, 20.0)], [1], None, True)
        reference = SamPredictor(base)
        reference.set_image(image)
        _, scores, _ = reference.predict(point_coords=np.array([[30.0, 20.0]]), point_labels=[1])
        assert [m["score"] for m in out["masks"]] == pytest.approx(scores.tolist(), abs=0)
    finally:
        engine.close()


# ------------------------------------------------------------------- the registry's own rules


@pytest.mark.parametrize("family", families(), ids=lambda f: f.name)
def test_every_registered_piece_lives_in_its_slot_folder_and_resolves(family):
    for slot, folders in SLOT_FOLDERS.items():
        ref = getattr(family, slot)
        if ref is None:
            continue
        module = ref.partition(":")[0]
        assert module.split(".")[1] in folders, f"{family.name}.{slot} = {ref}"
        assert resolve(ref) is not None
    assert getattr(resolve(family.model), "family", None) == family.name  # the model says it


def _load_calls(path: Path) -> set[str]:
    """The slots a module asks the registry for: `<anything>.load("<slot>")`."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "load"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and node.args[0].value in SLOT_FOLDERS
        ):
            found.add(node.args[0].value)
    return found


def test_no_module_asks_for_a_piece_of_a_higher_layer():
    """Resolving a slot imports its module: only modules at or above that layer may do it."""
    slot_layer = {
        slot: max(next(i for i, layer in enumerate(LAYERS) if f in layer) for f in folders)
        for slot, folders in SLOT_FOLDERS.items()
    }
    bad = []
    for path in sorted(PKG.rglob("*.py")):
        module = ".".join(path.relative_to(PKG.parent).with_suffix("").parts)
        if module.endswith(".__init__"):
            module = module[: -len(".__init__")]
        if module.count(".") == 0 or module == "samkit.__main__":
            continue
        for slot in _load_calls(path):
            if layer_of(module) < slot_layer[slot]:
                bad.append(f"{module} asks for {slot!r} (a layer-{slot_layer[slot]} piece)")
    assert not bad, bad


# --------------------------------------------------------------- no family branches elsewhere

_IDS = {"sam1", "sam2", "sam3"}
# classes whose isinstance tells one family from another (not Sam2Video: image-only vs video
# SAM 2 is a property of one family's model)
_FAMILY_CLASSES = {
    "Sam",
    "Sam2",
    "Sam3Image",
    "SamPredictor",
    "Sam2ImagePredictor",
    "Sam3InteractivePredictor",
    "Sam3ClickPredictor",
    "Sam3TrackerHeads",
}
_SNIFFED = {"sam_mask_decoder", "dot_prod_scoring", "mask_decoder"}


def _names(node: ast.AST) -> set[str]:
    if isinstance(node, ast.Name):
        return {node.id}
    if isinstance(node, ast.Attribute):
        return {node.attr}
    if isinstance(node, (ast.Tuple, ast.List)):
        return set().union(*(_names(e) for e in node.elts)) if node.elts else set()
    return set()


def _is_id(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and node.value in _IDS


def _guarded(tree: ast.AST) -> set[int]:
    """isinstance calls that only guard an input (`if not isinstance(x, C) ...: raise ...`)."""
    out = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.If)
            and not node.orelse
            and all(isinstance(s, ast.Raise) for s in node.body)
        ):
            for sub in ast.walk(node.test):
                if isinstance(sub, ast.UnaryOp) and isinstance(sub.op, ast.Not):
                    out.add(id(sub.operand))
    return out


def family_branches(path: Path) -> list[tuple[int, str]]:
    """The family branches of a module, as (line, kind).

    The rule: a comparison with a family name (`family == "sam2"`, `"sam3" in fams`), a
    `hasattr(model, "sam_mask_decoder")`-style sniff, an `isinstance` against a family's model
    or predictor class that is not a guard raising on the wrong input, and a table or list
    that spells out several families (`{"sam1": ..., "sam2": ...}`, `("sam1", "sam2")`).
    """
    tree = ast.parse(path.read_text(encoding="utf-8"))
    guards = _guarded(tree)
    out = []
    for node in ast.walk(tree):
        kind = None
        if isinstance(node, ast.Compare) and any(_is_id(x) for x in [node.left, *node.comparators]):
            kind = "compare"
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and len(node.args) == 2:
            arg = node.args[1]
            if (
                node.func.id == "hasattr"
                and isinstance(arg, ast.Constant)
                and arg.value in _SNIFFED
            ):
                kind = "hasattr"
            elif node.func.id == "isinstance" and _names(arg) & _FAMILY_CLASSES:
                kind = None if id(node) in guards else "isinstance"
        elif isinstance(node, ast.Dict) and sum(_is_id(k) for k in node.keys if k) >= 2:
            kind = "table"
        elif isinstance(node, (ast.Tuple, ast.List, ast.Set)) and sum(map(_is_id, node.elts)) >= 2:
            kind = "list"
        if kind:
            out.append((node.lineno, kind))
    return sorted(out)


def count_family_branches(root: Path = PKG) -> dict[str, list[tuple[int, str]]]:
    """`family_branches` of every module under `root` except the registry itself and
    `configs/` (below the registry's layer: each family's variant table and its own config
    parser; the registry reads variant families from there)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel == "build/registry.py" or rel.startswith("configs/"):
            continue
        found = family_branches(path)
        if found:
            out[rel] = found
    return out


def test_nothing_outside_the_registry_branches_on_the_family():
    found = count_family_branches()
    assert not found, f"{sum(map(len, found.values()))} family branches: {found}"


def test_the_branch_count_sees_a_branch(tmp_path):
    (tmp_path / "x.py").write_text(
        "def f(m, family):\n"
        "    if family == 'sam2':\n        return 1\n"
        "    if hasattr(m, 'sam_mask_decoder'):\n        return 2\n"
        "    if not isinstance(m, Sam2):\n        raise ValueError('guard: not counted')\n"
        "    return isinstance(m, (Sam, Sam2)), {'sam1': 1, 'sam2': 2}\n"
    )
    assert [k for _, k in family_branches(tmp_path / "x.py")] == [
        "compare",
        "hasattr",
        "isinstance",
        "table",
    ]
