"""All-pairs low-FAR protocol (as BLUFR does for LFW): every impostor pair of a set of identities, numpy only.

Why: a 10-fold pair list holds ~3,000 impostor pairs, so TAR at FAR 1e-4 is unmeasurable there; over the ~3,900
images of LFW folds 6-10 identities there are ~7.5 million impostor pairs. Scores are cosines of L2-normalised
embeddings, computed in blocks of matrix products; only the highest impostor scores (the tail any FAR <= 1e-3
needs, with room for bootstrap reweighting) are kept, so memory stays small however many pairs there are.

- Impostor pairs: every pair of images of two different identities.
- Genuine pairs: every pair of images of the same identity, at most `genuine_cap` per identity (a seeded uniform
  sample of that identity's pairs when it has more), so a few identities with hundreds of images cannot dominate.
- A pair is accepted when its cosine is strictly above the threshold; the threshold at FAR f is the
  (floor(f*K)+1)-th highest impostor score of K (the same rule as `metrics.tar_at_far`).
- A photo in which the detector found no face (`no_face`) has cosine -inf to every image: never accepted, so its
  genuine pairs count as false rejections and its impostor pairs as correct rejections, as a deployed system that
  finds no face says "no match". (Counting its impostor pairs as false accepts instead would let one missed photo of
  ~3,900 take 5e-4 of the impostor pairs: no TAR at FAR 1e-4 could be measured at all.)
- 95 % intervals: percentile bootstrap over identities (identities drawn with replacement; an identity drawn w
  times weighs w on its genuine pairs and w_a*w_b on its impostor pairs with identity b; copies of one identity are
  not paired with each other).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgekd.errors import EdgekdError
from edgekd.eval.metrics import far_key, l2_normalize

FARS = (1e-3, 1e-4, 1e-5)
GENUINE_CAP = 200
BOOTSTRAP = 1000
BLOCK = 1024
TAIL_FACTOR = 8  # keep 8x the impostors FAR=max(fars) needs: bootstrap resamples rarely move the rank by 2x
NO_FACE_RULE = ("a photo with no face has cosine -inf to every image: its genuine pairs are rejected (false "
                "rejections), its impostor pairs rejected (correct), as a deployed system answers 'no match'")


@dataclass
class PairScores:
    """One embedding set scored all-pairs: the top of the impostor distribution plus every (capped) genuine pair."""

    counts: np.ndarray  # images per identity (C,)
    num_impostor: int
    tail: np.ndarray  # highest impostor cosines, descending
    tail_ids: np.ndarray  # (len(tail), 2) identity indices of each tail pair
    genuine: np.ndarray  # genuine cosines
    genuine_ids: np.ndarray  # identity of each genuine pair
    above: dict = field(default_factory=dict)  # threshold -> number of impostor pairs scoring above it (exact)

    @property
    def num_identities(self) -> int:
        return int(self.counts.size)

    def impostor_weight_total(self, w: np.ndarray | None = None) -> float:
        """K, or under identity weights w: sum over identity pairs a<b of w_a w_b n_a n_b."""
        if w is None:
            return float(self.num_impostor)
        wn = w * self.counts
        return float((wn.sum() ** 2 - (wn ** 2).sum()) / 2)


def genuine_pairs(labels: np.ndarray, cap: int = GENUINE_CAP, seed: int = 0) -> np.ndarray:
    """(P, 2) image index pairs of equal label: all of them, or a seeded sample of `cap` per identity."""
    rng = np.random.default_rng(seed)
    order = np.argsort(labels, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(labels[order]) != 0])
    out = []
    for s, e in zip(starts, np.r_[starts[1:], labels.size]):
        n = e - s
        if n < 2:
            continue
        i, j = np.triu_indices(n, 1)
        if i.size > cap:
            keep = np.sort(rng.choice(i.size, cap, replace=False))
            i, j = i[keep], j[keep]
        out.append(np.stack([order[s + i], order[s + j]], 1))
    return np.concatenate(out) if out else np.zeros((0, 2), np.int64)


def score_all_pairs(emb: np.ndarray, labels: np.ndarray, max_far: float = max(FARS), thresholds=(),
                    genuine_cap: int = GENUINE_CAP, seed: int = 0, block: int = BLOCK,
                    no_face: np.ndarray | None = None) -> PairScores:
    """Score every impostor pair block by block (upper triangle of E E^T), keeping the tail and exact counts above
    `thresholds`; genuine pairs per `genuine_pairs`. Images `no_face` score -inf against everything."""
    labels = np.asarray(labels)
    if emb.shape[0] != labels.size:
        raise EdgekdError(f"{emb.shape[0]} embeddings but {labels.size} identity labels")
    _, ids, counts = np.unique(labels, return_inverse=True, return_counts=True)
    if counts.size < 2:
        raise EdgekdError(f"all-pairs protocol needs at least 2 identities, got {counts.size}")
    e = l2_normalize(emb).astype(np.float32)
    n = e.shape[0]
    face = np.ones(n, bool)
    if no_face is not None:
        face[np.asarray(no_face, np.int64)] = False
    num_imp = int((n * n - (counts.astype(np.int64) ** 2).sum()) // 2)
    keep = int(min(num_imp, max(TAIL_FACTOR * np.ceil(max_far * num_imp), 1000)))
    thresholds = [float(t) for t in thresholds]
    above = dict.fromkeys(thresholds, 0)
    tail = np.zeros(0, np.float32)
    tail_pairs = np.zeros((0, 2), np.int64)
    for r0 in range(0, n, block):
        r1 = min(r0 + block, n)
        s = e[r0:r1] @ e[r0:].T  # rows r0..r1 against columns r0..n
        if not face.all():
            s[~face[r0:r1]] = -np.inf
            s[:, ~face[r0:]] = -np.inf
        rows = np.arange(r0, r1)[:, None]
        cols = np.arange(r0, n)[None, :]
        mask = (cols > rows) & (ids[r0:r1, None] != ids[None, r0:])
        vals = s[mask]
        for t in thresholds:
            above[t] += int(np.count_nonzero(vals > t))
        if vals.size > keep:
            top = np.argpartition(vals, vals.size - keep)[vals.size - keep:]
        else:
            top = np.arange(vals.size)
        ri, ci = np.nonzero(mask)
        tail = np.r_[tail, vals[top]]
        tail_pairs = np.r_[tail_pairs, np.stack([ri[top] + r0, ci[top] + r0], 1)]
        if tail.size > keep:
            best = np.argpartition(tail, tail.size - keep)[tail.size - keep:]
            tail, tail_pairs = tail[best], tail_pairs[best]
    order = np.argsort(-tail, kind="stable")
    g = genuine_pairs(ids, genuine_cap, seed)
    gs = np.sum(e[g[:, 0]] * e[g[:, 1]], axis=1) if g.size else np.zeros(0, np.float32)
    if g.size and not face.all():
        gs = np.where(face[g[:, 0]] & face[g[:, 1]], gs, -np.inf)
    return PairScores(counts=counts, num_impostor=num_imp, tail=tail[order].astype(np.float64),
                      tail_ids=ids[tail_pairs[order]], genuine=gs.astype(np.float64), genuine_ids=ids[g[:, 0]],
                      above=above)


def threshold_at_far(ps: PairScores, far: float, w: np.ndarray | None = None) -> float | None:
    """Cosine threshold (accept when above) letting through at most far*K impostor pairs; None when far < 1/K."""
    total = ps.impostor_weight_total(w)
    allowed = np.floor(far * total + 1e-9)
    if allowed < 1:
        return None
    cw = np.cumsum(np.ones(ps.tail.size) if w is None else w[ps.tail_ids[:, 0]] * w[ps.tail_ids[:, 1]])
    idx = int(np.searchsorted(cw, allowed, side="right"))  # first tail entry whose cumulative weight exceeds it
    if idx >= ps.tail.size:
        if ps.tail.size == ps.num_impostor:  # the whole distribution is in the tail: everything accepted
            return -np.inf
        raise EdgekdError(f"all-pairs: FAR {far:g} lies beyond the kept impostor tail ({ps.tail.size} scores); "
                          "pass a larger max_far to score_all_pairs")
    return float(ps.tail[idx])


def tar_at_threshold(ps: PairScores, t: float, w: np.ndarray | None = None) -> float:
    acc = ps.genuine > t
    if w is None:
        return float(acc.mean()) if acc.size else float("nan")
    gw = w[ps.genuine_ids]
    return float((gw * acc).sum() / gw.sum()) if gw.sum() > 0 else float("nan")


def far_at_threshold(ps: PairScores, t: float, w: np.ndarray | None = None) -> float | None:
    """Fraction of impostor pairs above t: exact from the block pass when t was given there, else from the tail
    (None when t falls below the kept tail)."""
    if w is None and float(t) in ps.above:
        return ps.above[float(t)] / ps.num_impostor
    n_above = int(np.searchsorted(-ps.tail, -t, side="left"))  # tail entries strictly above t
    if n_above >= ps.tail.size and ps.tail.size < ps.num_impostor:
        return None
    sel = ps.tail_ids[:n_above]
    hits = n_above if w is None else float((w[sel[:, 0]] * w[sel[:, 1]]).sum())
    return hits / ps.impostor_weight_total(w)


def bootstrap_weights(num_identities: int, n: int = BOOTSTRAP, seed: int = 0):
    """Yield identity weight vectors: counts of each identity among num_identities draws with replacement."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        yield np.bincount(rng.integers(0, num_identities, num_identities), minlength=num_identities).astype(np.float64)


