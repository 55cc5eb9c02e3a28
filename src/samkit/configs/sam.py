"""SAM 1 variants as frozen dataclasses with the official hyper-parameters, and the registry's
look-ups (`get_variant`, `variant_names`) over every family.

The types shared with SAM 2 and the registry itself live in `samkit.configs.common` (re-exported
here); the SAM 2 variants in `samkit.configs.sam2`, which never imports this module.

Only the builders (`samkit.build.sam`) read these dataclasses; module constructors take
explicit arguments.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from samkit.configs.common import (
    VARIANTS,
    Family,
    MaskDecoderConfig,
    PromptEncoderConfig,
    TwoWayTransformerConfig,
    Variant,
    register,
)


@dataclass(frozen=True)
class ViTConfig:
    """SAM 1 image encoder (`ImageEncoderViT`)."""

    img_size: int = 1024
    patch_size: int = 16
    in_chans: int = 3
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    out_chans: int = 256
    qkv_bias: bool = True
    use_abs_pos: bool = True
    use_rel_pos: bool = True
    window_size: int = 14
    global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11)
    norm_eps: float = 1e-6


@dataclass(frozen=True)
class SamConfig:
    """A complete SAM 1 model."""

    image_encoder: ViTConfig = field(default_factory=ViTConfig)
    prompt_encoder: PromptEncoderConfig = field(default_factory=PromptEncoderConfig)
    mask_decoder: MaskDecoderConfig = field(default_factory=MaskDecoderConfig)
    pixel_mean: tuple[float, float, float] = (123.675, 116.28, 103.53)
    pixel_std: tuple[float, float, float] = (58.395, 57.12, 57.375)
    mask_threshold: float = 0.0
    family: Family = "sam1"

    @property
    def img_size(self) -> int:
        return self.image_encoder.img_size


def sam1_config(
    embed_dim: int, depth: int, num_heads: int, global_attn_indexes: tuple[int, ...]
) -> SamConfig:
    """The official 1024 px SAM 1 layout with the given ViT size."""
    return SamConfig(
        image_encoder=ViTConfig(
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            global_attn_indexes=global_attn_indexes,
        )
    )


_SAM1_URL = "https://dl.fbaipublicfiles.com/segment_anything/"

register(
    Variant(
        "vit_b",
        "sam1",
        sam1_config(768, 12, 12, (2, 5, 8, 11)),
        _SAM1_URL + "sam_vit_b_01ec64.pth",
        "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
    ),
    "sam_vit_b",
)
register(
    Variant(
        "vit_l",
        "sam1",
        sam1_config(1024, 24, 16, (5, 11, 17, 23)),
        _SAM1_URL + "sam_vit_l_0b3195.pth",
        "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
    ),
    "sam_vit_l",
)
register(
    Variant(
        "vit_h",
        "sam1",
        sam1_config(1280, 32, 16, (7, 15, 23, 31)),
        _SAM1_URL + "sam_vit_h_4b8939.pth",
        "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
    ),
    "sam_vit_h",
    "default",
)


def get_variant(name: str) -> Variant:
    """Look a variant up by name, ignoring case (`VIT_B` is `vit_b`).

    Raises:
        ValueError: an unknown name; the message suggests the closest names ("did you mean")
            and lists the canonical variants.
    """
    _ensure_sam2_registered()
    if name in VARIANTS:
        return VARIANTS[name]
    folded = {k.lower(): v for k, v in VARIANTS.items()}
    key = str(name).strip().lower()
    if key in folded:
        return folded[key]
    import difflib

    close = difflib.get_close_matches(key, list(folded), n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    known = ", ".join(variant_names())
    raise ValueError(f"unknown samkit variant {name!r}; {hint}known variants: {known}")


def variant_names(family: Family | None = None) -> list[str]:
    """Canonical variant names (no aliases), optionally of one family."""
    _ensure_sam2_registered()
    seen = {v.name: v for v in VARIANTS.values()}
    # SAM 1, then SAM 2, then the other families by name, whichever module was imported first (a
    # stable sort keeps each family's own order).
    ordered = sorted(
        seen.values(), key=lambda v: (v.family != "sam1", v.family != "sam2", v.family)
    )
    return [v.name for v in ordered if family is None or v.family == family]


def _ensure_sam2_registered() -> None:
    # SAM 2 variants live in configs_sam2 (which imports configs_common, never this module);
    # importing it registers them.
    from samkit.configs import edgetam as configs_edgetam  # noqa: F401
    from samkit.configs import efficienttam as configs_efficienttam  # noqa: F401
    from samkit.configs import sam2 as configs_sam2  # noqa: F401


def sam_config_from_official(cfg: dict[str, Any]) -> SamConfig:
    """Build a `SamConfig` from the official constructor arguments (fixture `config.json` format)."""
    try:
        enc, pe, dec = cfg["image_encoder"], cfg["prompt_encoder"], cfg["mask_decoder"]
        tr = dec["transformer"]
        norm = str(enc.get("norm_layer", "LayerNorm(eps=1e-6)"))
        eps = float(norm.split("eps=")[1].rstrip(")")) if "eps=" in norm else 1e-6
        for name, act in (
            ("image_encoder.act_layer", enc.get("act_layer", "GELU")),
            ("mask_decoder.activation", dec.get("activation", "GELU")),
            ("transformer.activation", tr.get("activation", "ReLU")),
        ):
            expected = "ReLU" if name.startswith("transformer") else "GELU"
            if act != expected:
                raise ValueError(f"{name}={act!r} is not supported (only {expected})")
        return SamConfig(
            image_encoder=ViTConfig(
                img_size=int(enc["img_size"]),
                patch_size=int(enc["patch_size"]),
                in_chans=int(enc.get("in_chans", 3)),
                embed_dim=int(enc["embed_dim"]),
                depth=int(enc["depth"]),
                num_heads=int(enc["num_heads"]),
                mlp_ratio=float(enc["mlp_ratio"]),
                out_chans=int(enc["out_chans"]),
                qkv_bias=bool(enc.get("qkv_bias", True)),
                use_abs_pos=bool(enc.get("use_abs_pos", True)),
                use_rel_pos=bool(enc.get("use_rel_pos", False)),
                window_size=int(enc.get("window_size", 0)),
                global_attn_indexes=tuple(int(i) for i in enc.get("global_attn_indexes", ())),
                norm_eps=eps,
            ),
            prompt_encoder=PromptEncoderConfig(
                embed_dim=int(pe["embed_dim"]),
                image_embedding_size=tuple(int(s) for s in pe["image_embedding_size"]),
                input_image_size=tuple(int(s) for s in pe["input_image_size"]),
                mask_in_chans=int(pe["mask_in_chans"]),
            ),
            mask_decoder=MaskDecoderConfig(
                transformer_dim=int(dec["transformer_dim"]),
                transformer=TwoWayTransformerConfig(
                    depth=int(tr["depth"]),
                    embedding_dim=int(tr["embedding_dim"]),
                    num_heads=int(tr["num_heads"]),
                    mlp_dim=int(tr["mlp_dim"]),
                    attention_downsample_rate=int(tr.get("attention_downsample_rate", 2)),
                ),
                num_multimask_outputs=int(dec.get("num_multimask_outputs", 3)),
                iou_head_depth=int(dec.get("iou_head_depth", 3)),
                iou_head_hidden_dim=int(dec.get("iou_head_hidden_dim", 256)),
            ),
            pixel_mean=tuple(float(x) for x in cfg.get("pixel_mean", SamConfig.pixel_mean)),
            pixel_std=tuple(float(x) for x in cfg.get("pixel_std", SamConfig.pixel_std)),
            mask_threshold=float(cfg.get("mask_threshold", 0.0)),
        )
    except (KeyError, TypeError, IndexError) as e:
        raise ValueError(f"not a SAM 1 constructor config: missing or malformed field {e}") from e


def official_yaml_to_variant(variant_or_config: Any, family: Family, example: str) -> Any:
    """The variant name of an official hydra config name such as
    `configs/sam2.1/sam2.1_hiera_t.yaml` (what official `build_sam2` calls take); anything that
    is not a `.yaml` / `.yml` name is returned unchanged. `example`: a variant of `family`,
    for the message.

    Raises:
        ValueError: a YAML name that is no registered variant, or a YAML file that exists (samkit
            reads no YAML, so a local file may differ from the official config of its name).
    """
    if not isinstance(variant_or_config, (str, os.PathLike)):
        return variant_or_config
    path = Path(variant_or_config)
    if path.suffix.lower() not in (".yaml", ".yml"):
        return variant_or_config
    expected = f"pass a variant name (e.g. {example!r}) or a resolved config.json"
    try:
        name = get_variant(path.stem).name
    except ValueError:
        raise ValueError(
            f"{variant_or_config}: not an official config name (samkit reads no YAML); {expected}; "
            f"known variants: {', '.join(variant_names(family))}"
        ) from None
    if path.is_file():  # a local file may differ from the official config of its name
        raise ValueError(
            f"{path}: samkit reads no YAML configs; for the official config pass {name!r}, "
            "else a resolved config.json"
        )
    return name


def load_config_json(path: str | Path) -> dict[str, Any]:
    """Read a fixture-style `config.json`, raising ValueError for unreadable or non-JSON files."""
    p = Path(path)
    try:
        return json.loads(p.read_text())
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{p}: not a readable JSON config ({e})") from e


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-serialisable dict of a config dataclass."""
    return dataclasses.asdict(cfg)
