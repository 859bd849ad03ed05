"""Which data a run trains and verifies on, decided once: the pipeline's data stage, and the LFW training list that
benchmarks/kd_lfw.py builds too.

Default: the real LFW identities of the shared data when present (train on the identities of view-2 folds 1-5,
verify on pairs of folds 6-10: identity-disjoint), else synthetic identities. `settings` is the pipeline's
DataConfig (any object with its fields); nothing here imports torch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekd.errors import EdgekdError
from edgekd.io import write_json_atomic, write_text_atomic
from edgekd.paths import shared_path


def data_plan(settings) -> dict:
    """Decide the data without reading it: which source, which files identify it (for the stage key)."""
    pairs = shared_path("lfw", "pairs.txt")
    aligned = shared_path("lfw", "aligned_112x112")
    source = settings.source
    if source == "auto":
        source = "lfw" if pairs is not None and aligned is not None else "synthetic"
    if source == "lfw":
        if pairs is None or aligned is None:
            raise EdgekdError("data.source=lfw but the shared LFW (lfw/pairs.txt, lfw/aligned_112x112) is not found "
                              "(set EDGEKD_SHARED_DATA)")
        tree = shared_path("lfw", "TREE_SHA256")
        return {"source": "lfw", "pairs": str(pairs), "aligned": str(aligned),
                "input_files": [pairs] + ([tree] if tree is not None else [])}
    if source == "synthetic":
        return {"source": "synthetic", "input_files": []}
    path = Path(source)
    if not path.exists():
        raise EdgekdError(f"data.source {source!r}: no such dataset (use auto, lfw, synthetic or a dataset path)")
    if not settings.val:
        raise EdgekdError(f"data.source {source!r}: a custom training set needs data.val (a .bin or pairs.txt)")
    files = [p for p in (path, Path(settings.val)) if p.is_file()]
    return {"source": "custom", "train": str(path), "val": settings.val, "input_files": files}


def lfw_training_list(pairs: str | Path, aligned: str | Path, out: str | Path, folds=(1, 2, 3, 4, 5),
                      min_images: int = 2, max_images: int | None = 20, max_identities: int | None = None) -> dict:
    """Write a label list (`path<TAB>label`, absolute paths into the shared images: nothing is copied) of the
    identities of LFW `folds` with >= `min_images` aligned images, at most `max_images` each; with
    `max_identities`, the most-photographed ones. Labels follow sorted names (deterministic)."""
    from edgekd.data.verification import lfw_fold_identities

    root = Path(aligned)
    per_id = []
    for name in sorted(lfw_fold_identities(pairs, folds)):
        files = sorted((root / name).glob("*.jpg")) if (root / name).is_dir() else []
        if len(files) >= min_images:
            per_id.append((name, files[:max_images] if max_images else files))
    if max_identities:
        per_id = sorted(sorted(per_id, key=lambda t: (-len(t[1]), t[0]))[:max_identities])
    if not per_id:
        raise EdgekdError(f"{root}: no identity of folds {list(folds)} has >= {min_images} images")
    lines = [f"{f}\t{label}" for label, (_, files) in enumerate(per_id) for f in files]
    write_text_atomic(out, "\n".join(lines) + "\n")
    return {"path": str(out), "identities": len(per_id), "images": len(lines)}


def _folds_text(folds) -> str:
    return ",".join(map(str, folds))


def prepare_data(settings, plan: dict, out: Path) -> dict:
    """Write the training list and the data description (out/results/data.json, read by the report)."""
    d = settings
    if plan["source"] == "lfw":
        from edgekd.data.verification import lfw_fold_identities

        if lfw_fold_identities(plan["pairs"], d.train_folds) & lfw_fold_identities(plan["pairs"], d.val_folds):
            raise EdgekdError(f"{plan['pairs']}: train folds {d.train_folds} share identities with val folds")
        listed = lfw_training_list(plan["pairs"], plan["aligned"], out / "data" / "train" / "label.txt",
                                   d.train_folds, d.min_images_per_identity, d.max_images_per_identity,
                                   d.max_identities)
        train = listed["path"]
        val = {"kind": "lfw", "pairs": plan["pairs"], "folds": d.val_folds, "per_fold": d.val_pairs_per_fold}
        description = (f"real LFW (shared data): training on {listed['identities']} identities / "
                       f"{listed['images']} aligned 112x112 images of view-2 folds {_folds_text(d.train_folds)} "
                       f"(identities with >= {d.min_images_per_identity} images, at most "
                       f"{d.max_images_per_identity} each); verification "
                       + ("on all pairs of folds " if not d.val_pairs_per_fold else
                          f"on {d.val_pairs_per_fold} same + {d.val_pairs_per_fold} different pairs of each of folds ")
                       + f"{_folds_text(d.val_folds)} (identity-disjoint from training)")
        outputs = [Path(train)]
        counts = {"identities": listed["identities"], "images": listed["images"]}
    elif plan["source"] == "synthetic":
        train = f"synthetic:{d.synthetic_identities}x{d.synthetic_images_per_identity}:0"
        val = {"kind": "synthetic", "pairs_per_fold": max(2, d.synthetic_val_pairs // 10)}
        why = "the shared LFW data was not found" if d.source == "auto" else "data.source=synthetic"
        description = (f"SYNTHETIC identities generated by edgekd.data ({why}): "
                       f"training {train}, verification on {10 * val['pairs_per_fold']} synthetic pairs; "
                       "accuracies say nothing about real faces")
        outputs = []
        counts = {"identities": d.synthetic_identities, "images": d.synthetic_identities * d.synthetic_images_per_identity}
    else:
        train, val = plan["train"], {"kind": "file", "path": plan["val"], "per_fold": d.val_pairs_per_fold}
        description = f"training on {train}, verification on {plan['val']}"
        outputs, counts = [], {}
    info = {"kind": "pipeline", "stage": "data", "label": {"model": None, "method": None, "precision": None,
                                                             "artifact": None},
            "data_source": description, "source": plan["source"], "train": train, "val": val, **counts}
    write_json_atomic(out / "results" / "data.json", info)
    return {"outputs": outputs + [out / "results" / "data.json"], "train": train, "val": val, "note": description}


def limit_pairs(vset, per_fold: int | None):
    """The first `per_fold` same-identity and `per_fold` different-identity pairs of each fold (deterministic)."""
    from edgekd.data.verification import VerificationSet

    if not per_fold:
        return vset
    keep = np.zeros(len(vset.issame), bool)
    for f in np.unique(vset.folds):
        for same in (True, False):
            idx = np.nonzero((vset.folds == f) & (vset.issame == same))[0][:per_fold]
            keep[idx] = True
    if keep.all():
        return vset
    used, inverse = np.unique(vset.pairs[keep], return_inverse=True)
    parent = vset
    return VerificationSet(f"{vset.name}[{per_fold}+{per_fold} per fold]", vset.source, inverse.reshape(-1, 2),
                           vset.issame[keep], vset.folds[keep], len(used), lambda k: parent.image(used[k]),
                           lambda: parent.sha256, vset.size, vset.note)


def load_val(val: dict):
    """The verification set a data stage planned (`val` of prepare_data's result)."""
    from edgekd.data.synthetic import synthetic_verification_set
    from edgekd.data.verification import load_verification

    if val["kind"] == "synthetic":
        return synthetic_verification_set(pairs_per_fold=val["pairs_per_fold"])
    if val["kind"] == "lfw":
        vset = load_verification(val["pairs"]).subset([f - 1 for f in val["folds"]])
    else:
        vset = load_verification(val["path"])
    return limit_pairs(vset, val.get("per_fold"))
