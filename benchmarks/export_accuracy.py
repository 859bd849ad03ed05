"""What export does to accuracy: FP32 / FP16 / INT8 Q/DQ (minmax, entropy, percentile calibration) ONNX of the shared
pretrained MobileFaceNets on LFW view-2 folds 6-7, with every artifact's embeddings compared to the FP32 ONNX's.

Per model: a calibration set drawn from the identities of folds 1-5 (`edgekd calib make --folds 1-5`, disjoint from
the verified folds), `edgekd export` (edgekd.export.run.export_model: FP32 parity-checked against PyTorch, FP16, one
INT8 Q/DQ file per calibration method), then every verified image embedded once per artifact on ONNX Runtime
(edgekd.eval.embed_images) and scored with edgekd.eval.verification_metrics: accuracy ± fold std, its delta to FP32,
TAR@FAR, AUC, and the min / mean cosine between the artifact's and the FP32 artifact's embedding of every verified
image. No flip test-time augmentation by default (--flip): it halves the cost and compares the artifacts directly.

    nice -n 10 python benchmarks/export_accuracy.py [--models foamliu,xiaoccer] [--folds 6-7] [--calib-n 128]

Calibration sets, exports and embeddings are cached in --work (keyed by checkpoint / artifact sha256; exports
also by the edgekd/export sources).
Writes benchmarks/results/export_accuracy.json and .md.
"""

from __future__ import annotations

import argparse
import subprocess
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from edgekd.artifacts import Variant, export_report_path
from edgekd.export.int8 import METHODS

from _common import RESULTS, ROOT, Record, code_key, edgekd_cmd, inputs_lines, machine_line, pct, write_result

MODELS = {
    "foamliu": ("mobilefacenet_ms1m_foamliu", ("weights", "mobilefacenet_ms1m_foamliu", "mobilefacenet.pt")),
    "xiaoccer": ("mobilefacenet_casia_xiaoccer", ("weights", "mobilefacenet_casia_xiaoccer", "068.ckpt")),
}


def parse_folds(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi or lo) + 1))
    return out


def calib_set(pairs: Path, model: str, n: int, work: Path) -> Path:
    """`edgekd calib make` from the fold 1-5 identities with the model's preprocessing (made once)."""
    out = work / f"calib_{model}_f1-5_n{n}"
    if not (out / "manifest.json").is_file():
        subprocess.run([*edgekd_cmd(), "calib", "make", "--from", str(pairs), "--folds", "1-5",
                        "--n", str(n), "--model", model, "--out", str(out), "--overwrite"], check=True)
    return out


def export_cached(model: str, weights: Path, sha: str, calib: Path, work: Path) -> dict:
    from edgekd.export.run import export_model
    from edgekd.io import read_json

    onnx = work / f"{model}-{sha[:12]}-{code_key('edgekd/export')}.onnx"  # rebuilt when the exporter changes
    report = export_report_path(onnx)
    if report.is_file():
        r = read_json(report)
        if all(Variant("int8", m).tag in r["artifacts"] and Path(r["artifacts"][Variant("int8", m).tag]["path"]).is_file()
               for m in METHODS):
            return r
    return export_model(weights=weights, model=model, out=onnx, calib=calib, calib_methods=METHODS, log=print)


def embed_cached(path: Path, sha: str, pairs: Path, folds: list[int], flip: str, threads: int, work: Path) -> dict:
    """L2-normalised embeddings of every verified image through one artifact (cached by the artifact's sha256).
    Takes paths, not objects, so artifacts can be embedded in parallel processes (--jobs)."""
    import numpy as np

    from edgekd.data import load_verification
    from edgekd.eval import embed_images
    from edgekd.io import atomic_path
    from edgekd.runtime.onnx_runtime import OnnxRuntime

    cache = work / "embeddings" / f"{sha[:16]}.f{'_'.join(map(str, folds))}.{flip}.npz"
    if cache.is_file():
        with np.load(cache) as z:
            return {**{k: z[k] for k in z.files}, "cached": True}
    vset = load_verification(pairs).subset([f - 1 for f in folds])
    rt = OnnxRuntime(path, intra_op_threads=threads)
    try:
        e = embed_images(rt, vset, rt.preprocess, flip=flip, progress=True)
    finally:
        rt.close()
    out = {"index": e.index, "emb": e.emb, "seconds": np.float64(e.seconds)}
    with atomic_path(cache) as tmp, open(tmp, "wb") as f:
        np.savez(f, **out)
    return {**out, "cached": False}


