"""`edgekd bench`: latency, throughput and memory of a model as deployed (engine, ONNX or torch checkpoint).

Library code imports neither torch nor click; torch is loaded only when the runtime itself is torch.
"""

from __future__ import annotations

import datetime as _dt
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from edgekd.bench.environment import collect_environment
from edgekd.bench.memory import MemorySampler
from edgekd.errors import EdgekdError

DEFAULT_BATCH_SIZES = (1, 8, 32)


def _stats(ms: Sequence[float]) -> dict:
    a = np.asarray(ms, dtype=np.float64)
    return {
        "mean": float(a.mean()),
        "std": float(a.std(ddof=1)) if a.size > 1 else 0.0,
        "p50": float(np.percentile(a, 50)),
        "p90": float(np.percentile(a, 90)),
        "p99": float(np.percentile(a, 99)),
        "min": float(a.min()),
    }


def _progress(total: int | None, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="it", leave=False, disable=not enabled, file=sys.stderr)


def time_batch(rt, batch: int, *, warmup: int = 5, iterations: int = 20, min_time_s: float = 1.0,
               max_time_s: float | None = None, seed: int = 0, progress: bool = False,
               sampler: MemorySampler | None = None) -> dict:
    """Warm up, then time calls until both `iterations` calls and `min_time_s` seconds are done
    (or `max_time_s` passed, at least 2 calls). Host end-to-end time per call; device time via
    `rt.device_time_ms` where the runtime can measure it (CUDA events)."""
    if batch < 1 or iterations < 1 or warmup < 0:
        raise EdgekdError(f"batch ({batch}), iterations ({iterations}) must be >= 1 and warm-up ({warmup}) >= 0")
    h, w = rt.preprocess.input_size
    x = np.random.default_rng(seed).uniform(-1.0, 1.0, size=(batch, 3, h, w)).astype(np.float32)
    for _ in range(warmup):
        rt(x)
    times: list[float] = []
    start = time.perf_counter()
    with _progress(iterations, f"batch {batch}", progress) as bar:
        while True:
            t0 = time.perf_counter()
            rt(x)
            times.append((time.perf_counter() - t0) * 1e3)
            bar.update(1)
            elapsed = time.perf_counter() - start
            if len(times) >= iterations and elapsed >= min_time_s:
                break
            if max_time_s is not None and elapsed >= max_time_s and len(times) >= 2:
                break
    if sampler is not None:
        sampler.sample()
    device = None
    device_fn = getattr(rt, "device_time_ms", None)
    if callable(device_fn):
        dev = [device_fn(x) for _ in range(min(len(times), iterations))]
        if dev and all(d is not None for d in dev):
            device = _stats(dev)
    lat = _stats(times)
    return {
        "batch": batch,
        "iterations": len(times),
        "warmup": warmup,
        "latency_ms": lat,
        "per_image_ms": lat["mean"] / batch,
        "device_ms": device,
        "throughput_img_s": batch * 1e3 / lat["mean"],
    }


NO_DETECTION = "no face detection ran: each frame centre-cropped as if it were a face"


def time_frames(rt, source: str | Path, *, max_frames: int | None = 200, warmup: int = 3,
                progress: bool = False) -> dict:
    """Per-frame time as a deployed app on precollected video: read+decode, fit to the model input
    (resize + centre crop, or as is for aligned faces), normalise, infer at batch 1."""
    from edgekd.bench.video import fit_frame, iter_frames

    pp = rt.preprocess
    size = pp.aligned_size
    decode, fit, norm, infer, total = [], [], [], [], []
    resized = 0
    warm = warmup
    with _progress(max_frames, "frames", progress) as bar:
        for frame, t_decode in iter_frames(source, limit=max_frames):
            t0 = time.perf_counter()
            face = fit_frame(frame, size)
            t1 = time.perf_counter()
            x = pp(face)
            t2 = time.perf_counter()
            while warm > 0:  # warm up on the first real frame, not timed
                rt(x)
                warm -= 1
            t3 = time.perf_counter()
            rt(x)
            t4 = time.perf_counter()
            resized += frame.shape[:2] != tuple(size)
            decode.append(t_decode * 1e3)
            fit.append((t1 - t0) * 1e3)
            norm.append((t2 - t1) * 1e3)
            infer.append((t4 - t3) * 1e3)
            total.append(t_decode * 1e3 + (t2 - t0) * 1e3 + (t4 - t3) * 1e3)
            bar.update(1)
    if not total:
        raise EdgekdError(f"{source}: no frames to benchmark")
    return {
        "source": str(source),
        "detection": NO_DETECTION,
        "frames": len(total),
        "frames_resized": int(resized),
        "aligned_size": list(size),
        "per_frame_ms_with_preprocessing": _stats(total),
        "per_frame_ms_inference_only": _stats(infer),
        "decode_ms": _stats(decode),
        "fit_ms": _stats(fit),
        "normalise_ms": _stats(norm),
        "fps_with_preprocessing": 1e3 / float(np.mean(total)),
        "fps_inference_only": 1e3 / float(np.mean(infer)),
    }


