"""`edgekd device-check`: the on-device acceptance run, one evidence bundle from a user's Jetson or desktop GPU.

From one ONNX file: build the engine(s) here (FP16; INT8 too when a calibration set or a Q/DQ ONNX is given: from a
calibration set the Q/DQ file is written here, so INT8 builds the same way on TensorRT 8.6, 10.x and 11.x), compare
their embeddings with ONNX Runtime (CPU, the reference) on real faces, re-measure verification accuracy and TAR@FAR,
latency and memory, and record the environment (TensorRT, CUDA, driver, JetPack, GPU). With a detector (an
exported MTCNN folder): its FP16 engines too, their parity with ONNX Runtime on real photos, and the per-frame
latency of detection and of detect -> align -> embed -> match on composited test frames. Writes
`device_check.json` + `device_check.md` into one folder. numpy, onnx(runtime) and TensorRT only: never torch.
"""

from __future__ import annotations

import datetime as _dt
import time
from pathlib import Path

import numpy as np

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
    return {"tensorrt_version": trt.__version__, "tensorrt_module": getattr(trt, "__file__", None), **identity,
            "cuda_binding": binding, **driver_versions(),
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


DETECTOR_PRECISION = "fp16"  # the detector's engines (MTCNN has no INT8 graph)
DETECTOR_MAX_PX = 8.0  # FP16 engines vs FP32 ONNX Runtime: largest box / landmark difference allowed on real photos
DETECTOR_PHOTOS = 24
DETECTOR_FRAMES = 20


def check_detector_input(path) -> dict:
    """Before any work: `path` must be an MTCNN detector (an exported folder or a member file, ONNX or engine) with
    its FP32 ONNX files (the reference) beside it; returns {"kind", "files", "reference" (that folder),
    "reference_files"} or raises one line."""
    from edgekd.artifacts import family
    from edgekd.detect.open import detector_files, open_detector

    kind, files = detector_files(path)
    folder = family(files["pnet"]).parent
    _, ref_files = detector_files(folder)  # the folder's FP32 ONNX files
    open_detector(folder, device="cpu").close()  # refuses files that are not these networks, by name
    return {"kind": kind, "files": files, "reference": folder, "reference_files": ref_files}


def _fit_photo(photo, longest: int):
    """A photo whose long side exceeds `longest` is shrunk to it (P-Net's engine profile covers the frame size)."""
    from PIL import Image

    h, w = photo.shape[:2]
    if max(h, w) <= longest:
        return photo
    s = longest / max(h, w)
    return np.asarray(Image.fromarray(photo).resize((max(1, round(w * s)), max(1, round(h * s))), Image.BILINEAR))


def detector_test_photos(folder=None, vset=None, n: int = DETECTOR_PHOTOS) -> tuple[list, str]:
    """Real photos for the detector's parity and test frames: `folder`, else the shared LFW raw photos, else the
    faces of the verification set (aligned crops: the detector still finds them)."""
    from edgekd.export.detector import parity_photos

    if folder is not None and not Path(folder).is_dir():
        raise EdgekdError(f"{folder}: no such folder of photos")
    photos, source = parity_photos(folder, n)
    if photos or folder is not None or vset is None:
        if not photos:
            raise EdgekdError(f"no photos for the detector check ({source}; give --detector-photos DIR)")
        return photos, source
    picks = sorted({int(k) for k in np.linspace(0, vset.num_images - 1, min(n, vset.num_images))})
    return [vset.image(k) for k in picks], f"{len(picks)} faces of the verification set {vset.name}"


class _Recorder:
    """A network callable that also keeps every input it is given (the real pyramid levels and crops)."""

    def __init__(self, fn):
        self.fn, self.inputs = fn, []

    def __call__(self, x):
        self.inputs.append(np.array(x))
        return self.fn(x)


def _detector_parity(reference, engines, photos: list, photos_from: str) -> dict:
    """Per network: max abs output difference between the engines and ONNX Runtime on the inputs the pipeline
    really gives them (P-Net's pyramid levels, R-/O-Net's crops of the photos); per photo: faces and their largest
    box / landmark difference."""
    from edgekd.export.detector import compare_detections

    nets = reference.networks
    recorders = {n: _Recorder(f) for n, f in nets.items()}
    reference.networks = recorders
    try:
        want = [reference(p) for p in photos]
    finally:
        reference.networks = nets
    got = [engines(p) for p in photos]
    cap = engines.settings.max_batch
    worst, calls = {}, {}
    for name, rec in recorders.items():
        worst[name], calls[name] = 0.0, {"calls": len(rec.inputs), "inputs": int(sum(len(x) for x in rec.inputs))}
        for x in rec.inputs:
            step = len(x) if name == "pnet" or not cap else cap
            for i in range(0, len(x), step):
                part = x[i:i + step]
                for a, b in zip(nets[name](part), engines.networks[name](part)):
                    d = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))
                    worst[name] = max(worst[name], float(d.max()) if d.size else 0.0)
    same = compare_detections(want, got)
    return {"photos": len(photos), "photos_from": photos_from, "network_max_abs": worst, "network_inputs": calls,
            "faces_onnxruntime": int(sum(map(len, want))), "faces_engine": int(sum(map(len, got))), **same,
            "max_px_allowed": DETECTOR_MAX_PX,
            "ok": bool(sum(map(len, want))) and same["count_mismatches"] == 0
            and (same["max_px"] or 0.0) <= DETECTOR_MAX_PX}


