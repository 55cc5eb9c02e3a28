"""samkit: Segment Anything (SAM 1, SAM 2, SAM 3 and light variants), correct, fast and friendly.

Public API (imported lazily, so `import samkit` does no work):
`build_sam`, `build_sam2`, `sam_model_registry`, `SamPredictor`, `Sam2ImagePredictor`,
`SamAutomaticMaskGenerator`, `Sam2AutomaticMaskGenerator`; SAM 2 video:
`build_sam2_video_predictor`, `Sam2VideoPredictor`; SAM 3: `build_sam3_image_model`,
`Sam3Processor`, `build_sam3_video_predictor`, `Sam3VideoPredictor`; MobileSAM and HQ-SAM: `build_mobile_sam`, `build_sam_hq`, `SamHQPredictor`;
EfficientTAM: `build_efficienttam`, `build_efficienttam_video_predictor`; EdgeTAM:
`build_edgetam`, `build_edgetam_video_predictor`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "build_sam": "samkit.build.sam",
    "sam_model_registry": "samkit.build.sam",
    "build_sam2": "samkit.build.sam2",
    "SamPredictor": "samkit.predict.sam",
    "Sam2ImagePredictor": "samkit.predict.sam2",
    "SamAutomaticMaskGenerator": "samkit.amg",
    "Sam2AutomaticMaskGenerator": "samkit.amg",
    "build_sam2_video_predictor": "samkit.video.build",
    "Sam2VideoPredictor": "samkit.video.predictor",
    "build_sam3_image_model": "samkit.build.sam3",
    "Sam3Processor": "samkit.predict.sam3",
    "build_mobile_sam": "samkit.build.light",
    "build_sam_hq": "samkit.build.light",
    "SamHQPredictor": "samkit.predict.sam_hq",
    "build_efficienttam": "samkit.build.efficienttam",
    "build_efficienttam_video_predictor": "samkit.video.efficienttam",
    "build_edgetam": "samkit.build.edgetam",
    "build_edgetam_video_predictor": "samkit.video.edgetam",
    "build_sam3_video_predictor": "samkit.video.sam3.build",
    "Sam3VideoPredictor": "samkit.video.sam3.predictor",
}

__all__ = [
    "Sam2AutomaticMaskGenerator",
    "Sam2ImagePredictor",
    "Sam2VideoPredictor",
    "Sam3Processor",
    "Sam3VideoPredictor",
    "SamAutomaticMaskGenerator",
    "SamHQPredictor",
    "SamPredictor",
    "build_edgetam",
    "build_edgetam_video_predictor",
    "build_efficienttam",
    "build_efficienttam_video_predictor",
    "build_mobile_sam",
    "build_sam",
    "build_sam2",
    "build_sam2_video_predictor",
    "build_sam3_image_model",
    "build_sam3_video_predictor",
    "build_sam_hq",
    "sam_model_registry",
]

if TYPE_CHECKING:  # pragma: no cover
    from samkit.amg import Sam2AutomaticMaskGenerator, SamAutomaticMaskGenerator
    from samkit.build.edgetam import build_edgetam
    from samkit.build.efficienttam import build_efficienttam
    from samkit.build.light import build_mobile_sam, build_sam_hq
    from samkit.build.sam import build_sam, sam_model_registry
    from samkit.build.sam2 import build_sam2
    from samkit.build.sam3 import build_sam3_image_model
    from samkit.predict.sam import SamPredictor
    from samkit.predict.sam2 import Sam2ImagePredictor
    from samkit.predict.sam3 import Sam3Processor
    from samkit.predict.sam_hq import SamHQPredictor
    from samkit.video.build import build_sam2_video_predictor
    from samkit.video.edgetam import build_edgetam_video_predictor
    from samkit.video.efficienttam import build_efficienttam_video_predictor
    from samkit.video.predictor import Sam2VideoPredictor
    from samkit.video.sam3.build import build_sam3_video_predictor
    from samkit.video.sam3.predictor import Sam3VideoPredictor


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'samkit' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