def _complexity(rt, engine, onnx) -> dict | None:
    from edgekd.bench import complexity as cx

    if engine is not None:
        return cx.engine_complexity(engine)
    if onnx is not None:
        return cx.onnx_complexity(onnx)
    if "torch" in sys.modules:  # torch runtime: count on the live module, the contract's way
        from edgekd.models import complexity

        target = getattr(rt, "module", None) or (rt.meta or {}).get("model")
        if target is None:
            return None
        c = complexity(target, (rt.meta or {}).get("model"))
        return {**c, "source": "edgekd.models.complexity"}
    return None


def _artifact_bytes(engine, onnx, weights) -> int | None:
    if onnx is not None:
        from edgekd.bench.complexity import onnx_artifact_bytes

        return onnx_artifact_bytes(onnx)
    path = engine if engine is not None else weights
    return Path(path).stat().st_size if path is not None else None


def bench_runtime(rt, *, batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES, warmup: int = 5, iterations: int = 20,
                  min_time_s: float = 1.0, max_time_s: float | None = None, video: str | Path | None = None,
                  max_frames: int | None = 200, progress: bool = True,
                  sampler: MemorySampler | None = None) -> dict:
    """Time an opened runtime over the batch sizes (and optionally frames); the `results`/`video` parts of the JSON."""
    results = [time_batch(rt, b, warmup=warmup, iterations=iterations, min_time_s=min_time_s,
                          max_time_s=max_time_s, progress=progress, sampler=sampler) for b in batch_sizes]
    out = {"results": results, "video": None}
    if video is not None:
        out["video"] = time_frames(rt, video, max_frames=max_frames, progress=progress)
    return out


def run_bench(engine: str | Path | None = None, onnx: str | Path | None = None, model: str | None = None,
              weights: str | Path | None = None, *, device: str = "cpu", precision: str = "fp32",
              batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES, warmup: int = 5, iterations: int = 20,
              min_time_s: float = 1.0, max_time_s: float | None = None, video: str | Path | None = None,
              max_frames: int | None = 200, progress: bool = True, runtime_kw: dict | None = None) -> dict:
    """Open the artifact with edgekd.runtime.open_artifact (a checkpoint runs in PyTorch: that is what is measured),
    benchmark it, and return the contract's bench JSON (kind "bench"). `runtime_kw`: more open_artifact options
    (threads, providers, channels_last, ...)."""
    from edgekd.runtime import open_artifact

    if engine is None and onnx is None and model is None and weights is None:
        raise EdgekdError("nothing to benchmark: give an engine, an ONNX file, a model name or weights")
    for p in (engine, onnx, weights):
        if p is not None and not Path(p).exists():
            raise EdgekdError(f"{p}: no such file")
    if not batch_sizes:
        raise EdgekdError("no batch sizes given")
    with MemorySampler() as sampler:
        t0 = time.perf_counter()
        kw = dict(runtime_kw or {})
        if onnx is not None and model is not None:  # an ONNX file without edgekd metadata: the model's preprocessing
            from edgekd.models.registry import model_preprocess

            kw.setdefault("preprocess", model_preprocess(model))
        rt = open_artifact(engine or onnx or weights, model=model if engine is None else None, device=device,
                           precision=precision, checkpoint_backend="torch", **kw)
        load_s = time.perf_counter() - t0
        try:
            timing = bench_runtime(rt, batch_sizes=batch_sizes, warmup=warmup, iterations=iterations,
                                   min_time_s=min_time_s, max_time_s=max_time_s, video=video,
                                   max_frames=max_frames, progress=progress, sampler=sampler)
            cplx = _complexity(rt, engine, onnx)
            meta = dict(rt.meta or {})
            info = {
                "runtime": rt.name,
                "precision": rt.precision,
                "device": rt.device,
                "input_size": list(rt.preprocess.input_size),
                "embedding_size": rt.embedding_size,
            }
        finally:
            rt.close()
    artifact = engine or onnx or weights or model
    return {
        "kind": "bench",
        "label": {
            "model": meta.get("model") or model,
            "method": meta.get("method"),
            "precision": info["precision"],
            "artifact": str(artifact),
        },
        **info,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "settings": {"batch_sizes": list(batch_sizes), "warmup": warmup, "iterations": iterations,
                     "min_time_s": min_time_s, "max_time_s": max_time_s},
        "load_seconds": load_s,
        **timing,
        "memory": sampler.result(),
        "artifact_bytes": _artifact_bytes(engine, onnx, weights),
        "params": cplx.get("params") if cplx else None,
        "gflops": cplx.get("gflops") if cplx else None,
        "complexity_source": cplx.get("source") if cplx else None,
        "meta": meta,
        "env": collect_environment(),
    }


