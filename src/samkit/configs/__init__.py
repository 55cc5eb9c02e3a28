"""Model configurations: one dataclass module per family (`sam`, `sam2`, `sam3`), read only by the builders."""

# MobileSAM / HQ-SAM variants (dataclasses only) join the variant registry with the package, so
# `get_variant("mobile_sam")` works however samkit.configs was reached.
from samkit.configs import light as _light  # noqa: F401
