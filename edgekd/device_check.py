"""`edgekd device-check`: the on-device acceptance run, one evidence bundle from a user's Jetson or desktop GPU.

From one ONNX file: build the engine(s) here (FP16; INT8 too when a calibration set or a Q/DQ ONNX is given: from a
calibration set the Q/DQ file is written here, so INT8 builds the same way on TensorRT 8.6, 10.x and 11.x), compare
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


def _typed_onnx(onnx: Path, precision: str, work: Path, qdq_onnx=None, calib=None, gate=None,
                log=print) -> tuple[Path, dict]:
    """(graph, how it was made) for the `precision` engine, one that every TensorRT generation builds: an FP16
    conversion; for INT8 the given Q/DQ file, else one written here by the exporter's quantizer from `calib`
    (the accuracy-gated file when `gate` = (spec, gate data) is given), never a TensorRT calibrator."""
    from edgekd.artifacts import Variant, onnx_path

    if precision == "fp16":
        from edgekd.export.fp16 import convert_fp16

        dst = onnx_path(work / onnx.name, "fp16")
        convert_fp16(onnx, dst)
        return dst, {"made_from": "fp32"}
    if qdq_onnx:
        return Path(qdq_onnx), {"made_from": "--qdq-onnx"}
    from edgekd.export import graph
    from edgekd.export.calib import open_calib
    from edgekd.export.int8 import Int8Quantizer
    from edgekd.preprocess import ARCFACE, Preprocess

    calib_set = open_calib(calib, Preprocess.from_metadata(graph.read_metadata(graph.load(onnx)), ARCFACE))
    if gate is None:  # the same Q/DQ file `edgekd build --calib` makes
        from edgekd.export.run import qdq_from_calib

        return qdq_from_calib(onnx, calib_set, work, log), {
            "made_from": "calib", "calib": str(calib_set.root), "calib_sha256": calib_set.sha256, "method": "minmax"}
    with Int8Quantizer(onnx, calib_set) as q:
        from edgekd.export.gate import run_gate
        from edgekd.export.thresholds import embed

        spec, data = gate
        dst = onnx_path(work / onnx.name, Variant("int8", "gated"))
        report, _ = run_gate(q, embed(onnx, data), data, spec, dst, log=log)
        return dst, {"made_from": "calib+gate", "calib": str(calib_set.root), "calib_sha256": calib_set.sha256,
                     "gate": {k: report[k] for k in ("spec", "method", "float_layers", "after")}}


def _packages() -> dict:
    """Installed TensorRT / CUDA Python distributions (which CUDA family: -cu12 or -cu13), null when absent."""
    from importlib import metadata

    out = {}
    for name in ("tensorrt", "tensorrt-cu12", "tensorrt-cu13", "cuda-python", "cuda-bindings", "pycuda"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _engine_environment(trt) -> dict:
    """TensorRT, GPU, CUDA runtime/driver versions and packages; a driver too old for the CUDA runtime of the
    installed packages stops here with one line (edgekd.runtime.tensorrt.cuda)."""
    from edgekd.bench.environment import collect_environment
    from edgekd.runtime.tensorrt.cuda import cuda_versions, open_cuda
    from edgekd.runtime.tensorrt.sidecar import driver_versions, gpu_identity, jetpack_release

    with open_cuda() as cuda:
        identity, binding = gpu_identity(cuda), cuda.binding
    return {"tensorrt_version": trt.__version__, **identity, "cuda_binding": binding, **driver_versions(),
            **cuda_versions(), "packages": _packages(), "jetpack": jetpack_release(), "host": collect_environment()}


def _check_engine(onnx, precision, out, vset, reference, typed, profile, batch_sizes, iterations, progress,
                  log) -> dict:
    """Build one engine from `typed` and measure it against ONNX Runtime: the bundle's entry for `precision`."""
    from edgekd.artifacts import engine_path
    from edgekd.bench.bench import bench_runtime
    from edgekd.bench.memory import MemorySampler
    from edgekd.eval import evaluate
    from edgekd.export.run import build_from_onnx
    from edgekd.runtime.tensorrt.runner import TensorRTRuntime

    engine = engine_path(out / "engines" / onnx.name, precision)
    side = build_from_onnx(onnx, precision, out=engine, typed_onnx=typed, profile=profile, log=log)
    with MemorySampler() as sampler, TensorRTRuntime(engine) as rt:
        accuracy = evaluate(rt, vset, reference.preprocess, progress=progress,
                            reference=(reference, reference.preprocess))
        timing = bench_runtime(rt, batch_sizes=batch_sizes, iterations=iterations, min_time_s=0.5,
                               progress=progress, sampler=sampler)
    ref = accuracy.pop("reference")
    ok = ref["cosine_min"] >= MIN_COSINE[precision]
    log(f"{precision}: min cosine vs ONNX Runtime {ref['cosine_min']:.5f} ({'ok' if ok else 'FAILED'}), "
        f"accuracy {100 * accuracy['accuracy_mean']:.2f}% (ONNX Runtime {100 * ref['accuracy_mean']:.2f}%)")
    return {"engine": str(engine), "sidecar": side, "embeddings_vs_onnxruntime": {
                "cosine_min": ref["cosine_min"], "cosine_mean": ref["cosine_mean"], "images": ref["num_images"],
                "min_cosine_required": MIN_COSINE[precision], "ok": ok},
            "verification": accuracy, "accuracy_delta_pt": round(100 * (accuracy["accuracy_mean"]
                                                                        - ref["accuracy_mean"]), 4),
            "latency": timing["results"], "memory": sampler.result(), "reference": ref}


