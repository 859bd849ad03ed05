"""`edgekd device-check`: the on-device acceptance run, one evidence bundle from a user's Jetson or desktop GPU.

From one ONNX file: build the engine(s) here (FP16; INT8 too when a calibration set or a Q/DQ ONNX is given), compare
their embeddings with ONNX Runtime (CPU, the reference) on real faces, re-measure verification accuracy and TAR@FAR,
latency and memory, and record the environment (TensorRT, CUDA, driver, JetPack, GPU). Writes
`device_check.json` + `device_check.md` into one folder. numpy, onnx(runtime) and TensorRT only: never torch.
"""

from __future__ import annotations

import datetime as _dt
import time
from pathlib import Path

from edgekd import __version__
from edgekd.errors import EdgekdError
from edgekd.io import write_json_atomic

BATCH_SIZES = (1, 8, 32)
MIN_COSINE = {"fp16": 0.999, "int8": 0.98}  # an engine below this does not compute the ONNX model's embeddings


def _typed_onnx(onnx: Path, precision: str, qdq_onnx, work: Path) -> Path | None:
    """The graph a strongly typed build (TensorRT >= 10.1) takes: an FP16 conversion, or the given Q/DQ ONNX."""
    if precision == "int8":
        return Path(qdq_onnx) if qdq_onnx else None
    from edgekd.export.fp16 import convert_fp16

    dst = work / f"{onnx.stem}.fp16.onnx"
    convert_fp16(onnx, dst)
    return dst


def _engine_environment(trt) -> dict:
    from edgekd.bench.environment import collect_environment
    from edgekd.runtime.tensorrt.cuda import open_cuda
    from edgekd.runtime.tensorrt.sidecar import driver_versions, gpu_identity, jetpack_release

    with open_cuda() as cuda:
        identity, binding = gpu_identity(cuda), cuda.binding
    return {"tensorrt_version": trt.__version__, **identity, "cuda_binding": binding, **driver_versions(),
            "jetpack": jetpack_release(), "host": collect_environment()}


def run_device_check(onnx, data, out, *, folds=None, images_root=None, calib=None, qdq_onnx=None,
                     profile=(1, 8, 32), batch_sizes=BATCH_SIZES, iterations: int = 50, progress: bool = True,
                     log=print) -> dict:
    """Run the acceptance checks and write the bundle into `out`; returns the bundle dict."""
    from edgekd.bench.bench import bench_runtime
    from edgekd.bench.memory import MemorySampler
    from edgekd.data import load_verification
    from edgekd.eval import evaluate
    from edgekd.export.run import build_from_onnx
    from edgekd.runtime.onnx_runtime import OnnxRuntime
    from edgekd.runtime.tensorrt import import_tensorrt
    from edgekd.runtime.tensorrt.runner import TensorRTRuntime

    onnx, out = Path(onnx), Path(out)
    if not onnx.is_file():
        raise EdgekdError(f"{onnx}: no such file")
    vset = load_verification(data, images_root)
    if folds:
        vset = vset.subset([f - 1 for f in folds])
    trt = import_tensorrt()  # before any work: this command exists to measure TensorRT
    out.mkdir(parents=True, exist_ok=True)
    precisions = ["fp16"] + (["int8"] if calib or qdq_onnx else [])
    started = time.perf_counter()
    environment = _engine_environment(trt)
    log(f"device-check: TensorRT {trt.__version__} on {environment['gpu_name']} ({environment['cuda_binding']}); "
        f"{len(vset)} pairs from {data}")
    reference = OnnxRuntime(onnx, device="cpu")
    engines = {}
    try:
        for precision in precisions:
            engine = out / "engines" / f"{onnx.stem}.{precision}.engine"
            typed = _typed_onnx(onnx, precision, qdq_onnx, out / "engines")
            side = build_from_onnx(onnx, precision, out=engine, typed_onnx=typed,
                                   calib=calib if precision == "int8" else None, profile=profile, log=log)
            with MemorySampler() as sampler, TensorRTRuntime(engine) as rt:
                accuracy = evaluate(rt, vset, reference.preprocess, progress=progress,
                                    reference=(reference, reference.preprocess))
                timing = bench_runtime(rt, batch_sizes=batch_sizes, iterations=iterations, min_time_s=0.5,
                                       progress=progress, sampler=sampler)
            ref = accuracy.pop("reference")
            ok = ref["cosine_min"] >= MIN_COSINE[precision]
            engines[precision] = {
                "engine": str(engine), "sidecar": side, "embeddings_vs_onnxruntime": {
                    "cosine_min": ref["cosine_min"], "cosine_mean": ref["cosine_mean"], "images": ref["num_images"],
                    "min_cosine_required": MIN_COSINE[precision], "ok": ok},
                "verification": accuracy, "accuracy_delta_pt": round(100 * (accuracy["accuracy_mean"]
                                                                            - ref["accuracy_mean"]), 4),
                "latency": timing["results"], "memory": sampler.result()}
            log(f"{precision}: min cosine vs ONNX Runtime {ref['cosine_min']:.5f} ({'ok' if ok else 'FAILED'}), "
                f"accuracy {100 * accuracy['accuracy_mean']:.2f}% (ONNX Runtime {100 * ref['accuracy_mean']:.2f}%)")
        bundle = {
            "kind": "device-check", "edgekd_version": __version__, "onnx": str(onnx),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "data": {"path": str(data), "folds": folds, "pairs": len(vset), "sha256": vset.sha256},
            "environment": environment,
            "onnxruntime_reference": {"accuracy_mean": ref["accuracy_mean"], "accuracy_std": ref["accuracy_std"],
                                      "tar_at_far": ref["tar_at_far"], "providers": reference.meta.get("providers")},
            "engines": engines, "passed": all(e["embeddings_vs_onnxruntime"]["ok"] for e in engines.values()),
            "seconds": round(time.perf_counter() - started, 1),
        }
    finally:
        reference.close()
    write_json_atomic(out / "device_check.json", bundle)
    from edgekd.io import atomic_path

    with atomic_path(out / "device_check.md") as tmp:
        tmp.write_text(format_device_check(bundle))
    log(f"bundle: {out / 'device_check.json'}, {out / 'device_check.md'} ({'PASSED' if bundle['passed'] else 'FAILED'})")
    return bundle


