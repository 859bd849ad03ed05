"""Face-verification metrics on pairs of embeddings (numpy only).

Accuracy follows insightface's LFW protocol so figures are comparable with published ones: embeddings are
L2-normalised, the score is the squared euclidean distance (= 2 - 2 cos), thresholds np.arange(0, 4, 0.01),
and each fold's accuracy uses the threshold that maximises accuracy on the nine other folds; the std is
numpy's population std over the folds, as insightface reports it.
TAR@FAR, EER and AUC are computed once over all pairs (not per fold) from the ROC of cosine similarity.
Pairs marked `wrong` (one of their photos held no face for the detector) are given the score that makes them an
error at every threshold: a same-identity pair the largest distance, a different-identity pair the smallest.
"""

from __future__ import annotations

import numpy as np

from edgekd.errors import EdgekdError

THRESHOLDS = np.arange(0, 4, 0.01)
FARS = (1e-1, 1e-2, 1e-3)
# Squared distances of pairs scored wrong whatever the threshold: beyond every threshold ("different") for a
# same-identity pair, below every one ("same") for a different-identity pair; as cosines -1.5 and +1.5.
WRONG_SAME_DIST, WRONG_DIFFERENT_DIST = 5.0, -1.0
WRONG_SAME_COS, WRONG_DIFFERENT_COS = 1 - WRONG_SAME_DIST / 2, 1 - WRONG_DIFFERENT_DIST / 2  # cos = 1 - dist / 2
WRONG_RULE = ("a pair using a photo with no face is a wrong decision at every threshold: a same-identity pair is "
              f"scored as different, a different-identity pair as same (distance {WRONG_SAME_DIST} / "
              f"{WRONG_DIFFERENT_DIST}, cosine {WRONG_SAME_COS} / {WRONG_DIFFERENT_COS:+})")


def force_wrong(dist: np.ndarray, issame: np.ndarray, wrong: np.ndarray | None) -> np.ndarray:
    """Squared distances with the `wrong` pairs moved where every threshold misjudges them."""
    if wrong is None:
        return dist
    wrong = np.asarray(wrong, bool)
    return np.where(wrong, np.where(issame, WRONG_SAME_DIST, WRONG_DIFFERENT_DIST), dist)


def force_wrong_cosine(cos: np.ndarray, issame: np.ndarray, wrong: np.ndarray | None) -> np.ndarray:
    """Cosines with the `wrong` pairs moved where every threshold misjudges them (force_wrong's, as cosines)."""
    if wrong is None:
        return cos
    return np.where(np.asarray(wrong, bool), np.where(issame, WRONG_SAME_COS, WRONG_DIFFERENT_COS), cos)


def l2_normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def far_key(far: float) -> str:
    """JSON key of a FAR, e.g. 1e-3 -> "1e-03" (the contract's spelling)."""
    return f"{far:.0e}"


