"""Build the SAM 3 image model, optionally from an official `sam3.pt` checkpoint.

`build_sam3_image_model` has the official name and keyword arguments
(`sam3.model_builder.build_sam3_image_model`, `sam3` 0.1.4) plus samkit's `dtype` and `config`.
The checkpoint layout is the official one: `{"model": {"detector.<key>": ..., "tracker.<key>":
...}}`, read with `torch.load(weights_only=True)` (or a `.safetensors` file with the same keys).
`detector.<key>` fills `Sam3Image.<key>`; `tracker.<key>` fills the interactive heads
`Sam3Image.tracker.<key>` (the tracker's video-memory tensors are not used by the image model and
are skipped). Loading is strict otherwise: any missing, unexpected or misshaped tensor raises one
ValueError listing them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import torch

from samkit.build.family import FAMILY_NAMES, state_dict_family
from samkit.build.registry import get_family
from samkit.checkpoint import load_state_dict_into, read_state_dict
from samkit.configs.sam3 import SAM3_OFFICIAL, Sam3Config, sam3_config_from_state_dict
from samkit.io.provenance import with_article
from samkit.layers.sine_position import PositionEmbeddingSine
from samkit.modeling.sam3.backbone import SAM3VLBackbone
from samkit.modeling.sam3.decoder import TransformerDecoder
from samkit.modeling.sam3.encoder import TransformerEncoderFusion
from samkit.modeling.sam3.geometry_encoder import SequenceGeometryEncoder
from samkit.modeling.sam3.interactive import Sam3TrackerHeads, build_tracker_heads
from samkit.modeling.sam3.neck import Sam3DualViTDetNeck
from samkit.modeling.sam3.sam3_image import Sam3Image, Sam3Transformer
from samkit.modeling.sam3.scoring import DotProductScoring
from samkit.modeling.sam3.segmentation_head import UniversalSegmentationHead
from samkit.modeling.sam3.text_encoder import VETextEncoder
from samkit.modeling.sam3.vit import Sam3ViT

_BUNDLED_VOCAB = Path(__file__).resolve().parents[1] / "text" / "bpe_simple_vocab_16e6.txt.gz"


def sam3_vit_from_config(cfg: Sam3Config) -> Sam3ViT:
    """The randomly initialised ViT trunk of SAM 3's detector with the sizes of `cfg`."""
    return Sam3ViT(
        img_size=cfg.img_size,
        patch_size=cfg.patch_size,
        embed_dim=cfg.vit_embed_dim,
        depth=cfg.vit_depth,
        num_heads=cfg.vit_num_heads,
        mlp_ratio=cfg.vit_mlp_ratio,
        window_size=cfg.vit_window_size,
        global_att_blocks=cfg.vit_global_att_blocks,
        pretrain_img_size=cfg.pretrain_img_size,
    )


def sam3_from_config(cfg: Sam3Config, device: torch.device | str | None = None) -> Sam3Image:
    """A randomly initialised `Sam3Image` with the sizes of `cfg` (float32, on `device`)."""
    with torch.device(device or "cpu"):
        trunk = sam3_vit_from_config(cfg)
        neck = Sam3DualViTDetNeck(
            trunk,
            PositionEmbeddingSine(cfg.d_model),
            d_model=cfg.d_model,
            scale_factors=(4.0, 2.0, 1.0, 0.5),
            add_sam2_neck=cfg.inst_interactivity,
        )
        text = VETextEncoder(
            d_model=cfg.d_model,
            width=cfg.text_width,
            heads=cfg.text_heads,
            layers=cfg.text_layers,
            context_length=cfg.context_length,
            vocab_size=cfg.vocab_size,
        )
        d = cfg.d_model
        tracker = None
        if cfg.inst_interactivity:
            tracker = build_tracker_heads(
                d_model=d, image_size=cfg.img_size, backbone_stride=cfg.patch_size
            )
        model = Sam3Image(
            backbone=SAM3VLBackbone(neck, text, scalp=1),
            geometry_encoder=SequenceGeometryEncoder(
                d, cfg.num_heads, cfg.geometry_ffn, cfg.geometry_layers
            ),
            transformer=Sam3Transformer(
                TransformerEncoderFusion(d, cfg.num_heads, cfg.encoder_ffn, cfg.encoder_layers),
                TransformerDecoder(
                    d, cfg.num_heads, cfg.decoder_ffn, cfg.decoder_layers, cfg.num_queries
                ),
            ),
            segmentation_head=UniversalSegmentationHead(d, cfg.num_heads)
            if cfg.segmentation
            else None,
            dot_prod_scoring=DotProductScoring(d, d, cfg.scoring_hidden),
            tracker=tracker,
        )
    return model


