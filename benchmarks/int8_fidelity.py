"""INT8 fidelity where verifiers operate: every INT8 variant of the shared MobileFaceNets judged all-pairs at low FAR.

Per model (foamliu MS1M, xiaoccer CASIA; real weights from the shared data): `edgekd export` with a calibration set,
the accuracy gate and thresholds from LFW folds 1-5 identities only (gate data: all 5,373 photos of those identities,
aligned from raw_150 as `edgekd data align` does) (minmax / entropy / percentile Q/DQ, gated Q/DQ,
ONNX Runtime CPU INT8), `edgekd qat` (3 seeds, foamliu), then on the images of LFW folds 6-10 identities (~3,900
images, ~7.5 M impostor pairs; single pass, no flip, as the thresholds are set): TAR at FAR 1e-3/1e-4/1e-5 with
95 % identity-bootstrap intervals, FAR/TAR at each artifact's own stored thresholds, min/mean cosine vs FP32, and
ONNX Runtime CPU latency at batch 1 and 32 as a ratio to FP32 (2 threads, interleaved rounds in one run), also for
r18 (speed only, random init) and for the candidate CPU forms.

Stages are cached under --work by content hash (model sha256, calibration manifest sha256, artifact sha256), so a
re-run only redoes what changed. Run under `nice -n 10`: the machine is shared.

    nice -n 10 python benchmarks/int8_fidelity.py [--models foamliu xiaoccer] [--qat-seeds 0 1 2] [--qat-steps 100]

The slow stages can run in parallel processes first, then the report run finds them cached:
    python benchmarks/int8_fidelity.py --qat-only --embed-model foamliu --qat-seeds 0   (one per seed)
    python benchmarks/int8_fidelity.py --qat-only --embed-model xiaoccer --qat-seeds   (export only)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from edgekd.artifacts import Variant, export_report_path, onnx_path, qat_variant  # noqa: E402
from edgekd.export.int8 import METHODS  # noqa: E402

GATED, CPU_FORM = Variant("int8", "gated").tag, Variant("int8", "cpu").tag  # export report keys

from _common import Record, code_key, interleaved, machine_line, inputs_lines, write_result  # noqa: E402

MODELS = {
    "foamliu": ("mobilefacenet_ms1m_foamliu", "weights/mobilefacenet_ms1m_foamliu/mobilefacenet.pt"),
    "xiaoccer": ("mobilefacenet_casia_xiaoccer", "weights/mobilefacenet_casia_xiaoccer/068.ckpt"),
}
GATE = "tar@1e-4=0.3"
CALIB_FOLDS, EVAL_FOLDS = [1, 2, 3, 4, 5], [6, 7, 8, 9, 10]


def log(*a):
    print(*a, flush=True)


def _sha(path) -> str:
    from edgekd.io import sha256_file

    return sha256_file(path)


def make_calib_set(work: Path, pairs: Path, pre, n: int):
    from edgekd.export.calib import make_calib, open_calib

    path = work / f"calib{n}"
    if not (path / "manifest.json").is_file():
        make_calib(str(pairs), path, n=n, folds=CALIB_FOLDS, preprocess=pre, progress=False)
    return open_calib(path, pre)


def gate_set(root: Path, shared: Path) -> Path:
    """Gate data: every photo of LFW folds 1-5 identities (5,373), aligned from raw_150 with the LFW landmarks, as
    `edgekd data align raw_150 D --landmarks lfw_landmark.txt --scale 0.6 --identities-from pairs.txt --folds 1-5`
    writes it. Their 3,811 aligned pair images hold ~4,400 genuine pairs, too few for a 0.3 pt bound at 95 %."""
    from edgekd.data import lfw_fold_identities
    from edgekd.data.align import align_folder

    lfw, out = shared / "lfw", root / "gate-raw150-folds1-5"
    if not (out / "manifest.json").is_file():
        align_folder(lfw / "raw_150", out, lfw / "lfw_landmark.txt", 0.6, (112, 112),
                     lfw_fold_identities(lfw / "pairs.txt", CALIB_FOLDS), workers=2, progress=False)
    return out


def export_dir(work: Path, weights: Path, calib, gate: Path, gate_images: int | None) -> Path:
    """The export's cache folder: keyed by (weights, calib, gate spec, gate data, gate size, quantizer version)."""
    key = hashlib.sha256(f"{_sha(weights)} {calib.sha256} {GATE} {_sha(gate / 'manifest.json')} {gate_images} "
                         f"{code_key('edgekd/export')}"
                         .encode()).hexdigest()[:16]
    return work / f"export-{key}"


