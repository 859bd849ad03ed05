"""`edgekd export` end to end: checkpoint -> FP32 ONNX (parity-checked) -> FP16 / INT8 Q/DQ ONNX -> optional
verification accuracy per artifact -> export report -> optional TensorRT engine.

Artifacts and the report are written before TensorRT is imported, so a host without TensorRT still gets every
ONNX file (and a clear error for the engine step).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from edgekd import __version__
from edgekd.artifacts import Variant, export_report_path, onnx_path
from edgekd.errors import EdgekdError, NonFiniteEmbeddings
from edgekd.export import DEFAULT_METHOD, DEFAULT_OPSET, graph
from edgekd.export.thresholds import GATE_IMAGES
from edgekd.io import atomic_path, check_writable_dir, sha256_file, write_json_atomic

def open_model(weights, name, log):
    """(model, info dict); no weights: the registry's shared pretrained file when it has one, else random init."""
    from edgekd.models import create_model, load_model
    from edgekd.models.registry import resolve

    if weights is None and name is None:
        raise EdgekdError("give --weights FILE and/or --model NAME")
    if weights is None and not resolve(name).default_weights:
        log(f"WARNING: no --weights: exporting {name} with RANDOM INITIALISATION (parity is meaningful, accuracy is not)")
        model = create_model(name).eval()
        return model, {"model": resolve(name).name, "weights": None, "weights_sha256": None, "random_init": True,
                       "method": "random-init", "preprocess": model.preprocess, "embedding_size": model.embedding_size}
    model, info = load_model(weights, name)
    if weights is None:
        log(f"no --weights: using the shared pretrained file {info.weights}")
    return model, {"model": info.name, "weights": str(info.weights), "weights_sha256": info.weights_sha256,
                   "random_init": False, "method": info.meta.get("method", "pretrained" if weights is None else "vanilla"),
                   "preprocess": info.preprocess, "embedding_size": info.embedding_size}


def load_verify_set(data, folds):
    """The verification set, loaded before any artifact is written so a bad path fails first."""
    from edgekd.data import load_verification

    vset = load_verification(data)
    return vset.subset([f - 1 for f in folds]) if folds else vset


def verify_artifacts(paths: dict[str, Path], vset, preprocess, progress: bool) -> dict:
    """evaluate() each artifact (opened by edgekd.runtime.open_artifact) on the same verification set."""
    from edgekd.eval import evaluate
    from edgekd.runtime import open_artifact

    out = {}
    for key, path in paths.items():
        with open_artifact(path, device="cpu") as rt:
            out[key] = evaluate(rt, vset, preprocess, progress=progress)
    return out


