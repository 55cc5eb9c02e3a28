"""A `--mask` file that is not an image is a ValueError naming the prompt, not a PIL traceback."""

from __future__ import annotations

import pytest

from samkit.video.track_prompts import parse_mask, resolve_prompts


@pytest.mark.parametrize("content", [b"not an image at all\n", b"\x89PNG\r\n\x1a\ntruncated"])
def test_mask_file_that_is_not_an_image(tmp_path, content):
    f = tmp_path / "mask.png"
    f.write_bytes(content)
    with pytest.raises(ValueError, match=r"--mask 0:1:.*mask\.png: cannot read .*mask\.png"):
        resolve_prompts([parse_mask(f"0:1:{f}")], 3, 32, 48)