def export_stage(work: Path, name: str, weights: Path, calib, gate: Path, gate_images: int | None) -> dict:
    """`edgekd export` as users run it, cached (export_dir)."""
    from edgekd.export.gate import GateNotMet
    from edgekd.export.run import export_model

    out = export_dir(work, weights, calib, gate, gate_images) / f"{name}.onnx"
    report_path = export_report_path(out)
    if report_path.is_file():
        return json.loads(report_path.read_text())
    common = dict(weights=weights, model=name, out=out, fp16=False, calib=calib.root,
                  calib_methods=METHODS, gate_data=gate,
                  gate_limit=gate_images, log=log, progress=False)
    try:
        report = export_model(int8_gate=GATE, **common)
    except GateNotMet as e:  # record it and still measure the other artifacts
        log(f"GATE NOT MET: {e}")
        report = export_model(**common)
        report["gate_error"] = str(e)
        report["gate_best"] = {"method": e.best["method"], "float_layers": e.best["float_layers"]}
        from edgekd.io import write_json_atomic

        write_json_atomic(report_path, report)
    return report


def qat_stage(work: Path, name: str, weights: Path, calib, pairs: Path, gate: Path, gated: Path | None, seed: int,
              steps: int, gate_images: int | None, faces: int, lr: float) -> dict | None:
    """`edgekd qat` on `faces` aligned images of LFW folds 1-5 identities (seeded draw), the gated file's float layers;
    thresholds on the gate data."""
    from edgekd.export.qat import run_qat

    key = hashlib.sha256(f"{_sha(weights)} {calib.sha256} {_sha(gated) if gated else ''} {seed} {steps} {lr} {faces} "
                         f"{_sha(gate / 'manifest.json')} {gate_images} {code_key('edgekd/export')}".encode()).hexdigest()[:16]
    out = onnx_path(work / f"qat-{key}" / name, qat_variant(seed))
    rep = Path(f"{out.with_suffix('')}.qat.json")
    if rep.is_file():
        return json.loads(rep.read_text())
    return run_qat(weights=weights, model=name, data=pairs, folds=CALIB_FOLDS, n=faces, out=out, steps=steps,
                   seed=seed, lr=lr, float_layers_from=gated, gate_data=gate,
                   gate_limit=gate_images, log=log, progress=False)


def graph_key(path: Path) -> str:
    """Hash of the graph alone: export rewrites metadata (thresholds) after the weights are final."""
    import onnx

    return hashlib.sha256(onnx.load(str(path)).graph.SerializeToString()).hexdigest()[:16]


def embeddings(path: Path, data, cache: Path, cached_only: bool = False) -> np.ndarray | None:
    """Single-pass embeddings of the evaluation images, cached by (graph, data) hash."""
    from edgekd.export.thresholds import embed

    f = cache / f"{graph_key(path)}-{data.sha256[:16]}.npy"
    if f.is_file():
        return np.load(f)
    if cached_only:
        return None
    e = embed(path, data, threads=1)
    cache.mkdir(parents=True, exist_ok=True)
    np.save(f, e)
    return e


def speed(paths: dict[str, Path], input_size, threads: int = 2, rounds: int = 9) -> dict:
    """ORT CPU latency at batch 1 and 32, interleaved; ratio to fp32 (ratio < 1: faster)."""
    from edgekd.runtime.onnx_session import session_from_onnx

    out = {}
    sessions = {k: session_from_onnx(p, threads=threads, inter_op_threads=1) for k, p in paths.items()}
    for batch in (1, 32):
        x = np.random.default_rng(0).normal(size=(batch, 3, *input_size)).astype(np.float32)
        fns = {k: (lambda s: (lambda a: s.run(None, {s.get_inputs()[0].name: a})))(s) for k, s in sessions.items()}
        res = interleaved(fns, x, "fp32", rounds, min_time_s=0.5 if batch == 1 else 1.0, log=log)
        out[f"batch{batch}"] = {k: {"latency_ms": v["latency_ms_median"], "ratio_to_fp32": v["ratio"],
                                    "speedup_vs_fp32": 1 / v["ratio"], "paired_ratio_range": v["paired_ratio_range"]}
                                for k, v in res.items()}
    return out


