"""The one prompt validation (samkit.predict.inputs): a user's clicks and box, as the web app's
image and video modes check them (the server maps these ValueErrors to HTTP 422)."""

from __future__ import annotations

import numpy as np
import pytest

from samkit.predict.inputs import check_click_prompt, click_label, validate_prompts


@pytest.mark.parametrize(
    ("points", "labels", "box", "frame", "words"),
    [
        ([[10.0, 10.0]], [1, 0], None, None, "one label per point"),
        ([[10.0, 10.0]], [], None, None, "one label per point"),
        ([], [], None, None, "no prompt"),
        ([], [1], None, None, "point_labels were given without point_coords"),
        ([[10.0, 10.0]], [2], None, None, "1 = foreground, 0 = background"),
        ([[10.0, 10.0]], [3], None, None, "1 = foreground, 0 = background"),
        ([], [], [30.0, 5.0, 10.0, 20.0], None, "x1 >= x0"),
        ([[float("nan"), 1.0]], [1], None, None, "NaN or infinite"),
        ([[69.0, 1.0]], [1], None, (64, 48), "point 0 (69.0, 1.0) is outside the 64x48 frame"),
        ([], [], [0.0, 0.0, 10.0, 49.0], (64, 48), "outside the 64x48 frame"),
    ],
)
def test_bad_clicks_are_refused_with_the_reason(points, labels, box, frame, words) -> None:
    with pytest.raises(ValueError) as e:
        check_click_prompt(points, labels, box, frame)
    assert words in str(e.value)


def test_good_clicks_come_back_as_the_predictors_prompts() -> None:
    p = check_click_prompt([[1.0, 2.0], [3.0, 4.0]], [1, 0], [0.0, 0.0, 5.0, 5.0], (64, 48))
    ref = validate_prompts(
        np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([1, 0]), np.array([0.0, 0, 5, 5]), None, (0, 0)
    )
    np.testing.assert_array_equal(p.coords, ref.coords)
    np.testing.assert_array_equal(p.labels, ref.labels)
    np.testing.assert_array_equal(p.boxes, ref.boxes)
    # outside the image is valid without a frame (the image mode warns and uses it)
    assert check_click_prompt([[-5.0, 900.0]], [1], None).coords.shape == (1, 1, 2)
    assert click_label(1) == 1 and click_label(0) == 0
    with pytest.raises(ValueError, match="label -1: 1 = foreground, 0 = background"):
        click_label(-1)
