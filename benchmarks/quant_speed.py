"""CPU latency of the artifacts `edgekd export` wrote: ONNX Runtime FP32 vs FP16 vs INT8 Q/DQ (each calibration
method), and PyTorch eager, per model, as ratios to ONNX Runtime FP32, in one run.

Reads export reports (default: engines/*.export_report.json and the exports of benchmarks/export_accuracy.py), so
it times the exact files whose accuracy was verified. Runtimes of one model are timed in interleaved rounds
(A B C, C B A, ...) so background load on a shared machine hits them alike; the headline is the ratio to ONNX
Runtime FP32 (ratio of median-of-rounds latencies, with the range of per-round paired ratios). Before timing, the
script waits (at most --max-wait s) for the load average to drop below the core count, and records the load.
Writes benchmarks/results/quant_speed.json and .md.

    python benchmarks/quant_speed.py [--reports R.export_report.json ...] [--batches 1,16] [--rounds 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import glob
import json
from pathlib import Path

import numpy as np

from edgekd.artifacts import EXPORT_REPORT

from _common import RESULTS, ROOT, Record, inputs_lines, interleaved, machine_line, write_result

DEFAULT_REPORTS = ("engines/*" + EXPORT_REPORT, "runs/benchmarks/export_accuracy/*" + EXPORT_REPORT)


def _runners(report: dict, threads: int) -> dict:
    """{label: callable(float32 NCHW)} for PyTorch eager and every ONNX artifact of one export report."""
    import torch

    from edgekd.export.parity import torch_embed
    from edgekd.export.run import open_model
    from edgekd.runtime.onnx_runtime import OnnxRuntime

    torch.set_num_threads(threads)
    runners = {}
    for key, a in report["artifacts"].items():
        runners[f"onnxruntime {key}"] = OnnxRuntime(a["path"], intra_op_threads=threads)
    model, _ = open_model(report["weights"], report["model"], log=lambda *a: None)
    runners["torch eager fp32"] = lambda x: torch_embed(model, x)
    return runners


def markdown(result: dict) -> str:
    rows = result["rows"]
    keys = list(dict.fromkeys((r["model"], r["batch"]) for r in rows))
    runtimes = list(dict.fromkeys(r["runtime"] for r in rows))
    lines = ["# ONNX Runtime CPU latency: FP32 vs FP16 vs INT8 Q/DQ vs PyTorch eager", "",
             f"Command: `{result['run']['command']}`", "",
             "Ratios first: latency / ONNX Runtime FP32 latency of the same model and batch, from interleaved rounds "
             "(ratio of median-of-rounds latencies; in brackets the range of the per-round paired ratios). Lower is "
             "faster.", "",
             "| model | weights | batch | " + " | ".join(runtimes) + " |", "|---|---|---|" + "---|" * len(runtimes)]
    for key in keys:
        g = {r["runtime"]: r for r in rows if (r["model"], r["batch"]) == key}
        cells = [f"{g[k]['vs_onnx_fp32']:.2f}x ({g[k]['paired_range'][0]:.2f}–{g[k]['paired_range'][1]:.2f})"
                 if k in g else "—" for k in runtimes]
        w = next(iter(g.values()))["weights"]
        lines.append(f"| {key[0]} | {Path(w).name if w != 'random init' else w} | {key[1]} | " + " | ".join(cells) + " |")
    lines += ["", "Absolute median latencies, ms (this machine's speed only when it was not busy, see below):", "",
              "| model | batch | " + " | ".join(runtimes) + " |", "|---|---|" + "---|" * len(runtimes)]
    for key in keys:
        g = {r["runtime"]: r for r in rows if (r["model"], r["batch"]) == key}
        lines.append(f"| {key[0]} | {key[1]} | " + " | ".join(f"{g[k]['latency_ms']:.2f}" if k in g else "—"
                                                              for k in runtimes) + " |")
    return "\n".join(lines + ["", machine_line(result["run"]), *inputs_lines(result["run"])]) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reports", nargs="*", help="export_report.json files (default: " + ", ".join(DEFAULT_REPORTS) + ")")
    ap.add_argument("--batches", default="1,16")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--min-time", type=float, default=0.5, help="seconds per runtime per round")
    ap.add_argument("--threads", type=int, default=1, help="torch and ONNX Runtime intra-op threads")
    ap.add_argument("--max-wait", type=float, default=600, help="seconds to wait for load < cores before timing")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args()
    paths = args.reports or sorted(p for pat in DEFAULT_REPORTS for p in glob.glob(str(ROOT / pat)))
    if not paths:
        raise SystemExit("no export reports found: run `edgekd export` or benchmarks/export_accuracy.py first")
    batches = [int(b) for b in args.batches.split(",")]
    rec = Record("quant_speed", max_wait_s=args.max_wait)
    rows = []
    for rp in paths:
        report = json.loads(Path(rp).read_text())
        if report["weights"]:
            rec.add_input(report["model"], report["weights"])
        runners = _runners(report, args.threads)
        h, w = report["onnx"]["input_shape"][2:]
        for b in batches:
            x = np.random.default_rng(0).standard_normal((b, 3, h, w)).astype(np.float32)
            print(f"{report['model']} batch {b}:", flush=True)
            timed = interleaved(runners, x, "onnxruntime fp32", args.rounds, args.min_time, 3,
                                log=lambda m: print("  " + m, flush=True))
            for k, t in timed.items():
                rows.append({"model": report["model"], "weights": report["weights"] or "random init", "runtime": k,
                             "batch": b, "latency_ms": t["latency_ms_median"],
                             "img_per_s": 1e3 * b / t["latency_ms_median"], "vs_onnx_fp32": t["ratio"],
                             "paired_range": t["paired_ratio_range"], "paired_ratios": t["paired_ratios"],
                             "rounds_ms": t["round_medians_ms"], "iterations": t["iterations"],
                             "sha256": report["artifacts"].get(k.removeprefix("onnxruntime "), {}).get("sha256")})
    result = {"kind": "bench", "name": "quant_speed", "reports": paths, "rows": rows,
              "run": rec.finish({"torch": args.threads, "onnxruntime intra-op": args.threads})}
    md = markdown(result)
    write_result("quant_speed", result, md, args.out)
    print(md)


if __name__ == "__main__":
    main()