def cpu_form_candidates(fp32: Path, calib, float_layers, method: str, work: Path) -> dict[str, Path]:
    """Each CPU form with the gated file's method and float layers (the export's first round), cached by those."""
    from edgekd.export.int8 import CPU_FORMS, Int8Quantizer

    key = hashlib.sha256(f"{graph_key(fp32)} {calib.sha256} {method} {sorted(float_layers)}".encode()).hexdigest()[:8]
    out = {}
    with Int8Quantizer(fp32, calib) as q:
        for form in CPU_FORMS:
            p = work / f"form-{form}-{key}.onnx"
            if not p.is_file():
                q.write(p, method, float_layers, form)
            out[form] = p
    return out


def ort_default_placement(fp32: Path, calib, work: Path) -> Path:
    """The minmax S8S8 file with onnxruntime's default Q/DQ placement (every quantizable op's inputs and outputs,
    edgekd's placement before it moved to weighted-op inputs only), for comparison on the same images."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from edgekd.export import graph
    from edgekd.export.int8 import Int8Quantizer

    dst = work / "placement-ort-default-minmax.onnx"
    if not dst.is_file():
        with Int8Quantizer(fp32, calib) as q:
            quantize_static(str(q.fp32), str(dst), quant_format=QuantFormat.QDQ, per_channel=True,
                            calibration_cache_path=q.ranges("minmax", True), calibrate_method=CalibrationMethod.MinMax,
                            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                            nodes_to_exclude=q.default_float,
                            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True})
            m = graph.load(dst)
            graph.set_metadata(m, {**q.meta, "precision": "int8", "int8_form": "qdq-s8s8", "calib_method": "minmax",
                                   "placement": "onnxruntime default"})
            graph.save(m, dst)
    return dst


def gate_noise_floor(fp32: Path, data, cache: Path, bootstrap: int,
                     levels=(0.01, 0.02, 0.04, 0.06, 0.08)) -> dict:
    """What the gate's statistic reads for perturbations of known size on one gate set: its FP32 embeddings plus
    seeded isotropic Gaussian noise, judged by the gate's own paired drop at FAR 1e-4."""
    from edgekd.eval.allpairs import paired_tar_drop
    from edgekd.export.thresholds import scores

    ref = embeddings(fp32, data, cache)
    ref = ref / np.linalg.norm(ref, axis=1, keepdims=True)
    base = scores(ref, data)
    rng = np.random.default_rng(0)
    out = []
    for sigma in levels:
        e = ref + rng.normal(size=ref.shape).astype(np.float32) * sigma / np.sqrt(ref.shape[1])
        cos = np.sum(ref * e, 1) / np.linalg.norm(e, axis=1)
        d = paired_tar_drop(base, scores(e, data), 1e-4, bootstrap)
        out.append({"noise_sigma": sigma, "min_cosine": float(cos.min()), "mean_cosine": float(cos.mean()), **d})
        log(f"gate floor ({data.description}): noise {sigma}: mean cos {cos.mean():.5f}, drop {d['drop_pt']:+.3f} "
            f"pt, upper 95% {d['drop_pt_upper95']:+.3f}")
    return {"images": int(data.labels.size), "genuine_pairs": int(base.genuine.size),
            "impostor_pairs": base.num_impostor, "levels": out}


def best_gate_candidate(fp32: Path, calib, best: dict | None, work: Path) -> Path | None:
    """When the gate failed, rebuild the best candidate it reported (GateNotMet.best: its method and float layers)
    so it can be judged on the evaluation images like the other files."""
    from edgekd.export.int8 import Int8Quantizer

    if not best:
        return None
    method, layers = best["method"], best["float_layers"]
    dst = work / f"gate-best-{method}-{len(layers)}-{hashlib.sha256(' '.join(layers).encode()).hexdigest()[:8]}.onnx"
    if not dst.is_file():
        with Int8Quantizer(fp32, calib) as q:
            q.write(dst, method, layers, extra_meta={"note": "best INT8 gate candidate (gate not met)"})
    return dst


