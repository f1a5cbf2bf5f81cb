"""Face detection and landmarks: pure helpers, MediaPipe on public-domain and shared images."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest

from framefusion_video.faces import alignment
from framefusion_video.faces.detection import (
    Face,
    FaceDetector,
    FaceDetectorConfig,
    box_iou,
    box_side,
    mesh_agrees,
    mesh_five_points,
    non_max_suppression,
    tile_windows,
)

skimage_data = pytest.importorskip("skimage.data", reason="scikit-image (test extra) provides the test face")


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    """Public-domain NASA portrait, uint8 RGB (512, 512, 3), one face."""
    return np.ascontiguousarray(skimage_data.astronaut())


@pytest.fixture(scope="module")
def detector():
    with FaceDetector() as det:
        yield det


def read_frame(path, index: int) -> np.ndarray:
    """Frame ``index`` of a video, uint8 RGB, decoded with the bundled ffmpeg."""
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    try:
        width, height = next(reader)["size"]
        raw = next(itertools.islice(reader, index, None))
    finally:
        reader.close()
    return np.frombuffer(raw, np.uint8).reshape(height, width, 3)


# --------------------------------------------------------------------------- pure helpers


def test_face_validates_and_computes_size():
    face = Face(box=(10, 20, 50, 120), landmarks=np.zeros((5, 2)), score=0.8)
    assert face.landmarks.dtype == np.float32 and face.size == pytest.approx(np.sqrt(40 * 100))
    assert Face(box=(0, 0, 4, 4), landmarks=np.zeros((5, 2)), size=7.0).size == 7.0
    with pytest.raises(ValueError):
        Face(box=(0, 0, 1, 1), landmarks=np.zeros((4, 2)))


def test_box_iou_and_side():
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == pytest.approx(1.0)
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert box_iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    assert box_side((0, 0, 4, 9)) == pytest.approx(6.0)
    assert box_side((5, 5, 1, 1)) == 0.0


def test_non_max_suppression_drops_overlaps_and_contained_boxes():
    boxes = [(0, 0, 10, 10), (1, 1, 11, 11), (100, 0, 140, 40), (102, 2, 120, 20), (50, 50, 60, 60)]
    scores = [0.6, 0.9, 0.7, 0.95, 0.1]
    kept = non_max_suppression(boxes, scores, iou=0.3, containment=0.7)
    assert kept[0] == 3 and 1 in kept and 0 not in kept and 4 in kept
    assert 2 in kept  # only a quarter of it is inside box 3, and their IoU is low
    assert non_max_suppression(boxes, scores, iou=0.3, containment=0.2) == [3, 1, 4]


@pytest.mark.parametrize("grid", [1, 2, 3])
def test_tile_windows_cover_the_frame_with_overlap(grid):
    width, height = 1920, 1080
    windows = tile_windows(width, height, grid, overlap=0.25)
    assert len(windows) == grid * grid
    covered = np.zeros((height, width), bool)
    for x0, y0, x1, y1 in windows:
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
        covered[y0:y1, x0:x1] = True
    assert covered.all()
    if grid > 1:  # neighbours overlap by a quarter of a tile
        (a, _, a1, _), (b, _, _, _) = windows[0], windows[1]
        assert a1 - b == pytest.approx(0.25 * (a1 - a), abs=1)


def test_mesh_points_replace_key_points_only_when_they_fit_the_face():
    key_points = alignment.template(100) + np.float32([50, 40])
    face = Face(box=(50, 40, 150, 140), landmarks=key_points, score=0.9)
    assert mesh_agrees(key_points + np.float32([2, -1]), face)
    scattered = key_points.copy()
    scattered[4] += (30.0, 80.0)  # a mouth corner far below the chin, eyes where they should be
    assert not mesh_agrees(scattered, face)
    elsewhere = key_points + np.float32([60, 0])  # another face beside this one
    assert not mesh_agrees(elsewhere, face)


def test_mesh_five_points_order():
    from framefusion_video.faces.detection import _MESH_LEFT_EYE, _MESH_RIGHT_EYE

    mesh = np.zeros((468, 2), np.float32)
    mesh[list(_MESH_RIGHT_EYE)] = (20, 50)  # MediaPipe's right eye = the subject's = the image's left
    mesh[list(_MESH_LEFT_EYE)] = (80, 50)
    mesh[1], mesh[61], mesh[291] = (50, 70), (35, 90), (65, 90)
    np.testing.assert_allclose(mesh_five_points(mesh), [[20, 50], [80, 50], [50, 70], [35, 90], [65, 90]])


# --------------------------------------------------------------------------- MediaPipe


def test_astronaut_has_one_face_with_plausible_landmarks(detector, astronaut):
    faces = detector.detect(astronaut)
    assert len(faces) == 1
    face = faces[0]
    x0, y0, x1, y1 = face.box
    lm = face.landmarks
    assert lm.shape == (5, 2) and lm.dtype == np.float32 and 0.5 < face.score <= 1.0
    assert ((lm[:, 0] > x0) & (lm[:, 0] < x1) & (lm[:, 1] > y0) & (lm[:, 1] < y1)).all()
    assert lm[0, 0] < lm[2, 0] < lm[1, 0] and lm[3, 0] < lm[4, 0]        # left/right as in the image
    assert max(lm[0, 1], lm[1, 1]) < lm[2, 1] < min(lm[3, 1], lm[4, 1])  # eyes, nose, mouth downwards
    assert face.size == pytest.approx(box_side(face.box))


@pytest.mark.parametrize("angle", [0, 25, -25])
@pytest.mark.parametrize("use_mesh", [True, False])
def test_aligned_crop_puts_the_eyes_on_the_template(astronaut, angle, use_mesh):
    """Independent check of the landmark order: detect again *in the aligned crop*; a wrong order
    (eyes or mouth corners swapped) would turn or mirror the crop and move the eyes far away."""
    h, w = astronaut.shape[:2]
    rotated = cv2.warpAffine(astronaut, cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0), (w, h),
                             borderMode=cv2.BORDER_REFLECT_101)
    size = 128
    with FaceDetector(FaceDetectorConfig(use_mesh=use_mesh)) as det:
        (face,) = det.detect(rotated)
    crop = alignment.warp_to_crop(rotated, alignment.estimate_alignment(face.landmarks, size), size)
    with FaceDetector() as det:
        (again,) = det.detect(crop)
    tolerance = 3.0 if use_mesh else 7.0  # the key-point eyes are coarser than FaceMesh's
    np.testing.assert_allclose(again.landmarks[:2], alignment.template(size)[:2], atol=tolerance)


def test_blank_frame_has_no_face(detector):
    assert detector.detect(np.zeros((360, 640, 3), np.uint8)) == []
    assert detector.detect(np.full((120, 90, 3), 200, np.uint8)) == []


def test_rejects_non_rgb_frames(detector):
    with pytest.raises(ValueError):
        detector.detect(np.zeros((64, 64), np.uint8))
    with pytest.raises(ValueError):
        detector.detect(np.zeros((64, 64, 3), np.float32))


def test_two_faces_side_by_side_are_both_found(detector, astronaut):
    two = cv2.resize(np.hstack([astronaut, astronaut[:, ::-1]]), (512, 256), interpolation=cv2.INTER_AREA)
    faces = detector.detect(np.ascontiguousarray(two))
    assert len(faces) == 2
    left, right = sorted(faces, key=lambda f: f.box[0])
    assert left.box[2] < 256 < right.box[0]
    for face in faces:
        assert face.landmarks[0, 0] < face.landmarks[1, 0]  # the mirrored face too


@pytest.fixture(scope="module")
def big_and_small(astronaut) -> np.ndarray:
    """A 768x512 canvas: the astronaut at full size on the left, at half size on the right."""
    canvas = np.full((512, 768, 3), 127, np.uint8)
    canvas[:, :512] = astronaut
    canvas[128:384, 512:768] = cv2.resize(astronaut, (256, 256), interpolation=cv2.INTER_AREA)
    return canvas


def test_max_faces_keeps_the_largest(big_and_small):
    with FaceDetector(FaceDetectorConfig(max_faces=0)) as det:
        every = det.detect(big_and_small)
    assert len(every) == 2 and every[0].size > every[1].size
    with FaceDetector(FaceDetectorConfig(max_faces=1)) as det:
        (only,) = det.detect(big_and_small)
    assert only.box[0] < 512 and only.size == pytest.approx(every[0].size)


def test_min_face_ignores_small_faces(big_and_small):
    with FaceDetector() as det:
        sizes = sorted(f.size for f in det.detect(big_and_small))
    between = 0.5 * (sizes[0] + sizes[1])
    with FaceDetector(FaceDetectorConfig(min_face=between)) as det:
        kept = det.detect(big_and_small)
    assert [f.size for f in kept] == pytest.approx([sizes[1]])
    with FaceDetector(FaceDetectorConfig(min_face=2 * sizes[1])) as det:
        assert det.detect(big_and_small) == []


# --------------------------------------------------------------------------- shared data


def test_validation_faces_are_found(detector, shared_data):
    paths = sorted((shared_data / "faces" / "val").glob("*.jpg"))[:5]
    if not paths:
        pytest.skip("no validation faces in shared data")
    for path in paths:
        image = np.ascontiguousarray(cv2.imread(str(path))[:, :, ::-1])
        faces = detector.detect(image)
        assert len(faces) == 1, path.name
        assert faces[0].landmarks[0, 0] < faces[0].landmarks[1, 0]


def test_close_up_filling_the_frame_is_found(detector, shared_videos):
    frame = read_frame(shared_videos / "closeup_audio-first-stream_410x412.mp4", 0)
    faces = detector.detect(frame)
    assert len(faces) == 1
    assert faces[0].size > 0.3 * min(frame.shape[:2])


def test_tiling_finds_more_small_faces_in_a_1080p_crowd(shared_videos):
    frame = read_frame(shared_videos / "crowd_walking_1080p.mp4", 20)
    with FaceDetector(FaceDetectorConfig(tile_grid=1, use_mesh=False)) as det:
        whole = det.detect(frame)
    with FaceDetector(FaceDetectorConfig(tile_grid=2, use_mesh=False)) as det:
        tiled = det.detect(frame)
    assert len(tiled) > len(whole)
    # Each face is reported once: no two tiled detections overlap.
    assert all(box_iou(a.box, b.box) < 0.3 for a, b in itertools.combinations(tiled, 2))
