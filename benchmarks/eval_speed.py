"""Images/s of LFW-format evaluation (JPEG decode + preprocess + flip-summed embedding) with edgekd.eval, per model.

Weights are randomly initialised (speed does not depend on them). Also measures the decode + preprocess stage
alone, so the share of the model is visible. On a shared machine other users' load lowers the figures: the load
average before and after each run is recorded.

    python benchmarks/eval_speed.py [--models mbf r50] [--images 256] [--batch-size 64] [--threads 2]

Reads the LFW images of the shared data (falls back to edgekd's synthetic verification set when absent).
Writes benchmarks/results/eval_speed.json and .md.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from edgekd.eval import embed_images
from edgekd.io import write_json_atomic, write_text_atomic
from edgekd.paths import shared_path
from edgekd.runtime.torch_runtime import TorchRuntime

RESULTS = Path(__file__).resolve().parent / "results"


def verification_set():
    from edgekd.data.verification import load_verification

    pairs = shared_path("lfw", "pairs.txt")
    if pairs is not None:
        return load_verification(pairs)
    from edgekd.data.synthetic import synthetic_verification_set

    return synthetic_verification_set(num_identities=200, pairs_per_fold=60)


def measure(name: str, vset, indices: np.ndarray, batch_size: int, flip: str) -> dict:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "random initialisation": intended here
        rt = TorchRuntime(model=name)
    load0 = os.getloadavg()[0]
    decode = embed_images(lambda x: np.zeros((len(x), 1), np.float32), vset, rt.preprocess, indices=indices,
                          batch_size=batch_size, flip="none", progress=False)
    rt(rt.preprocess(vset.images(indices[:2])))  # warm-up (allocator, oneDNN primitives)
    full = embed_images(rt, vset, rt.preprocess, indices=indices, batch_size=batch_size, flip=flip, progress=True)
    return {
        "model": name,
        "embedding_size": rt.embedding_size,
        "images": int(indices.size),
        "batch_size": batch_size,
        "flip": flip,
        "images_per_s": indices.size / full.seconds,
        "decode_preprocess_images_per_s": indices.size / decode.seconds,
        "seconds": full.seconds,
        "loadavg_1min_before_after": [round(load0, 2), round(os.getloadavg()[0], 2)],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["mobilefacenet", "r50"])
    ap.add_argument("--images", type=int, default=256, help="first N images used by the pairs")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--flip", default="sum", choices=["sum", "concat", "none"])
    ap.add_argument("--out", type=Path, default=RESULTS / "eval_speed")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    vset = verification_set()
    indices = np.unique(vset.pairs)[: args.images]
    rows = [measure(m, vset, indices, args.batch_size, args.flip) for m in args.models]
    env = {"cpu_count": os.cpu_count(), "torch_threads": args.threads, "torch": torch.__version__,
           "python": platform.python_version(), "machine": platform.machine(), "data": str(vset.source),
           "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "note": "random-init weights; CPU shared with other engineers while measuring (see load averages)"}
    write_json_atomic(args.out.with_suffix(".json"), {"kind": "eval_speed", "results": rows, "env": env})
    lines = [
        f"# Evaluation speed (edgekd eval pipeline, PyTorch CPU, {args.threads} threads, flip {args.flip})", "",
        f"{env['cpu_count']}-core CPU shared with other users while measuring; random-init weights; "
        f"data {vset.source}; {env['date_utc']}.", "",
        "| model | images | batch | images/s (decode+preprocess+embed) | decode+preprocess only, images/s | "
        "load avg before/after |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['model']} | {r['images']} | {r['batch_size']} | {r['images_per_s']:.1f} | "
                     f"{r['decode_preprocess_images_per_s']:.0f} | {r['loadavg_1min_before_after']} |")
    write_text_atomic(args.out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
