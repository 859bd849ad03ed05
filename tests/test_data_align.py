"""Alignment: Umeyama similarity, half-pixel-correct warping, real LFW photos against insightface's aligned faces."""

import json

import numpy as np
import pytest

from edgekd.data.align import ARCFACE_TEMPLATE, align_folder, align_image, read_landmarks, template, umeyama
from edgekd.data.image import decode_image, encode_jpeg
from edgekd.errors import EdgekdError


def _similarity(scale, angle, tx, ty):
    c, s = scale * np.cos(angle), scale * np.sin(angle)
    return np.array([[c, -s, tx], [s, c, ty]])


def test_umeyama_recovers_a_known_similarity():
    m = _similarity(1.7, 0.3, 12.0, -4.0)
    src = np.random.default_rng(0).uniform(0, 100, (5, 2))
    dst = src @ m[:, :2].T + m[:, 2]
    np.testing.assert_allclose(umeyama(src, dst), m, atol=1e-9)


def _dot_image(points, size=200):
    """Black image with a bright 3x3 dot centred on each (integer-rounded) point."""
    img = np.zeros((size, size, 3), np.uint8)
    for x, y in np.round(points).astype(int):
        img[y - 1 : y + 2, x - 1 : x + 2] = 255
    return img


def test_warp_puts_landmarks_on_the_template():
    """Landmarks placed by a known similarity of the template must come back onto the template (sub-pixel)."""
    m = _similarity(1.6, -0.2, 40.0, 30.0)
    pts = np.round(ARCFACE_TEMPLATE @ m[:, :2].T + m[:, 2])  # integer pixel centres in the raw image
    out = align_image(_dot_image(pts), pts).astype(float)[..., 0]
    for tx, ty in ARCFACE_TEMPLATE:
        x0, y0 = int(round(tx)), int(round(ty))
        win = out[y0 - 4 : y0 + 5, x0 - 4 : x0 + 5]
        yy, xx = np.mgrid[y0 - 4 : y0 + 5, x0 - 4 : x0 + 5]
        cx, cy = (win * xx).sum() / win.sum(), (win * yy).sum() / win.sum()
        assert abs(cx - tx) < 0.35 and abs(cy - ty) < 0.35, (cx, cy, tx, ty)


def test_112x96_template_is_shifted():
    np.testing.assert_allclose(template((112, 96)), ARCFACE_TEMPLATE - [8, 0])
    img = np.random.default_rng(1).integers(0, 255, (150, 150, 3), dtype=np.uint8)
    lm = ARCFACE_TEMPLATE + 10
    narrow = align_image(img, lm, (112, 96))
    assert narrow.shape == (112, 96, 3)
    diff = np.abs(narrow.astype(int) - align_image(img, lm)[:, 8:104])  # SphereFace = ArcFace columns 8..103
    assert diff.max() <= 1  # Pillow's fixed-point bilinear rounding
    with pytest.raises(EdgekdError, match="alignment size 100x100 unsupported"):
        template((100, 100))


def _agreement(a, b):
    a, b = a.astype(np.float64), b.astype(np.float64)
    return np.abs(a - b).mean(), np.corrcoef(a.ravel(), b.ravel())[0, 1]


@pytest.mark.shared_data
def test_real_original_photo_matches_insightface_alignment(shared_data):
    lfw = shared_data / "lfw"
    rel = "Anthony_Hopkins/Anthony_Hopkins_0001.jpg"
    lm = read_landmarks(lfw / "lfw_landmark.txt")[rel]
    ours = align_image(decode_image(lfw / "raw_samples" / "Anthony_Hopkins_0001.jpg"), lm)
    mad, corr = _agreement(ours, decode_image(lfw / "aligned_112x112" / rel))
    assert mad < 9 and corr > 0.95  # measured 5.6 / 0.977 (different landmark source than insightface's)


@pytest.mark.shared_data
def test_real_raw150_quality_against_reference(shared_data):
    lfw = shared_data / "lfw"
    marks = read_landmarks(lfw / "lfw_landmark.txt")
    names = sorted(p.name for p in (lfw / "aligned_112x112").iterdir())[::400]
    rels = [f"{n}/{sorted(p.name for p in (lfw / 'aligned_112x112' / n).iterdir())[0]}" for n in names]
    scores = np.array([_agreement(align_image(decode_image(lfw / "raw_150" / r), marks[r] * 0.6),
                                  decode_image(lfw / "aligned_112x112" / r)) for r in rels])
    mad, corr = scores.mean(0)
    assert mad < 14 and corr > 0.92, scores  # all 7,701: mean 9.6 / 0.953


@pytest.fixture
def raw_tree(tmp_path):
    """Two identities of 'raw' photos with dots at known landmark positions, plus the landmark file."""
    m = _similarity(1.4, 0.1, 30.0, 20.0)
    pts = np.round(ARCFACE_TEMPLATE @ m[:, :2].T + m[:, 2])
    lines = []
    for name in ("Ann_A", "Bob_B"):
        (tmp_path / "raw" / name).mkdir(parents=True)
        for j in (1, 2):
            rel = f"{name}/{name}_{j:04d}.jpg"
            (tmp_path / "raw" / rel).write_bytes(encode_jpeg(_dot_image(pts)))
            lines.append(rel + "\t" + "\t".join(str(int(v)) for v in pts.ravel()))
    (tmp_path / "raw" / "Bob_B" / "Bob_B_0003.jpg").write_bytes(encode_jpeg(_dot_image(pts)))  # no landmarks
    lines.append("Gone_G/Gone_G_0001.jpg\t" + "\t".join(["1"] * 10))  # landmarks, no image
    (tmp_path / "lm.txt").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_align_folder(raw_tree):
    out = raw_tree / "out"
    m = align_folder(raw_tree / "raw", out, raw_tree / "lm.txt", workers=2, progress=False)
    assert (m["count"], m["identities"], m["skipped_without_landmarks"], m["landmarks_without_image"]) == (4, 2, 1, 1)
    assert json.loads((out / "manifest.json").read_text())["count"] == 4
    assert decode_image(out / "Ann_A" / "Ann_A_0002.jpg").shape == (112, 112, 3)
    only = align_folder(raw_tree / "raw", raw_tree / "only", raw_tree / "lm.txt", identities={"Bob_B"},
                        size=(112, 96), workers=1, progress=False)
    assert only["count"] == 2 and decode_image(raw_tree / "only" / "Bob_B" / "Bob_B_0001.jpg").shape == (112, 96, 3)
    with pytest.raises(EdgekdError, match=r"out: already exists"):
        align_folder(raw_tree / "raw", out, raw_tree / "lm.txt", progress=False)


def test_align_folder_is_atomic(raw_tree):
    (raw_tree / "raw" / "Bob_B" / "Bob_B_0002.jpg").write_bytes(b"\xff\xd8\xff broken")
    with pytest.raises(EdgekdError, match=r"Bob_B_0002\.jpg: corrupt or unreadable image"):
        align_folder(raw_tree / "raw", raw_tree / "out", raw_tree / "lm.txt", workers=2, progress=False)
    assert sorted(p.name for p in raw_tree.iterdir()) == ["lm.txt", "raw"]  # no partial output, no temp left


def test_malformed_landmarks(tmp_path):
    (tmp_path / "lm.txt").write_text("a.jpg\t1\t2\t3\n")
    with pytest.raises(EdgekdError, match=r"lm\.txt:1: malformed landmark line"):
        read_landmarks(tmp_path / "lm.txt")
