"""MTCNN: the torch-free numpy pipeline (pyramid resizing, NMS, face choice, settings) and the networks loaded
strict from facenet-pytorch's weight files, run on real LFW photos against the dataset's own landmarks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgekd.detect.faces import Face, choose_face
from edgekd.detect.mtcnn import NMS_BLOCK, Mtcnn, MtcnnSettings, _crops, area_resize, integral, nms, pyramid
from edgekd.errors import EdgekdError
from edgekd.paths import mtcnn_weights_dir


@pytest.mark.parametrize("size", [(37, 53), (12, 12), (90, 60), (250, 131)])
def test_area_resize_is_torchs_area_interpolation(size):
    """Down- and up-scaling, as the reference resizes its pyramid levels and crops."""
    x = np.random.default_rng(0).integers(0, 256, (3, 71, 64)).astype(np.uint8)  # 8-bit pixels, as frames are
    want = torch.nn.functional.interpolate(torch.from_numpy(x.astype(np.float32))[None], size=size,
                                           mode="area")[0].numpy()
    np.testing.assert_array_equal(area_resize(x, size), want)  # integer box sums: the correctly rounded mean


def test_nms_keeps_the_best_of_overlapping_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 4, 4]], np.float32)
    scores = np.array([0.9, 0.95, 0.5, 0.8], np.float32)
    assert sorted(nms(boxes, scores, 0.5).tolist()) == [1, 2, 3]  # box 3 lies inside box 0: IoU 0.16
    assert sorted(nms(boxes, scores, 0.5, mode="min").tolist()) == [1, 2]  # ... but overlaps it fully by "Min"


def _greedy_nms(boxes, scores, threshold, mode):
    """The textbook greedy NMS, one pair at a time in float32, as the reference's definition reads."""
    f = np.float32
    one = f(1) if mode == "min" else f(0)
    area = [(b[2] - b[0] + one) * (b[3] - b[1] + one) for b in boxes]
    order = sorted(range(len(boxes)), key=lambda i: -scores[i])  # sorted() is stable: ties keep input order
    keep, gone = [], set()
    for n, i in enumerate(order):
        if i in gone:
            continue
        keep.append(i)
        for j in order[n + 1:]:
            b, c = boxes[i], boxes[j]
            w = max(f(0), min(b[2], c[2]) - max(b[0], c[0]) + one)
            h = max(f(0), min(b[3], c[3]) - max(b[1], c[1]) + one)
            inter = w * h
            with np.errstate(invalid="ignore"):
                ratio = inter / min(area[i], area[j]) if mode == "min" else inter / (area[i] + area[j] - inter)
            if not (ratio <= threshold) if mode == "min" else ratio > threshold:
                gone.add(j)
    return keep


@pytest.mark.parametrize("n", [0, 1, 40, NMS_BLOCK + 90])
def test_nms_is_the_greedy_definition(n):
    """Blocked, vectorised NMS keeps exactly what the one-pair-at-a-time greedy pass keeps: tied scores, empty
    boxes and more candidates than one block included."""
    rng = np.random.default_rng(n)
    xy, wh = rng.uniform(0, 150, (n, 2)), rng.uniform(0, 40, (n, 2))
    wh[rng.random(n) < 0.1] = 0
    boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
    scores = rng.choice(np.linspace(0.5, 1, 8), n).astype(np.float32)
    for mode, threshold in (("iou", 0.5), ("iou", 0.7), ("min", 0.7)):
        assert nms(boxes, scores, threshold, mode).tolist() == _greedy_nms(boxes, scores, threshold, mode)


