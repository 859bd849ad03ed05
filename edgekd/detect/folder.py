"""`edgekd data align RAW OUT --detector D`: a folder of raw photos -> the same aligned folder `--landmarks` writes
(same relative paths, same template, atomic: all or nothing, manifest.json), the faces found by a deployed detector
instead of read from a landmark file, plus OUT/detections.json: for every photo how many faces the detector found and
which it kept (box, score, five landmarks), the photos with no face (no crop written: never a centre-crop fallback)
and those with more than one.

Face rules (edgekd.detect.faces.choose_face): largest-central (default) and largest write one crop per photo under
the photo's own name. `all` writes one crop per face found, every crop named `<photo stem>_face<k><suffix>` (k = 1, 2,
... in the detector's order, descending score), single-face photos included, so names never depend on how many faces
another photo holds; the crops of one photo stay in that photo's identity folder although a crowd photo's other faces
are other people: `all` is for inspecting or building galleries, not for training sets that trust folder names.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Collection

from PIL import Image
from tqdm import tqdm

from edgekd.data.align import aligned_manifest, raw_images, template
from edgekd.data.image import decode_image
from edgekd.detect.align import detect_and_align
from edgekd.detect.faces import RULES
from edgekd.errors import EdgekdError
from edgekd.io import atomic_dir, write_json_atomic

DETECTIONS = "detections.json"
EXAMPLES = 10


def crop_names(rel: str, n: int, rule: str) -> list[str]:
    """Output names of the `n` crops of photo `rel` under `rule` (see the module docstring)."""
    if rule != "all":
        return [rel][:n]
    stem, suffix = os.path.splitext(rel)
    return [f"{stem}_face{k}{suffix}" for k in range(1, n + 1)]


def detection_summary(records: dict[str, dict], examples: int = EXAMPLES) -> dict:
    """Counts over per-photo records ({"detected", "chosen", ...}): misses (no face) listed in full, photos with more
    than one face counted, with the first `examples` of them."""
    misses = sorted(r for r, v in records.items() if not v["chosen"])
    multi = sorted(r for r, v in records.items() if v["detected"] > 1)
    return {"images": len(records), "faces_detected": int(sum(v["detected"] for v in records.values())),
            "misses": misses, "num_misses": len(misses),
            "multi_face": {"count": len(multi),
                           "examples": [{"image": r, "detected": records[r]["detected"]} for r in multi[:examples]]}}


def align_folder_detected(raw_dir: str | os.PathLike, out_dir: str | os.PathLike, detector,
                          rule: str = "largest-central", size: tuple[int, int] = (112, 112),
                          identities: Collection[str] | None = None, overwrite: bool = False,
                          workers: int | None = None, quality: int = 95, progress: bool = True) -> dict:
    """Detect and align every photo of `raw_dir` (optionally only the top-level folders in `identities`) into
    `out_dir` through edgekd.detect.align.detect_and_align; returns the manifest. `detector`: a callable image ->
    faces (edgekd.detect.open.open_detector); its `describe()`, when it has one, is recorded. `workers` threads
    decode, detect and write (the networks release the GIL)."""
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    if not raw_dir.is_dir():
        raise EdgekdError(f"{raw_dir}: raw image folder not found")
    size = tuple(size)
    template(size)
    if rule not in RULES:
        raise EdgekdError(f"face rule {rule!r}: one of {', '.join(RULES)}")
    rels = raw_images(raw_dir, identities)
    if not rels:
        raise EdgekdError(f"{raw_dir}: no images to align" + (" of the chosen identities" if identities else ""))
    with atomic_dir(out_dir, overwrite) as tmp:
        def one(rel: str) -> tuple[str, dict]:
            photo = detect_and_align(decode_image(raw_dir / rel), detector, size, rule)
            names = crop_names(rel, len(photo.crops), rule)
            for name, crop in zip(names, photo.crops):
                (tmp / name).parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(crop).save(tmp / name, format="JPEG", quality=quality)
            return rel, {**photo.to_json(), "crops": names}

        records: dict[str, dict] = {}
        pool = ThreadPoolExecutor(max_workers=max(1, workers or 1))
        try:
            for rel, rec in tqdm(pool.map(one, rels), total=len(rels), desc="detect+align", unit="img",
                                 disable=not progress):
                records[rel] = rec
        finally:  # a corrupt photo stops the run now, not after every other photo was processed
            pool.shutdown(wait=True, cancel_futures=True)
        written = [n for r in rels for n in records[r]["crops"]]
        if not written:
            raise EdgekdError(f"{raw_dir}: the detector found no face in any of the {len(rels)} images; nothing "
                              "written")
        describe = getattr(detector, "describe", None)
        summary = detection_summary(records)
        report = {"kind": "detections", "raw_dir": str(raw_dir), "face_rule": rule, "size": list(size),
                  "detector": describe() if describe else None, **summary, "photos": records}
        write_json_atomic(tmp / DETECTIONS, report)
        manifest = {
            **aligned_manifest(written, size, raw_dir), "face_rule": rule, "detector": report["detector"],
            "detections": {"file": DETECTIONS, "images": summary["images"], "num_misses": summary["num_misses"],
                           "miss_examples": summary["misses"][:EXAMPLES], "multi_face": summary["multi_face"]},
        }
        write_json_atomic(tmp / "manifest.json", manifest)
    return manifest