def evaluate_model(key: str, args, rec: Record, shared: Path) -> dict:
    from edgekd.eval.allpairs import allpairs_metrics, stored_thresholds
    from edgekd.export import graph
    from edgekd.export.int8 import zero_points_zero
    from edgekd.export.parity import compare
    from edgekd.export.thresholds import load_gate_data
    from edgekd.models import create_model

    name, rel = MODELS[key]
    weights = shared / rel
    pairs = shared / "lfw" / "pairs.txt"
    work = Path(args.work) / key
    work.mkdir(parents=True, exist_ok=True)
    pre = create_model(name).preprocess
    rec.add_input(f"{key}_weights", weights)
    if args.cached_only and not (work / f"calib{args.calib_n}" / "manifest.json").is_file():
        return {"model": name, "not_measured": "no export of this model had run before this run's deadline"}
    calib = make_calib_set(work, pairs, pre, args.calib_n)
    log(f"[{key}] calibration set {calib.root}: {calib.count} faces")
    gate = gate_set(Path(args.work), shared)
    folder = export_dir(work, weights, calib, gate, args.gate_images)
    if args.cached_only and not export_report_path(folder / name).is_file():
        files = {v.tag: onnx_path(folder / name, v) for v in [Variant("fp32")] + [Variant("int8", m) for m in METHODS]}
        files = {k: p for k, p in files.items() if p.is_file()}
        if "fp32" not in files:
            return {"model": name, "not_measured": "export had not written its files before this run's deadline"}
        report = {"onnx": {"path": str(files["fp32"])}, "artifacts": {k: {"path": str(p)} for k, p in files.items()},
                  "int8_gate": None, "gate_note": "the gate search (and so the gated, CPU and threshold steps of "
                  "export) had not finished before this run's deadline; the plain INT8 files it had written are "
                  "measured, without stored thresholds"}
    else:
        report = export_stage(work, name, weights, calib, gate, args.gate_images)
    arts = {k: Path(a["path"]) for k, a in report["artifacts"].items()}
    gated = arts.get(GATED)
    qat_reports = {}
    for seed in (args.qat_seeds if key in args.qat_models else []):
        found = sorted(work.glob(f"qat-*/{onnx_path(name, qat_variant(seed)).stem}.qat.json"))
        if args.cached_only and not found:
            qat_reports[qat_variant(seed).tag] = {"not_measured": "QAT run had not finished before this run's deadline"}
            continue
        r = json.loads(found[0].read_text()) if args.cached_only else \
            qat_stage(work, name, weights, calib, pairs, gate, gated, seed, args.qat_steps, args.gate_images,
                      args.qat_faces, args.qat_lr)
        arts[qat_variant(seed).tag] = Path(r["path"])
        qat_reports[qat_variant(seed).tag] = {k: r[k] for k in ("loss_first", "loss_last", "steps", "seed", "lr",
                                                               "float_layers", "zero_points_zero", "seconds")}
        gate_float = (report.get("int8_gate") or {}).get("float_layers", [])
        qat_reports[qat_variant(seed).tag]["same_float_layers_as_gated"] = sorted(r["float_layers"]) == sorted(gate_float)
    if not args.cached_only:
        arts["int8-minmax, ORT default placement"] = ort_default_placement(arts["fp32"], calib, work)
        best = best_gate_candidate(arts["fp32"], calib, report.get("gate_best"), work)
        if best is not None:
            arts["int8 best gate candidate (gate not met)"] = best
    data = load_gate_data(pairs, pre, folds=EVAL_FOLDS, limit=None)
    log(f"[{key}] evaluation images: {data.description}")
    rec.inputs[f"{key}_eval_images"] = {"path": str(pairs), "sha256": data.sha256, "folds": EVAL_FOLDS}
    embs = {}
    rows = {}
    for k, p in arts.items():
        log(f"[{key}] embedding {k} ({p.name}) ...")
        e = embeddings(p, data, Path(args.work) / "emb", args.cached_only)
        if e is None:
            rows[k] = {"path": str(p), "not_measured": "embeddings not computed before this run's deadline"}
            continue
        embs[k] = e
        meta = graph.read_metadata(graph.load(p))
        t = stored_thresholds(meta)
        m = allpairs_metrics(embs[k], data.labels, stored_thresholds=t["cosine_at_far"] if t else None,
                             bootstrap=args.bootstrap)
        cos = compare(embs["fp32"], embs[k])
        rows[k] = {"path": str(p), "sha256": _sha(p), "form": meta.get("int8_form", "fp32" if k == "fp32" else None),
                   "calib_method": meta.get("calib_method"), "float_layers": json.loads(meta["float_layers"])
                   if meta.get("float_layers", "").startswith("[") else None,
                   **{x: m[x] for x in ("tar_at_far", "tar_at_far_ci95", "thresholds", "num_impostor_pairs",
                                        "num_genuine_pairs", "num_identities", "num_images")},
                   "stored_thresholds": m.get("stored_thresholds"),
                   "far_at_stored_threshold": m.get("far_at_stored_threshold"),
                   "far_at_stored_threshold_ci95": m.get("far_at_stored_threshold_ci95"),
                   "tar_at_stored_threshold": m.get("tar_at_stored_threshold"),
                   "cosine_vs_fp32": {"min": cos["min_cosine"], "mean": cos["mean_cosine"]},
                   "zero_points_zero": None if k == "fp32" else zero_points_zero(graph.load(p))}
        log(f"[{key}] {k}: TAR@1e-4 {m['tar_at_far']['1e-04']}, FAR at stored 1e-4 "
            f"{(m.get('far_at_stored_threshold') or {}).get('1e-04')}, min cos {cos['min_cosine']:.4f}")
    # paired TAR drops vs FP32 (same identity resamples)
    from edgekd.eval.allpairs import paired_tar_drop, score_all_pairs

    ref = score_all_pairs(embs["fp32"], data.labels)
    gated_ps = score_all_pairs(embs[GATED], data.labels) if GATED in embs else None
    for k in embs:
        if k != "fp32":
            ps = score_all_pairs(embs[k], data.labels)
            rows[k]["tar_drop_vs_fp32_pt"] = {f"{f:.0e}": paired_tar_drop(ref, ps, f, args.bootstrap)
                                              for f in (1e-3, 1e-4, 1e-5)}
            if k.startswith(qat_variant("").tag) and gated_ps is not None:  # > 0: QAT below gated PTQ (paired, same images)
                rows[k]["tar_drop_vs_gated_pt"] = {f"{f:.0e}": paired_tar_drop(gated_ps, ps, f, args.bootstrap)
                                                   for f in (1e-3, 1e-4, 1e-5)}
    floor = {name: gate_noise_floor(arts["fp32"], d, Path(args.work) / "emb", args.bootstrap) for name, d in (
        ("all photos of folds 1-5 identities, aligned from raw_150 (the gate data)", load_gate_data(gate, pre,
                                                                                                  limit=None)),
        ("aligned_112x112 images of folds 1-5 identities (pairs.txt)", load_gate_data(pairs, pre, folds=CALIB_FOLDS,
                                                                                     limit=None)))} \
        if key == "foamliu" else None
    forms = cpu_form_candidates(arts["fp32"], calib, (report.get("int8_gate") or {}).get("float_layers", []),
                                (report.get("int8_gate") or {}).get("method", "minmax"), work)
    choice = report["artifacts"].get(CPU_FORM, {}).get("form_choice") or {}
    speed_paths = {"fp32": arts["fp32"], "int8-minmax (S8S8 Q/DQ)": arts[Variant("int8", "minmax").tag],
                   **({"int8-cpu (as exported)": arts[CPU_FORM]} if CPU_FORM in arts else {}),
                   **{f"cpu form {f}, gated layers": p for f, p in forms.items()}}
    log(f"[{key}] speed ...")
    sp = speed(speed_paths, pre.input_size)
    return {"model": name, "export_report": str(export_report_path(report["onnx"]["path"])),
            "gate": report.get("int8_gate"), "gate_error": report.get("gate_error"), "cpu_choice": choice,
            "gate_note": report.get("gate_note"), "artifacts": rows,
            "qat": qat_reports, "speed": sp, "gate_noise_floor": floor, "eval_data": data.describe(), "calib": {
                "path": str(calib.root), "sha256": calib.sha256, "count": calib.count, "folds": CALIB_FOLDS},
            "gate_data": {"path": str(gate), "manifest_sha256": _sha(gate / "manifest.json"), "folds": CALIB_FOLDS,
                          "from": "raw_150 + lfw_landmark.txt (x0.6), edgekd.data.align"}}


