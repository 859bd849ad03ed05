"""Runtime comparison on this machine: PyTorch eager vs ONNX Runtime FP32 vs ONNX Runtime INT8 (Q/DQ) per model.

CPU mode (default): models mbf, r18, r50 at batch 1 and 32. The three runtimes of a model are timed in interleaved
rounds (A B C, C B A, ...) so background load on a shared machine hits them alike; the headline is each runtime's
ratio to PyTorch eager (ratio of median-of-rounds latencies, with the range of the per-round paired ratios), the
absolute latencies come second. Before timing, the script waits (at most --max-wait s) for the 1-minute load average
to drop below the core count, and records the load at start and end; a run that started or ended busy says so.
Weights are random (latency does not depend on them); INT8 is calibrated on synthetic faces.

GPU mode (--gpu, needs CUDA): PyTorch CUDA FP32 and FP16 with CUDA-graph replay for r100, r18 and mbf at batch 1 and 64:
host latency, device time (CUDA events), torch peak allocation and NVML process memory, with the GPU's name.

Writes benchmarks/results/runtimes_<cpu|gpu>.json and .md.

    python benchmarks/runtimes.py [--models mbf,r18,r50] [--batches 1,32] [--rounds 5] [--max-wait 600] [--gpu]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

from _common import RESULTS, Record, interleaved, machine_line, time_round, write_result


def _export(name: str, tmp: Path, calib_n: int) -> dict[str, Path]:
    """FP32 ONNX of a random-init registry model, and its INT8 Q/DQ twin calibrated on synthetic faces."""
    from edgekd.export.calib import make_calib, open_calib
    from edgekd.export.int8 import quantize_int8
    from edgekd.export.onnx_export import export_onnx
    from edgekd.models import create_model

    model = create_model(name).eval()
    fp32, int8 = tmp / f"{name}.fp32.onnx", tmp / f"{name}.int8.onnx"
    meta = {"model": name, "method": "random-init", "precision": "fp32", "embedding_size": model.embedding_size,
            "preprocess": model.preprocess.to_dict()}
    export_onnx(model, fp32, meta, tuple(model.preprocess.input_size))
    calib = tmp / f"calib_{name}"
    if not calib.exists():
        make_calib("synthetic:16x4:0", calib, n=calib_n, preprocess=model.preprocess, progress=False)
    quantize_int8(fp32, int8, open_calib(calib, preprocess=model.preprocess))
    return {"fp32": fp32, "int8": int8, "module": model}


def cpu_mode(models: list[str], batches: list[int], rounds: int, min_time_s: float, calib_n: int,
             threads: int | None) -> dict:
    import torch

    if threads:
        torch.set_num_threads(threads)

    from edgekd.models import complexity
    from edgekd.runtime.onnx_runtime import OnnxRuntime
    from edgekd.runtime.torch_runtime import TorchRuntime

    rows = []
    with tempfile.TemporaryDirectory(prefix="edgekd-runtimes-") as tmp:
        for name in models:
            files = _export(name, Path(tmp), calib_n)
            c = complexity(files["module"])
            runtimes = {
                "torch eager fp32": TorchRuntime(module=files["module"]),
                "onnxruntime fp32": OnnxRuntime(files["fp32"], intra_op_threads=threads),
                "onnxruntime int8": OnnxRuntime(files["int8"], intra_op_threads=threads),
            }
            h, w = runtimes["onnxruntime fp32"].preprocess.input_size
            for b in batches:
                x = np.random.default_rng(0).uniform(-1, 1, (b, 3, h, w)).astype(np.float32)
                print(f"{name} batch {b}:", file=sys.stderr)
                timed = interleaved(runtimes, x, "torch eager fp32", rounds, min_time_s,
                                    log=lambda m: print("  " + m, file=sys.stderr))
                for k, t in timed.items():
                    rows.append({"model": name, "gflops": c["gflops"], "params": c["params"], "batch": b, "runtime": k,
                                 **{f: t[f] for f in ("latency_ms_median", "latency_ms_mean", "latency_ms_std",
                                                      "round_medians_ms", "iterations")},
                                 "img_per_s": b * 1e3 / t["latency_ms_median"], "ratio_to_torch": t["ratio"],
                                 "paired_ratio_range_to_torch": t["paired_ratio_range"],
                                 "ratio_to_onnx_fp32": t["latency_ms_median"]
                                 / timed["onnxruntime fp32"]["latency_ms_median"]})
            for rt in runtimes.values():
                rt.close()
    return {"mode": "cpu", "rows": rows, "torch_threads": torch.get_num_threads(),
            "ort_intra_op_threads": threads or "default"}


def gpu_mode(models: list[str], batches: list[int], iterations: int) -> dict:
    import torch

    from edgekd.bench.memory import MemorySampler
    from edgekd.models import complexity, create_model
    from edgekd.runtime.torch_runtime import TorchRuntime

    if not torch.cuda.is_available():
        raise SystemExit("--gpu: PyTorch sees no CUDA device here")
    rows = []
    for name in models:
        c = complexity(create_model(name))
        for precision in ("fp32", "fp16"):
            for b in batches:
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
                with MemorySampler() as mem:
                    rt = TorchRuntime(module=create_model(name), device="cuda", precision=precision, cuda_graph=True)
                    h, w = rt.preprocess.input_size
                    x = np.random.default_rng(0).uniform(-1, 1, (b, 3, h, w)).astype(np.float32)
                    for _ in range(10):
                        rt(x)
                    host = time_round(rt, x, 1.0, iterations)
                    dev = [rt.device_time_ms(x) for _ in range(iterations)]
                    rt.close()
                m = mem.result()
                dev = [d for d in dev if d is not None]
                rows.append({"model": name, "gflops": c["gflops"], "precision": precision, "batch": b,
                             "host_ms_mean": float(np.mean(host)), "host_ms_std": float(np.std(host, ddof=1)),
                             "host_ms_p99": float(np.percentile(host, 99)),
                             "device_ms_mean": float(np.mean(dev)) if dev else None,
                             "img_per_s": b * 1e3 / float(np.mean(host)),
                             "torch_peak_bytes": m["torch_peak_bytes"], "nvml_process_bytes": m["gpu_bytes"]})
                print(f"{name} {precision} batch {b}: {rows[-1]['host_ms_mean']:.2f} ms", file=sys.stderr)
    return {"mode": "gpu", "rows": rows, "gpu": torch.cuda.get_device_name(0), "cuda": torch.version.cuda}


def markdown(result: dict) -> str:
    run = result["run"]
    lines = [f"# Runtime comparison ({result['mode'].upper()})", "", f"Command: `{run['command']}`", ""]
    if result.get("gpu"):
        lines += [f"GPU {result['gpu']} (CUDA {result['cuda']}).", ""]
    if result["mode"] == "cpu":
        lines += ["Ratios first: latency / PyTorch eager latency of the same model and batch, from interleaved rounds "
                  "(ratio of median-of-rounds latencies; in brackets the range of the per-round paired ratios). "
                  "Lower is faster.", "",
                  "| model | GFLOPs | batch | ORT FP32 / torch | ORT INT8 / torch | INT8 / FP32 (ORT) |",
                  "|---|---|---|---|---|---|"]
        rows = result["rows"]
        keys = list(dict.fromkeys((r["model"], r["batch"]) for r in rows))
        group = lambda key: {r["runtime"]: r for r in rows if (r["model"], r["batch"]) == key}  # noqa: E731
        rr = lambda r: (f"{r['ratio_to_torch']:.2f}x ({r['paired_ratio_range_to_torch'][0]:.2f}–"  # noqa: E731
                        f"{r['paired_ratio_range_to_torch'][1]:.2f})")
        for key in keys:
            g = group(key)
            lines.append(f"| {key[0]} | {g['torch eager fp32']['gflops']:.3f} | {key[1]} | {rr(g['onnxruntime fp32'])} | "
                         f"{rr(g['onnxruntime int8'])} | {g['onnxruntime int8']['ratio_to_onnx_fp32']:.2f}x |")
        lines += ["", "Absolute median latencies (ms; valid for this machine only when it was not busy, see below):", "",
                  "| model | batch | torch eager | ORT FP32 | ORT INT8 | rounds, calls per runtime |", "|---|---|---|---|---|---|"]
        for key in keys:
            g = group(key)
            t, f, q = g["torch eager fp32"], g["onnxruntime fp32"], g["onnxruntime int8"]
            lines.append(f"| {key[0]} | {key[1]} | {t['latency_ms_median']:.2f} | {f['latency_ms_median']:.2f} | "
                         f"{q['latency_ms_median']:.2f} | {len(t['round_medians_ms'])}, {t['iterations']} |")
    else:
        lines += ["PyTorch CUDA with CUDA-graph replay.", "",
                  "| model | precision | batch | host ms (mean ± std) | device ms | img/s | torch peak MiB | NVML MiB |",
                  "|---|---|---|---|---|---|---|---|"]
        mib = lambda b: "—" if b is None else f"{b / 2**20:.0f}"  # noqa: E731
        for r in result["rows"]:
            dev = "—" if r["device_ms_mean"] is None else f"{r['device_ms_mean']:.2f}"
            lines.append(f"| {r['model']} | {r['precision']} | {r['batch']} | {r['host_ms_mean']:.2f} ± "
                         f"{r['host_ms_std']:.2f} | {dev} | {r['img_per_s']:.0f} | {mib(r['torch_peak_bytes'])} | "
                         f"{mib(r['nvml_process_bytes'])} |")
    return "\n".join(lines + ["", machine_line(run)]) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gpu", action="store_true", help="PyTorch CUDA FP32/FP16 + CUDA graphs (needs a GPU)")
    ap.add_argument("--models", help="comma-separated registry names (default: mbf,r18,r50 | r100,r18,mbf with --gpu)")
    ap.add_argument("--batches", help="comma-separated batch sizes (default: 1,32 | 1,64 with --gpu)")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds per batch size (CPU)")
    ap.add_argument("--min-time", type=float, default=0.5, help="seconds per runtime per round (CPU)")
    ap.add_argument("--iterations", type=int, default=100, help="timed calls per configuration (GPU)")
    ap.add_argument("--calib", type=int, default=32, help="INT8 calibration images (CPU)")
    ap.add_argument("--threads", type=int, help="torch and onnxruntime threads (CPU; default: library defaults)")
    ap.add_argument("--max-wait", type=float, default=600, help="seconds to wait for load < cores before timing")
    ap.add_argument("--out", default=str(RESULTS), help="output folder")
    a = ap.parse_args()
    models = (a.models or ("r100,r18,mbf" if a.gpu else "mbf,r18,r50")).split(",")
    batches = [int(b) for b in (a.batches or ("1,64" if a.gpu else "1,32")).split(",")]
    rec = Record(f"runtimes_{'gpu' if a.gpu else 'cpu'}", max_wait_s=a.max_wait)
    result = gpu_mode(models, batches, a.iterations) if a.gpu else cpu_mode(models, batches, a.rounds, a.min_time,
                                                                            a.calib, a.threads)
    threads = ({"torch": result["torch_threads"], "onnxruntime intra-op": result["ort_intra_op_threads"]}
               if result["mode"] == "cpu" else {})
    result["run"] = rec.finish(threads)
    md = markdown(result)
    write_result(f"runtimes_{result['mode']}", result, md, a.out)
    print(md)


if __name__ == "__main__":
    main()
