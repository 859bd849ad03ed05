"""`edgekd eval` as a library call: open the runtime the user named, evaluate, write the eval JSON atomically.

Kept apart from metrics/verification (which know no runtime); runtimes are imported lazily so evaluating an
ONNX file or an engine never imports torch.
"""

from __future__ import annotations

from pathlib import Path

from edgekd.errors import EdgekdError
from edgekd.io import sha256_file, write_json_atomic


def _torch_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _open(path_or_none, kind: str, model, device: str, precision: str, threads, torch_kw: dict, providers):
    from edgekd.runtime import open_runtime

    if kind == "engine":
        return open_runtime(engine=path_or_none)
    if kind == "onnx":
        return open_runtime(onnx=path_or_none, model=model, device=device, providers=providers,
                            intra_op_threads=threads)
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    return open_runtime(weights=path_or_none, model=model, device=_torch_device(device), precision=precision,
                        **torch_kw)


def _kind(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    return "engine" if suffix in (".engine", ".plan", ".trt") else "onnx" if suffix == ".onnx" else "weights"


def run_eval(
    data: str | Path,
    weights: str | Path | None = None,
    onnx: str | Path | None = None,
    engine: str | Path | None = None,
    model: str | None = None,
    out_json: str | Path | None = None,
    plot: str | Path | None = None,
    reference: str | Path | None = None,
    flip: str = "sum",
    batch_size: int = 64,
    resize: bool = False,
    images_root: str | Path | None = None,
    device: str = "auto",
    precision: str = "fp32",
    providers: list[str] | None = None,
    threads: int | None = None,
    torch_kw: dict | None = None,
    progress: bool = True,
    protocol: str = "pairs",
    identities_from: str | Path | None = None,
    folds: list[int] | None = None,
) -> dict:
    """Evaluate one model (checkpoint, ONNX file or TensorRT engine) on a verification set; returns the eval JSON.

    protocol "all-pairs": every impostor pair of a set of identities (edgekd.eval.allpairs), TAR at FAR down to 1e-5
    and the FAR/TAR at the thresholds the artifact ships."""
    from edgekd.data.verification import load_verification
    from edgekd.eval.verification import evaluate, flip_mode

    given = [(p, k) for p, k in ((weights, "weights"), (onnx, "onnx"), (engine, "engine")) if p is not None]
    if len(given) != 1:
        raise EdgekdError("give exactly one of --weights, --onnx or --engine")
    path, kind = given[0]
    flip = flip_mode(flip)
    for p in [path] + ([reference] if reference else []):
        if not Path(p).is_file():
            raise EdgekdError(f"{p}: no such file")
    if protocol == "all-pairs":
        from edgekd.eval.allpairs import evaluate_allpairs, open_identity_set, stored_thresholds

        vset = open_identity_set(data, identities_from, folds, resize)
    elif protocol == "pairs":
        vset = load_verification(data, images_root=images_root, resize=resize)
    else:
        raise EdgekdError(f"unknown protocol {protocol!r} (pairs, all-pairs)")
    rt = _open(path, kind, model, device, precision, threads, torch_kw or {}, providers)
    ref = None
    try:
        if reference is not None:
            rkind = _kind(reference)
            ref = _open(reference, rkind, model if rkind == "onnx" else None, device, "fp32", threads, {}, providers)
        if protocol == "all-pairs":
            result = evaluate_allpairs(rt, vset, rt.preprocess, batch_size, flip, progress,
                                       (ref, ref.preprocess) if ref is not None else None, stored_thresholds(rt.meta))
        else:
            result = evaluate(rt, vset, rt.preprocess, batch_size=batch_size, flip=flip, progress=progress,
                              reference=(ref, ref.preprocess) if ref is not None else None, plot=plot)
    finally:
        rt.close()
        if ref is not None:
            ref.close()
    artifact_sha = rt.meta.get("weights_sha256") or sha256_file(path)
    out = {
        "kind": "eval",
        "label": {"model": rt.meta.get("model") or "unknown", "method": rt.meta.get("method") or "pretrained",
                  "precision": rt.precision, "artifact": str(path)},
        **result,
        "model": rt.meta.get("model"),
        "runtime": rt.name,
        "precision": rt.precision,
        "device": rt.device,
        "artifact": str(path),
        "artifact_sha256": artifact_sha,
        "preprocess": rt.preprocess.to_dict(),
        "batch_size": batch_size,
        "runtime_meta": rt.meta,
    }
    if kind == "weights":
        out.update(weights=str(path), weights_sha256=artifact_sha)
    if ref is not None:
        out["reference"] = {**result["reference"], "artifact": str(reference), "runtime": ref.name,
                            "precision": ref.precision, "model": ref.meta.get("model")}
    if out_json is not None:
        write_json_atomic(out_json, out)
    return out


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


def summary_table(r: dict) -> str:
    """The few lines `edgekd eval` prints."""
    if r.get("protocol") == "all-pairs":
        from edgekd.eval.allpairs import summary_lines

        model = f"{r['label']['model']} ({r['runtime']} {r['precision']} {r['device']}, {r['label']['artifact']})"
        return "\n".join(f"{k:<15} {v}" for k, v in [("model", model), *summary_lines(r)])
    rows = [
        ("model", f"{r['label']['model']} ({r['runtime']} {r['precision']} {r['device']}, {r['label']['artifact']})"),
        ("data", f"{r['data']}: {r['num_pairs']} pairs, {r['num_images']} images, {r['num_folds']} folds, "
                 f"flip {r['flip']}"),
        ("accuracy", f"{_pct(r['accuracy_mean'])} ± {100 * r['accuracy_std']:.2f}"),
        ("threshold", f"{r['best_threshold']:.2f} squared L2 (cosine {r['best_threshold_cosine']:.3f})"),
        *((f"TAR@FAR={k}", _pct(v)) for k, v in r["tar_at_far"].items()),
        ("EER / AUC", f"{_pct(r['eer'])} / {r['auc']:.5f}"),
        ("speed", f"{r['images_per_s']:.1f} images/s (decode + preprocess + embed, flip {r['flip']})"),
    ]
    if "reference" in r:
        ref = r["reference"]
        rows.append(("reference", f"cosine min {ref['cosine_min']:.5f} mean {ref['cosine_mean']:.5f} vs "
                                  f"{ref['artifact']} (its accuracy {_pct(ref['accuracy_mean'])})"))
    for key in ("tar_at_far_note", "accuracy_note"):
        if key in r:
            rows.append(("note", r[key]))
    return "\n".join(f"{k:<15} {v}" for k, v in rows)
