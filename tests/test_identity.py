"""Identity distance (dlib's face-recognition ResNet, the optional extra ``identity``).

Tests that need dlib skip with the reason when it is not installed (``make test`` installs only
``.[test,ray]``); the message users get without it is tested either way.
"""

from __future__ import annotations

import json
import sys

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from skimage import data

from framefusion_video.evaluation import identity

needs_dlib = pytest.mark.skipif(not identity.available(),
                                reason=f"dlib or its weights not installed ({identity.INSTALL_HINT})")

#: The astronaut's face box in ``skimage.data.astronaut()`` (dlib's own detector's box).
ASTRONAUT_BOX = (175, 76, 266, 167)


@pytest.fixture()
def no_dlib(monkeypatch):
    """dlib made unimportable, as without the extra."""
    monkeypatch.setitem(sys.modules, "dlib", None)
    identity._networks.cache_clear()
    yield
    identity._networks.cache_clear()


@needs_dlib
def test_the_same_face_is_at_distance_zero():
    img = data.astronaut()
    a = identity.descriptor(img, ASTRONAUT_BOX)
    assert a.shape == (128,) and a.dtype == np.float32
    assert 0.5 < float(np.linalg.norm(a)) < 2.0
    assert identity.distance(a, identity.descriptor(img.copy(), ASTRONAUT_BOX)) == pytest.approx(0.0, abs=1e-6)


@needs_dlib
def test_a_changed_copy_is_closer_than_another_person(shared_data):
    photo = shared_data / "faces" / "frl" / "canada_003f.jpg"
    if not photo.is_file():
        pytest.skip(f"no face photo at {photo}")
    import dlib

    img = data.astronaut()
    ref = identity.descriptor(img, ASTRONAUT_BOX)
    x0, y0, x1, y1 = ASTRONAUT_BOX
    flipped = identity.descriptor(np.ascontiguousarray(img[:, ::-1]), (512 - x1, y0, 512 - x0, y1))
    blurred = identity.descriptor(cv2.GaussianBlur(img, (0, 0), 1.5), ASTRONAUT_BOX)
    other_img = cv2.cvtColor(cv2.imread(str(photo)), cv2.COLOR_BGR2RGB)
    found = dlib.get_frontal_face_detector()(other_img, 1)
    assert found, f"dlib found no face in {photo}"
    r = max(found, key=lambda r: r.area())
    other = identity.descriptor(other_img, (r.left(), r.top(), r.right() + 1, r.bottom() + 1))
    d_flip, d_blur, d_other = (identity.distance(ref, d) for d in (flipped, blurred, other))
    assert max(d_flip, d_blur) < identity.SAME_PERSON < d_other


@needs_dlib
def test_evaluate_reports_identity_per_kind():
    from framefusion_video.evaluation.images import evaluate

    face = cv2.resize(data.astronaut()[60:200, 150:290], (64, 64), interpolation=cv2.INTER_AREA)
    clean = np.stack([face, face[:, ::-1]]).astype(np.float32) / np.float32(255.0)
    report = evaluate(clean, lambda b: b.copy(), kinds=("blur", "noise"), seed=0, identity=True)
    for row in report.rows:
        assert set(row.identity) == {"input", "model"}
        assert row.identity["model"] == pytest.approx(row.identity["input"])
        assert 0.0 < row.identity["input"] < identity.SAME_PERSON
    assert report.overall.identity["input"] == pytest.approx(np.mean([r.identity["input"] for r in report.rows]))
    assert "ID input" in report.to_markdown() and "ID model" in report.to_markdown()
    assert evaluate(clean, None, kinds=("blur",)).rows[0].identity == {}


@needs_dlib
def test_ffv_eval_identity_writes_the_identity_column(face_folder, tmp_path):
    from framefusion_video.cli import main

    out = tmp_path / "eval.json"
    result = CliRunner().invoke(main, ["-q", "eval", str(face_folder), "--no-model", "--limit", "2", "--kind",
                                       "blur", "--identity", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "ID input" in result.output.splitlines()[0]
    blur = json.loads(out.read_text())["kinds"]["blur"]
    assert blur["n"] == 2 and 0.0 < blur["identity"]["input"] < identity.SAME_PERSON


def test_without_the_extra_the_message_names_the_install_command(no_dlib, tmp_path):
    from framefusion_video.cli import main

    with pytest.raises(identity.IdentityUnavailable, match=r"pip install -e '\.\[identity\]'"):
        identity.descriptor(data.astronaut(), ASTRONAUT_BOX)
    assert not identity.available()
    result = CliRunner().invoke(main, ["eval", str(tmp_path), "--no-model", "--identity"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "pip install -e '.[identity]'" in lines[0], result.output


def test_distance_is_euclidean():
    assert identity.distance(np.zeros(128), np.full(128, 0.5)) == pytest.approx(0.5 * np.sqrt(128))
    with pytest.raises(ValueError, match="shape"):
        identity.distance(np.zeros(128), np.zeros(64))
