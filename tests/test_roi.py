"""Palm ROI geometry: the 14-keypoint square rule on hand-made points, valley finding on a drawn hand and on
every CASIA photo, landmarks on annotated hands, and failures reported as RoiError."""
from __future__ import annotations

import glob
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from biohash.train.data.roi import (
    RoiError,
    cut,
    extract_roi,
    find_valleys,
    hand_mask,
    keypoint_square,
    landmark_square,
    read_keypoints,
    valley_square,
)


def _keypoints(angle_deg: float = 0.0, shift=(0.0, 0.0)) -> np.ndarray:
    """Fingers up (towards -y); palm sides P0, P12 100 px apart at y = 150; valleys at y = 100."""
    pts = np.full((14, 2), np.nan)
    pts[:] = (150, 150)
    pts[0], pts[12] = (100, 150), (200, 150)
    pts[3], pts[6], pts[9] = (120, 100), (150, 100), (180, 100)
    a = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return (pts - 150) @ rot.T + 150 + np.asarray(shift)


def test_square_rule_by_hand():
    sq = keypoint_square(_keypoints())
    # side 3/5 L = 60, centre 2/5 L = 40 px below P6 (into the palm), "up" towards the fingers
    assert sq.side == pytest.approx(60)
    assert sq.centre == pytest.approx((150, 140))
    assert sq.up == pytest.approx((0, -1))
    assert sq.corners() == pytest.approx(np.array([[120, 110], [180, 110], [180, 170], [120, 170]]))


@pytest.mark.parametrize("angle", [30.0, 90.0, -135.0])
def test_square_rule_follows_rotation_and_shift(angle):
    sq = keypoint_square(_keypoints(angle, (7, -3)))
    a = np.deg2rad(angle)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    assert np.array(sq.centre) == pytest.approx(rot @ np.array([0, -10]) + 150 + np.array([7, -3]))
    assert np.array(sq.up) == pytest.approx(rot @ np.array([0, -1]))
    assert sq.side == pytest.approx(60)


def test_cut_is_upright():
    # a horizontal intensity ramp; with fingers pointing left (up = -x) the ROI's top rows come from small x
    img = np.tile(np.arange(300, dtype=np.float32), (300, 1)).clip(0, 255).astype(np.uint8)
    roi = cut(img, keypoint_square(_keypoints(-90)), size=32)
    assert roi[:4].mean() < roi[-4:].mean() - 30
    assert np.ptp(roi[:, :4].mean(axis=0) - roi[:, -4:].mean(axis=0)) < 3  # no gradient left-right


def test_bad_keypoints_and_cut_off_palm_are_errors(tmp_path):
    with pytest.raises(RoiError, match="14 finite"):
        keypoint_square(np.zeros((5, 2)))
    with pytest.raises(RoiError, match="outside the image"):
        cut(np.zeros((120, 120), np.uint8), keypoint_square(_keypoints()), 32)
    path = tmp_path / "hand.jpg"
    (tmp_path / "hand.txt").write_text("\n".join(f"{x},{y}" for x, y in _keypoints()))
    assert read_keypoints(path) == pytest.approx(_keypoints())
    with pytest.raises(RoiError, match="no keypoint file"):
        read_keypoints(tmp_path / "other.jpg")


