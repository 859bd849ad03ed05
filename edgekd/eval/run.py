"""The one writer of eval JSON: evaluate an opened embedding function (a Runtime from edgekd.runtime.open_artifact,
or anything with its attributes) on a verification set and record what ran.

Knows no runtime and imports no torch: callers open artifacts (`edgekd eval`, the pipeline) and pass them in.
"""

from __future__ import annotations

from pathlib import Path

from edgekd.errors import EdgekdError
from edgekd.io import sha256_file, write_json_atomic


def load_eval_data(data, protocol: str = "pairs", images_root=None, resize: bool = False, identities_from=None,
                   folds: list[int] | None = None):
    """The verification set of `protocol`: pairs (.bin / pairs.txt, optionally only `folds`, 1-based) or
    all-pairs (every pair of a set of identities). Loaded before any artifact is opened, so a bad path fails first."""
    from edgekd.data.verification import load_verification

    if protocol == "all-pairs":
        from edgekd.eval.allpairs import open_identity_set

        return open_identity_set(data, identities_from, folds, resize)
    if protocol != "pairs":
        raise EdgekdError(f"unknown protocol {protocol!r} (pairs, all-pairs)")
    vset = load_verification(data, images_root=images_root, resize=resize)
    return vset.subset([f - 1 for f in folds]) if folds else vset


def _complexity(meta: dict) -> dict:
    """GFLOPs / params an artifact carries in its metadata (edgekd export writes them)."""
    try:
        return {"gflops": float(meta["gflops"]) if meta.get("gflops") is not None else None,
                "params": int(meta["params"]) if meta.get("params") is not None else None}
    except (TypeError, ValueError):
        return {"gflops": None, "params": None}


def run_eval(runtime, vset, *, reference=None, out_json: str | Path | None = None, plot: str | Path | None = None,
             flip: str | bool = "sum", batch_size: int = 64, protocol: str = "pairs", label: dict | None = None,
             extra: dict | None = None, progress: bool = True) -> dict:
    """Evaluate `runtime` on `vset` (from load_eval_data); returns the eval JSON and writes it to `out_json`.

    reference: a second opened runtime (e.g. the FP32 file of an INT8 artifact): embeddings are compared on the same
    images. label: the {model, method, precision, artifact} the report groups by (default: the artifact's metadata).
    extra: more fields for the JSON (the pipeline's dataset name, complexity of a checkpoint).
    protocol "all-pairs": every impostor pair of a set of identities (edgekd.eval.allpairs), TAR at FAR down to 1e-5
    and the FAR/TAR at the thresholds the artifact ships. A set of raw photos seen through a detector adds the JSON's
    "detection" block: photos, those with no face (scored as edgekd.eval.verification / allpairs say), those with
    several, the face rule and the detector."""
    from edgekd.eval.verification import evaluate, flip_mode

    flip = flip_mode(flip)
    ref_arg = (reference, reference.preprocess) if reference is not None else None
    if protocol == "all-pairs":
        from edgekd.eval.allpairs import evaluate_allpairs, stored_thresholds

        result = evaluate_allpairs(runtime, vset, runtime.preprocess, batch_size, flip, progress, ref_arg,
                                   stored_thresholds(runtime.meta))
    else:
        result = evaluate(runtime, vset, runtime.preprocess, batch_size=batch_size, flip=flip, progress=progress,
                          reference=ref_arg, plot=plot)
    meta = dict(runtime.meta or {})
    path = runtime.artifact
    artifact_sha = meta.get("weights_sha256") or (sha256_file(path) if path is not None else None)
    out = {
        "kind": "eval",
        "label": label or {"model": meta.get("model") or "unknown", "method": meta.get("method") or "pretrained",
                           "precision": runtime.precision, "artifact": str(path)},
        **result,
        "model": meta.get("model"),
        "runtime": runtime.name,
        "precision": runtime.precision,
        "device": runtime.device,
        "artifact": str(path),
        "artifact_sha256": artifact_sha,
        "preprocess": runtime.preprocess.to_dict(),
        "batch_size": batch_size,
        **_complexity(meta),
        "runtime_meta": meta,
    }
    if "weights_sha256" in meta:
        out.update(weights=str(path), weights_sha256=artifact_sha)
    report = getattr(vset, "detection_report", None)  # raw photos through a detector (edgekd.detect.photoset)
    if report is not None:
        out["detection"] = {**report(), **out.pop("no_face", {})}
    if reference is not None:
        out["reference"] = {**result["reference"], "artifact": str(reference.artifact), "runtime": reference.name,
                            "precision": reference.precision, "model": reference.meta.get("model")}
        out["reference_artifact"] = str(reference.artifact)
    out.update(extra or {})
    if out_json is not None:
        write_json_atomic(out_json, out)
    return out


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


def detection_line(d: dict, protocol: str) -> str:
    """How many photos the detector saw, found no face in (and what that cost) and found several faces in."""
    miss = d["num_misses"]
    cost = ""
    if miss and protocol == "all-pairs":
        cost = f", matching nothing ({d['genuine_pairs_rejected']} genuine pairs rejected)"
    elif miss:
        cost = f", {d['pairs_scored_wrong']} pairs using them scored as errors"
    det = d.get("detector") or {}
    return (f"{d['images']} photos through {det.get('detector', 'a detector')} ({det.get('runtime', '?')}, face "
            f"{d['face_rule']}); no face in {miss}" + (f" (first: {d['misses'][0]})" if miss else "") + cost
            + f"; more than one face in {d['multi_face']['count']}")


def summary_table(r: dict) -> str:
    """The few lines `edgekd eval` prints."""
    detection = [("detection", detection_line(r["detection"], r.get("protocol")))] if "detection" in r else []
    if r.get("protocol") == "all-pairs":
        from edgekd.eval.allpairs import summary_lines

        model = f"{r['label']['model']} ({r['runtime']} {r['precision']} {r['device']}, {r['label']['artifact']})"
        return "\n".join(f"{k:<15} {v}" for k, v in [("model", model), *detection, *summary_lines(r)])
    what = "decode + detect + align + preprocess + embed" if detection else "decode + preprocess + embed"
    rows = [
        ("model", f"{r['label']['model']} ({r['runtime']} {r['precision']} {r['device']}, {r['label']['artifact']})"),
        ("data", f"{r['data']}: {r['num_pairs']} pairs, {r['num_images']} images, {r['num_folds']} folds, "
                 f"flip {r['flip']}"),
        *detection,
        ("accuracy", f"{_pct(r['accuracy_mean'])} ± {100 * r['accuracy_std']:.2f}"),
        ("threshold", f"{r['best_threshold']:.2f} squared L2 (cosine {r['best_threshold_cosine']:.3f})"),
        *((f"TAR@FAR={k}", _pct(v)) for k, v in r["tar_at_far"].items()),
        ("EER / AUC", f"{_pct(r['eer'])} / {r['auc']:.5f}"),
        ("speed", f"{r['images_per_s']:.1f} images/s ({what}, flip {r['flip']})"),
    ]
    if "reference" in r:
        ref = r["reference"]
        rows.append(("reference", f"cosine min {ref['cosine_min']:.5f} mean {ref['cosine_mean']:.5f} vs "
                                  f"{ref['artifact']} (its accuracy {_pct(ref['accuracy_mean'])})"))
    for key in ("tar_at_far_note", "accuracy_note"):
        if key in r:
            rows.append(("note", r[key]))
    if (r.get("runtime_meta") or {}).get("executed_by"):
        rows.append(("note", f"executed by {r['runtime_meta']['executed_by']}"))
    return "\n".join(f"{k:<15} {v}" for k, v in rows)