def _detector_latency(detector, frames: list, warmup: int = 1) -> dict:
    """Per-frame detection time on the composited frames (after `warmup` untimed frames), with each network's
    share and the faces found."""
    from edgekd.bench.bench import _stats
    from edgekd.bench.video import _Timed

    log: dict = {}
    nets = detector.networks
    detector.networks = {n: _Timed(f, log, n) for n, f in nets.items()}
    total, per_net, faces = [], {n: [] for n in nets}, []
    try:
        for k, frame in enumerate(frames):
            log.clear()
            t0 = time.perf_counter()
            found = detector(frame)
            ms = (time.perf_counter() - t0) * 1e3
            if k < warmup:
                continue
            total.append(ms)
            faces.append(len(found))
            for n in per_net:
                per_net[n].append(log.get(n, 0.0))
    finally:
        detector.networks = nets
    return {"frames": len(total), "warmup_frames": warmup, "per_frame_ms": _stats(total),
            "networks_ms": {n: _stats(v) for n, v in per_net.items()}, "faces_per_frame": float(np.mean(faces)),
            "frames_per_s": 1e3 / float(np.mean(total))}


def _detector_pipeline(engine_member: Path, face_engine: Path, photos: list, frames: list, truth: list,
                       work: Path) -> dict:
    """detect -> align -> embed -> match on the frames (written as PNG, decoded as the video bench does), on the
    detector engines and the face model's engine; the gallery holds the composited photos themselves, one identity
    each, so the match stage is timed (and checked), not scored."""
    from PIL import Image

    from edgekd.bench.video import run_video_pipeline

    frame_dir, gallery = work / "frames", work / "gallery"
    frame_dir.mkdir(parents=True)
    for k, frame in enumerate(frames):
        Image.fromarray(frame).save(frame_dir / f"{k:05d}.png")
    for i, photo in enumerate(photos):
        (gallery / f"photo{i:02d}").mkdir(parents=True)
        Image.fromarray(photo).save(gallery / f"photo{i:02d}" / "0.png")
    r = run_video_pipeline(frame_dir, engine_member, face_engine, gallery=gallery, device="cuda:0",
                           max_frames=None, warmup=1)
    timed = truth[1:]  # frame 0 is the untimed warm-up
    same = sum(sorted(f["matches"]) == sorted(f"photo{i:02d}" for i, _ in slots)
               for f, slots in zip(r["per_frame"], timed))
    return {"face_engine": str(face_engine), "frames": r["frames"], "warmup_frames": r["warmup_frames"],
            "stages_ms": r["stages_ms"], "detector_networks_ms": r["detector_networks_ms"],
            "faces_per_frame": r["faces_per_frame"], "frames_per_s": r["frames_per_s"],
            "faces_per_s": r["faces_per_s"], "threshold_source": r["threshold_source"],
            "gallery": {"identities": len(photos), "of": "the composited photos themselves (times the match stage; "
                        "not an accuracy figure)", "frames_all_matched": int(same)}}