def interval(values) -> list[float] | None:
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], np.float64)
    return [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] if v.size else None


def allpairs_metrics(emb: np.ndarray, labels: np.ndarray, fars=FARS, stored_thresholds: dict | None = None,
                     genuine_cap: int = GENUINE_CAP, bootstrap: int = BOOTSTRAP, seed: int = 0,
                     no_face: np.ndarray | None = None) -> dict:
    """The all-pairs JSON: TAR at each FAR with 95 % identity-bootstrap intervals, the thresholds, and (given
    `stored_thresholds` {far key: cosine}) the FAR and TAR measured at thresholds shipped with an artifact.
    `no_face`: image indices without a face (NO_FACE_RULE)."""
    stored = {k: float(v) for k, v in (stored_thresholds or {}).items() if v is not None}  # None: unmeasurable there
    ps = score_all_pairs(emb, labels, max(fars), stored.values(), genuine_cap, seed, no_face=no_face)
    thr = {far_key(f): threshold_at_far(ps, f) for f in fars}
    tar = {k: (tar_at_threshold(ps, t) if t is not None else None) for k, t in thr.items()}
    samples = {k: [] for k in thr}
    s_far = {k: [] for k in stored}
    s_tar = {k: [] for k in stored}
    for w in bootstrap_weights(ps.num_identities, bootstrap, seed):
        for f in fars:
            t = threshold_at_far(ps, f, w)
            samples[far_key(f)].append(tar_at_threshold(ps, t, w) if t is not None else None)
        for k, t in stored.items():
            s_far[k].append(far_at_threshold(ps, t, w))
            s_tar[k].append(tar_at_threshold(ps, t, w))
    out = {
        "protocol": "all-pairs",
        "tar_at_far": tar,
        "tar_at_far_ci95": {k: interval(v) for k, v in samples.items()},
        "thresholds": thr,
        "threshold_rule": "cosine of L2-normalised embeddings; accept when strictly above",
        "num_impostor_pairs": ps.num_impostor,
        "num_genuine_pairs": int(ps.genuine.size),
        "num_identities": ps.num_identities,
        "num_images": int(ps.counts.sum()),
        "genuine_pairs_rule": f"all same-identity pairs, at most {genuine_cap} per identity (seeded uniform sample "
                              f"of that identity's pairs when it has more; seed {seed})",
        "ci95_rule": f"percentile bootstrap over identities, {bootstrap} resamples, seed {seed}",
    }
    if no_face is not None:
        out["no_face"] = {"genuine_pairs_rejected": int(np.count_nonzero(ps.genuine == -np.inf)),
                          "impostor_pairs_rejected": no_face_impostor_pairs(labels, no_face),
                          "no_face_rule": NO_FACE_RULE}
    unmeasurable = [k for k, v in tar.items() if v is None]
    if unmeasurable:
        out["tar_at_far_note"] = (f"{', '.join(unmeasurable)}: not measurable with {ps.num_impostor} impostor pairs "
                                  f"(smallest measurable FAR is {1 / ps.num_impostor:.1e})")
    if stored:
        out["stored_thresholds"] = stored
        out["far_at_stored_threshold"] = {k: far_at_threshold(ps, t) for k, t in stored.items()}
        out["far_at_stored_threshold_ci95"] = {k: interval(v) for k, v in s_far.items()}
        out["tar_at_stored_threshold"] = {k: tar_at_threshold(ps, t) for k, t in stored.items()}
        out["tar_at_stored_threshold_ci95"] = {k: interval(v) for k, v in s_tar.items()}
    return out