def _check_family(state_dict: dict[str, torch.Tensor], source: str) -> None:
    """Refuse SAM 1 / SAM 2 (and anything else) by name before looking at the keys in detail."""
    if any(k.startswith("detector.") for k in state_dict):
        return
    fam = state_dict_family(state_dict)
    if fam is not None:
        raise ValueError(
            f"{source} is {with_article(FAMILY_NAMES[fam])} checkpoint, not a SAM 3 one: load it with "
            f"{get_family(fam).builder_hint}"
        )
    raise ValueError(
        f"{source} is not a SAM 3 checkpoint: expected the official sam3.pt layout "
        "({'model': {'detector.*': ..., 'tracker.*': ...}}), found keys such as "
        f"{', '.join(list(state_dict)[:3]) or '(none)'}"
    )


def _unused_tracker_key(enabled: bool) -> Callable[[str], bool]:
    """Which `tracker.<key>` entries the image model does not load (all of them when disabled)."""
    if not enabled:
        return lambda key: True
    return lambda key: not Sam3TrackerHeads.is_used_tracker_key(key)


def _check_device(device: str | torch.device | None) -> torch.device:
    """The target device; a ValueError for a malformed name or one this torch cannot use."""
    try:
        dev = torch.device(device if device is not None else "cpu")
    except (RuntimeError, TypeError) as e:
        raise ValueError(
            f"device {device!r} is not a torch device name ('cpu', 'cuda', ...)"
        ) from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: CUDA is not available in this torch; use 'cpu'")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device!r}: MPS is not available in this torch; use 'cpu'")
    return dev


def _check_bpe(bpe_path: str | os.PathLike | None) -> None:
    if bpe_path is None:
        return
    p = Path(bpe_path)
    if not p.is_file():
        raise ValueError(
            f"bpe_path {p}: no such file (samkit ships the CLIP vocabulary; pass None)"
        )
    if (
        hashlib.sha256(p.read_bytes()).digest()
        != hashlib.sha256(_BUNDLED_VOCAB.read_bytes()).digest()
    ):
        raise ValueError(
            f"bpe_path {p} differs from the CLIP vocabulary samkit ships "
            "(bpe_simple_vocab_16e6.txt.gz); SAM 3 only works with that one: pass bpe_path=None"
        )