def export_model(*, weights=None, model: str | None = None, out=None, opset: int = DEFAULT_OPSET, simplify: bool = True,
                 fp16: bool = True, calib=None, calib_methods=(DEFAULT_METHOD,), keep_first_conv: bool = True,
                 keep_tail: bool = True, calib_limit: int | None = None, verify=None, folds=None,
                 trt_precision: str | None = None, log=print, progress: bool = True, int8_gate: str | None = None,
                 gate_data=None, gate_folds=None, gate_limit: int | None = GATE_IMAGES,
                 method: str | None = None) -> dict:
    """Write the ONNX artifacts and the export report (edgekd.artifacts.export_report_path); returns the report.

    With `gate_data` every artifact gets its own thresholds; with `int8_gate` also the gated INT8 file
    (edgekd.export.gate); with `calib` also the `cpu` INT8 form for ONNX Runtime on x86 (names: edgekd.artifacts).
    `method` names the training method in the artifacts' metadata (default: the checkpoint's own)."""
    from edgekd.export.calib import open_calib
    from edgekd.export.fp16 import convert_fp16
    from edgekd.export.int8 import Int8Quantizer
    from edgekd.export.onnx_export import export_onnx
    from edgekd.export.parity import check_parity, compare, sample_faces
    from edgekd.export.trt_ops import check_trt_ops
    from edgekd.runtime import open_artifact

    torch_model, info = open_model(weights, model, log)
    pre = info["preprocess"]
    out = Path(out or f"engines/{info['model']}.onnx")
    check_writable_dir(out.parent)  # before any work; atomic_path creates the folder with the first artifact
    calib_set = open_calib(calib, pre) if calib else None
    from edgekd.export.gate import int8_stage, prepare

    gate_spec, gate_set = prepare(int8_gate, gate_data, gate_folds, calib_set, pre, gate_limit, calib_limit)
    vset = load_verify_set(verify, folds) if verify else None
    if trt_precision == "int8" and calib_set is None:
        raise EdgekdError("--trt int8 needs --calib calib/NAME (make one with `edgekd calib make`)")
    from edgekd.models import complexity

    cost = complexity(torch_model, info["model"])  # a default build: its cfg's recorded figures
    meta = {"model": info["model"], "method": method or info["method"], "precision": "fp32",
            "embedding_size": info["embedding_size"], "preprocess": pre.to_dict(),
            "source_sha256": info["weights_sha256"] or "random-init", "version": __version__,
            "gflops": repr(cost["gflops"]), "params": str(cost["params"])}

    faces, faces_src = sample_faces(pre)
    log(f"parity faces: {faces_src}")
    with atomic_path(out) as tmp:  # the FP32 file appears only once it matches PyTorch
        exported = export_onnx(torch_model, tmp, meta, pre.input_size, opset, simplify)
        parity = check_parity(tmp, torch_model, faces)
    exported["path"] = str(out)
    log(f"{out}: {exported['exporter']}, opset {opset}, simplifier {exported['simplifier']}, dynamic batch")
    log(f"parity vs PyTorch at batch 1 and {faces.shape[0]}: max abs diff {parity['max_abs_diff']:.2e} "
        f"(rel {parity['max_abs_rel']:.2e}), min cosine {parity['min_cosine']:.7f} (tolerance: cos >= "
        f"{parity['tolerance']['min_cosine']}, rel <= {parity['tolerance']['max_abs_rel']:g})")
    ops = check_trt_ops(graph.load(out))
    log("TensorRT op check: " + ("all ops supported" if ops["ok"] else "; ".join(ops["problems"])))

    artifacts = {"fp32": {"precision": "fp32", "path": out}}
    if fp16:
        artifacts["fp16"] = {"precision": "fp16", **convert_fp16(out, onnx_path(out, "fp16"), keep_tail)}
    quantizer = Int8Quantizer(out, calib_set, calib_limit, keep_first_conv=keep_first_conv, keep_tail=keep_tail) \
        if calib_set else None  # one preparation and one calibration per method, shared with the gate
    try:
        for calib_method in calib_methods if calib_set else ():
            log(f"INT8 Q/DQ ({calib_method} calibration on {calib_set.root}, {quantizer.count} faces) ...")
            variant = Variant("int8", calib_method)
            artifacts[variant.tag] = quantizer.write(onnx_path(out, variant), calib_method)
        if not calib_set:
            log("INT8 Q/DQ skipped: no --calib given")
        gate = int8_stage(out, artifacts, quantizer, gate_spec, gate_set, log)
    finally:
        if quantizer is not None:
            quantizer.close()
    with open_artifact(out, device="cpu") as fp32_rt:
        ref = fp32_rt(faces)
    for key, a in artifacts.items():
        a["path"] = str(a["path"])
        a.update(sha256=sha256_file(a["path"]), bytes=Path(a["path"]).stat().st_size)
        with open_artifact(a["path"], device="cpu") as rt:
            try:
                emb = rt(faces)
            except NonFiniteEmbeddings:
                emb = None
            a["finite"] = emb is not None
            a["fp32_max_abs"] = float(np.abs(ref).max())
            a["vs_fp32"] = compare(ref, emb) if a["finite"] else None
            a["batch1_runs"] = rt(faces[:1]).shape[0] == 1 if a["finite"] else None
        a["trt_ops"] = check_trt_ops(graph.load(a["path"]))
        if a["finite"]:
            log(f"{a['path']}: min cosine vs FP32 {a['vs_fp32']['min_cosine']:.5f}, "
                f"mean {a['vs_fp32']['mean_cosine']:.5f}")
        else:
            log(f"WARNING: {a['path']} gives non-finite embeddings (FP32 values reach {a['fp32_max_abs']:.3g}; "
                f"FP16 overflows above 65504 — typical of random-init weights, not of trained ones)")

    verification = None
    if vset is not None:
        results = verify_artifacts({k: Path(a["path"]) for k, a in artifacts.items() if a["finite"]}, vset, pre,
                                   progress)
        verification = {"data": str(verify), "folds": folds, "pairs": len(vset)}
        base = results["fp32"]["accuracy_mean"]
        for key, r in results.items():
            artifacts[key]["verification"] = r
            artifacts[key]["accuracy_delta_pt"] = round(100 * (r["accuracy_mean"] - base), 4)
            log(f"{key}: {verification['pairs']}-pair accuracy {100 * r['accuracy_mean']:.2f}% "
                f"(delta vs fp32 {artifacts[key]['accuracy_delta_pt']:+.2f} pt)")

    report = {
        "kind": "export",
        "label": {"model": info["model"], "method": info["method"], "precision": "fp32", "artifact": str(out)},
        "model": info["model"], "weights": info["weights"], "weights_sha256": info["weights_sha256"],
        "random_init": info["random_init"], "onnx": exported, "parity": parity, "parity_faces": faces_src,
        "trt_ops": ops, "artifacts": artifacts, "verification_data": verification,
        "int8_gate": gate, "gate_data": gate_set.describe() if gate_set is not None else None,
        "calib": {"path": str(calib_set.root), "sha256": calib_set.sha256, "count": calib_set.count}
        if calib_set else None,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "edgekd_version": __version__,
    }
    report_path = export_report_path(out)
    report["report_path"] = str(report_path)
    write_json_atomic(report_path, report)
    log(f"report: {report_path}")
    return report


