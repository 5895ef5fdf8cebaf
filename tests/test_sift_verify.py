"""The `sift` verifier: the same place gives many inliers, unrelated photos few, in right pixels."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from engine.config import EngineConfig, SiftConfig
from engine.errors import ConfigError
from engine.verifiers import VERIFIERS, SiftVerifier, create_verifier
from engine.verifiers.geometry import fundamental_inliers

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
LUND = sorted((DATA / "lund").glob("*.jpg"))
BERLIN = sorted((DATA / "berlin").glob("*.jpg"))

real_data = pytest.mark.real_data
needs_lund = pytest.mark.skipif(len(LUND) < 29, reason=f"the Lund photos are not in {DATA}")
needs_berlin = pytest.mark.skipif(len(BERLIN) < 3, reason=f"the Berlin photos are not in {DATA}")


def load(path: Path, max_side: int = 1024) -> np.ndarray:
    """Decode at about `max_side`; JPEG draft mode skips most of the work on 8 MP photos."""
    with Image.open(path) as image:
        image.draft("RGB", (max_side, max_side))
        return np.asarray(image.convert("RGB"))


@pytest.fixture(scope="module")
def verifier() -> SiftVerifier:
    return SiftVerifier(SiftConfig())


@real_data
@needs_lund
def test_photo_and_a_warped_enlarged_crop_of_it_share_many_inliers(verifier: SiftVerifier):
    photo = load(LUND[0])
    # Crop, tilt and enlarge to 1500 px wide, so extraction scales differ between the two.
    corners = np.float32([[100, 80], [900, 60], [950, 700], [60, 720]])
    target = np.float32([[0, 0], [1500, 0], [1500, 1100], [0, 1100]])
    warp = cv2.getPerspectiveTransform(corners, target)
    copy = cv2.warpPerspective(photo, warp, (1500, 1100), flags=cv2.INTER_LINEAR)

    query, reference = verifier.extract(photo), verifier.extract(copy)
    assert reference.image_size == (1500, 1100)
    assert reference.scale == pytest.approx(1024 / 1500)
    result = verifier.verify(query, reference)

    assert result.inliers > 100
    assert result.tentative_matches >= result.inliers
    assert result.inlier_ratio == pytest.approx(result.inliers / result.tentative_matches)
    # The inliers are real correspondences, in each given image's own pixels.
    mapped = cv2.perspectiveTransform(result.query_points.reshape(-1, 1, 2), warp).reshape(-1, 2)
    assert np.median(np.linalg.norm(mapped - result.reference_points, axis=1)) < 3.0


@real_data
@needs_lund
def test_a_photo_shrunk_into_a_wider_frame_shows_its_scene_that_many_times_smaller(
        verifier: SiftVerifier):
    """As a landmark shot from three times farther away than the reference was."""
    photo = load(LUND[0])
    height, width = photo.shape[:2]
    wide = np.full((height * 3, width * 3, 3), 127, np.uint8)
    wide[height:2 * height, width:2 * width] = photo  # a third of the frame each way
    result = verifier.verify(verifier.extract(wide), verifier.extract(photo))
    assert result.inliers > 50
    assert result.view_scale == pytest.approx(3.0, rel=0.15)
    same = verifier.verify(verifier.extract(photo), verifier.extract(photo.copy()))
    assert same.view_scale == pytest.approx(1.0, rel=0.05)


@real_data
@needs_lund
@needs_berlin
def test_adjacent_lund_frames_have_far_more_inliers_than_lund_vs_berlin(verifier: SiftVerifier):
    lund = {i: verifier.extract(load(LUND[i])) for i in (0, 1, 12, 13, 24, 25)}
    berlin = [verifier.extract(load(path)) for path in BERLIN]

    same_place = [verifier.verify(lund[i], lund[i + 1]).inliers for i in (0, 12, 24)]
    unrelated = [verifier.verify(lund[i], b).inliers for i in (0, 12, 24) for b in berlin]

    assert min(same_place) > 40, same_place
    assert max(unrelated) < 20, unrelated
    assert min(same_place) > 3 * max(unrelated)


@real_data
@needs_lund
@needs_berlin
def test_inlier_points_lie_inside_their_own_images(verifier: SiftVerifier):
    berlin = [load(path, max_side=2048) for path in BERLIN[:2]]
    first, second = (verifier.extract(photo) for photo in berlin)
    result = verifier.verify(first, second)
    assert result.inliers > 40
    for points, (width, height) in (
        (result.query_points, first.image_size),
        (result.reference_points, second.image_size),
    ):
        assert points.shape == (result.inliers, 2)
        assert (points >= 0).all()
        assert (points[:, 0] < width).all() and (points[:, 1] < height).all()
    # Berlin photos are decoded larger than the extraction size: points are scaled back up.
    assert result.query_points[:, 0].max() > 1024


def test_blank_photos_give_no_evidence(verifier: SiftVerifier):
    blank = np.full((300, 400, 3), 128, np.uint8)
    features = verifier.extract(blank)
    assert features.count == 0
    result = verifier.verify(features, features)
    assert (result.inliers, result.tentative_matches, result.inlier_ratio) == (0, 0, 0.0)
    assert result.query_points.shape == result.reference_points.shape == (0, 2)


def test_fewer_than_eight_point_pairs_have_no_inliers():
    points = np.random.default_rng(0).uniform(0, 500, (7, 2)).astype(np.float32)
    mask = fundamental_inliers(points, points + 5, 1.0, 0.999, 1000)
    assert mask.dtype == bool and mask.shape == (7,) and not mask.any()


def test_degenerate_point_pairs_have_no_inliers():
    points = np.ones((20, 2), np.float32)
    assert not fundamental_inliers(points, points, 1.0, 0.999, 1000).any()


def test_point_pairs_from_one_camera_motion_are_inliers():
    rng = np.random.default_rng(1)
    scene = np.column_stack([rng.uniform(-5, 5, (60, 2)), rng.uniform(8, 30, 60)])
    shifted = scene + np.array([1.0, 0.2, 0.5])  # the second camera stands a metre to the side

    def project(points: np.ndarray) -> np.ndarray:
        return (500 * points[:, :2] / points[:, 2:] + 512).astype(np.float32)

    mask = fundamental_inliers(project(scene), project(shifted), 1.0, 0.999, 1000)
    assert mask.sum() >= 55


def test_verifier_is_chosen_by_name_and_unknown_names_list_the_choices():
    assert isinstance(create_verifier("sift", EngineConfig()), SiftVerifier)
    with pytest.raises(ConfigError, match="unknown verifier 'orb'; choose one of: lightglue, sift"):
        create_verifier("orb", EngineConfig())
    assert set(VERIFIERS) == {"lightglue", "sift", "xfeat"}