def _check_detector(given: dict, out: Path, trt, photos: list, photos_from: str, frame_size: tuple[int, int],
                    n_frames: int, face_engine: Path | None, log) -> dict:
    """The bundle's detector section: engines (built here from the folder's ONNX files, or the given ones), their
    parity with ONNX Runtime on real photos, per-frame latency on composited frames, and the whole pipeline when
    the face model's FP16 engine is at hand."""
    import shutil
    import tempfile

    from edgekd.artifacts import detector_stem, engine_path
    from edgekd.bench.video import composite_frame
    from edgekd.detect.mtcnn import NETWORKS, MtcnnSettings
    from edgekd.detect.open import DETECTOR, open_detector
    from edgekd.export.detector import build_detector_engines, engine_shapes
    from edgekd.runtime.tensorrt.sidecar import read_sidecar

    w, h = frame_size
    if given["kind"] == "engine":
        files = given["files"]
        engines_from = "given"
        precision = files["pnet"].name[: -len(files["pnet"].suffix)].rsplit(".", 1)[-1]
        sides = {n: read_sidecar(f) for n, f in files.items()}
        built = {n: {"engine": str(f), "profile": sides[n].get("profile"), "api_path": sides[n].get("api_path")}
                 for n, f in files.items()}
        have = ((built["pnet"]["profile"] or {}).get("input") or {}).get("max")
        need = engine_shapes("pnet", (h, w), (1, 1, 1), MtcnnSettings())["input"][2]
        if have and any(a > b for a, b in zip(need, have)):
            raise EdgekdError(f"{files['pnet']}: its profile (max {have[2]}x{have[3]}) does not cover the P-Net "
                              f"pyramid of {w}x{h} frames (needs {need[2]}x{need[3]}); give the exported folder to "
                              "build engines for this --frame-size, or a smaller one")
    else:
        folder = out / "engines" / DETECTOR
        folder.mkdir(parents=True, exist_ok=True)
        for src in sorted(given["reference"].glob(f"{DETECTOR}-*.onnx")):
            shutil.copy(src, folder / src.name)
        engines_from, precision = "built here", DETECTOR_PRECISION
        built = build_detector_engines(folder, DETECTOR_PRECISION, detector=DETECTOR, frame_size=(h, w), trt=trt)
        files = {n: engine_path(folder / detector_stem(DETECTOR, n), DETECTOR_PRECISION) for n in NETWORKS}
    photos = [_fit_photo(p, max(w, h)) for p in photos]
    frames, truth = map(list, zip(*(composite_frame(photos, k, (w, h)) for k in range(n_frames + 1))))
    with open_detector(given["reference"], device="cpu") as ref, open_detector(files["pnet"], device="cuda:0") as det:
        parity = _detector_parity(ref, det, photos, photos_from)
        log(f"detector: engines vs ONNX Runtime on {parity['photos']} photos: {parity['faces_onnxruntime']} faces, "
            f"face count differs on {parity['count_mismatches']}, boxes/landmarks max "
            f"{'n/a' if parity['max_px'] is None else format(parity['max_px'], '.3f')} px "
            f"({'ok' if parity['ok'] else 'FAILED'}); networks max |diff| "
            + ", ".join(f"{n} {v:.1e}" for n, v in parity["network_max_abs"].items()))
        latency = _detector_latency(det, frames)
        latency.update(frame_size=[w, h], faces_composited=len(truth[0]),
                       frames_from=f"{n_frames + 1} frames composited by edgekd.bench.video.composite_frame from "
                                   f"{photos_from} ({len(truth[0])} per frame, first frame untimed)")
        log(f"detector: {latency['per_frame_ms']['mean']:.2f} ms per {w}x{h} frame (p99 "
            f"{latency['per_frame_ms']['p99']:.2f}), {latency['faces_per_frame']:.2f} faces per frame of "
            f"{len(truth[0])}")
        described = det.describe()
    if face_engine is None:
        pipeline = {"skipped": "no face-model FP16 engine (its build failed)"}
    else:
        with tempfile.TemporaryDirectory(prefix="edgekd-device-check-") as tmp:
            pipeline = _detector_pipeline(files["pnet"], face_engine, photos, frames, truth, Path(tmp))
        log(f"pipeline: {pipeline['stages_ms']['total']['mean']:.2f} ms per frame (detect "
            f"{pipeline['stages_ms']['detect']['mean']:.2f}, embed {pipeline['stages_ms']['embed']['mean']:.2f})")
    return {"source": str(given["files"]["pnet"].parent if given["kind"] == "engine" else given["reference"]),
            "detector": DETECTOR, "precision": precision,
            "engines_from": engines_from, "engines": built, "runtime": described,
            "reference": {"runtime": "onnxruntime", "device": "cpu",
                          "files": {n: str(f) for n, f in given["reference_files"].items()}},
            "parity": parity, "latency": latency, "pipeline": pipeline}