def no_face_impostor_pairs(labels: np.ndarray, no_face) -> int:
    """Impostor pairs with at least one image of `no_face`: each such image's pairs with other identities, less the
    pairs of two such images counted twice."""
    labels = np.asarray(labels)
    miss = np.asarray(no_face, np.int64)
    if not miss.size:
        return 0
    _, ids, counts = np.unique(labels, return_inverse=True, return_counts=True)
    mid = ids[miss]
    both = (miss.size ** 2 - (np.bincount(mid, minlength=counts.size) ** 2).sum()) // 2
    return int((labels.size - counts[mid]).sum() - both)


def paired_tar_drop(ref: PairScores, other: PairScores, far: float, bootstrap: int = BOOTSTRAP,
                    seed: int = 0) -> dict:
    """TAR(ref) - TAR(other) at `far` in points, each at its own threshold, with a paired identity-bootstrap
    interval (the same identity draws for both: the two score the same images): the two-sided 95 % interval and the
    one-sided upper 95 % bound (95th percentile of the resampled drops)."""
    def drop(w=None):
        t_r, t_o = threshold_at_far(ref, far, w), threshold_at_far(other, far, w)
        if t_r is None or t_o is None:
            return None
        return 100 * (tar_at_threshold(ref, t_r, w) - tar_at_threshold(other, t_o, w))

    if ref.num_identities != other.num_identities:
        raise EdgekdError("paired comparison needs the same identities in both score sets")
    point = drop()
    if point is None:
        raise EdgekdError(f"FAR {far:g} is not measurable with {ref.num_impostor} impostor pairs")
    boot = [d for d in (drop(w) for w in bootstrap_weights(ref.num_identities, bootstrap, seed)) if d is not None]
    return {"far": far, "drop_pt": point, "drop_pt_ci95": interval(boot),
            "drop_pt_upper95": float(np.percentile(boot, 95)) if boot else None}


