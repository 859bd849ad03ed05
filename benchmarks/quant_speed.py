"""CPU latency of the artifacts `edgekd export` wrote: ONNX Runtime FP32 vs FP16 vs INT8 Q/DQ (each calibration
method), and PyTorch eager, per model, as ratios to ONNX Runtime FP32, in one run.

Reads `engines/*.export_report.json` (or --reports), so it times the exact files that were verified for accuracy.
Runtimes of one model are timed in interleaved rounds (A B C A B C ...) so background load on a shared machine hits
them alike; each cell is the median over rounds of the per-round median latency.
Writes benchmarks/results/quant_speed.json and .md.

    python benchmarks/quant_speed.py [--reports engines/*.export_report.json] [--batches 1,16] [--rounds 5]
"""

from __future__ import annotations

import argparse
import datetime as dt
import glob
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def _timed(fn, x, min_time_s: float, min_iters: int) -> float:
    out, start = [], time.perf_counter()
    while len(out) < min_iters or time.perf_counter() - start < min_time_s:
        t0 = time.perf_counter()
        fn(x)
        out.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(out))


def _runners(report: dict, threads: int) -> dict:
    """{label: callable(float32 NCHW)} for PyTorch eager and every ONNX artifact of one export report."""
    import torch

    from edgekd.export.parity import torch_embed
    from edgekd.export.run import open_model
    from edgekd.runtime.onnx_runtime import OnnxRuntime

    torch.set_num_threads(threads)
    model, _ = open_model(report["weights"], report["model"], log=lambda *a: None)
    runners = {"torch eager fp32": lambda x: torch_embed(model, x)}
    for key, a in report["artifacts"].items():
        runners[f"onnxruntime {key}"] = OnnxRuntime(a["path"], intra_op_threads=threads)
    return runners


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reports", nargs="*", help="export_report.json files (default engines/*.export_report.json)")
    ap.add_argument("--batches", default="1,16")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--min-time", type=float, default=0.5, help="seconds per runtime per round")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    paths = args.reports or sorted(glob.glob(str(ROOT / "engines" / "*.export_report.json")))
    batches = [int(b) for b in args.batches.split(",")]
    rows = []
    for rp in paths:
        report = json.loads(Path(rp).read_text())
        runners = _runners(report, args.threads)
        h, w = report["onnx"]["input_shape"][2:]
        for b in batches:
            x = np.random.default_rng(0).standard_normal((b, 3, h, w)).astype(np.float32)
            for fn in runners.values():
                fn(x)  # warm-up
            per = {k: [] for k in runners}
            for _ in range(args.rounds):
                for k, fn in runners.items():
                    per[k].append(_timed(fn, x, args.min_time, 3))
            base = float(np.median(per["onnxruntime fp32"]))
            for k, v in per.items():
                ms = float(np.median(v))
                rows.append({"model": report["model"], "weights": report["weights"] or "random init", "runtime": k,
                             "batch": b, "latency_ms": round(ms, 3), "img_per_s": round(1e3 * b / ms, 1),
                             "vs_onnx_fp32": round(ms / base, 3), "rounds_ms": [round(r, 3) for r in v]})
                print(f"{report['model']:28s} b={b:<3d} {k:28s} {ms:9.2f} ms  x{ms / base:.2f} vs ORT fp32", flush=True)
    import onnxruntime
    import torch

    env = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "threads": args.threads,
           "load_avg_at_end": os.getloadavg(), "onnxruntime": onnxruntime.__version__, "torch": torch.__version__,
           "note": "shared machine (about 7 users on 2 cores): absolute latencies are noisy; ratios within one run "
                   "are the figure to read"}
    out = {"kind": "bench", "name": "quant_speed", "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
           "env": env, "results": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "quant_speed.json").write_text(json.dumps(out, indent=2) + "\n")
    md = ["# ONNX Runtime CPU latency: FP32 vs FP16 vs INT8 Q/DQ vs PyTorch eager", "",
          f"{out['date']}, {env['cpu']}, {env['cores']} cores, {args.threads} threads, load avg at end "
          f"{env['load_avg_at_end'][0]:.1f}. {env['note']}.", "",
          "| model | weights | batch | runtime | latency ms | img/s | x ORT fp32 |", "|---|---|---|---|---|---|---|"]
    md += [f"| {r['model']} | {Path(r['weights']).name if r['weights'] != 'random init' else r['weights']} | {r['batch']} "
           f"| {r['runtime']} | {r['latency_ms']:.2f} | {r['img_per_s']} | {r['vs_onnx_fp32']:.2f} |" for r in rows]
    (RESULTS / "quant_speed.md").write_text("\n".join(md) + "\n")
    print(f"wrote {RESULTS / 'quant_speed.json'} and .md")


if __name__ == "__main__":
    main()