def roc_curve(scores: np.ndarray, issame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(fpr, tpr) for 'accept when score >= threshold', one point per distinct score, from (0, 0)."""
    scores = np.asarray(scores, dtype=np.float64)
    issame = np.asarray(issame, dtype=bool)
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], issame[order]
    last = np.r_[np.nonzero(np.diff(s))[0], s.size - 1]  # last index of each run of equal scores
    tp = np.cumsum(y)[last]
    fp = np.cumsum(~y)[last]
    npos, nneg = max(int(y.sum()), 1), max(int((~y).sum()), 1)
    return np.r_[0.0, fp / nneg], np.r_[0.0, tp / npos]


def tar_at_far(scores: np.ndarray, issame: np.ndarray, far: float) -> float | None:
    """Fraction of genuine pairs accepted at the strictest threshold letting through at most far*K of K impostors.

    None when far < 1/K: with K impostor pairs no FAR below 1/K can be measured.
    """
    scores = np.asarray(scores, dtype=np.float64)
    issame = np.asarray(issame, dtype=bool)
    neg = np.sort(scores[~issame])[::-1]
    allowed = int(np.floor(far * neg.size + 1e-9))
    if allowed < 1:
        return None
    if allowed >= neg.size:
        return 1.0
    threshold = neg[allowed]  # accept strictly above the (allowed+1)-th highest impostor score
    return float(np.mean(scores[issame] > threshold))


def eer(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """Equal error rate: where the false-accept rate meets the false-reject rate, linearly interpolated on the ROC."""
    diff = fpr - (1.0 - tpr)  # increasing along the curve, from -1 at (0, 0)
    i = int(np.argmax(diff >= 0))
    if i == 0:
        return float(fpr[0])
    t = -diff[i - 1] / (diff[i] - diff[i - 1])
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def _accuracies(dist: np.ndarray, issame: np.ndarray) -> np.ndarray:
    """Accuracy of 'same when dist < t' for every t in THRESHOLDS (insightface's comparison)."""
    pred = dist[None, :] < THRESHOLDS[:, None]
    return (pred == issame[None, :]).mean(axis=1)


def sphereface_accuracy(feat1: np.ndarray, feat2: np.ndarray, issame: np.ndarray, folds: np.ndarray,
                        wrong: np.ndarray | None = None) -> dict:
    """The SphereFace-style LFW protocol some repositories report (e.g. Xiaoccer/MobileFaceNet_Pytorch's 99.30%):
    subtract the mean raw feature of the nine training folds, L2-normalise, cosine score, threshold = mean of all
    best thresholds on a 1e-4 grid over [-1, 1] ("same" when above). Given only to compare with such figures.
    `wrong` pairs are errors at every threshold (and stay out of the mean feature)."""
    grid = np.arange(-10000, 10001) / 10000.0
    issame = np.asarray(issame, dtype=bool)
    folds = np.asarray(folds)
    wrong = np.zeros(issame.size, bool) if wrong is None else np.asarray(wrong, bool)
    accs = []
    for k in np.unique(folds):
        train, test = folds != k, folds == k
        mu = np.concatenate([feat1[train & ~wrong], feat2[train & ~wrong]]).mean(axis=0)
        s = np.sum(l2_normalize(feat1 - mu) * l2_normalize(feat2 - mu), axis=1)
        s = force_wrong_cosine(s, issame, wrong)
        pos, neg = np.sort(s[train & issame]), np.sort(s[train & ~issame])
        correct = pos.size - np.searchsorted(pos, grid, "right") + np.searchsorted(neg, grid, "left")
        t = grid[correct == correct.max()].mean()
        accs.append(float(np.mean(np.where(issame[test], s[test] > t, s[test] < t))))
    return {"accuracy_mean": float(np.mean(accs)), "accuracy_std": float(np.std(accs)), "fold_accuracies": accs}


def verification_metrics(emb1: np.ndarray, emb2: np.ndarray, issame: np.ndarray, folds: np.ndarray,
                         wrong: np.ndarray | None = None) -> dict:
    """All verification figures for pairs (emb1[i], emb2[i]); embeddings are L2-normalised here. `wrong`: pairs
    scored as errors at every threshold (force_wrong), for accuracy and the ROC figures alike."""
    e1, e2 = l2_normalize(emb1), l2_normalize(emb2)
    issame = np.asarray(issame, dtype=bool)
    folds = np.asarray(folds)
    if not (e1.shape == e2.shape and e1.shape[0] == issame.size == folds.size):
        raise EdgekdError(f"pair arrays disagree: {e1.shape}, {e2.shape}, {issame.shape}, {folds.shape}")
    if issame.all() or not issame.any():
        raise EdgekdError("verification data needs both same-identity and different-identity pairs")
    dist = force_wrong(np.sum((e1 - e2) ** 2, axis=1), issame, wrong)
    fold_ids = np.unique(folds)
    fold_acc, fold_thr = [], []
    for k in fold_ids:
        test = folds == k
        train = ~test if len(fold_ids) > 1 else test  # one fold only: no held-out choice possible
        best = int(np.argmax(_accuracies(dist[train], issame[train])))
        fold_thr.append(float(THRESHOLDS[best]))
        fold_acc.append(float(_accuracies(dist[test], issame[test])[best]))
    cos = 1.0 - dist / 2.0
    fpr, tpr = roc_curve(cos, issame)
    num_neg = int((~issame).sum())
    tars = {far_key(f): tar_at_far(cos, issame, f) for f in FARS}
    unsupported = [k for k, v in tars.items() if v is None]
    best_threshold = float(np.mean(fold_thr))
    out = {
        "accuracy_mean": float(np.mean(fold_acc)),
        "accuracy_std": float(np.std(fold_acc)),
        "fold_accuracies": fold_acc,
        "fold_thresholds": fold_thr,
        "best_threshold": best_threshold,
        "best_threshold_cosine": 1.0 - best_threshold / 2.0,
        "threshold_metric": "squared L2 distance of normalised embeddings (same when below); cosine = 1 - d/2",
        "tar_at_far": tars,
        "eer": eer(fpr, tpr),
        "auc": float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2)),
        "num_pairs": int(issame.size),
        "num_positive": int(issame.sum()),
        "num_negative": num_neg,
        "num_folds": int(len(fold_ids)),
    }
    if unsupported:
        out["tar_at_far_note"] = (
            f"{', '.join(unsupported)}: not measurable with {num_neg} different-identity pairs "
            f"(smallest measurable FAR is 1/{num_neg} = {1 / num_neg:.1e})"
        )
    if len(fold_ids) == 1:
        out["accuracy_note"] = "one fold only: threshold chosen on the same pairs it is scored on (optimistic)"
    return out