def _mb(b: int | None) -> str:
    return "—" if b is None else f"{b / 2**20:.1f} MB"


def format_bench(result: dict) -> str:
    """Plain-text table of a bench JSON: one row per batch size, then frames and memory lines."""
    lab = result["label"]
    lines = [f"{lab['model']} / {lab.get('method') or '—'} / {result['precision']} on {result['runtime']} "
             f"({result['device']}; {result['env'].get('cpu_model')}, {result['env'].get('cpu_available')} cores"
             + (f"; {result['env']['gpus'][0]['name']}" if result["env"].get("gpus") else "") + ")"]
    head = ["batch", "iters", "latency ms (mean ± std)", "p50", "p90", "p99", "device ms", "img/s"]
    rows = []
    for r in result["results"]:
        L = r["latency_ms"]
        dev = r.get("device_ms")
        rows.append([str(r["batch"]), str(r["iterations"]), f"{L['mean']:.2f} ± {L['std']:.2f}",
                     f"{L['p50']:.2f}", f"{L['p90']:.2f}", f"{L['p99']:.2f}",
                     "—" if not dev else f"{dev['mean']:.2f} ± {dev['std']:.2f}", f"{r['throughput_img_s']:.1f}"])
    widths = [max(len(head[i]), *(len(r[i]) for r in rows)) for i in range(len(head))]
    fmt = lambda cells: "  ".join(c.rjust(w) for c, w in zip(cells, widths))  # noqa: E731
    lines += [fmt(head), fmt(["-" * w for w in widths]), *map(fmt, rows)]
    v = result.get("video")
    if v:
        w, i = v["per_frame_ms_with_preprocessing"], v["per_frame_ms_inference_only"]
        lines.append(f"frames ({v['frames']} from {v['source']}, {v['frames_resized']} resized; {NO_DETECTION}): "
                     f"{w['mean']:.2f} ± {w['std']:.2f} ms/frame with decode+preprocessing "
                     f"({v['fps_with_preprocessing']:.1f} fps), {i['mean']:.2f} ± {i['std']:.2f} ms inference only "
                     f"({v['fps_inference_only']:.1f} fps); decode {v['decode_ms']['mean']:.2f} ms")
    m = result["memory"]
    lines.append(f"memory: GPU (process) {_mb(m['gpu_bytes'])}, torch peak {_mb(m['torch_peak_bytes'])}, "
                 f"unified {_mb(m['unified_bytes'])}, CPU peak RSS {_mb(m['rss_peak_bytes'])}")
    g = result.get("gflops")
    p = result.get("params")
    lines.append(f"artifact: {_mb(result.get('artifact_bytes'))}; params "
                 f"{'—' if p is None else f'{p / 1e6:.2f} M'}; GFLOPs {'—' if g is None else f'{g:.3f}'}"
                 + (f" ({result['complexity_source']})" if result.get("complexity_source") else ""))
    return "\n".join(lines)


def run_bench_isolated(kwargs: dict, timeout_s: float | None = None) -> dict:
    """`run_bench(**kwargs)` in a fresh Python process (so memory and timing are not the caller's), returning its
    JSON. Progress bars pass through on stderr; a failure is re-raised as the child's one-line error."""
    import json
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory(prefix="edgekd-bench-") as tmp:
        out = Path(tmp) / "bench.json"
        code = ("import json, sys\nfrom edgekd.bench.bench import _child\n_child()\n")
        proc = subprocess.run([sys.executable, "-c", code], input=json.dumps({"kwargs": kwargs, "out": str(out)}),
                              text=True, stdout=subprocess.PIPE, timeout=timeout_s)
        if proc.returncode != 0 or not out.exists():
            msg = (proc.stdout or "").strip().splitlines()
            raise EdgekdError(msg[-1] if msg else f"bench subprocess failed (exit {proc.returncode})")
        return json.loads(out.read_text())


def _child() -> None:
    import json

    from edgekd.io import write_json_atomic

    job = json.loads(sys.stdin.read())
    try:
        write_json_atomic(job["out"], run_bench(**job["kwargs"]))
    except EdgekdError as e:
        print(str(e))
        sys.exit(1)