def print_trtexec(onnx: Path, typed_onnx: Path | None, engine: Path, precision: str, profile, workspace_mib,
                  timing_cache, dla_core, log=print) -> None:
    """The trtexec lines for both API generations (which one applies depends on the installed TensorRT).

    INT8 lines take the Q/DQ graph only: trtexec's --int8 on a graph without Q/DQ nodes and without a calibration
    cache sets placeholder scales (a fast engine with meaningless embeddings, NVIDIA/TensorRT#2322), so where no
    Q/DQ file exists or can be made no INT8 line is printed, with the reason."""
    from edgekd.export.int8 import zero_points_zero
    from edgekd.export.trtexec import trtexec_command
    from edgekd.preprocess import ARCFACE, Preprocess

    model = graph.load(onnx)
    name, _ = graph.input_spec(model)
    size = Preprocess.from_metadata(graph.read_metadata(model), ARCFACE).input_size
    common = dict(input_size=size, precision=precision, profile=profile, workspace_mib=workspace_mib,
                  timing_cache=timing_cache, dla_core=dla_core)
    typed = graph.read_metadata(graph.load(typed_onnx)).get("precision", "fp32") if typed_onnx else None
    if precision == "int8" and typed != "int8":
        log("(no INT8 trtexec line: without a Q/DQ ONNX trtexec would calibrate with placeholder scales, giving "
            "wrong embeddings; pass --calib calib/NAME (a Q/DQ file is made from it) or the Q/DQ file written by "
            "`edgekd export --calib`)")
        return
    if precision == "int8" and not zero_points_zero(graph.load(typed_onnx)):
        log(f"(no INT8 trtexec line: {typed_onnx} has non-zero Q/DQ zero points (asymmetric, e.g. ONNX Runtime's "
            "u8 activations) and TensorRT requires zero zero points; use the Q/DQ file `edgekd export --calib` "
            "writes for TensorRT)")
        return
    flags_src = typed_onnx if precision == "int8" else onnx  # builder flags take the Q/DQ graph too
    log("trtexec, TensorRT 8.6/10.0 (builder flags):\n  " +
        trtexec_command(flags_src, engine, name, qdq=precision == "int8", **common))
    if typed == precision:
        log("trtexec, TensorRT >= 10.1 and 11.x (strongly typed):\n  " +
            trtexec_command(typed_onnx, engine, name, strongly_typed=True, **common))
    else:
        log(f"(no strongly typed trtexec line: it needs the {precision} ONNX written by `edgekd export`)")


def qdq_from_calib(onnx: Path, calib_set, folder: Path, log=print) -> Path:
    """The Q/DQ graph of `onnx` quantized with the exporter's quantizer (DEFAULT_METHOD) from `calib_set`, written into
    `folder` (reused when it exists for the same calibration set): what an INT8 build takes on every TensorRT
    generation, in place of a TensorRT calibrator."""
    from edgekd.export.int8 import Int8Quantizer

    dst = onnx_path(Path(folder) / onnx.name, Variant("int8", DEFAULT_METHOD))
    if dst.is_file() and graph.read_metadata(graph.load(dst)).get("calib") == calib_set.sha256:
        log(f"INT8: using {dst} (Q/DQ from {calib_set.root})")
        return dst
    with Int8Quantizer(onnx, calib_set) as q:
        log(f"INT8: Q/DQ file {dst} ({DEFAULT_METHOD} calibration on {calib_set.root}, {q.count} faces)")
        q.write(dst, DEFAULT_METHOD)
    return dst


