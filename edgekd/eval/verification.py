"""Embed a verification set with any embedding function and score it (numpy only; knows no runtime).

`embed_fn(float32 NCHW) -> (n, D)` is all it needs, so PyTorch, ONNX Runtime and TensorRT share this code.
A set whose images come from a face detector (edgekd.detect.photoset.DetectedSet) says after loading which images
held no face (`no_face`, image indices): every pair using one is scored as a wrong decision, never dropped.
"""

from __future__ import annotations

import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from edgekd.errors import EdgekdError
from edgekd.eval.metrics import (WRONG_RULE, force_wrong_cosine, l2_normalize, sphereface_accuracy,
                                 verification_metrics)
from edgekd.preprocess import Preprocess

EmbedFn = Callable[[np.ndarray], np.ndarray]
FLIP_MODES = ("sum", "concat", "none")


def flip_mode(flip: bool | str) -> str:
    """True -> "sum" (insightface: emb(x) + emb(flip x)), False -> "none"; "concat" is the 2D-d variant of some repos."""
    mode = {True: "sum", False: "none"}.get(flip, flip) if isinstance(flip, bool) else str(flip)
    if mode not in FLIP_MODES:
        raise EdgekdError(f"flip must be one of {', '.join(FLIP_MODES)}, got {flip!r}")
    return mode


