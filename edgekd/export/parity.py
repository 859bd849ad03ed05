"""Does the exported file compute what the PyTorch model computes? Checked on real faces, at batch 1 and batch 37.

Embeddings are compared raw (max abs diff, relative to the largest reference value) and after L2 normalisation
(cosine, always in float64), since verification only ever uses the normalised direction.
"""

from __future__ import annotations

import numpy as np

from edgekd.errors import EdgekdError
from edgekd.eval.metrics import l2_normalize
from edgekd.paths import shared_path
from edgekd.preprocess import Preprocess

PARITY_BATCH = 37  # odd on purpose: catches graphs that only run at the traced batch
MIN_COSINE = 0.9999
MAX_REL_ABS = 1e-3


def sample_faces(preprocess: Preprocess, n: int = PARITY_BATCH) -> tuple[np.ndarray, str]:
    """n preprocessed faces: the first image of the first n identities of aligned LFW, else synthetic (said so)."""
    from edgekd.data import decode_image

    root = shared_path("lfw", "aligned_112x112")
    if root is not None:
        files = [next(iter(sorted(d.iterdir()))) for d in sorted(p for p in root.iterdir() if p.is_dir())[:n]]
        if len(files) == n:
            return preprocess(np.stack([decode_image(f) for f in files])), f"{n} real aligned LFW faces ({root})"
    from edgekd.data import open_dataset

    ds = open_dataset(f"synthetic:{n}x1")
    h, w = preprocess.input_size
    imgs = np.stack([ds[i][0] for i in range(n)])
    if preprocess.crop is None and imgs.shape[1:3] != (h, w):
        imgs = imgs[:, :h, :w]
    return preprocess(imgs), f"{n} SYNTHETIC faces (shared LFW data not found)"


def compare(ref: np.ndarray, got: np.ndarray) -> dict:
    """max abs diff (absolute and relative to max |ref|) and min/mean cosine of the L2-normalised embeddings."""
    ref, got = np.asarray(ref, np.float64), np.asarray(got, np.float64)
    if ref.shape != got.shape:
        raise EdgekdError(f"embedding shapes differ: reference {ref.shape}, artifact {got.shape}")
    diff = float(np.abs(ref - got).max())
    cos = (l2_normalize(ref) * l2_normalize(got)).sum(1)
    return {"max_abs_diff": diff, "max_abs_rel": diff / max(float(np.abs(ref).max()), 1e-12),
            "min_cosine": float(cos.min()), "mean_cosine": float(cos.mean())}


def torch_embed(model, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.inference_mode():
        return model.eval()(torch.from_numpy(x)).float().numpy()


def check_parity(onnx_path, model, x: np.ndarray, min_cosine: float = MIN_COSINE,
                 max_rel: float = MAX_REL_ABS, runtime=None) -> dict:
    """Run the ONNX file at batch 1 and batch len(x) against PyTorch; EdgekdError beyond tolerance.
    `runtime`: an already opened session of that file to use (it stays open)."""
    ref = torch_embed(model, x)
    if runtime is not None:
        full, one = runtime(x), runtime(x[:1])
    else:
        from edgekd.runtime.onnx_runtime import OnnxRuntime

        # always ONNX Runtime: export checks a temporary file whose name (.tmp) would not say "onnx" to open_artifact
        with OnnxRuntime(onnx_path, preprocess=model.preprocess) as rt:
            full, one = rt(x), rt(x[:1])
    stats = compare(ref, full)
    stats["batch1"] = compare(ref[:1], one)
    stats.update(batches=[1, int(x.shape[0])], tolerance={"min_cosine": min_cosine, "max_abs_rel": max_rel})
    worst_cos = min(stats["min_cosine"], stats["batch1"]["min_cosine"])
    worst_rel = max(stats["max_abs_rel"], stats["batch1"]["max_abs_rel"])
    stats["passed"] = bool(worst_cos >= min_cosine and worst_rel <= max_rel)
    if not stats["passed"]:
        raise EdgekdError(f"{onnx_path}: ONNX differs from PyTorch (min cosine {worst_cos:.6f} < {min_cosine} or "
                          f"max abs diff {worst_rel:.2e} x max|ref| > {max_rel:g})")
    return stats