def build_from_onnx(onnx, precision: str, out=None, typed_onnx=None, calib=None, profile=(1, 8, 64),
                    workspace_mib: int = 2048, timing_cache=None, dla_core: int | None = None, api: str = "auto",
                    show_trtexec: bool = False, engines_dir="engines", log=print, trt=None) -> dict | None:
    """Build one engine (default: edgekd.artifacts.engine_path in `engines_dir`). `onnx` is the FP32 graph (builder-flags path);
    `typed_onnx` the FP16 / Q/DQ graph that a strongly typed build needs (defaults to `onnx` itself, e.g. when
    `edgekd build` is given the FP16 file). INT8 always builds from a Q/DQ graph: `typed_onnx`, the accuracy-gated
    file beside `onnx`, or one quantized here from `calib` (every TensorRT generation builds it; 11.x has no
    calibrator). With `show_trtexec` on a host without the tensorrt module: prints the trtexec lines and returns
    None."""
    from edgekd.artifacts import engine_path as engine_name, gated_int8_onnx
    from edgekd.export.calib import open_calib
    from edgekd.export.tensorrt_build import build_engine, choose_api
    from edgekd.preprocess import ARCFACE, Preprocess

    onnx = Path(onnx)
    gated = gated_int8_onnx(onnx) if precision == "int8" and not typed_onnx else None
    if gated is not None:  # the accuracy-gated Q/DQ file, not a calibrator
        typed_onnx = gated
        log(f"INT8: using the accuracy-gated Q/DQ file {gated}")
    typed_onnx = Path(typed_onnx) if typed_onnx else onnx
    engine = Path(out) if out else engine_name(onnx, precision, engines_dir)
    model = graph.load(onnx)
    meta = graph.read_metadata(model)
    pre = Preprocess.from_metadata(meta)
    _, dims = graph.check_face_input(model, onnx, (pre or ARCFACE).input_size)  # before importing TensorRT
    if isinstance(dims[0], int) and set(profile) != {dims[0]}:
        raise EdgekdError(f"{onnx}: batch is fixed at {dims[0]}, so profile {profile} cannot apply; export it with "
                          "`edgekd export` (dynamic batch) or pass --profile {0},{0},{0}".replace("{0}", str(dims[0])))
    calib_set = open_calib(calib, pre) if calib else None
    timing_cache = Path(timing_cache) if timing_cache else engine.parent / ".timing_cache"
    qdq = precision == "int8" and graph.read_metadata(graph.load(typed_onnx)).get("precision") == "int8"
    if precision == "int8" and not qdq and calib_set is not None:
        check_writable_dir(engine.parent)
        typed_onnx, qdq = qdq_from_calib(onnx, calib_set, engine.parent, log), True
    if show_trtexec:
        print_trtexec(onnx, typed_onnx, engine, precision, profile, workspace_mib, timing_cache, dla_core, log)
    if trt is None:
        from edgekd.runtime.tensorrt import INSTALL_HINT, import_tensorrt, tensorrt_installed

        if not tensorrt_installed():
            if show_trtexec:  # trtexec present, Python bindings absent: the lines above are the build
                log(f"(no engine built here: the tensorrt Python package is not installed; {INSTALL_HINT})")
                return None
            raise EdgekdError(f"{engine}: cannot build: the tensorrt Python package is not installed "
                              f"({INSTALL_HINT}); --print-trtexec prints the equivalent trtexec command")
        trt = import_tensorrt()
    if precision == "int8" and not qdq:
        raise EdgekdError(f"{onnx}: an INT8 engine needs a Q/DQ ONNX: pass --calib calib/NAME (one is quantized "
                          "from it) or the Q/DQ file written by `edgekd export --calib`")
    check_writable_dir(engine.parent)
    engine.parent.mkdir(parents=True, exist_ok=True)
    path = choose_api(trt, api)
    src = typed_onnx if path == "strongly-typed" or qdq else onnx  # builder-flags builds take Q/DQ graphs too
    log(f"TensorRT {trt.__version__}: {path} build of {src} -> {engine}")
    side = build_engine(src, engine, precision, profile, workspace_mib, timing_cache, dla_core, api=path, trt=trt)
    log(f"{engine}: {side['engine_bytes']} bytes in {side['build_seconds']:.1f} s ({side['api_path']}); "
        f"sidecar {engine}.json")
    return side
