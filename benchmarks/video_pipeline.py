"""The paper's video test stage by stage: edgekd's torch-free detect -> align -> embed -> match (`edgekd bench
--video --detector`, ONNX Runtime) against the PyTorch reference implementation of the same weights
(facenet-pytorch 2.6.0's MTCNN + the same embedder in PyTorch eager), side by side in one run.

    python benchmarks/video_pipeline.py [--frames 40] [--rounds 4] [--threads 2] [--sizes 640x480,1280x720]

Frames: no public video is reachable here, so they are composited from LFW raw photos by
benchmarks/make_test_video.py (3 known identities per frame on a grey background, a gallery of 3 other photos per
identity), and matching is scored against that ground truth.
Both sides: min face 20 px, thresholds 0.6/0.7/0.7, factor 0.709, every detected face aligned by the same 5-point
similarity (edgekd.data.align) and embedded in one batch per frame, top-1 cosine against the same gallery at the
artifact's stored threshold (FAR 1e-4), `--threads` threads, decode by Pillow. edgekd runs its exported MTCNN and
the FP32 ONNX of the embedder; the reference runs facenet-pytorch's MTCNN.detect and the embedder's PyTorch module.
The reference is installed with `--no-deps` (it pins torch < 2.3, numpy < 2) into a benchmark-only venv,
.venv-reference/ at the checkout root, made on first use from the same torch wheels; its package __init__ imports requests and
models it does not need here, so its mtcnn module is loaded without it.
Each contender runs in its own process per round, rounds alternate the order, the first frame of each process is
warm-up; the per-round ratio of mean per-frame wall time is the figure. Writes benchmarks/results/video_pipeline.*.
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
from _common import ROOT, Record, edgekd_cmd, load1, machine_line, write_result  # noqa: E402

REFERENCE = "facenet-pytorch==2.6.0"
REF_VENV = ROOT / ".venv-reference"  # beside .venv, outside the source folders
MODEL = "mobilefacenet_ms1m_foamliu"
STAGES = ("decode", "detect", "align", "embed", "match", "total")


def reference_venv(python: str = sys.executable) -> Path:
    """.venv-reference/bin/python with torch, torchvision, Pillow, numpy, tqdm and the reference."""
    py = REF_VENV / "bin" / "python"
    if not py.is_file():
        import torch
        import torchvision

        subprocess.run([python, "-m", "venv", str(REF_VENV)], check=True)
        pip = [str(py), "-m", "pip", "install", "--quiet"]
        subprocess.run(pip + [f"torch=={torch.__version__.split('+')[0]}",
                              f"torchvision=={torchvision.__version__.split('+')[0]}", "pillow", "numpy", "tqdm"],
                       check=True)
        subprocess.run(pip + ["--no-deps", REFERENCE], check=True)
    return py


def reference_worker(frames_dir: str, gallery_dir: str, threshold: float, threads: int, limit: int) -> dict:
    """(Runs inside the reference venv.) facenet-pytorch MTCNN + the embedder in PyTorch eager, per stage."""
    import importlib.util
    import types

    import numpy as np
    import torch
    from PIL import Image

    spec = importlib.util.find_spec("facenet_pytorch")
    pkg = types.ModuleType("facenet_pytorch")
    pkg.__path__ = list(spec.submodule_search_locations)
    sys.modules["facenet_pytorch"] = pkg  # skip the package __init__ (requests, InceptionResnetV1)
    from facenet_pytorch.models.mtcnn import MTCNN

    from edgekd.data.align import align_image
    from edgekd.models.loading import load_model

    torch.set_num_threads(threads)
    mtcnn = MTCNN(min_face_size=20, thresholds=[0.6, 0.7, 0.7], factor=0.709, keep_all=True, device="cpu")
    model, _ = load_model(None, MODEL)
    model.eval()
    pp = model.preprocess
    size = tuple(pp.input_size)

    def decode(path):
        return np.asarray(Image.open(path).convert("RGB"))

    def faces_of(img):
        boxes, probs, marks = mtcnn.detect(img, landmarks=True)
        return [] if boxes is None else list(zip(boxes, marks))

    def embed(crops):
        with torch.inference_mode():
            e = model(torch.from_numpy(pp(crops))).numpy().astype(np.float64)
        return e / np.linalg.norm(e, axis=1, keepdims=True)

    names, rows = [], []
    for sub in sorted(p for p in Path(gallery_dir).iterdir() if p.is_dir()):
        crops = []
        for photo in sorted(sub.iterdir()):
            img = decode(photo)
            found = faces_of(img)
            if found:  # largest-central, as edgekd's gallery
                h, w = img.shape[:2]
                score = [(b[2] - b[0]) * (b[3] - b[1]) - 2 * (((b[0] + b[2]) / 2 - w / 2) ** 2
                                                               + ((b[1] + b[3]) / 2 - h / 2) ** 2) for b, _ in found]
                crops.append(align_image(img, found[int(np.argmax(score))][1], size))
        if crops:
            names.append(sub.name)
            rows.append(embed(np.stack(crops)).mean(0))
    gallery = np.stack(rows)
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)

    stages = {k: [] for k in STAGES}
    per_frame = []
    files = sorted(p for p in Path(frames_dir).iterdir() if p.suffix == ".png")[:limit]
    for k, path in enumerate(files):
        t0 = time.perf_counter()
        img = decode(path)
        t1 = time.perf_counter()
        found = faces_of(img)
        t2 = time.perf_counter()
        crops = np.stack([align_image(img, m, size) for _, m in found]) if found else None
        t3 = time.perf_counter()
        emb = embed(crops) if found else np.zeros((0, gallery.shape[1]))
        t4 = time.perf_counter()
        cos = emb @ gallery.T
        best = cos.argmax(1) if len(emb) else np.zeros(0, int)
        matches = [names[j] if cos[i, j] >= threshold else None for i, j in enumerate(best)]
        t5 = time.perf_counter()
        if k == 0:
            continue  # warm-up
        for name, a, b in zip(STAGES, (t0, t1, t2, t3, t4, t0), (t1, t2, t3, t4, t5, t5)):
            stages[name].append((b - a) * 1e3)
        per_frame.append({"faces": len(found), "matches": matches})
    return {"stages_ms": {k: {"mean": statistics.fmean(v), "p50": statistics.median(v)} for k, v in stages.items()},
            "per_frame": per_frame}


def score(per_frame: list[dict], truth: list[dict]) -> dict:
    """Faces found and identities matched against the composited ground truth (frame k of the process is frame k+1
    of the sequence: frame 0 is the warm-up)."""
    found = correct = wrong = 0
    expected = 0
    for got, want in zip(per_frame, truth[1:]):
        ids = {f["identity"] for f in want["faces"]}
        expected += len(ids)
        found += len(got["faces"]) if isinstance(got["faces"], list) else got["faces"]
        names = [m for m in got["matches"] if m not in (None, "unknown")]
        correct += len(ids & set(names))
        wrong += sum(1 for m in names if m not in ids)
    return {"faces_expected": expected, "faces_found": found, "matched_correctly": correct, "matched_wrongly": wrong}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sizes", default="640x480,1280x720")
    ap.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results)")
    ap.add_argument("--worker", nargs=4, metavar=("FRAMES", "GALLERY", "THRESHOLD", "OUT"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        frames, gallery, threshold, out = a.worker
        Path(out).write_text(json.dumps(reference_worker(frames, gallery, float(threshold), a.threads,
                                                         a.frames + 1)))
        return

    from make_test_video import make

    from edgekd.paths import shared_path

    raw = shared_path("lfw", "raw_150")
    pairs = shared_path("lfw", "pairs.txt")
    if raw is None or pairs is None:
        raise SystemExit("needs the shared LFW raw photos (lfw/raw_150) and lfw/pairs.txt")
    ref_py = reference_venv()
    rec = Record("video_pipeline")
    sizes = [tuple(int(v) for v in s.split("x")) for s in a.sizes.split(",")]
    env = {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(a.threads), "PATH": "/usr/bin:/bin"}
    with tempfile.TemporaryDirectory(prefix="edgekd-video-") as tmp:
        tmp = Path(tmp)
        truth = make(tmp / "video", a.frames + 1, root=raw)
        det, emb = tmp / "mtcnn", tmp / f"{MODEL}.onnx"
        subprocess.run(edgekd_cmd() + ["export", "--detector", "mtcnn", "--out", str(det)], check=True,
                       capture_output=True)
        subprocess.run(edgekd_cmd() + ["export", "--model", MODEL, "--out", str(emb), "--no-fp16",
                                       "--gate-data", str(pairs), "--gate-folds", "1-5", "--gate-images", "2000"], check=True,
                       capture_output=True)
        from edgekd.eval.allpairs import stored_thresholds
        from edgekd.eval.metrics import far_key
        from edgekd.export import graph

        threshold = stored_thresholds(graph.read_metadata(graph.load(emb)))["cosine_at_far"][far_key(1e-4)]
        rec.add_input("embedder", emb, model=MODEL, gate="LFW folds 1-5 identities")
        for n in ("pnet", "rnet", "onet"):
            rec.add_input(f"mtcnn-{n}", det / f"mtcnn-{n}.onnx")
        results = {}
        for w, h in sizes:
            frames, gallery = tmp / "video" / f"frames_{w}x{h}", tmp / "video" / "gallery"
            seq = truth["sequences"][f"frames_{w}x{h}"]
            contenders = {
                "edgekd (ONNX Runtime)": lambda out: edgekd_cmd() + [
                    "bench", "--video", str(frames), "--detector", str(det), "--onnx", str(emb), "--gallery",
                    str(gallery), "--threads", str(a.threads), "--frames", str(a.frames + 1), "-o", str(out)],
                "reference (facenet-pytorch + PyTorch)": lambda out: [
                    str(ref_py), __file__, "--worker", str(frames), str(gallery), repr(threshold), str(out),
                    "--frames", str(a.frames), "--threads", str(a.threads)],
            }
            runs = {k: [] for k in contenders}
            loads = []
            for r in range(a.rounds):
                order = list(contenders) if r % 2 == 0 else list(reversed(contenders))
                for k in order:
                    out = tmp / f"{w}x{h}-{r}-{len(runs[k])}-{k[:6]}.json"
                    loads.append(load1())
                    proc = subprocess.run(contenders[k](out), capture_output=True, text=True,
                                          env=env if k.startswith("reference") else None)
                    if proc.returncode != 0:
                        raise SystemExit(f"{k} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
                    runs[k].append(json.loads(out.read_text()))
                    print(f"{w}x{h} round {r + 1} {k}: {runs[k][-1]['stages_ms']['total']['mean']:.1f} ms/frame")
            ours, ref = runs["edgekd (ONNX Runtime)"], runs["reference (facenet-pytorch + PyTorch)"]
            def ratios(stages):
                per = lambda run: sum(run["stages_ms"][k]["mean"] for k in stages)  # noqa: E731
                r = [per(o) / per(f) for o, f in zip(ours, ref)]
                return {"median": statistics.median(r), "min": min(r), "max": max(r), "rounds": r}

            results[f"{w}x{h}"] = {
                "ratio_total": ratios(("decode", "detect", "align", "embed", "match")),
                "ratio_detect_to_match": ratios(("detect", "align", "embed", "match")),
                "stages_ms_mean": {k: {s: statistics.median(run["stages_ms"][s]["mean"] for run in rs)
                                       for s in STAGES} for k, rs in runs.items()},
                "accuracy": {k: score(rs[0]["per_frame"], seq) for k, rs in runs.items()},
                "load_during": [x for x in loads if x is not None],
            }
    run = rec.finish(threads={"onnxruntime intra-op / torch": a.threads})
    result = {**run, "frames_per_run": a.frames, "warmup_frames": 1, "rounds": a.rounds, "threshold": threshold,
              "far": 1e-4, "reference": REFERENCE, "model": MODEL, "sizes": results}
    lines = ["# Video pipeline: edgekd vs the PyTorch reference, per frame", "", machine_line(run), "",
             f"{a.frames} timed frames per process (+1 warm-up), {a.rounds} interleaved rounds, {a.threads} threads; "
             f"frames composited from LFW raw photos by benchmarks/make_test_video.py (3 faces per frame); embedder "
             f"{MODEL} (FP32), matched at its stored FAR 1e-4 threshold {threshold:.4f}. Reference: {REFERENCE} "
             "MTCNN (installed --no-deps in a benchmark-only venv) + the embedder in PyTorch eager.", ""]
    for size, r in results.items():
        q, p = r["ratio_total"], r["ratio_detect_to_match"]
        lines += [f"## {size}", "", f"**edgekd / reference per-frame wall time: {q['median']:.2f}x** (median of "
                  f"{len(q['rounds'])} rounds, {q['min']:.2f}–{q['max']:.2f}); detect → align → embed → match "
                  f"without the decode (the same Pillow call on both sides): {p['median']:.2f}x "
                  f"({p['min']:.2f}–{p['max']:.2f}).", "",
                  "| stage (ms, median of rounds) | " + " | ".join(r["stages_ms_mean"]) + " |",
                  "|---|" + "---|" * len(r["stages_ms_mean"])]
        for s in STAGES:
            lines.append(f"| {s} | " + " | ".join(f"{v[s]:.1f}" for v in r["stages_ms_mean"].values()) + " |")
        lines += ["", "| faces (first round) | expected | found | matched correctly | matched wrongly |",
                  "|---|---|---|---|---|"]
        for k, s in r["accuracy"].items():
            lines.append(f"| {k} | {s['faces_expected']} | {s['faces_found']} | {s['matched_correctly']} | "
                         f"{s['matched_wrongly']} |")
        lines.append("")
    path = write_result("video_pipeline", result, "\n".join(lines), a.out or ROOT / "benchmarks" / "results")
    print("\n".join(lines))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