# ---- images of a set of identities -> embeddings -> the all-pairs JSON ------------------------------------------

class IdentitySet:
    """Images with identity labels (any FaceDataset), shaped for `verification.embed_images` (which wants
    `images(indices)`)."""

    def __init__(self, dataset, description: str):
        self.dataset, self.description = dataset, description
        self.labels = np.asarray(dataset.labels)
        self.name = description
        self.pairs = np.zeros((0, 2), np.int64)

    def images(self, indices) -> np.ndarray:
        return np.stack([self.dataset[int(i)][0] for i in indices])

    def __len__(self) -> int:
        return int(self.labels.size)

    @property
    def sha256(self) -> str:
        """Content identity: every image file (or record) in order, with its label."""
        import hashlib

        h = hashlib.sha256()
        enc = getattr(self.dataset, "encoded", None)
        for i in range(len(self)):
            h.update(f"{self.labels[i]}\0".encode())
            h.update(enc(i) if enc is not None else self.dataset[i][0].tobytes())
        return h.hexdigest()


def open_identity_set(source, identities_from=None, folds=None, resize: bool = False) -> IdentitySet:
    """An identity folder, label.txt or RecordIO shard; optionally only the identities of LFW `folds` (1..10) of a
    pairs.txt. `source` may itself be a pairs.txt: then its folds' identities, images from aligned_112x112/ beside it."""
    from pathlib import Path

    from edgekd.data import lfw_fold_identities, open_dataset

    source = Path(str(source))
    if source.suffix == ".bin":
        raise EdgekdError(f"{source}: a .bin holds pairs without identity names; the all-pairs protocol needs "
                          "identity labels (give an identity folder, label.txt, RecordIO, or pairs.txt with its images)")
    if source.suffix == ".txt" and "pair" in source.name:
        identities_from, source = source, source.parent / "aligned_112x112"
        if not source.is_dir():
            raise EdgekdError(f"{source}: images folder beside {identities_from} not found")
    names = None
    if identities_from is not None:
        if not folds:
            raise EdgekdError(f"{identities_from}: --identities-from needs --folds (e.g. 6-10)")
        names = lfw_fold_identities(identities_from, folds)
    elif folds:
        raise EdgekdError(f"{source}: --folds needs a pairs.txt (as --data or --identities-from)")
    ds = open_dataset(source, resize=resize, identities=names)
    if ds.num_classes < 2 or np.bincount(ds.labels).max() < 2:  # no impostor or no genuine pairs: nothing to measure
        raise EdgekdError(f"{source}: {len(ds)} images of {ds.num_classes} identities; the all-pairs protocol needs at "
                          "least 2 identities and one identity with 2 images (genuine pairs)")
    what = f"{source} ({len(ds)} images, {ds.num_classes} identities"
    what += f"; identities of folds {','.join(map(str, folds))} of {identities_from})" if names is not None else ")"
    return IdentitySet(ds, what)