def run_device_check(onnx, data, out, *, folds=None, images_root=None, calib=None, qdq_onnx=None, gate_data=None,
                     gate_folds=None, int8_gate: str = "tar@1e-4=0.3", profile=(1, 8, 32), batch_sizes=BATCH_SIZES,
                     iterations: int = 50, progress: bool = True, log=print) -> dict:
    """Run the acceptance checks and write the bundle into `out`; returns the bundle dict.

    One precision failing (its build, its Q/DQ file) is recorded as that engine's `error` line; the others are
    still measured and the bundle is written (`passed` false)."""
    from edgekd.data import load_verification
    from edgekd.runtime.onnx_runtime import OnnxRuntime
    from edgekd.runtime.tensorrt import import_tensorrt

    onnx, out = Path(onnx), Path(out)
    if not onnx.is_file():
        raise EdgekdError(f"{onnx}: no such file")
    if calib is not None and not Path(calib).is_dir():
        raise EdgekdError(f"{calib}: no such calibration set (make one with `edgekd calib make`)")
    if gate_data is not None and calib is None:
        raise EdgekdError("--gate-data needs --calib calib/NAME (the gated Q/DQ file is quantized from it)")
    vset = load_verification(data, images_root)
    if folds:
        vset = vset.subset([f - 1 for f in folds])
    trt = import_tensorrt()  # before any work: this command exists to measure TensorRT
    gate = None
    if gate_data is not None:
        from edgekd.export import graph
        from edgekd.export.gate import parse_spec
        from edgekd.export.thresholds import load_gate_data
        from edgekd.preprocess import ARCFACE, Preprocess

        pre = Preprocess.from_metadata(graph.read_metadata(graph.load(onnx)), ARCFACE)
        gate = (parse_spec(int8_gate), load_gate_data(gate_data, pre, gate_folds))
    started = time.perf_counter()
    environment = _engine_environment(trt)  # a CUDA driver too old for the packages stops here, nothing written
    out.mkdir(parents=True, exist_ok=True)
    (out / "engines").mkdir(exist_ok=True)
    precisions = ["fp16"] + (["int8"] if calib or qdq_onnx else [])
    log(f"device-check: TensorRT {trt.__version__} on {environment['gpu_name']} ({environment['cuda_binding']}, "
        f"CUDA runtime {environment['cuda_runtime_version'] or '?'}, driver {environment['cuda_driver_version'] or '?'}"
        f"); {len(vset)} pairs from {data}")
    reference = OnnxRuntime(onnx, device="cpu")
    engines, ref = {}, None
    try:
        for precision in precisions:
            made = None
            try:
                typed, made = _typed_onnx(onnx, precision, out / "engines", qdq_onnx, calib, gate, log)
                entry = _check_engine(onnx, precision, out, vset, reference, typed, profile, batch_sizes,
                                      iterations, progress, log)
            except EdgekdError as e:
                log(f"{precision}: FAILED: {e}")
                engines[precision] = {"error": str(e).splitlines()[0], "qdq_onnx": made}
                continue
            ref = entry.pop("reference")
            engines[precision] = {**entry, **({"qdq_onnx": made} if precision == "int8" else {})}
        bundle = {
            "kind": "device-check", "edgekd_version": __version__, "onnx": str(onnx),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "data": {"path": str(data), "folds": folds, "pairs": len(vset), "sha256": vset.sha256},
            "environment": environment,
            "onnxruntime_reference": None if ref is None else {
                "accuracy_mean": ref["accuracy_mean"], "accuracy_std": ref["accuracy_std"],
                "tar_at_far": ref["tar_at_far"], "providers": reference.meta.get("providers")},
            "engines": engines,
            "passed": all("error" not in e and e["embeddings_vs_onnxruntime"]["ok"] for e in engines.values()),
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
    """The bundle as markdown: environment, then one row per engine (or its error) and one latency table."""
    env, ort = b["environment"], b["onnxruntime_reference"] or {}
    lines = [f"# edgekd device-check: {'PASSED' if b['passed'] else 'FAILED'}", "",
             f"- GPU: {env['gpu_name']} (compute capability {env['compute_capability']}), TensorRT "
             f"{env['tensorrt_version']}, driver {env.get('driver_version') or '—'}, CUDA driver "
             f"{env.get('cuda_driver_version') or env.get('cuda_version') or '—'} / runtime "
             f"{env.get('cuda_runtime_version') or '—'} ({env.get('cuda_family') or '—'}), JetPack/L4T "
             f"{env.get('jetpack') or '—'}, CUDA binding {env['cuda_binding']}",
             f"- data: {b['data']['path']}, {b['data']['pairs']} pairs (folds {b['data']['folds'] or 'all'})",
             f"- ONNX Runtime reference ({b['onnx']}): accuracy {_fmt(ort.get('accuracy_mean'), '.2f', 100)}%", "",
             "| engine | min cosine vs ORT | mean cosine | accuracy % | Δ vs ORT (pt) | GPU memory MB | unified MB |",
             "|---|---|---|---|---|---|---|"]
    for precision, e in b["engines"].items():
        if "error" in e:
            lines.append(f"| {precision} | FAILED: {e['error']} | | | | | |")
            continue
        c, m = e["embeddings_vs_onnxruntime"], e["memory"]
        lines.append(f"| {precision} | {c['cosine_min']:.5f}{'' if c['ok'] else ' (FAILED)'} | {c['cosine_mean']:.5f} "
                     f"| {_fmt(e['verification']['accuracy_mean'], '.2f', 100)} | {e['accuracy_delta_pt']:+.2f} "
                     f"| {_fmt(m['gpu_bytes'], '.1f', 2 ** -20)} | {_fmt(m['unified_bytes'], '.1f', 2 ** -20)} |")
    lines += ["", "| engine | batch | latency ms (mean) | p99 | device ms | img/s |", "|---|---|---|---|---|---|"]
    for precision, e in b["engines"].items():
        for r in e.get("latency", []):
            dev = r.get("device_ms") or {}
            lines.append(f"| {precision} | {r['batch']} | {r['latency_ms']['mean']:.3f} | {r['latency_ms']['p99']:.3f} "
                         f"| {_fmt(dev.get('mean'), '.3f')} | {r['throughput_img_s']:.1f} |")
    lines += ["", f"Memory figures that NVML cannot give are — (reason in device_check.json). "
              f"Run took {b['seconds']} s; edgekd {b['edgekd_version']}."]
    return "\n".join(lines) + "\n"
