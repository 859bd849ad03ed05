"""evaluate() / embed_images() with a plain numpy embedding function on a small in-memory verification set."""

import json

import numpy as np
import pytest

from edgekd.errors import EdgekdError
from edgekd.eval import embed_images, evaluate
from edgekd.preprocess import Preprocess

PRE = Preprocess(input_size=(8, 8))


class TinySet:
    """A VerificationSet look-alike: identity k's images are noisy copies of a random 8x8 pattern."""

    name = "tiny"
    source = "memory:tiny"
    sha256 = "0" * 64

    def __init__(self, identities=20, per_id=2, noise=10, seed=0):
        rng = np.random.default_rng(seed)
        base = rng.integers(0, 256, size=(identities, 8, 8, 3))
        ids = np.repeat(np.arange(identities), per_id)
        self._images = np.clip(base[ids] + rng.normal(0, noise, size=(ids.size, 8, 8, 3)), 0, 255).astype(np.uint8)
        pos = [(2 * k, 2 * k + 1) for k in range(identities)]
        neg = [(2 * k, 2 * ((k + 1) % identities) + 1) for k in range(identities)]
        self.pairs = np.array(pos + neg)
        self.issame = np.array([True] * len(pos) + [False] * len(neg))
        self.folds = np.r_[np.arange(len(pos)) % 10, np.arange(len(neg)) % 10]
        self.num_images = len(self._images)
        self.loaded = []

    def images(self, idx):
        self.loaded.extend(int(i) for i in idx)
        return self._images[np.asarray(idx)]


def flat(x):
    return x.reshape(len(x), -1)


def test_evaluate_keys_and_values(tmp_path):
    vset = TinySet()
    png = tmp_path / "roc.png"
    r = evaluate(flat, vset, PRE, batch_size=7, progress=False, plot=png)
    for key in ("accuracy_mean", "accuracy_std", "fold_accuracies", "best_threshold", "tar_at_far", "eer", "auc",
                "num_pairs", "num_images", "flip", "data", "data_sha256", "images_per_s", "embeddings_seconds"):
        assert key in r
    assert r["accuracy_mean"] == 1.0 and r["auc"] == 1.0
    assert r["num_pairs"] == 40 and r["num_images"] == 40 and r["flip"] == "sum"
    assert r["tar_at_far"]["1e-01"] == 1.0 and r["tar_at_far"]["1e-02"] is None  # 20 impostor pairs
    assert "1/20" in r["tar_at_far_note"]
    assert r["images_per_s"] > 0
    assert set(r["accuracy_by_flip"]) == {"none", "sum", "concat"} and r["accuracy_by_flip"]["sum"] == 1.0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    json.dumps(r)  # JSON-ready
    assert sorted(vset.loaded) == list(range(40))  # every image decoded exactly once


def test_flip_modes_and_embedding_rows():
    vset = TinySet()
    seen = []

    def fn(x):
        seen.append(x.copy())
        return flat(x)

    e = embed_images(fn, vset, PRE, batch_size=16, flip="concat", progress=False)
    assert e.emb.shape == (40, 2 * 8 * 8 * 3)
    np.testing.assert_allclose(np.linalg.norm(e.emb, axis=1), 1, rtol=1e-5)
    np.testing.assert_array_equal(seen[1], seen[0][..., ::-1])  # second call is the horizontal flip
    e_sum = embed_images(flat, vset, PRE, flip=True, progress=False)
    x = PRE(vset._images[:1])
    want = flat(x) + flat(x[..., ::-1])
    np.testing.assert_allclose(e_sum.emb[0], want[0] / np.linalg.norm(want[0]), rtol=1e-5)
    r = evaluate(flat, vset, PRE, flip=False, progress=False)
    assert r["flip"] == "none" and "accuracy_by_flip" not in r  # no mirror pass to combine
    with pytest.raises(EdgekdError, match="flip"):
        evaluate(flat, vset, PRE, flip="mirror", progress=False)


def test_reference_agreement():
    vset = TinySet()
    noisy = lambda x: flat(x) + 0.5  # noqa: E731  (a different but related model)
    r = evaluate(flat, vset, PRE, progress=False, reference=(flat, PRE))
    assert r["reference"]["cosine_min"] == pytest.approx(1.0, abs=1e-6)
    r = evaluate(flat, vset, PRE, progress=False, reference=(noisy, PRE))
    assert 0 < r["reference"]["cosine_min"] < r["reference"]["cosine_mean"] < 1
    assert r["reference"]["accuracy_mean"] == 1.0


def test_wrong_embedding_shape_is_an_error():
    with pytest.raises(EdgekdError, match="shape"):
        evaluate(lambda x: flat(x)[:1], TinySet(), PRE, progress=False)