def stored_thresholds(meta: dict) -> dict | None:
    """The thresholds an artifact ships ({"cosine_at_far": {...}, "flip": ..., ...}) from ONNX metadata (JSON
    string) or an engine sidecar (dict); None when it has none."""
    import json

    t = meta.get("thresholds")
    if isinstance(t, str):
        try:
            t = json.loads(t)
        except ValueError:
            return None
    return t if isinstance(t, dict) and isinstance(t.get("cosine_at_far"), dict) else None


def evaluate_allpairs(embed_fn, iset: IdentitySet, preprocess, batch_size: int = 64, flip="sum",
                      progress: bool = True, reference=None, thresholds: dict | None = None, fars=FARS,
                      genuine_cap: int = GENUINE_CAP, bootstrap: int = BOOTSTRAP, seed: int = 0,
                      embeddings: np.ndarray | None = None) -> dict:
    """Embed every image of `iset` (flip test-time augmentation as in `evaluate`) and score it all-pairs.

    `thresholds` are an artifact's shipped ones (`stored_thresholds`): measured FAR/TAR at them are reported when
    they were set with the same flip mode. `embeddings` skips the embedding pass (already computed)."""
    import time

    from edgekd.eval.verification import embed_images, flip_mode

    mode = flip_mode(flip)
    ref_emb, seconds = None, None
    if embeddings is None:
        e = embed_images(embed_fn, iset, preprocess, indices=np.arange(len(iset)), batch_size=batch_size, flip=mode,
                         progress=progress, reference=reference)
        embeddings, ref_emb, seconds = e.emb, e.ref, e.seconds
    start = time.perf_counter()
    use = thresholds if thresholds is not None and thresholds.get("flip", mode) == mode else None
    no_face = getattr(iset, "no_face", None)  # a detector's set: known once every image was loaded
    if no_face is not None and len(no_face) == len(iset):
        raise EdgekdError(f"{iset.description}: no face found in any of the {len(iset)} photos; nothing to verify")
    out = allpairs_metrics(embeddings, iset.labels, fars, use["cosine_at_far"] if use else None, genuine_cap,
                           bootstrap, seed, no_face=no_face)
    out.update(data=iset.description, flip=mode, embedding_size=int(embeddings.shape[1]),
               scoring_seconds=round(time.perf_counter() - start, 3))
    if seconds:
        out["images_per_s"] = float(len(iset) / seconds)
    if thresholds is not None and use is None:
        out["stored_thresholds_note"] = (f"the artifact's thresholds were set with flip {thresholds.get('flip')}, "
                                         f"this run uses flip {mode}: not compared")
    if ref_emb is not None:
        cos = np.sum(embeddings.astype(np.float64) * ref_emb, axis=1)
        if no_face is not None and len(no_face):  # the black stand-ins of photos without a face say nothing
            cos = np.delete(cos, no_face)
        out["reference"] = {"cosine_min": float(cos.min()), "cosine_mean": float(cos.mean()),
                            "num_images": int(cos.size)}
    return out


def summary_lines(r: dict) -> list[tuple[str, str]]:
    """Rows `edgekd eval --protocol all-pairs` prints."""
    def pct(x):
        return "n/a" if x is None else f"{100 * x:.2f}%"

    rows = [("data", f"{r['data']}: {r['num_impostor_pairs']} impostor / {r['num_genuine_pairs']} genuine pairs, "
                     f"flip {r['flip']}")]
    for k, v in r["tar_at_far"].items():
        ci = r["tar_at_far_ci95"].get(k)
        rows.append((f"TAR@FAR={k}", pct(v) + (f"  (95% CI {pct(ci[0])} - {pct(ci[1])})" if ci else "")
                     + (f"  threshold {r['thresholds'][k]:.4f}" if r["thresholds"].get(k) is not None else "")))
    for k, v in (r.get("far_at_stored_threshold") or {}).items():
        rows.append((f"stored {k}", f"threshold {r['stored_thresholds'][k]:.4f}: FAR "
                                    + ("n/a" if v is None else f"{v:.2e}")
                                    + f", TAR {pct(r['tar_at_stored_threshold'][k])}"))
    for key in ("tar_at_far_note", "stored_thresholds_note"):
        if key in r:
            rows.append(("note", r[key]))
    return rows