def _embed(fn: EmbedFn, x: np.ndarray, mode: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(emb(x), emb(flip x) or None); combined later so every flip mode can be scored from one pass."""
    e = np.asarray(fn(x), dtype=np.float32)
    if e.ndim != 2 or e.shape[0] != x.shape[0]:
        raise EdgekdError(f"embedding function returned shape {e.shape} for a batch of {x.shape[0]}")
    if mode == "none":
        return e, None
    return e, np.asarray(fn(np.ascontiguousarray(x[..., ::-1])), dtype=np.float32)


def combine(e: np.ndarray, ef: np.ndarray | None, mode: str, normalize: bool = True) -> np.ndarray:
    """Final embeddings for a flip mode (sum = insightface, concat = 2D-d as in SphereFace-style repos), L2-normalised."""
    out = e if mode == "none" or ef is None else e + ef if mode == "sum" else np.concatenate([e, ef], axis=1)
    return l2_normalize(out).astype(np.float32) if normalize else out


@dataclass
class Embeddings:
    """Embeddings of `index` (image indices of the set): `emb` final (L2-normalised, flip-combined), `raw`/`raw_flip`
    the model outputs for the image and its mirror, `ref` the reference model's final embeddings."""

    index: np.ndarray
    emb: np.ndarray
    raw: np.ndarray
    raw_flip: np.ndarray | None
    ref: np.ndarray | None
    seconds: float  # wall time of decode + preprocess + embed, reference passes excluded

    def rows(self, image_indices: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.index, image_indices)


def embed_images(
    embed_fn: EmbedFn,
    vset,
    preprocess: Preprocess,
    indices: np.ndarray | None = None,
    batch_size: int = 64,
    flip: bool | str = True,
    progress: bool = True,
    reference: tuple[EmbedFn, Preprocess] | None = None,
) -> Embeddings:
    """Embed the images used by the set's pairs (or `indices`), decoding ahead in two threads so both cores work."""
    mode = flip_mode(flip)
    index = np.unique(vset.pairs) if indices is None else np.unique(np.asarray(indices))
    batches = [index[i : i + batch_size] for i in range(0, index.size, batch_size)]

    def load(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        imgs = vset.images(idx)
        return imgs, preprocess(imgs)

    from tqdm import tqdm

    out, out_flip, ref_out, ref_seconds = [], [], [], 0.0
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=2) as pool, tqdm(
        total=int(index.size), unit="img", desc=f"embed {getattr(vset, 'name', '')}".strip(), disable=not progress,
        leave=False,
    ) as bar:
        pending = deque(pool.submit(load, b) for b in batches[:3])
        for k in range(len(batches)):
            imgs, x = pending.popleft().result()
            if k + 3 < len(batches):
                pending.append(pool.submit(load, batches[k + 3]))
            e, ef = _embed(embed_fn, x, mode)
            out.append(e)
            out_flip.append(ef)
            if reference is not None:
                t = time.perf_counter()
                ref_fn, ref_pre = reference
                ref_out.append(combine(*_embed(ref_fn, x if ref_pre == preprocess else ref_pre(imgs), mode), mode))
                ref_seconds += time.perf_counter() - t
            bar.update(len(x))
    seconds = time.perf_counter() - start - ref_seconds
    raw = np.concatenate(out)
    raw_flip = np.concatenate(out_flip) if mode != "none" else None
    ref = np.concatenate(ref_out) if reference is not None else None
    return Embeddings(index=index, emb=combine(raw, raw_flip, mode), raw=raw, raw_flip=raw_flip, ref=ref,
                      seconds=seconds)


def evaluate(
    embed_fn: EmbedFn,
    vset,
    preprocess: Preprocess,
    batch_size: int = 64,
    flip: bool | str = True,
    progress: bool = True,
    reference: tuple[EmbedFn, Preprocess] | None = None,
    plot: str | Path | None = None,
) -> dict:
    """Verification accuracy (10-fold, insightface protocol), TAR@FAR, EER, AUC and speed of `embed_fn` on `vset`.

    With `reference` (another embedding function and its preprocessing, e.g. the FP32 checkpoint of an exported
    artifact) also reports how closely the two agree on the same images. With `plot`, writes a ROC PNG.
    """
    mode = flip_mode(flip)
    issame = np.asarray(vset.issame, bool)
    if issame.all() or not issame.any():  # before embedding anything; the error names the set
        raise EdgekdError(f"{vset.source}: all {issame.size} pairs are {'same' if issame.all() else 'different'}-"
                          "identity pairs; verification accuracy needs both kinds")
    ref_fn = reference[0] if reference is not None else None
    if ref_fn is not None and getattr(ref_fn, "embedding_size", None) not in (None, getattr(embed_fn, "embedding_size", None)):
        raise EdgekdError(f"{getattr(ref_fn, 'artifact', None) or 'reference'}: embedding size {ref_fn.embedding_size}, "
                          f"the model's is {getattr(embed_fn, 'embedding_size', '?')}; a reference must embed alike")
    e = embed_images(embed_fn, vset, preprocess, batch_size=batch_size, flip=mode, progress=progress,
                     reference=reference)
    r1, r2 = e.rows(vset.pairs[:, 0]), e.rows(vset.pairs[:, 1])
    no_face = getattr(vset, "no_face", None)  # known once every image was loaded
    if no_face is not None and len(no_face) == e.index.size:
        raise EdgekdError(f"{vset.source}: no face found in any of the {e.index.size} photos; nothing to verify")
    wrong = np.isin(vset.pairs, no_face).any(axis=1) if no_face is not None else None
    result = verification_metrics(e.emb[r1], e.emb[r2], vset.issame, vset.folds, wrong)
    result.update(
        num_images=int(e.index.size),
        embedding_size=int(e.emb.shape[1]),
        flip=mode,
        data=str(vset.source),
        data_sha256=vset.sha256,
        images_per_s=float(e.index.size / e.seconds) if e.seconds > 0 else None,
        embeddings_seconds=float(e.seconds),
    )
    if result["num_folds"] > 1:  # for comparison with figures published under that protocol
        raw = combine(e.raw, e.raw_flip, mode, normalize=False)
        result["sphereface_protocol"] = sphereface_accuracy(raw[r1], raw[r2], vset.issame, vset.folds, wrong)
    if e.raw_flip is not None:  # free from the same pass: how much flip test-time augmentation matters
        result["accuracy_by_flip"] = {
            m: verification_metrics(*(combine(e.raw, e.raw_flip, m)[r] for r in (r1, r2)), vset.issame,
                                    vset.folds, wrong)["accuracy_mean"] for m in FLIP_MODES}
    if no_face is not None:
        result["no_face"] = {"pairs_scored_wrong": int(wrong.sum()),
                             "same_pairs_scored_wrong": int((wrong & vset.issame).sum()), "no_face_rule": WRONG_RULE}
    if e.ref is not None:
        if e.ref.shape != e.emb.shape:
            raise EdgekdError(f"reference embeddings have shape {e.ref.shape}, the model's {e.emb.shape}")
        cos = np.sum(e.emb.astype(np.float64) * e.ref, axis=1)
        if no_face is not None and len(no_face):  # the black stand-ins of photos without a face say nothing
            cos = cos[~np.isin(e.index, no_face)]
        ref_metrics = verification_metrics(e.ref[r1], e.ref[r2], vset.issame, vset.folds, wrong)
        result["reference"] = {
            "cosine_min": float(cos.min()),
            "cosine_mean": float(cos.mean()),
            "num_images": int(cos.size),
            "accuracy_mean": ref_metrics["accuracy_mean"],
            "accuracy_std": ref_metrics["accuracy_std"],
            "tar_at_far": ref_metrics["tar_at_far"],
        }
    if plot is not None:
        from edgekd.eval.roc import plot_roc

        cos_pairs = force_wrong_cosine(np.sum(e.emb[r1].astype(np.float64) * e.emb[r2], axis=1), vset.issame,
                                       wrong)
        plot_roc(plot, cos_pairs, vset.issame, title=f"{getattr(vset, 'name', 'verification')}: "
                 f"acc {100 * result['accuracy_mean']:.2f}% ± {100 * result['accuracy_std']:.2f}, "
                 f"AUC {result['auc']:.4f}")
        result["roc_plot"] = str(plot)
    return result
