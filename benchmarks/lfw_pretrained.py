"""The two shared pretrained MobileFaceNets on full LFW view 2 (6,000 pairs, 10 folds), through their ONNX export.

Each checkpoint is exported with `edgekd export` (parity-checked against PyTorch) and evaluated with `edgekd eval`
(edgekd.eval.run.run_eval) on ONNX Runtime: accuracy ± fold std (insightface protocol), TAR@FAR, EER, AUC, the
SphereFace-style protocol of the xiaoccer repository ("authors' protocol"), and the accuracy under every flip mode
from the same pass. Flip mode per model follows its authors: foamliu sums the embeddings of the image and its
mirror (insightface), xiaoccer concatenates them (256-d).

    nice -n 10 python benchmarks/lfw_pretrained.py [--models foamliu,xiaoccer] [--threads 1] [--work DIR]

Exports and evaluations are cached in --work by the checkpoint's sha256. Writes
benchmarks/results/lfw_pretrained.json and .md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edgekd.artifacts import export_report_path

from _common import RESULTS, ROOT, Record, inputs_lines, machine_line, pct, shown, write_result

# key -> (registry model, shared weights path parts, flip mode its authors use, LFW accuracy its authors claim)
MODELS = {
    "foamliu": ("mobilefacenet_ms1m_foamliu", ("weights", "mobilefacenet_ms1m_foamliu", "mobilefacenet.pt"), "sum",
                0.9948),
    "xiaoccer": ("mobilefacenet_casia_xiaoccer", ("weights", "mobilefacenet_casia_xiaoccer", "068.ckpt"), "concat",
                 0.9930),
}
FARS = ("1e-01", "1e-02", "1e-03")


def export_cached(model: str, weights: Path, sha: str, work: Path) -> dict:
    """FP32 ONNX of the checkpoint via edgekd's export (reused while the checkpoint's sha256 is unchanged)."""
    from edgekd.export.run import export_model
    from edgekd.io import read_json

    onnx = work / f"{model}-{sha[:12]}.onnx"
    report = export_report_path(onnx)
    if onnx.is_file() and report.is_file():
        return read_json(report)
    return export_model(weights=weights, model=model, out=onnx, fp16=False, log=print)


def eval_cached(onnx: Path, pairs: Path, flip: str, threads: int, out: Path) -> dict:
    from edgekd.eval.run import load_eval_data, run_eval
    from edgekd.io import read_json
    from edgekd.runtime import open_artifact

    if out.is_file():
        return read_json(out)
    with open_artifact(onnx, device="cpu", threads=threads) as rt:
        return run_eval(rt, load_eval_data(pairs), flip=flip, out_json=out, progress=True)


def markdown(result: dict) -> str:
    lines = ["# Pretrained MobileFaceNets on full LFW view 2 (ONNX Runtime, CPU)", "",
             f"Command: `{result['run']['command']}`", "",
             f"Data: `{result['data']}` ({result['rows'][0]['num_pairs'] if result['rows'] else 0} pairs, "
             "10 folds; images: the shared `aligned_112x112`), data sha256 (pairs.txt + every image read) "
             f"`{result['rows'][0]['data_sha256'][:16] if result['rows'] else 'n/a'}…`.", "",
             "| model | flip | accuracy (insightface) | authors' protocol (SphereFace-style) | authors' claim | "
             "TAR@FAR 1e-1 / 1e-2 / 1e-3 | EER | AUC | accuracy by flip: none / sum / concat | ONNX parity min cos |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        by = r["accuracy_by_flip"] or {}
        lines.append(
            f"| {r['model']} | {r['flip']} | {pct(r['accuracy_mean'])} ± {pct(r['accuracy_std'])} % | "
            f"{pct(r['sphereface_protocol']['accuracy_mean'])} ± {pct(r['sphereface_protocol']['accuracy_std'])} % | "
            f"{pct(r['authors_claim'])} % | " + " / ".join(pct(r["tar_at_far"].get(f)) for f in FARS) + " % | "
            f"{pct(r['eer'])} % | {r['auc']:.5f} | " + " / ".join(pct(by.get(m)) for m in ("none", "sum", "concat"))
            + f" % | {r['parity_min_cosine']:.7f} |")
    lines += ["", "Accuracy: 10-fold, threshold chosen on the other nine folds (insightface `lfw.bin` protocol), mean ± "
              "std over folds. Authors' protocol: `sphereface_protocol` of the eval JSON (raw embeddings, mean "
              "subtraction, 1e-4 threshold grid), the protocol behind the xiaoccer repository's claim. Eval JSONs: "
              + ", ".join(f"`{shown(r['eval_json'])}`" for r in result["rows"]) + ".", "",
              machine_line(result["run"], timed=False), *inputs_lines(result["run"])]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of: {', '.join(MODELS)}")
    ap.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "benchmarks" / "lfw_pretrained",
                    help="ONNX exports and eval JSONs (cached by checkpoint sha256)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    a = ap.parse_args()
    unknown = set(a.models.split(",")) - set(MODELS)
    if unknown:
        ap.error(f"unknown model(s) {sorted(unknown)}; known: {', '.join(MODELS)}")

    from edgekd.paths import shared_path

    pairs = shared_path("lfw", "pairs.txt")
    if pairs is None:
        raise SystemExit("shared LFW data not found (set EDGEKD_SHARED_DATA)")
    rec = Record("lfw_pretrained")
    rec.add_input("pairs.txt", pairs)
    rows = []
    for key in a.models.split(","):
        model, parts, flip, claim = MODELS[key]
        weights = shared_path(*parts)
        if weights is None:
            raise SystemExit(f"shared weights {'/'.join(parts)} not found")
        sha = rec.add_input(model, weights)
        work = a.work
        report = export_cached(model, weights, sha, work)
        onnx = Path(report["onnx"]["path"])
        rec.inputs[model]["onnx_sha256"] = report["artifacts"]["fp32"]["sha256"]
        eval_json = work / f"{onnx.stem}.{flip}.eval.json"
        print(f"{model}: evaluating {onnx} on {pairs} (flip {flip}) ...", flush=True)
        e = eval_cached(onnx, pairs, flip, a.threads, eval_json)
        rows.append({"key": key, "model": model, "weights": str(weights), "weights_sha256": sha,
                     "onnx": str(onnx), "onnx_sha256": report["artifacts"]["fp32"]["sha256"],
                     "parity_min_cosine": report["parity"]["min_cosine"],
                     "parity_max_abs_diff": report["parity"]["max_abs_diff"],
                     "flip": flip, "authors_claim": claim, "eval_json": str(eval_json),
                     **{k: e.get(k) for k in ("num_pairs", "num_images", "accuracy_mean", "accuracy_std",
                                              "fold_accuracies", "tar_at_far", "eer", "auc", "sphereface_protocol",
                                              "accuracy_by_flip", "data_sha256", "images_per_s", "runtime")}})
        print(f"{model}: {pct(e['accuracy_mean'])} ± {pct(e['accuracy_std'])} %, authors' protocol "
              f"{pct(e['sphereface_protocol']['accuracy_mean'])} %", flush=True)
    result = {"kind": "benchmark", "name": "lfw_pretrained", "data": str(pairs), "rows": rows,
              "run": rec.finish({"onnxruntime intra-op": a.threads})}
    write_result("lfw_pretrained", result, markdown(result), a.out)
    print(markdown(result))


if __name__ == "__main__":
    main()
