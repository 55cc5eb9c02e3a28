"""The image-size limit and the stretch percentiles of `samkit.io.images`, importable without numpy.

The command line builds its `--max-pixels` and `--stretch` options from these names, so that
`samkit --help` and usage errors answer without importing numpy, PIL or torch. The decoder in
`samkit.io.images` applies them; this module only states the values and the one rule for a limit.
"""

from __future__ import annotations

import numbers
from typing import Any

# The default largest image, in pixels (width x height), that `decode_image` decodes: an
# 8000 x 8000 picture (192 MB as RGB uint8). Pillow's own decompression-bomb guard warns from
# 89,478,485 pixels and refuses from twice that; samkit checks its limit itself instead.
DEFAULT_MAX_PIXELS = 64_000_000
# The web app's default (`samkit serve --max-pixels`): uploads come from the network.
SERVER_DEFAULT_MAX_PIXELS = 40_000_000
# The percentiles `stretch=True` (CLI: --stretch) maps to 0..255.
PERCENTILE_STRETCH = (0.5, 99.5)


def check_max_pixels(value: Any, name: str = "max_pixels") -> int:
    """`value` as a pixel limit: a positive integer (Python or numpy; bools and floats refused).

    The one rule for every place that takes a limit (`decode_image(max_pixels=...)`, the CLI's
    `--max-pixels N`, the web app). There is no "no limit" value: pass a larger number.

    Raises:
        ValueError: not a positive integer (the message names `name`).
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(
            f"{name} must be a positive whole number of pixels (width x height), got {value!r:.60}"
        )
    return int(value)


def parse_max_pixels(text: str) -> int:
    """`--max-pixels` text -> a limit: digits, optionally grouped with `,` or `_`
    (`150000000`, `150,000,000`, `150_000_000`).

    Raises:
        ValueError: anything else, or zero.
    """
    digits = text.strip().replace(",", "").replace("_", "")
    if not digits.isdigit() or not digits.isascii():
        raise ValueError(
            f"{text!r}: give the largest image to decode as a positive number of pixels "
            "(width x height), e.g. 150000000 or 150,000,000"
        )
    return check_max_pixels(int(digits), "--max-pixels")