def run_device_check(onnx, data, out, *, folds=None, images_root=None, calib=None, qdq_onnx=None, gate_data=None,
                     gate_folds=None, int8_gate: str = "tar@1e-4=0.3", profile=(1, 8, 32), batch_sizes=BATCH_SIZES,
                     iterations: int = 50, detector=None, detector_photos=None, frame_size=(640, 480),
                     detector_frames: int = DETECTOR_FRAMES, detector_photo_count: int = DETECTOR_PHOTOS,
                     progress: bool = True, log=print) -> dict:
    """Run the acceptance checks and write the bundle into `out`; returns the bundle dict.

    `detector`: an exported MTCNN folder (its FP16 engines are built here, profiled for `frame_size` (W, H)) or a
    member engine (those engines are used): the bundle's `detector` section adds their parity with ONNX Runtime on
    real photos (`detector_photos`, else the shared LFW raw photos, else the verification set's faces), the
    per-frame latency on `detector_frames` composited frames, and detect -> align -> embed -> match with the FP16
    face engine. One precision (or the detector) failing is recorded as its `error` line; the others are still
    measured and the bundle is written (`passed` false)."""
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
    given = photos = None
    if detector is None and detector_photos is not None:
        raise EdgekdError("--detector-photos needs --detector (the photos are the detector's test set)")
    if detector is not None:
        given = check_detector_input(detector)
        photos, photos_from = detector_test_photos(detector_photos, vset, detector_photo_count)
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
        det = None
        if given is not None:
            face = engines.get("fp16", {})
            try:
                det = _check_detector(given, out, trt, photos, photos_from, tuple(frame_size), detector_frames,
                                      None if "error" in face else Path(face["engine"]), log)
            except EdgekdError as e:
                log(f"detector: FAILED: {e}")
                det = {"source": str(detector), "error": str(e).splitlines()[0]}
        bundle = {
            "kind": "device-check", "edgekd_version": __version__, "onnx": str(onnx),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "data": {"path": str(data), "folds": folds, "pairs": len(vset), "sha256": vset.sha256},
            "environment": environment,
            "onnxruntime_reference": None if ref is None else {
                "accuracy_mean": ref["accuracy_mean"], "accuracy_std": ref["accuracy_std"],
                "tar_at_far": ref["tar_at_far"], "providers": reference.meta.get("providers")},
            "engines": engines,
            "detector": det,
            "passed": all("error" not in e and e["embeddings_vs_onnxruntime"]["ok"] for e in engines.values())
            and (det is None or ("error" not in det and det["parity"]["ok"])),
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


def _format_detector(d: dict) -> list[str]:
    """The detector section of the markdown: engines, parity with ONNX Runtime, latency and the pipeline."""
    if "error" in d:
        return ["## Detector: FAILED", "", f"- detector: {d['source']}", f"- error: {d['error']}"]
    p, lat = d["parity"], d["latency"]
    px = "n/a" if p["max_px"] is None else f"{p['max_px']:.3f}"
    lines = [f"## Detector: {d['detector']} {d['precision']} engines ({d['engines_from']}, {d['source']})", "",
             f"- vs ONNX Runtime (FP32, CPU) on {p['photos_from']}: {p['faces_onnxruntime']} faces (engines "
             f"{p['faces_engine']}), face count differs on {p['count_mismatches']} photo(s), boxes/landmarks max "
             f"{px} px (allowed {p['max_px_allowed']:g}){'' if p['ok'] else ' FAILED'}; networks max |diff| "
             + ", ".join(f"{n} {v:.1e}" for n, v in p["network_max_abs"].items()),
             f"- frames: {lat['frames_from']}", "",
             "| stage | mean ± std ms | p50 | p90 | p99 |", "|---|---|---|---|---|"]
    rows = [("detect (detector alone)", lat["per_frame_ms"])] + [
        (f"  {n}", s) for n, s in lat["networks_ms"].items()]
    pipe = d["pipeline"]
    if "skipped" not in pipe:
        rows += [(f"pipeline {k}", s) for k, s in pipe["stages_ms"].items()]
    for k, s in rows:
        lines.append(f"| {k} | {s['mean']:.2f} ± {s['std']:.2f} | {s['p50']:.2f} | {s['p90']:.2f} | {s['p99']:.2f} |")
    lines += ["", f"{lat['faces_per_frame']:.2f} faces found per frame of {lat['faces_composited']} composited, "
              f"{lat['frames_per_s']:.1f} frames/s (detector alone)" + (
                  f"; pipeline {pipe['frames_per_s']:.1f} frames/s, {pipe['faces_per_s']:.1f} faces/s with "
                  f"{pipe['face_engine']}" if "skipped" not in pipe else f"; pipeline {pipe['skipped']}")]
    return lines


def format_device_check(b: dict) -> str:
    """The bundle as markdown: environment, then one row per engine (or its error) and one latency table."""
    env, ort = b["environment"], b["onnxruntime_reference"] or {}
    lines = [f"# edgekd device-check: {'PASSED' if b['passed'] else 'FAILED'}", "",
             f"- GPU: {env['gpu_name']} (compute capability {env['compute_capability']}), TensorRT "
             f"{env['tensorrt_version']}, driver {env.get('driver_version') or '—'}, CUDA driver "
             f"{env.get('cuda_driver_version') or env.get('cuda_version') or '—'} / runtime "
             f"{env.get('cuda_runtime_version') or '—'} ({env.get('cuda_family') or '—'}), JetPack/L4T "
             f"{env.get('jetpack') or '—'}, CUDA binding {env['cuda_binding']}",
             f"- TensorRT module that ran: {env.get('tensorrt_module') or '—'}",
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
    if b.get("detector") is not None:
        lines += [""] + _format_detector(b["detector"])
    lines += ["", f"Memory figures that NVML cannot give are — (reason in device_check.json). "
              f"Run took {b['seconds']} s; edgekd {b['edgekd_version']}."]
    return "\n".join(lines) + "\n"
