"""The two real pretrained MobileFaceNets: strict loading, detection, sensible embeddings, ONNX parity."""

import io
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from edgekd.models import create_model, load_model
from edgekd.models.pretrained import FOAMLIU_WEIGHTS, XIAOCCER_WEIGHTS

pytestmark = pytest.mark.shared_data
NAMES = {"mobilefacenet_ms1m_foamliu": FOAMLIU_WEIGHTS, "mobilefacenet_casia_xiaoccer": XIAOCCER_WEIGHTS}


@pytest.fixture(scope="module")
def faces(shared_data):
    """small_lfw.bin: 20 aligned 112x112 faces = the first 10 positive pairs of LFW fold 1 (README)."""
    with open(shared_data / "bins" / "small_lfw.bin", "rb") as f:
        bins, issame = pickle.load(f, encoding="bytes")
    images = np.stack([np.asarray(Image.open(io.BytesIO(np.asarray(b).tobytes())).convert("RGB")) for b in bins])
    names = [line.split("\t")[0] for line in (shared_data / "lfw" / "pairs.txt").read_text().splitlines()[1:11]]
    return images, np.repeat(names, 2), np.asarray(issame)


@pytest.mark.parametrize("name", list(NAMES))
def test_file_is_detected_and_loads_strict(shared_data, name):
    model, info = load_model(shared_data.joinpath(*NAMES[name]))  # no --model
    assert info.name == name and info.embedding_size == 128 and info.meta == {}
    assert info.preprocess == model.preprocess and not model.training


@pytest.mark.parametrize("name", list(NAMES))
def test_default_weights_and_pretrained_flag(shared_data, name):
    _, info = load_model(None, name)
    assert info.weights == shared_data.joinpath(*NAMES[name])
    a, b = create_model(name, pretrained=True), load_model(None, name)[0]
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k])


@pytest.mark.parametrize("name", list(NAMES))
def test_embeddings_separate_identities(faces, name):
    images, ids, issame = faces
    assert issame.all() and images.shape == (20, 112, 112, 3)
    model, info = load_model(None, name)
    with torch.no_grad():
        emb = model(torch.from_numpy(info.preprocess(images))).numpy()
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    sim = emb @ emb.T
    same = (ids[:, None] == ids[None]) & ~np.eye(len(ids), dtype=bool)
    diff = ids[:, None] != ids[None]
    assert sim[same].mean() > 0.55 and sim[diff].mean() < 0.15, (sim[same].mean(), sim[diff].mean())
    assert (np.diag(sim[0::2, 1::2]) > 0.4).all()  # every listed pair


def test_foamliu_matches_its_onnx_export(shared_data, faces):
    """The ONNX file beside the .pt is an independent forward pass of the same weights."""
    ort = pytest.importorskip("onnxruntime")
    images = faces[0][:6]
    model, info = load_model(None, "mobilefacenet_ms1m_foamliu")
    x = info.preprocess(images)
    sess = ort.InferenceSession(str(shared_data / "weights" / "mobilefacenet_ms1m_foamliu" / "MobileFaceNet.onnx"),
                                providers=["CPUExecutionProvider"])
    ref = np.concatenate([sess.run(None, {"input0": x[i : i + 1]})[0] for i in range(len(x))])  # fixed batch 1
    with torch.no_grad():
        out = model(torch.from_numpy(x)).numpy()
    assert ref.shape == out.shape == (6, 128)
    assert np.abs(ref - out).max() < 1e-4
