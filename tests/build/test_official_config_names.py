"""Official hydra config names (`configs/sam2.1/sam2.1_hiera_t.yaml`) as the model argument."""

from __future__ import annotations

import pytest

from samkit.build.sam2 import resolve_sam2_config
from samkit.configs.sam import get_variant


@pytest.mark.parametrize(
    ("name", "variant"),
    [
        ("configs/sam2.1/sam2.1_hiera_t.yaml", "sam2.1_hiera_t"),
        ("configs/sam2.1/sam2.1_hiera_b+.yaml", "sam2.1_hiera_b+"),
        ("configs/sam2/sam2_hiera_l.yaml", "sam2_hiera_l"),
        ("sam2_hiera_s.yaml", "sam2_hiera_s"),
    ],
)
def test_official_yaml_name_selects_the_variant(name, variant):
    cfg, resolved = resolve_sam2_config(name)
    assert resolved == get_variant(variant).name
    assert cfg == get_variant(variant).config


def test_unknown_yaml_name_is_a_value_error_listing_variants():
    with pytest.raises(ValueError, match=r"reads no YAML.*sam2\.1_hiera_t"):
        resolve_sam2_config("configs/custom/my_model.yaml")


def test_existing_yaml_file_is_refused_not_read(tmp_path):
    f = tmp_path / "configs" / "sam2.1" / "sam2.1_hiera_t.yaml"
    f.parent.mkdir(parents=True)
    f.write_text("model:\n  image_size: 512\n")
    with pytest.raises(ValueError, match=r"reads no YAML.*'sam2\.1_hiera_t'"):
        resolve_sam2_config(f)