def score(e: dict, ref: dict, vset) -> dict:
    """Verification metrics of the embeddings, and their cosine to the reference (FP32) embeddings, image by image."""
    import numpy as np

    from edgekd.eval import verification_metrics

    r1, r2 = (np.searchsorted(e["index"], vset.pairs[:, k]) for k in (0, 1))
    m = verification_metrics(e["emb"][r1], e["emb"][r2], vset.issame, vset.folds)
    if not np.array_equal(e["index"], ref["index"]):
        raise SystemExit("artifact and FP32 embeddings cover different images")
    cos = np.sum(e["emb"].astype(np.float64) * ref["emb"], axis=1)
    return {**{k: m[k] for k in ("accuracy_mean", "accuracy_std", "fold_accuracies", "tar_at_far", "eer", "auc")},
            "cosine_min": float(cos.min()), "cosine_mean": float(cos.mean()), "embed_seconds": float(e["seconds"]),
            "embeddings_from_cache": bool(e["cached"])}


def markdown(result: dict) -> str:
    folds = result["folds"]
    lines = ["# Export accuracy: FP32 / FP16 / INT8 Q/DQ ONNX of the pretrained MobileFaceNets", "",
             f"Command: `{result['run']['command']}`", "",
             f"Verification: LFW view-2 folds {folds[0]}–{folds[-1]} ({result['num_pairs']} pairs, "
             f"{result['num_images']} images), ONNX Runtime CPU. Calibration: {result['calib_n']} faces drawn from the "
             "identities of folds 1–5 (`edgekd calib make --folds 1-5`; identity-disjoint from the verified folds). "
             f"Flip test-time augmentation: {result['flip']}. Cosine: between each artifact's embedding and the FP32 "
             "ONNX's, image by image over every verified image.", "",
             "| model | artifact | accuracy | Δ vs FP32 | TAR@FAR 1e-2 | AUC | min cos vs FP32 | mean cos vs FP32 "
             "| size MiB |", "|---|---|---|---|---|---|---|---|---|"]
    for m in result["models"]:
        for key, a in m["artifacts"].items():
            lines.append(f"| {m['model']} | {key} | {pct(a['accuracy_mean'])} ± {pct(a['accuracy_std'])} "
                         f"% | {a['delta_pt']:+.2f} pt | {pct(a['tar_at_far'].get('1e-02'))} % | {a['auc']:.5f} | "
                         f"{a['cosine_min']:.5f} | {a['cosine_mean']:.5f} | {a['bytes'] / 2**20:.2f} |")
    arts = [a for m in result["models"] for a in m["artifacts"].values()]
    reused = sum(a["embeddings_from_cache"] for a in arts)
    lines += ["", f"Embedding one artifact's {result['num_images']} images took "
              f"{min(a['embed_seconds'] for a in arts):.0f}–{max(a['embed_seconds'] for a in arts):.0f} s"
              + (f"; {reused} of {len(arts)} embeddings were computed by earlier invocations with the same --work "
                 "(cached by artifact sha256), so this run's times below do not include them." if reused else ".")]
    lines += ["", "ONNX parity (FP32 ONNX vs PyTorch at batch 1 and the parity batch, real aligned LFW faces): "
              + "; ".join(f"{m['model']} max abs diff {m['parity']['max_abs_diff']:.1e}, min cos "
                          f"{m['parity']['min_cosine']:.7f}" for m in result["models"]) + ".", "",
              machine_line(result["run"], timed=False), *inputs_lines(result["run"])]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of: {', '.join(MODELS)}")
    ap.add_argument("--folds", default="6-7", help="LFW view-2 folds to verify on (1-based)")
    ap.add_argument("--calib-n", type=int, default=128,
                    help="calibration faces (ONNX Runtime's entropy/percentile calibration keeps every activation of "
                         "every face in memory: 512 faces exceeded what a shared 24 GiB machine had free)")
    ap.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    ap.add_argument("--jobs", type=int, default=1, help="artifacts embedded in parallel processes")
    ap.add_argument("--flip", default="none", choices=["none", "sum", "concat"], help="flip test-time augmentation")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "benchmarks" / "export_accuracy")
    ap.add_argument("--out", type=Path, default=RESULTS)
    a = ap.parse_args()
    unknown = set(a.models.split(",")) - set(MODELS)
    if unknown:
        ap.error(f"unknown model(s) {sorted(unknown)}; known: {', '.join(MODELS)}")
    folds = parse_folds(a.folds)
    if set(folds) & set(range(1, 6)):
        ap.error("--folds must not overlap the calibration folds 1-5")

    from edgekd.data import load_verification
    from edgekd.paths import shared_path

    pairs = shared_path("lfw", "pairs.txt")
    if pairs is None:
        raise SystemExit("shared LFW data not found (set EDGEKD_SHARED_DATA)")
    rec = Record("export_accuracy")
    rec.add_input("pairs.txt", pairs)
    vset = load_verification(pairs).subset([f - 1 for f in folds])
    models = []
    for key in a.models.split(","):
        model, parts = MODELS[key]
        weights = shared_path(*parts)
        if weights is None:
            raise SystemExit(f"shared weights {'/'.join(parts)} not found")
        sha = rec.add_input(model, weights)
        calib = calib_set(pairs, model, a.calib_n, a.work)
        report = export_cached(model, weights, sha, calib, a.work)
        print(f"{model}: embedding folds {a.folds} through {len(report['artifacts'])} artifacts "
              f"({a.jobs} at a time) ...", flush=True)
        with ProcessPoolExecutor(a.jobs) as pool:
            jobs = {k: pool.submit(embed_cached, Path(art["path"]), art["sha256"], pairs, folds, a.flip, a.threads,
                                   a.work) for k, art in report["artifacts"].items()}
            embs = {k: j.result() for k, j in jobs.items()}
        arts = {}
        for akey, art in report["artifacts"].items():
            arts[akey] = {"path": art["path"], "sha256": art["sha256"], "bytes": art["bytes"],
                          **score(embs[akey], embs["fp32"], vset), "parity_faces_vs_fp32": art["vs_fp32"]}
            print(f"{model} {akey}: {pct(arts[akey]['accuracy_mean'])} %, min cos vs FP32 "
                  f"{arts[akey]['cosine_min']:.5f}", flush=True)
        base = arts["fp32"]["accuracy_mean"]
        for v in arts.values():
            v["delta_pt"] = round(100 * (v["accuracy_mean"] - base), 4) + 0.0  # no "-0.00" for equal accuracies
        models.append({"key": key, "model": model, "weights": str(weights), "weights_sha256": sha,
                       "calib": {"path": str(calib), **(report.get("calib") or {})}, "parity": report["parity"],
                       "artifacts": arts})
    result = {"kind": "benchmark", "name": "export_accuracy", "data": str(pairs), "data_sha256": vset.sha256,
              "folds": folds, "flip": a.flip,
              "num_pairs": len(vset), "num_images": vset.num_images, "calib_n": a.calib_n, "models": models,
              "run": rec.finish({"onnxruntime intra-op": a.threads, "parallel artifacts": a.jobs})}
    write_result("export_accuracy", result, markdown(result), a.out)
    print(markdown(result))


if __name__ == "__main__":
    main()
