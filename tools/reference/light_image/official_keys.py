"""Record the state-dict layout (key, shape, dtype, in order) of the official full-size models.

usage (recording venv): python official_keys.py OUT_DIR
Builds every official MobileSAM / HQ-SAM builder's model (no checkpoint) and writes OUT_DIR/official_layouts.json: {variant: [[key, [shape...], dtype], ...]}.
The tests build samkit's variants on the meta device and compare: an official checkpoint then
loads strictly, key for key.
"""

from __future__ import annotations

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from refio import save_json


def layout(model: torch.nn.Module) -> list:
    return [
        [k, list(v.shape), str(v.dtype).replace("torch.", "")]
        for k, v in model.state_dict().items()
    ]


def main() -> None:
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    import mobile_sam
    import segment_anything_hq

    # TinyViT calls .item() in its constructor, so the two TinyViT models are built on the CPU
    # (10 M parameters); the ViT ones on the meta device
    res = {
        "mobile_sam": layout(mobile_sam.sam_model_registry["vit_t"]()),
        "sam_hq_vit_tiny": layout(segment_anything_hq.sam_model_registry["vit_tiny"]()),
    }
    with torch.device("meta"):
        for name in ("vit_b", "vit_l", "vit_h"):
            res["sam_hq_" + name] = layout(segment_anything_hq.sam_model_registry[name]())
    save_json(os.path.join(out, "official_layouts.json"), res)
    print({k: len(v) for k, v in res.items()})


if __name__ == "__main__":
    main()