def r18_speed(args, rec: Record, shared: Path) -> dict:
    """r18 (random init: speed only) FP32 vs the CPU INT8 forms."""
    from edgekd.export.calib import make_calib, open_calib
    from edgekd.export.run import export_model
    from edgekd.models import create_model

    work = Path(args.work) / "r18"
    pre = create_model("r18").preprocess
    calib_path = work / "calib64"
    if not (calib_path / "manifest.json").is_file():
        make_calib(str(shared / "lfw" / "pairs.txt"), calib_path, n=64, folds=CALIB_FOLDS, preprocess=pre,
                   progress=False)
    calib = open_calib(calib_path, pre)
    out = work / "r18.onnx"
    if not out.is_file():
        export_model(model="r18", out=out, fp16=False, calib=calib.root, log=log, progress=False)
    forms = cpu_form_candidates(out, calib, [], "minmax", work)
    log("[r18] speed ...")
    return speed({"fp32": out, "int8-minmax (S8S8 Q/DQ)": onnx_path(out, Variant("int8", "minmax")),
                  **{f"cpu form {f}": p for f, p in forms.items()}}, pre.input_size, rounds=3)


def markdown(result: dict) -> str:
    from _common import pct

    lines = ["# INT8 fidelity: all-pairs low-FAR on LFW folds 6-10 identities", "",
             machine_line(result["run"]), *inputs_lines(result["run"]), "",
             "Calibration, gate and QAT data: LFW folds 1-5 identities only (calibration and QAT: their aligned_112x112 "
             "images; gate and thresholds: all 5,373 of their photos, aligned from raw_150 with the LFW landmarks). "
             "Evaluation: every image of folds 6-10 "
             "identities in aligned_112x112, single pass (no flip), all impostor pairs; TAR in %, 95 % intervals "
             "by bootstrap over identities. Stored thresholds were measured by `edgekd export`/`edgekd qat` on the "
             "gate data (folds 1-5) and are applied unchanged here. Latency: ONNX Runtime CPU, 2 threads, "
             "interleaved rounds in one run; speed-up = FP32 latency / artifact latency.", ""]
    for key, m in result["models"].items():
        lines += [f"## {key} ({m['model']})", ""]
        if m.get("not_measured"):
            lines += [f"Not measured: {m['not_measured']}.", ""]
            continue
        if m.get("gate"):
            g = m["gate"]
            lines += [f"Gate `{g['spec']}`: {g['method']}, {len(g['float_layers'])} extra float layers "
                      f"({', '.join(g['float_layers']) or 'none'}); before: drop {g['before']['drop_pt']:+.3f} pt "
                      f"(upper 95 % {g['before']['drop_pt_upper95']:+.3f}), after: drop {g['after']['drop_pt']:+.3f} "
                      f"pt (upper 95 % {g['after']['drop_pt_upper95']:+.3f}), FAR at FP32 1e-4 threshold "
                      f"{g['after']['far_at_fp32_threshold']:.1e} (on {g['data']['images']} gate images).", ""]
        if m.get("gate_error"):
            lines += [f"Gate not met: {m['gate_error']}", ""]
        if m.get("gate_note"):
            lines += [f"Gate: not measured — {m['gate_note']}.", ""]
        if (c := m.get("cpu_choice") or {}).get("chosen"):
            ch = c["chosen"]
            lines += [f"int8-cpu: {ch['form']}, {len(ch['float_layers'])} float layers beyond the default, gate "
                      f"{'passed' if ch['passed'] else 'NOT passed'} on the gate data (drop {ch['drop_pt']:+.3f} pt, "
                      f"upper 95 % {ch['drop_pt_upper95']:+.3f}); rule: {c['rule']}.", ""]
        a0 = m["artifacts"]["fp32"]
        lines += [f"{a0['num_images']} images, {a0['num_identities']} identities, {a0['num_impostor_pairs']:,} "
                  f"impostor / {a0['num_genuine_pairs']:,} genuine pairs.", "",
                  "| artifact | TAR@1e-3 | TAR@1e-4 [95 % CI] | TAR@1e-5 | drop@1e-4 pt [95 % CI] | FAR at own "
                  "1e-4 threshold [95 % CI] | TAR there | min / mean cos vs FP32 |", "|---|---|---|---|---|---|---|---|"]
        for k, r in m["artifacts"].items():
            if r.get("not_measured"):
                lines.append(f"| {k} | not measured: {r['not_measured']} |||||||")
                continue
            t, ci = r["tar_at_far"], r["tar_at_far_ci95"]
            d = (r.get("tar_drop_vs_fp32_pt") or {}).get("1e-04")
            far = (r.get("far_at_stored_threshold") or {}).get("1e-04")
            far_ci = (r.get("far_at_stored_threshold_ci95") or {}).get("1e-04")
            tar_s = (r.get("tar_at_stored_threshold") or {}).get("1e-04")
            lines.append(
                f"| {k} | {pct(t['1e-03'])} | {pct(t['1e-04'])} [{pct(ci['1e-04'][0])}, {pct(ci['1e-04'][1])}] | "
                f"{pct(t['1e-05'])} | " + (f"{d['drop_pt']:+.2f} [{d['drop_pt_ci95'][0]:+.2f}, "
                                           f"{d['drop_pt_ci95'][1]:+.2f}]" if d else "–") + " | "
                + (f"{far:.1e}" + (f" [{far_ci[0]:.1e}, {far_ci[1]:.1e}]" if far_ci else "") if far is not None
                   else "–") + f" | {pct(tar_s)} | {r['cosine_vs_fp32']['min']:.4f} / "
                f"{r['cosine_vs_fp32']['mean']:.4f} |")
        zp = {k: r["zero_points_zero"] for k, r in m["artifacts"].items() if r.get("zero_points_zero") is not None}
        if zp:
            lines += ["", "Every QuantizeLinear/DequantizeLinear zero point is 0 (TensorRT's requirement): " + "; ".join(
                f"{k} {'yes' if v else 'no'}" for k, v in zp.items()) + "."]
        qat_rows = {k: r for k, r in m["artifacts"].items() if k.startswith(qat_variant("").tag) and r.get("tar_drop_vs_gated_pt")}
        if qat_rows:
            lines += ["", "QAT vs gated PTQ, paired on the same images (drop > 0: QAT below gated), TAR@1e-4: " + "; ".join(
                f"{k}: {r['tar_drop_vs_gated_pt']['1e-04']['drop_pt']:+.2f} pt [95 % CI "
                f"{r['tar_drop_vs_gated_pt']['1e-04']['drop_pt_ci95'][0]:+.2f}, "
                f"{r['tar_drop_vs_gated_pt']['1e-04']['drop_pt_ci95'][1]:+.2f}]" for k, r in qat_rows.items())]
        if m.get("qat"):
            lines += ["", "QAT runs: " + "; ".join(
                f"{k}: not measured ({q['not_measured']})" if q.get("not_measured") else
                f"{k}: loss {q['loss_first']:.5f} → {q['loss_last']:.5f} in {q['steps']} steps, zero points all 0: "
                f"{q['zero_points_zero']}" for k, q in m["qat"].items())]
        for name, fl in (m.get("gate_noise_floor") or {}).items():
            lines += ["", f"The gate's statistic on known perturbations, {name}: {fl['images']:,} images, "
                      f"{fl['genuine_pairs']:,} genuine / {fl['impostor_pairs']:,} impostor pairs; FP32 embeddings "
                      "plus seeded Gaussian noise, paired TAR drop at FAR 1e-4:", "",
                      "| mean / min cosine vs FP32 | drop pt [95 % CI] | one-sided upper 95 % |", "|---|---|---|"]
            lines += [f"| {f['mean_cosine']:.5f} / {f['min_cosine']:.4f} | {f['drop_pt']:+.3f} "
                      f"[{f['drop_pt_ci95'][0]:+.3f}, {f['drop_pt_ci95'][1]:+.3f}] | {f['drop_pt_upper95']:+.3f} |"
                      for f in fl["levels"]]
        lines += [""] + speed_table(m["speed"])
    if result.get("r18_speed"):
        lines += ["## r18 (random init, speed only)", ""] + ([f"Measured: {result['r18_speed']['measured']}.", ""]
                                                             if result["r18_speed"].get("measured") else []) \
            + speed_table(result["r18_speed"])
    return "\n".join(lines) + "\n"


