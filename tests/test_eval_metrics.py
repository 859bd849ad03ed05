"""Metric correctness on hand-computed cases (numpy only)."""

import numpy as np
import pytest

from edgekd.errors import EdgekdError
from edgekd.eval.metrics import eer, roc_curve, tar_at_far, verification_metrics


def pairs_with_cosines(cos):
    """emb1 = (1, 0), emb2 at angle acos(c): their cosine is exactly c, squared distance 2 - 2c."""
    cos = np.asarray(cos, dtype=np.float64)
    e1 = np.tile([1.0, 0.0], (cos.size, 1))
    e2 = np.stack([cos, np.sqrt(1 - cos**2)], axis=1)
    return e1, e2


def pairs_with_distances(d):
    return pairs_with_cosines(1 - np.asarray(d) / 2)


def test_tenfold_threshold_chosen_on_other_folds():
    # fold 0: genuine d = .105 .505, impostor 1.005 1.505; fold 1: genuine .205 1.205, impostor .305 2.005.
    # Train on fold 1 -> first best threshold 0.21 -> fold 0 scores 3/4.
    # Train on fold 0 -> first best threshold 0.51 -> fold 1 scores 2/4 (1.205 rejected, .305 accepted).
    d = [0.105, 0.505, 1.005, 1.505, 0.205, 1.205, 0.305, 2.005]
    issame = [1, 1, 0, 0, 1, 1, 0, 0]
    folds = [0, 0, 0, 0, 1, 1, 1, 1]
    m = verification_metrics(*pairs_with_distances(d), issame, folds)
    assert m["fold_accuracies"] == pytest.approx([0.75, 0.5])
    assert m["fold_thresholds"] == pytest.approx([0.21, 0.51])
    assert m["accuracy_mean"] == pytest.approx(0.625)
    assert m["accuracy_std"] == pytest.approx(0.125)  # population std, as insightface
    assert m["best_threshold"] == pytest.approx(0.36)
    assert m["best_threshold_cosine"] == pytest.approx(0.82)
    assert m["num_pairs"] == 8 and m["num_folds"] == 2


SCORES_POS = [0.9, 0.8, 0.5, 0.3]
SCORES_NEG = [0.6, 0.4, 0.2, 0.1, 0.0, -0.1, -0.2, -0.3, -0.4, -0.5]


def hand_case():
    scores = np.array(SCORES_POS + SCORES_NEG)
    issame = np.array([True] * 4 + [False] * 10)
    return scores, issame


def test_tar_at_far_hand_case():
    scores, issame = hand_case()
    # FAR 0.1 of 10 impostors -> one may pass: threshold above 0.4 -> genuine .9 .8 .5 accepted.
    assert tar_at_far(scores, issame, 0.1) == pytest.approx(0.75)
    assert tar_at_far(scores, issame, 0.2) == pytest.approx(1.0)  # two may pass: threshold above 0.2 -> .3 accepted
    assert tar_at_far(scores, issame, 1.0) == pytest.approx(1.0)
    assert tar_at_far(scores, issame, 0.01) is None  # 1/10 is the smallest measurable FAR


def test_auc_and_eer_hand_case():
    scores, issame = hand_case()
    fpr, tpr = roc_curve(scores, issame)
    # genuine beat 10, 10, 9, 8 of the 10 impostors -> AUC = 37/40
    assert float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2)) == pytest.approx(0.925)
    # at threshold 0.3: FAR 2/10, FRR 0/4; at 0.4: FAR 2/10, FRR 1/4 -> the curves cross at 0.2
    assert eer(fpr, tpr) == pytest.approx(0.2)


def test_metrics_hand_case_via_embeddings():
    scores, issame = hand_case()
    m = verification_metrics(*pairs_with_cosines(scores), issame, np.zeros(14, int))
    assert m["auc"] == pytest.approx(0.925)
    assert m["eer"] == pytest.approx(0.2)
    assert m["tar_at_far"] == {"1e-01": pytest.approx(0.75), "1e-02": None, "1e-03": None}
    assert "1e-02, 1e-03" in m["tar_at_far_note"] and "1/10" in m["tar_at_far_note"]
    assert "one fold" in m["accuracy_note"]


def test_auc_matches_rank_statistic_with_ties():
    rng = np.random.default_rng(0)
    scores = np.round(rng.normal(size=300), 1)  # many ties
    issame = rng.random(300) < 0.4
    fpr, tpr = roc_curve(scores, issame)
    auc = np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2)
    pos, neg = scores[issame][:, None], scores[~issame][None, :]
    assert auc == pytest.approx(np.mean(pos > neg) + 0.5 * np.mean(pos == neg))


def test_embeddings_are_normalised_and_perfect_separation():
    rng = np.random.default_rng(1)
    ids = rng.normal(size=(40, 16))
    e1 = ids * rng.uniform(0.5, 5, size=(40, 1))  # scale must not matter
    e2 = np.where(np.arange(40)[:, None] < 20, ids, -ids) * 3
    issame = np.arange(40) < 20
    m = verification_metrics(e1, e2, issame, np.arange(40) % 10)
    assert m["accuracy_mean"] == 1.0 and m["accuracy_std"] == 0.0
    assert m["auc"] == 1.0 and m["eer"] == 0.0
    assert m["tar_at_far"]["1e-01"] == 1.0


def test_bad_input_is_one_line_error():
    e = np.ones((4, 3))
    with pytest.raises(EdgekdError):
        verification_metrics(e, e[:3], [1, 0, 1, 0], [0, 0, 1, 1])
    with pytest.raises(EdgekdError, match="both"):
        verification_metrics(e, e, [1, 1, 1, 1], [0, 0, 1, 1])


def test_sphereface_protocol_removes_a_common_offset():
    from edgekd.eval.metrics import sphereface_accuracy

    # Raw features share an offset of +500 on axis 0 that the protocol's mean subtraction removes: without it all
    # cosines would be ~1. Fold k's threshold comes from the other fold's centred scores.
    rng = np.random.default_rng(0)
    base = rng.normal(size=(40, 64))
    e1 = base + np.r_[500.0, np.zeros(63)]
    e2 = np.where(np.arange(40)[:, None] % 2 == 0, base + 0.05 * rng.normal(size=(40, 64)), rng.normal(size=(40, 64)))
    e2 = e2 + np.r_[500.0, np.zeros(63)]
    issame = np.arange(40) % 2 == 0
    folds = np.arange(40) // 20
    r = sphereface_accuracy(e1, e2, issame, folds)
    assert r["accuracy_mean"] == 1.0 and len(r["fold_accuracies"]) == 2
    plain = verification_metrics(e1, e2, issame, folds)  # uncentred: the offset dominates every cosine
    assert plain["accuracy_mean"] < 1.0
