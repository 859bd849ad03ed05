"""All-pairs protocol against a brute-force computation on small sets (every pair listed explicitly)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from edgekd.errors import EdgekdError
from edgekd.eval import allpairs
from edgekd.eval.metrics import l2_normalize, tar_at_far


def _toy(n_ids=40, per=(1, 6), dim=24, seed=0):
    """Embeddings with four entries of +-1 (norm 2): every cosine is a multiple of 1/4, exact in any summation order,
    so brute force and block products agree bit for bit (and ties exercise the strictly-above rule). Images of one
    identity share some of its four entries."""
    rng = np.random.default_rng(seed)
    labels = np.concatenate([[c] * rng.integers(*per) for c in range(n_ids)])
    base = [rng.choice(dim, 4, replace=False) for _ in range(n_ids)]
    emb = np.zeros((labels.size, dim), np.float32)
    for k, c in enumerate(labels):
        pos = base[c].copy()
        for m in range(4):
            if rng.random() < 0.35:
                pos[m] = rng.choice(np.setdiff1d(np.arange(dim), pos))
        emb[k, pos] = rng.choice([-1.0, 1.0], 4) if rng.random() < 0.2 else 1.0
    return emb, labels


def _brute(emb, labels, cap=10**9):
    e = l2_normalize(emb)
    scores, same = [], []
    for i, j in itertools.combinations(range(len(labels)), 2):
        if labels[i] != labels[j]:
            scores.append(float(e[i] @ e[j]))
            same.append(False)
    g = allpairs.genuine_pairs(np.unique(labels, return_inverse=True)[1], cap)
    scores += [float(e[i] @ e[j]) for i, j in g]
    same += [True] * len(g)
    return np.asarray(scores), np.asarray(same)


def test_matches_brute_force_tar_and_counts():
    emb, labels = _toy()
    scores, same = _brute(emb, labels)
    fars = (1e-1, 1e-2, 1e-3)
    out = allpairs.allpairs_metrics(emb, labels, fars=fars, bootstrap=20)
    assert out["num_impostor_pairs"] == int((~same).sum())
    assert out["num_genuine_pairs"] == int(same.sum())
    for f in fars:
        assert out["tar_at_far"][f"{f:.0e}"] == pytest.approx(tar_at_far(scores, same, f), abs=1e-9)
    assert set(out) >= {"protocol", "tar_at_far", "tar_at_far_ci95", "num_impostor_pairs", "num_genuine_pairs"}
    assert out["protocol"] == "all-pairs"
    for k, (lo, hi) in out["tar_at_far_ci95"].items():
        assert lo <= hi


def test_small_blocks_and_tail_give_the_same_answer():
    emb, labels = _toy(n_ids=60, seed=1)
    a = allpairs.score_all_pairs(emb, labels, max_far=1e-2, block=7)
    b = allpairs.score_all_pairs(emb, labels, max_far=1e-2, block=4096)
    assert a.num_impostor == b.num_impostor
    np.testing.assert_allclose(a.tail, b.tail, atol=1e-6)
    for f in (1e-2, 1e-3):
        assert allpairs.threshold_at_far(a, f) == pytest.approx(allpairs.threshold_at_far(b, f), abs=1e-6)


def test_bootstrap_weights_equal_physically_duplicated_identities():
    """Identity weights w must score like a set where identity a appears w_a times (copies not paired together)."""
    emb, labels = _toy(n_ids=12, per=(2, 5), seed=2)
    ids = np.unique(labels, return_inverse=True)[1]
    ps = allpairs.score_all_pairs(emb, ids, max_far=0.5)
    w = np.array([0, 1, 2, 3, 1, 0, 1, 2, 1, 1, 0, 2], np.float64)
    # brute force: expand copies, impostor pairs = different identity (not different copy of the same identity)
    imp, gen_w, gen_s = [], [], []
    e = l2_normalize(emb)
    for i, j in itertools.combinations(range(len(ids)), 2):
        if ids[i] != ids[j]:
            imp += [float(e[i] @ e[j])] * int(w[ids[i]] * w[ids[j]])
    imp = np.sort(np.asarray(imp))[::-1]
    for f in (0.3, 0.1, 0.05):
        allowed = int(np.floor(f * imp.size + 1e-9))
        t = allpairs.threshold_at_far(ps, f, w)
        assert t == pytest.approx(imp[allowed], abs=1e-9)
        g = allpairs.genuine_pairs(ids)
        gs = np.sum(e[g[:, 0]] * e[g[:, 1]], 1)
        gw = w[ids[g[:, 0]]]
        assert allpairs.tar_at_threshold(ps, t, w) == pytest.approx((gw * (gs > t)).sum() / gw.sum())
        assert allpairs.far_at_threshold(ps, t, w) == pytest.approx(np.mean(imp > t))


def test_genuine_cap_and_stored_thresholds():
    emb, labels = _toy(n_ids=5, per=(12, 13), seed=3)
    g = allpairs.genuine_pairs(np.unique(labels, return_inverse=True)[1], cap=30)
    assert len(g) == 5 * 30 and len({tuple(p) for p in g.tolist()}) == len(g)
    scores, same = _brute(emb, labels, cap=30)
    out = allpairs.allpairs_metrics(emb, labels, fars=(1e-2,), stored_thresholds={"1e-02": 0.2}, genuine_cap=30,
                                    bootstrap=10)
    assert out["far_at_stored_threshold"]["1e-02"] == pytest.approx(np.mean(scores[~same] > 0.2))
    assert out["tar_at_stored_threshold"]["1e-02"] == pytest.approx(np.mean(scores[same] > 0.2))


def test_unmeasurable_far_and_single_identity():
    emb, labels = _toy(n_ids=4, per=(2, 3))
    out = allpairs.allpairs_metrics(emb, labels, bootstrap=5)
    assert out["tar_at_far"]["1e-05"] is None and "not measurable" in out["tar_at_far_note"]
    with pytest.raises(EdgekdError, match="at least 2 identities"):
        allpairs.allpairs_metrics(emb[:2], np.zeros(2), bootstrap=5)


def test_paired_drop_is_zero_for_identical_scores():
    emb, labels = _toy(n_ids=50, seed=4)
    ps = allpairs.score_all_pairs(emb, labels, max_far=1e-2)
    d = allpairs.paired_tar_drop(ps, ps, 1e-2, bootstrap=50)
    assert d["drop_pt"] == 0 and d["drop_pt_ci95"] == [0.0, 0.0]
    noisy = allpairs.score_all_pairs(emb + np.random.default_rng(0).normal(size=emb.shape), labels, max_far=1e-2)
    d = allpairs.paired_tar_drop(ps, noisy, 1e-2, bootstrap=200)
    assert d["drop_pt"] > 0
    # the one-sided upper 95 % bound (what the INT8 gate tests) sits inside the two-sided interval's upper half
    assert d["drop_pt_ci95"][0] < d["drop_pt_upper95"] < d["drop_pt_ci95"][1]


def test_allpairs_imports_no_torch_or_runtime():
    import subprocess
    import sys

    code = ("import sys, edgekd.eval.allpairs; "
            "bad = [m for m in ('torch', 'onnxruntime', 'tensorrt') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