def test_face_crops_are_torchs_area_interpolation_of_the_clipped_box():
    """R-/O-Net inputs: each box clipped to the image (1-based, as the reference) and area-resized, read from the
    frame's summed-area table, bit-equal to torch's interpolate of that crop."""
    img = np.random.default_rng(1).integers(0, 256, (90, 120, 3)).astype(np.uint8)
    boxes = np.array([[10.7, 5.2, 40.1, 60.9], [-8, -3, 30, 25], [100, 70, 140, 99], [50, 50, 53, 52]], np.float32)
    crops, ok = _crops(integral(img), boxes, 24)
    assert ok.tolist() == [0, 1, 2, 3]
    chw = torch.from_numpy(img.astype(np.float32)).permute(2, 0, 1)[None]
    for crop, (x1, y1, x2, y2) in zip(crops, np.trunc(boxes[:, :4]).astype(int)):
        x, y, ex, ey = max(x1, 1), max(y1, 1), min(x2, 120), min(y2, 90)
        want = torch.nn.functional.interpolate(chw[:, :, y - 1:ey, x - 1:ex], size=(24, 24), mode="area")[0]
        np.testing.assert_array_equal(crop, ((want - 127.5) * 0.0078125).numpy())


def test_pyramid_stops_where_pnet_no_longer_fits():
    scales = pyramid(480, 640, 20.0, 0.709)
    assert scales[0] == pytest.approx(12 / 20) and all(480 * s >= 12 for s in scales)
    assert 480 * scales[-1] * 0.709 < 12


def _face(box, score=0.99):
    return Face(box, score, np.zeros((5, 2)))


def test_face_choice_rules():
    big_edge, central = _face((0, 0, 60, 60)), _face((70, 70, 120, 120))
    faces = [big_edge, central]
    assert choose_face(faces, (200, 200), "largest") == [big_edge]
    assert choose_face(faces, (200, 200), "largest-central") == [central]  # area - 2 * offset^2 (align_lfw)
    assert choose_face(faces, (200, 200), "all") == faces and choose_face([], (200, 200)) == []
    with pytest.raises(EdgekdError, match="face rule 'biggest'"):
        choose_face(faces, (200, 200), "biggest")


@pytest.mark.parametrize("bad", [dict(thresholds=(0.6, 0.7)), dict(min_face=5), dict(factor=1.2),
                                 dict(nms_rnet=0), dict(bogus=1)])
def test_bad_settings_are_one_line(bad):
    with pytest.raises(EdgekdError, match="MTCNN"):
        MtcnnSettings.make(**bad)


def test_missing_weights_name_the_fix(tmp_path):
    from edgekd.models.mtcnn import load_network

    with pytest.raises(EdgekdError, match="pnet.pt: MTCNN weights not found; run make setup"):
        load_network("pnet", tmp_path)
    (tmp_path / "rnet.pt").write_bytes(b"not a state dict")
    with pytest.raises(EdgekdError, match="rnet.pt: cannot load MTCNN weights"):
        load_network("rnet", tmp_path)


@pytest.fixture(scope="module")
def networks():
    from edgekd.models.mtcnn import load_networks, torch_callables

    if not (mtcnn_weights_dir() / "onet.pt").is_file():
        pytest.skip("MTCNN weights absent (make setup fetches them)")
    return torch_callables(load_networks())


def test_detections_on_lfw_photos_land_on_the_datasets_landmarks(networks, shared_data, one_torch_thread):
    """raw_150 photos are LFW's 250x250 scaled by 0.6; lfw_landmark.txt gives 5 points at 250x250. The chosen
    face's points must lie within a few pixels of them, and a blank image has no face."""
    from PIL import Image

    from edgekd.data.align import read_landmarks

    marks = read_landmarks(shared_data / "lfw" / "lfw_landmark.txt")
    detector = Mtcnn(networks)
    names = ["Aaron_Eckhart/Aaron_Eckhart_0001.jpg", "Abdullah_Gul/Abdullah_Gul_0001.jpg"]
    for name in names:
        img = np.asarray(Image.open(shared_data / "lfw" / "raw_150" / name).convert("RGB"))
        faces = detector(img)
        assert faces and all(0.7 < f.score <= 1 for f in faces)
        chosen = choose_face(faces, img.shape)[0]
        err = np.linalg.norm(chosen.landmarks - 0.6 * marks[name], axis=1).max()
        assert err < 4.0, (name, err)
    assert detector(np.full((150, 150, 3), 128, np.uint8)) == []