def _fmt(value, spec: str = ".2f", scale: float = 1.0) -> str:
    return "—" if value is None else format(value * scale, spec)


def format_device_check(b: dict) -> str:
    """The bundle as markdown: environment, then one row per engine and one latency table."""
    env = b["environment"]
    lines = [f"# edgekd device-check: {'PASSED' if b['passed'] else 'FAILED'}", "",
             f"- GPU: {env['gpu_name']} (compute capability {env['compute_capability']}), TensorRT "
             f"{env['tensorrt_version']}, driver {env.get('driver_version') or '—'}, CUDA "
             f"{env.get('cuda_version') or '—'}, JetPack/L4T {env.get('jetpack') or '—'}, CUDA binding "
             f"{env['cuda_binding']}",
             f"- data: {b['data']['path']}, {b['data']['pairs']} pairs (folds {b['data']['folds'] or 'all'})",
             f"- ONNX Runtime reference ({b['onnx']}): accuracy "
             f"{_fmt(b['onnxruntime_reference']['accuracy_mean'], '.2f', 100)}%", "",
             "| engine | min cosine vs ORT | mean cosine | accuracy % | Δ vs ORT (pt) | GPU memory MB | unified MB |",
             "|---|---|---|---|---|---|---|"]
    for precision, e in b["engines"].items():
        c, m = e["embeddings_vs_onnxruntime"], e["memory"]
        lines.append(f"| {precision} | {c['cosine_min']:.5f}{'' if c['ok'] else ' (FAILED)'} | {c['cosine_mean']:.5f} "
                     f"| {_fmt(e['verification']['accuracy_mean'], '.2f', 100)} | {e['accuracy_delta_pt']:+.2f} "
                     f"| {_fmt(m['gpu_bytes'], '.1f', 2 ** -20)} | {_fmt(m['unified_bytes'], '.1f', 2 ** -20)} |")
    lines += ["", "| engine | batch | latency ms (mean) | p99 | device ms | img/s |", "|---|---|---|---|---|---|"]
    for precision, e in b["engines"].items():
        for r in e["latency"]:
            dev = r.get("device_ms") or {}
            lines.append(f"| {precision} | {r['batch']} | {r['latency_ms']['mean']:.3f} | {r['latency_ms']['p99']:.3f} "
                         f"| {_fmt(dev.get('mean'), '.3f')} | {r['throughput_img_s']:.1f} |")
    lines += ["", f"Memory figures that NVML cannot give are — (reason in device_check.json). "
              f"Run took {b['seconds']} s; edgekd {b['edgekd_version']}."]
    return "\n".join(lines) + "\n"
