"""Query degradations: each does what its name says, the same way every time."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.degrade import (
    DEFAULT_COLOUR_GAINS,
    apply_degradations,
    center_crop,
    parse_degradations,
    recompress_chat,
    rotate_small,
    shift_brightness,
    shift_colour,
)


def textured(height: int, width: int, seed: int = 3) -> np.ndarray:
    """Smooth gradients plus mild noise: photo-like enough for JPEG to keep it close."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 200 / width, y * 200 / height, (x + y) * 100 / (width + height)], -1)
    return np.clip(base + 30 + rng.normal(0, 4, (height, width, 3)), 0, 255).astype(np.uint8)


def test_chat_recompression_shrinks_the_longest_side_to_1280_and_keeps_the_picture():
    photo = textured(1500, 2000)

    sent = recompress_chat(photo)

    assert sent.shape == (960, 1280, 3)
    assert sent.dtype == np.uint8
    assert abs(float(sent.mean()) - float(photo.mean())) < 2


def test_chat_recompression_leaves_small_photos_their_size_but_still_re_encodes():
    photo = textured(300, 400)

    sent = recompress_chat(photo, quality=40)

    assert sent.shape == photo.shape
    assert not np.array_equal(sent, photo)
    assert np.abs(sent.astype(int) - photo).mean() < 8


def test_center_crop_keeps_the_middle_fraction_of_width_and_height():
    photo = textured(100, 200)

    cropped = center_crop(photo, 0.8)

    assert cropped.shape == (80, 160, 3)
    np.testing.assert_array_equal(cropped, photo[10:90, 20:180])


@pytest.mark.parametrize("fraction", [0.0, -0.5, 1.2])
def test_center_crop_refuses_a_fraction_outside_zero_to_one(fraction):
    with pytest.raises(ValueError, match=r"crop fraction must be in \(0, 1\]"):
        center_crop(textured(10, 10), fraction)


def test_brightness_scales_pixels_and_saturates_at_white():
    photo = np.array([[[100, 200, 10]]], dtype=np.uint8)

    assert shift_brightness(photo, 1.3).tolist() == [[[130, 255, 13]]]
    assert shift_brightness(photo, 0.5).tolist() == [[[50, 100, 5]]]


def test_colour_shift_applies_one_gain_per_channel():
    grey = np.full((2, 2, 3), 100, dtype=np.uint8)

    warm = shift_colour(grey)
    custom = shift_colour(grey, (1.5, 1.0, 0.5))

    assert warm[0, 0].tolist() == [round(100 * g) for g in DEFAULT_COLOUR_GAINS]
    assert custom[1, 1].tolist() == [150, 100, 50]


def fits_in_frame(width: int, height: int, crop_w: float, crop_h: float, degrees: float) -> bool:
    """Whether a centred crop of the turned picture lies wholly inside the original frame."""
    cos, sin = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    corners = [(sx * crop_w / 2, sy * crop_h / 2) for sx in (-1, 1) for sy in (-1, 1)]
    return all(
        abs(x * cos - y * sin) <= width / 2 and abs(x * sin + y * cos) <= height / 2
        for x, y in corners
    )


def test_small_rotation_is_cropped_to_the_largest_rectangle_without_fill():
    white = np.full((300, 400, 3), 255, dtype=np.uint8)

    rotated = rotate_small(white, 5)

    crop_h, crop_w = rotated.shape[:2]
    assert crop_w / crop_h == pytest.approx(400 / 300, rel=0.01)
    assert fits_in_frame(400, 300, crop_w, crop_h, 5)
    assert not fits_in_frame(400, 300, crop_w * 1.01, crop_h * 1.01, 5)
    assert rotated.min() >= 250  # no dark fringe at the corners either


def test_zero_rotation_changes_nothing():
    photo = textured(60, 80)

    np.testing.assert_array_equal(rotate_small(photo, 0), photo)


def test_positive_rotation_turns_counter_clockwise():
    # A bright dot right of centre moves up under a counter-clockwise turn.
    photo = np.zeros((201, 201, 3), dtype=np.uint8)
    photo[98:103, 158:163] = 255

    rotated = rotate_small(photo, 10)

    ys, xs = np.nonzero(rotated[..., 0] > 128)
    centre = (rotated.shape[0] - 1) / 2
    assert ys.mean() < centre - 5
    assert xs.mean() > centre


def test_a_spec_parses_into_degradations_applied_in_order():
    photo = textured(1500, 2000)

    degradations = parse_degradations("chat,crop0.8,bright1.3,colour,rot3")
    degraded = apply_degradations(photo, degradations)

    assert len(degradations) == 5
    # chat: 960 x 1280, crop: 768 x 1024, then the rotation's crop takes a little more.
    assert 700 < degraded.shape[0] < 768 and 930 < degraded.shape[1] < 1024
    assert degraded.mean() > photo.mean()  # brighter overall, despite the warm shift


def test_degradations_are_deterministic():
    photo = textured(400, 600)
    spec = "chat60, crop0.9, bright0.7, colour1.1:1:0.9, rot-2"

    first = apply_degradations(photo, parse_degradations(spec))
    second = apply_degradations(photo, parse_degradations(spec))

    np.testing.assert_array_equal(first, second)


def test_an_empty_spec_means_no_degradation():
    photo = textured(10, 10)

    assert parse_degradations("") == []
    np.testing.assert_array_equal(apply_degradations(photo, parse_degradations(" ")), photo)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("chat,blur2", "unknown degradation 'blur2' in 'chat,blur2': use chat, crop"),
        ("crop1.5", "degradation 'crop1.5': the crop fraction must be in (0, 1]"),
        ("brightx", "degradation 'brightx': 'x' is not a number (e.g. 'bright1.3')"),
        ("bright", "degradation 'bright' needs a number, e.g. 'bright1.3'"),
        ("bright-1", "degradation 'bright-1': the brightness factor must be positive"),
        ("rotnan", "degradation 'rotnan': 'nan' is not a finite number"),
        ("colour1:2", "degradation 'colour1:2': give three positive gains R:G:B"),
        ("chat101", "degradation 'chat101': JPEG quality must be a whole number 1-100"),
    ],
)
def test_a_bad_token_is_refused_naming_it(spec, message):
    with pytest.raises(ValueError) as caught:
        parse_degradations(spec)

    assert message in str(caught.value)