def speed_table(sp: dict) -> list[str]:
    keys = [k for k in sp["batch1"] if k != "measured"]
    out = ["| artifact | batch 1 ms | speed-up b1 | batch 32 ms | speed-up b32 |", "|---|---|---|---|---|"]
    for k in keys:
        a, b = sp["batch1"][k], sp["batch32"][k]
        out.append(f"| {k} | {a['latency_ms']:.2f} | {a['speedup_vs_fp32']:.2f}× | {b['latency_ms']:.1f} | "
                   f"{b['speedup_vs_fp32']:.2f}× |")
    return out + [""]


def load_eval_data(shared: Path, key: str):
    from edgekd.export.thresholds import load_gate_data
    from edgekd.models import create_model

    pre = create_model(MODELS[key][0]).preprocess
    return load_gate_data(shared / "lfw" / "pairs.txt", pre, folds=EVAL_FOLDS, limit=None)


def main(argv=None) -> None:
    from edgekd.paths import shared_data_dir

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--qat-models", nargs="*", default=["foamliu"], choices=list(MODELS))
    p.add_argument("--qat-seeds", nargs="*", type=int, default=[0, 1, 2])
    p.add_argument("--qat-steps", type=int, default=100)
    p.add_argument("--qat-faces", type=int, default=2000, help="QAT training faces drawn from folds 1-5 identities.")
    p.add_argument("--qat-lr", type=float, default=2e-5)
    p.add_argument("--calib-n", type=int, default=256)
    p.add_argument("--gate-images", type=int, default=None, help="Gate images (default: every photo of folds 1-5 "
                   "identities, 5,373).")
    p.add_argument("--bootstrap", type=int, default=1000)
    p.add_argument("--no-r18", action="store_true")
    p.add_argument("--work", default="runs/int8_fidelity")
    p.add_argument("--out-stem", default="int8_fidelity")
    p.add_argument("--cached-only", action="store_true",
                   help="Report what earlier runs cached (exports, QAT, embeddings); measure speed and metrics only.")
    p.add_argument("--embed", nargs="+", metavar="ONNX",
                   help="Only compute and cache the evaluation embeddings of these files (run several in parallel).")
    p.add_argument("--embed-model", choices=list(MODELS), default="foamliu")
    p.add_argument("--qat-only", action="store_true",
                   help="Only run (and cache) the QAT stage of --embed-model for --qat-seeds (export must be cached).")
    args = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    shared = shared_data_dir()
    if shared is None:
        raise SystemExit("shared data not found (EDGEKD_SHARED_DATA)")
    if args.embed:
        data = load_eval_data(shared, args.embed_model)
        for f in args.embed:
            embeddings(Path(f), data, Path(args.work) / "emb")
            log(f"cached embeddings of {f}")
        return
    if args.qat_only:
        from edgekd.models import create_model

        key = args.embed_model
        name, rel = MODELS[key]
        work = Path(args.work) / key
        pairs = shared / "lfw" / "pairs.txt"
        calib = make_calib_set(work, pairs, create_model(name).preprocess, args.calib_n)
        gate = gate_set(Path(args.work), shared)
        report = export_stage(work, name, shared / rel, calib, gate, args.gate_images)
        gated = report["artifacts"].get(GATED, {}).get("path")
        for seed in args.qat_seeds:
            r = qat_stage(work, name, shared / rel, calib, pairs, gate, Path(gated) if gated else None, seed,
                          args.qat_steps, args.gate_images, args.qat_faces, args.qat_lr)
            embeddings(Path(r["path"]), load_eval_data(shared, key), Path(args.work) / "emb")
        return
    rec = Record("int8_fidelity", argv)
    result = {"models": {}}
    for key in args.models:
        result["models"][key] = evaluate_model(key, args, rec, shared)
    cached_r18 = Path(args.work) / "r18" / "speed.json"
    if not args.no_r18 and args.cached_only and cached_r18.is_file():  # an earlier r18_speed() of this script
        result["r18_speed"] = json.loads(cached_r18.read_text())
    elif not args.no_r18:
        result["r18_speed"] = r18_speed(args, rec, shared)
        from edgekd.io import write_json_atomic

        write_json_atomic(cached_r18, {**result["r18_speed"], "measured": result["r18_speed"].get("measured", "")})
    result["run"] = rec.finish({"embedding (ORT intra-op)": 1, "latency (ORT intra-op)": 2, "torch (QAT)": 1})
    result["settings"] = vars(args)
    path = write_result(args.out_stem, result, markdown(result))
    log(f"wrote {path} and .md")


if __name__ == "__main__":
    main()
