"""Wall time of `edgekd eval --weights` and `edgekd eval --onnx` against a minimal batched ONNX Runtime loop doing
the same work (decode, preprocess, embed image and flipped image, sum, score the pairs), interleaved in one run.

Each contender runs as its own process, as a user runs it (interpreter start and imports included), on the same
pairs, with the same threads. Rounds alternate the order (A B C, C B A, ...), so load from other users hits every
contender alike; the ratio to the minimal loop is the figure (issue 9: --weights <= 1.5x, --onnx <= 1.15x).

    python benchmarks/eval_speed.py [--pairs 1200] [--threads 2] [--rounds 2] [--model mobilefacenet]

Model: a checkpoint of `--model` with random weights (speed does not depend on them) and its `edgekd export`
FP32 ONNX. Data: the first --pairs pairs of the shared LFW pairs.txt (600 per fold). Writes
benchmarks/results/eval_speed.json and .md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Record, edgekd_cmd, load1, machine_line, write_result  # noqa: E402

PAIRS_PER_FOLD = 600


def minimal_loop(onnx: str, pairs: str, folds: list[int], threads: int, batch_size: int) -> dict:
    """The reference: decode each image once, (x - 127.5) / 127.5, one ONNX Runtime call per batch for the image and
    one for its mirror, sum, L2-normalise, cosine per pair. No edgekd machinery beyond the pairs.txt reader."""
    import numpy as np
    import onnxruntime as ort

    from edgekd.data.verification import load_verification

    vset = load_verification(pairs).subset([f - 1 for f in folds])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(onnx, opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    emb = []
    for start in range(0, vset.num_images, batch_size):
        imgs = np.stack([vset.image(i) for i in range(start, min(start + batch_size, vset.num_images))])
        x = ((imgs.astype(np.float32) - 127.5) / 127.5).transpose(0, 3, 1, 2)
        e = sess.run(None, {name: np.ascontiguousarray(x)})[0] + sess.run(None, {name: np.ascontiguousarray(x[..., ::-1])})[0]
        emb.append(e / np.linalg.norm(e, axis=1, keepdims=True))
    emb = np.concatenate(emb)
    cos = np.sum(emb[vset.pairs[:, 0]] * emb[vset.pairs[:, 1]], axis=1)
    return {"pairs": int(len(vset.issame)), "images": int(vset.num_images), "mean_cosine": float(cos.mean())}


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
    return wall


def prepare(model: str, work: Path) -> tuple[Path, Path]:
    """A random-init checkpoint and its edgekd-exported FP32 ONNX."""
    import warnings

    from edgekd.export.run import export_model
    from edgekd.models import create_model, save_checkpoint

    ckpt, onnx = work / f"{model}.pt", work / f"{model}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        save_checkpoint(ckpt, create_model(model).eval(), model, {})
    export_model(weights=ckpt, out=onnx, fp16=False, log=lambda *a: None)
    return ckpt, onnx


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mobilefacenet")
    ap.add_argument("--pairs", type=int, default=1200, help="first N pairs of pairs.txt (a multiple of 600)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results)")
    ap.add_argument("--loop", nargs=2, metavar=("ONNX", "PAIRS"), help=argparse.SUPPRESS)  # the child process
    a = ap.parse_args()
    folds = list(range(1, a.pairs // PAIRS_PER_FOLD + 1))
    if a.loop:
        print(json.dumps(minimal_loop(a.loop[0], a.loop[1], folds, a.threads, a.batch_size)))
        return

    from edgekd.paths import shared_path

    pairs = shared_path("lfw", "pairs.txt")
    if pairs is None or a.pairs % PAIRS_PER_FOLD:
        raise SystemExit("needs the shared LFW (lfw/pairs.txt, aligned_112x112) and --pairs a multiple of 600")
    rec = Record("eval_speed")
    with tempfile.TemporaryDirectory(prefix="edgekd-eval-speed-") as tmp:
        ckpt, onnx = prepare(a.model, Path(tmp))
        rec.add_input("data", pairs, pairs=a.pairs, folds=folds)
        rec.add_input("onnx", onnx, model=a.model, weights="random init")
        fold_arg = f"{folds[0]}-{folds[-1]}"
        common = ["--data", str(pairs), "--folds", fold_arg, "--flip", "sum", "--threads", str(a.threads),
                  "--batch-size", str(a.batch_size), "--device", "cpu", "--quiet"]
        contenders = {
            "minimal ONNX Runtime loop": [sys.executable, __file__, "--loop", str(onnx), str(pairs),
                                          "--pairs", str(a.pairs), "--threads", str(a.threads),
                                          "--batch-size", str(a.batch_size)],
            "edgekd eval --onnx": edgekd_cmd() + ["eval", "--onnx", str(onnx), *common],
            "edgekd eval --weights": edgekd_cmd() + ["eval", "--weights", str(ckpt), *common],
        }
        walls: dict[str, list[float]] = {k: [] for k in contenders}
        loads = []
        for r in range(a.rounds):
            order = list(contenders) if r % 2 == 0 else list(reversed(contenders))
            for k in order:
                before = load1()
                walls[k].append(timed(contenders[k]))
                loads.append({"round": r + 1, "contender": k, "load_before": before, "load_after": load1()})
            print(f"round {r + 1}/{a.rounds}: " + ", ".join(f"{k} {walls[k][-1]:.1f} s" for k in contenders))
    base = "minimal ONNX Runtime loop"
    rows = []
    for k, w in walls.items():
        paired = [x / b for x, b in zip(w, walls[base])]
        rows.append({"contender": k, "wall_s": w, "wall_s_median": statistics.median(w),
                     "ratio_to_minimal_loop": statistics.median(w) / statistics.median(walls[base]),
                     "paired_ratios": paired})
    run = rec.finish({"onnxruntime intra-op / torch": a.threads})
    result = {"kind": "eval_speed", "model": a.model, "pairs": a.pairs, "folds": folds, "flip": "sum",
              "batch_size": a.batch_size, "rounds": a.rounds, "results": rows, "loads": loads,
              "limits": {"edgekd eval --weights": 1.5, "edgekd eval --onnx": 1.15}, "run": run}
    lines = [f"# Evaluation speed: `edgekd eval` vs a minimal ONNX Runtime loop ({a.model}, {a.pairs} LFW pairs, "
             f"flip sum, {a.threads} threads)", "",
             machine_line(run), "",
             f"Each contender is one process per round (start-up and imports included), {a.rounds} interleaved "
             "rounds; ratio = median wall time / the minimal loop's median. `eval --weights` runs the checkpoint on "
             "CPU through a parity-checked in-memory ONNX export (edgekd/runtime/torch_checkpoint.py).", "",
             "| contender | wall s per round | median s | ratio to minimal loop | paired ratios | limit |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        limit = result["limits"].get(r["contender"])
        lines.append(f"| {r['contender']} | {', '.join(f'{w:.1f}' for w in r['wall_s'])} | {r['wall_s_median']:.1f} "
                     f"| {r['ratio_to_minimal_loop']:.2f}x | {', '.join(f'{p:.2f}' for p in r['paired_ratios'])} "
                     f"| {'—' if limit is None else f'<= {limit}x'} |")
    write_result("eval_speed", result, "\n".join(lines), a.out or Path(__file__).resolve().parent / "results")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