def _drawn_hand(angle: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """A bright hand on black: palm disc, four fingers up, thumb to the side, arm to the bottom border.
    Returns the image and the three true valley points (between the fingers, at the palm edge)."""
    img = np.zeros((480, 480), np.uint8)
    cv2.circle(img, (240, 260), 90, 200, -1)
    cv2.rectangle(img, (200, 300), (280, 480), 200, -1)  # arm
    xs = [180, 220, 260, 300]  # finger centres; valleys between them at x = 200, 240, 280
    for x in xs:
        cv2.rectangle(img, (x - 16, 60), (x + 16, 230), 200, -1)
    cv2.line(img, (170, 300), (90, 220), 200, 36)  # thumb
    valleys = np.array([[200, 0], [240, 0], [280, 0]], np.float64)
    mask = img > 0
    for v in valleys:  # the valley is where the gap between two fingers meets the palm: its column's top pixel
        v[1] = np.flatnonzero(mask[:, int(v[0])]).min()
    m = cv2.getRotationMatrix2D((240, 240), angle, 1.0)
    img = cv2.warpAffine(img, m, (480, 480))
    valleys = valleys @ m[:, :2].T + m[:, 2]
    return img, valleys


@pytest.mark.parametrize("angle", [0.0, 35.0, -70.0])
def test_valleys_found_on_a_drawn_hand(angle):
    img, truth = _drawn_hand(angle)
    v = find_valleys(hand_mask(img))
    found = np.stack([v.p3, v.p6, v.p9])
    if np.linalg.norm(found[0] - truth[0]) > np.linalg.norm(found[0] - truth[2]):
        found = found[::-1]  # which end is "index" does not matter to the rule
    assert np.abs(found - truth).max() < 8
    assert valley_square(img).side > 40


def test_no_hand_and_no_fingers_are_errors():
    with pytest.raises(RoiError, match="no hand found"):
        valley_square(np.zeros((200, 200), np.uint8))
    disc = np.zeros((300, 300), np.uint8)
    cv2.circle(disc, (150, 150), 80, 200, -1)
    with pytest.raises(RoiError, match="finger valleys|finger gaps"):
        valley_square(disc, where="disc.png")


def test_every_casia_photo_gives_a_roi(shared_data):
    files = sorted(glob.glob(str(shared_data / "casia-ms" / "940" / "*.jpg")))
    assert len(files) == 402
    palms = set()
    for path in files:
        roi = extract_roi(cv2.imread(path, cv2.IMREAD_GRAYSCALE), "valley", 64, where=path)
        assert roi.shape == (64, 64) and roi.mean() > 40  # on the bright hand, not the dark background
        palms.add(path.split("/")[-1][:3])
    assert len(palms) == 67


def test_landmark_square_on_annotated_hands(shared_data):
    checked = 0
    for json_path in glob.glob(str(shared_data / "hand-keypoints" / "*" / "test_*.json")):
        data = json.loads(Path(json_path).read_text())
        if "annotations" not in data:
            continue
        for ann in data["annotations"]:
            if "keypoints" not in ann:  # InterHand2.6M keeps its joints elsewhere
                continue
            kp = np.asarray(ann["keypoints"], np.float64).reshape(21, 3)
            palm = kp[[0, 5, 9, 13, 17]]
            if (palm[:, 2] <= 0).any():
                continue
            sq = landmark_square(kp[:, :2])
            hull = cv2.convexHull(palm[:, :2].astype(np.float32))
            assert cv2.pointPolygonTest(hull, sq.centre, True) > -0.15 * sq.side  # centre on the palm
            toward_fingers = kp[9, :2] - kp[0, :2]
            assert np.dot(sq.up, toward_fingers) > 0
            checked += 1
    assert checked >= 10


def test_bright_background_is_refused_not_cropped():
    img = np.full((300, 300), 230, np.uint8)
    cv2.circle(img, (150, 150), 80, 90, -1)
    with pytest.raises(RoiError, match="dark background"):
        valley_square(img)


def test_roi_command_writes_rois_sheet_and_failures(shared_data, tmp_path):
    from typer.testing import CliRunner

    from biohash.cli import app

    src = tmp_path / "in"
    src.mkdir()
    for name in ("001_l_940_01.jpg", "002_l_940_01.jpg"):
        (src / name).write_bytes((shared_data / "casia-ms" / "940" / name).read_bytes())
    (src / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    result = CliRunner().invoke(app, ["roi", str(src), str(tmp_path / "out"), "--size", "96"])
    assert result.exit_code == 0, result.output
    assert "2/3 ROIs" in result.output
    assert cv2.imread(str(tmp_path / "out" / "001_l_940_01.png"), cv2.IMREAD_GRAYSCALE).shape == (96, 96)
    failures = json.loads((tmp_path / "out" / "failures.json").read_text())
    assert list(failures) == ["broken.jpg"] and "not a readable image" in failures["broken.jpg"]
    assert cv2.imread(str(tmp_path / "out" / "contact_sheet.png")) is not None


def test_landmarks_back_end_is_explicit_and_optional(shared_data):
    """Without MediaPipe the landmarks method says how to get it; with it (make landmarks-env), palmar 11K
    photos give ROIs whose square lies on the hand."""
    from biohash.train.data.databases import read_image
    from biohash.train.data.roi import mediapipe_landmarks

    path = shared_data / "11k-hands" / "images" / "Hand_0000002.jpg"
    if not path.exists():
        path = min((shared_data / "11k-hands" / "images").glob("*.jpg"))
    img = read_image(path, colour=True)
    try:
        import mediapipe  # noqa: F401
    except ImportError:
        with pytest.raises(RoiError, match="make landmarks-env"):
            mediapipe_landmarks(img)
        return
    sq = landmark_square(mediapipe_landmarks(img))
    h, w = img.shape[:2]
    assert 0 < sq.centre[0] < w and 0 < sq.centre[1] < h and sq.side > 0.1 * min(h, w)


def _casia_folder_with_a_bad_photo(shared_data, tmp_path):
    src = tmp_path / "casia"
    src.mkdir()
    for palm in ("001", "002", "004"):
        for k in range(1, 5):
            name = f"{palm}_l_940_0{k}.jpg"
            (src / name).write_bytes((shared_data / "casia-ms" / "940" / name).read_bytes())
    bad = np.random.default_rng(0).integers(0, 40, (576, 768), dtype=np.uint8)  # dark noise: no hand at all
    cv2.imwrite(str(src / "099_l_940_01.jpg"), bad)
    return src


def test_a_photo_without_roi_is_skipped_and_listed_not_fatal(shared_data, tmp_path):
    """On main one CASIA photo whose ROI failed aborted training and evaluation on the whole set."""
    from biohash.train.data.datasets import DatasetError, open_dataset

    src = _casia_folder_with_a_bad_photo(shared_data, tmp_path)
    ds = open_dataset("casia-ms", root=str(src))
    assert len(ds.samples) == 12 and [p.rsplit("/", 1)[-1] for p, _ in ds.skipped] == ["099_l_940_01.jpg"]
    assert "no hand" in ds.skipped[0][1] or "valleys" in ds.skipped[0][1]
    with pytest.raises(DatasetError, match="no ROI for 1 of 13 images .*099_l_940_01.jpg"):
        open_dataset("casia-ms", root=str(src), on_roi_failure="fail")


def test_training_on_a_folder_with_a_bad_photo_counts_it(shared_data, tmp_path):
    from typer.testing import CliRunner

    from biohash.cli import app

    src = _casia_folder_with_a_bad_photo(shared_data, tmp_path)
    result = CliRunner().invoke(app, ["train", "cohash", "--ds", "casiam", "--root", str(src), "--protocol", "closed",
                                      "--model", "tiny", "--bits", "16", "--epochs", "1", "-b", "4",
                                      "--image-size", "32", "--name", "r", "--runs", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    assert "skipped 1 of 13 images whose ROI failed" in " ".join(result.output.split())
    listed = json.loads((tmp_path / "runs" / "r" / "roi_failures.json").read_text())
    assert list(listed) == [str(src / "099_l_940_01.jpg")]
    assert "images skipped (no ROI)" in (tmp_path / "runs" / "r" / "report.md").read_text()


def test_roi_command_fails_when_nothing_was_cut_and_labels_paged_sheets(shared_data, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import biohash.train.data.roi_batch as roi_batch
    from biohash.cli import app

    src = tmp_path / "none"
    src.mkdir()
    cv2.imwrite(str(src / "dark.jpg"), np.zeros((200, 300), np.uint8))
    result = CliRunner().invoke(app, ["roi", str(src), str(tmp_path / "out0")])
    assert result.exit_code != 0 and "no ROI could be cut from the 1 images" in result.output  # main: exit 0
    monkeypatch.setattr(roi_batch, "PAGE", 2)
    src = _casia_folder_with_a_bad_photo(shared_data, tmp_path)
    result = CliRunner().invoke(app, ["roi", str(src), str(tmp_path / "out")])
    assert result.exit_code == 0 and "+6 more pages" in result.output, result.output
    first = cv2.imread(str(tmp_path / "out" / "contact_sheet.png"))
    assert (tmp_path / "out" / "contact_sheet_7.png").is_file() and first.shape[0] < 200  # one row of 2
    assert first[-16:].max() > 200  # the name strip under each photo holds white text
