"""MTCNN: the torch-free numpy pipeline (pyramid resizing, NMS, face choice, settings) and the networks loaded
strict from facenet-pytorch's weight files, run on real LFW photos against the dataset's own landmarks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgekd.detect.faces import Face, choose_face
from edgekd.detect.mtcnn import Mtcnn, MtcnnSettings, area_resize, nms, pyramid
from edgekd.errors import EdgekdError
from edgekd.paths import mtcnn_weights_dir


@pytest.mark.parametrize("size", [(37, 53), (12, 12), (90, 60), (250, 131)])
def test_area_resize_is_torchs_area_interpolation(size):
    """Down- and up-scaling, as the reference resizes its pyramid levels and crops."""
    x = np.random.default_rng(0).integers(0, 256, (3, 71, 64)).astype(np.uint8)  # 8-bit pixels, as frames are
    want = torch.nn.functional.interpolate(torch.from_numpy(x.astype(np.float32))[None], size=size,
                                           mode="area")[0].numpy()
    np.testing.assert_allclose(area_resize(x, size), want, rtol=1e-5, atol=1e-3)


def test_nms_keeps_the_best_of_overlapping_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 4, 4]], np.float32)
    scores = np.array([0.9, 0.95, 0.5, 0.8], np.float32)
    assert sorted(nms(boxes, scores, 0.5).tolist()) == [1, 2, 3]  # box 3 lies inside box 0: IoU 0.16
    assert sorted(nms(boxes, scores, 0.5, mode="min").tolist()) == [1, 2]  # ... but overlaps it fully by "Min"


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
