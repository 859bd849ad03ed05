"""Thresholds shipped with each artifact, and the gate data they are measured on.

FP16/INT8 shift the scores, so a threshold chosen on FP32 silently changes the FAR of the deployed artifact. Export
measures each artifact's own cosine thresholds at FAR 1e-3 / 1e-4 / 1e-5 (all-pairs protocol, edgekd.eval.allpairs)
on gate data — images of identities disjoint from what is reported on — and writes them into the ONNX metadata
(`edgekd.thresholds`) and the engine sidecar. Embeddings are single pass (no flip), as a deployed verifier runs;
`edgekd eval --protocol all-pairs --flip none` then reports the FAR and TAR the artifact gets at them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekd.errors import EdgekdError
from edgekd.eval.allpairs import FARS, PairScores, score_all_pairs, threshold_at_far
from edgekd.eval.metrics import far_key

# The gate's 95 % bound on the TAR drop at FAR 1e-4 is limited by the genuine pairs near the threshold. LFW folds 1-5
# identities: their 3,811 aligned pair images hold ~4,400 genuine pairs, where a 0.3 pt bound is at the statistic's
# noise floor; all 5,373 of their photos (aligned from raw_150 with `edgekd data align`) hold ~13,000 and ~14 M
# impostor pairs (benchmarks/results/int8_fidelity.md). A candidate embeds in ~40 s on 2 CPU threads; 6,000 images
# are 900 MB of preprocessed images in memory.
GATE_IMAGES = 6000
FLIP = "none"


@dataclass
class GateData:
    """Preprocessed images (float32 NCHW) with identity labels, held in memory: the gate embeds them many times."""

    x: np.ndarray
    labels: np.ndarray
    description: str
    sha256: str

    def describe(self) -> dict:
        return {"data": self.description, "sha256": self.sha256, "images": int(self.labels.size),
                "identities": int(np.unique(self.labels).size), "flip": FLIP}


def load_gate_data(source, preprocess, folds=None, identities_from=None, limit: int | None = GATE_IMAGES,
                   seed: int = 0) -> GateData:
    """Identities of `source` (as `edgekd eval --protocol all-pairs` reads it), drawn in seeded random order until
    `limit` images are reached (whole identities only, so genuine pairs are kept)."""
    import hashlib

    from edgekd.eval.allpairs import open_identity_set

    iset = open_identity_set(source, identities_from, folds)
    labels = iset.labels
    rng = np.random.default_rng(seed)
    ids = rng.permutation(np.unique(labels))
    if limit:
        sizes = np.bincount(labels)[ids]
        ids = ids[: int(np.searchsorted(np.cumsum(sizes), limit)) + 1]
    keep = np.flatnonzero(np.isin(labels, ids))
    if np.unique(labels[keep]).size < 2:
        raise EdgekdError(f"{source}: gate data needs at least 2 identities")
    imgs = iset.images(keep)
    h = hashlib.sha256(imgs.tobytes())
    h.update(labels[keep].tobytes())
    x = preprocess(imgs).astype(np.float32)
    return GateData(x, labels[keep], f"{iset.description}, {keep.size} images of {np.unique(labels[keep]).size} "
                                     f"identities (seed {seed})", h.hexdigest())


def embed(path, data: GateData, threads: int | None = None, batch: int = 64) -> np.ndarray:
    """Single-pass embeddings of the gate images through ONNX Runtime.

    Opened by session_from_onnx, so TensorRT-targeted Q/DQ files run their Q/DQ ops as written (TensorRT's
    rounding) and files for ONNX Runtime (int8-cpu) run fully optimised, as they are deployed."""
    from edgekd.runtime.onnx_session import session_from_onnx

    sess = session_from_onnx(path, threads=threads)
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: data.x[i : i + batch]})[0] for i in range(0, len(data.x), batch)])


def scores(emb: np.ndarray, data: GateData, extra_thresholds=()) -> PairScores:
    return score_all_pairs(emb, data.labels, max(FARS), extra_thresholds)


def measure_thresholds(ps: PairScores, data: GateData) -> dict:
    """The `thresholds` record an artifact ships: cosine thresholds (accept when above) at each FAR."""
    return {"cosine_at_far": {far_key(f): threshold_at_far(ps, f) for f in FARS}, "flip": FLIP,
            "rule": "cosine of L2-normalised embeddings; accept when strictly above",
            "num_impostor_pairs": ps.num_impostor, **{k: v for k, v in data.describe().items() if k != "flip"}}


def write_thresholds(path, thresholds: dict) -> None:
    """Store the record in the ONNX file's metadata (`edgekd.thresholds`, JSON), rewriting it atomically."""
    from edgekd.export import graph

    model = graph.load(path)
    graph.set_metadata(model, {"thresholds": thresholds})
    graph.save(model, path)


def ship_thresholds(paths: dict[str, Path], data: GateData, embeddings: dict | None = None, log=print,
                    threads: int | None = None) -> dict:
    """Measure and write each artifact's thresholds; returns {key: thresholds} for the export report."""
    out = {}
    embeddings = embeddings or {}
    for key, path in paths.items():
        emb = embeddings.get(key)
        if emb is None:
            emb = embed(path, data, threads)
        t = measure_thresholds(scores(emb, data), data)
        write_thresholds(path, t)
        out[key] = t
        log(f"{path}: thresholds " + ", ".join(f"FAR {k}: {v:.4f}" for k, v in t["cosine_at_far"].items()
                                              if v is not None))
    return out