def build_sam3_image_model(
    bpe_path: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    eval_mode: bool = True,
    checkpoint_path: str | os.PathLike | None = None,
    load_from_HF: bool = False,
    enable_segmentation: bool = True,
    enable_inst_interactivity: bool | None = None,
    compile: bool = False,
    *,
    dtype: torch.dtype | None = None,
    config: Sam3Config | None = None,
    checkpoint_state: dict[str, torch.Tensor] | None = None,
) -> Sam3Image:
    """Build the SAM 3 image model (official signature, see the module doc).

    Args:
        bpe_path: None (samkit ships the CLIP vocabulary), or a path to the same file.
        device: where to put the model (default CPU; "cuda" / "mps" where torch has them).
        eval_mode: must be True (training SAM 3 is not supported).
        checkpoint_path: official `sam3.pt` (or `.safetensors` with the same keys); None builds
            random weights with `config` (default: the official sizes).
        load_from_HF: True without `checkpoint_path` would download from the Hugging Face Hub,
            which samkit does not do: download `sam3.pt` yourself and pass its path.
        enable_segmentation: build the segmentation head (masks); False skips its tensors.
        enable_inst_interactivity: build the interactive heads (`predict_inst`); None (the
            default) = when the checkpoint has `tracker.*` tensors (without a checkpoint: the
            config's `inst_interactivity`).
        compile: must be False (samkit runs eagerly).
        dtype: float32 (default) or `torch.bfloat16` / `torch.float16` for the whole model.
        config: the architecture; by default read off the checkpoint's tensor shapes
            (`samkit.configs.sam3.sam3_config_from_state_dict`).
        checkpoint_state: the tensors of `checkpoint_path` already read (`read_state_dict`),
            so that a caller that needs them too reads the file once (the video predictor's
            tracker); `checkpoint_path` then only names the file in messages.

    Returns:
        A `Sam3Image` in eval mode.

    Raises:
        FileNotFoundError: no such checkpoint file.
        ValueError: a SAM 1 / SAM 2 or other non-SAM 3 checkpoint (named as such), tensors that
            do not fit, or an option that cannot apply (named, with what to do instead).
    """
    if not eval_mode:
        raise ValueError(
            "eval_mode=False: training SAM 3 is not supported; samkit builds it for inference"
        )
    if compile:
        raise ValueError(
            "compile=True is not supported: samkit runs SAM 3 eagerly (pass compile=False)"
        )
    if load_from_HF and checkpoint_path is None:
        raise ValueError(
            "load_from_HF=True: samkit downloads nothing at run time; download sam3.pt from "
            "https://huggingface.co/facebook/sam3 and pass checkpoint_path="
        )
    if dtype is not None and dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise ValueError(
            f"dtype must be torch.float32, torch.bfloat16 or torch.float16, got {dtype}"
        )
    _check_bpe(bpe_path)
    device = _check_device(device)

    state_dict = None
    if checkpoint_state is not None and checkpoint_path is None:
        raise ValueError("checkpoint_state needs the checkpoint_path it was read from")
    if checkpoint_path is not None:
        state_dict = (
            read_state_dict(checkpoint_path) if checkpoint_state is None else checkpoint_state
        )
        _check_family(state_dict, str(checkpoint_path))
        if config is None:
            config = sam3_config_from_state_dict(state_dict)
    cfg = config or SAM3_OFFICIAL
    if state_dict is None:
        has_tracker = cfg.inst_interactivity
    else:
        has_tracker = any(k.startswith("tracker.") for k in state_dict)
    if enable_inst_interactivity is None:
        enable_inst_interactivity = has_tracker
    if enable_inst_interactivity and not has_tracker:
        raise ValueError(
            f"enable_inst_interactivity=True but {checkpoint_path or 'the config'} has no "
            "interactive heads (tracker.* tensors / inst_interactivity=False)"
        )
    cfg = dataclasses.replace(
        cfg, segmentation=enable_segmentation, inst_interactivity=enable_inst_interactivity
    )
    model = sam3_from_config(cfg, device)
    if state_dict is not None:
        mapped: dict[str, torch.Tensor] = {}
        ignore: list[str] = []
        rope_tables: dict[str, torch.Tensor] = {}  # checked by the ViT's own loader below
        unused_tracker_key = _unused_tracker_key(enable_inst_interactivity)
        for k, v in state_dict.items():
            if k.startswith("detector.") and k.endswith(".attn.freqs_cis"):
                rope_tables[k[len("detector.") :]] = v
                continue
            if k.startswith("detector."):
                key = k[len("detector.") :]
                skipped = ("segmentation_head.",) if not enable_segmentation else ()
                if not enable_inst_interactivity:
                    skipped += ("backbone.vision_backbone.sam2_convs.",)
                if key.startswith(skipped):
                    ignore.append(key)
                mapped[key] = v
            elif k.startswith("tracker."):
                if unused_tracker_key(k[len("tracker.") :]):
                    ignore.append(k)
                mapped[k] = v
            else:
                mapped[k] = v  # reported as unexpected
        load_state_dict_into(
            model, mapped, source=str(checkpoint_path), ignore_prefixes=tuple(ignore)
        )
        if rope_tables:
            # the ViT attention's _load_from_state_dict compares each table with its own
            # (ValueError when they differ); nothing else is loaded here
            model.load_state_dict(rope_tables, strict=False)
    if dtype is not None and dtype != torch.float32:
        model = model.to(dtype)
    return model.eval()
