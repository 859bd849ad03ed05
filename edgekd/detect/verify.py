"""Verify two photos with a deployed embedder at the threshold it ships: `edgekd verify A B` (numpy, ONNX Runtime or
TensorRT, Pillow; no torch).

Each photo is either
- an aligned crop: an image exactly the size the embedder's preprocessing expects before its own crop (112x112 for
  the ArcFace template), embedded as is, or
- a raw photo: any other size; the detector finds its faces, the face rule keeps one and it is aligned on its five
  landmarks (edgekd.detect.align.detect_and_align, the path `edgekd data align --detector`, `edgekd eval --detector`
  and the video bench take). A raw photo needs a detector; one with no face is an error, never a centre crop.

The decision is eval's all-pairs rule (edgekd.eval.allpairs): cosine of the L2-normalised embeddings, "same" when
strictly above the threshold. The threshold is the artifact's stored one at the chosen FAR (`edgekd export
--gate-data` measures them, edgekd.export.thresholds; ONNX metadata `edgekd.thresholds`, or the engine sidecar's
`thresholds`), embedded with the flip mode they were measured with (export: none, a single pass as deployed), or one
given by the caller. Every failure is one EdgekdError naming the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekd.detect.faces import ONE_FACE_RULES
from edgekd.errors import EdgekdError

DEFAULT_FAR = 1e-4
GATE_HINT = "edgekd export --gate-data DATA"


def choose_threshold(meta: dict, artifact, far: float | None = None, threshold: float | None = None) -> dict:
    """{"threshold", "far", "source", "flip"}: `threshold` as given (source "command line"), else the artifact's
    stored cosine threshold at `far` (default 1e-4). No stored thresholds, or none at that FAR, is an error naming
    the fix."""
    from edgekd.eval.allpairs import stored_thresholds
    from edgekd.eval.metrics import far_key
    from edgekd.eval.verification import flip_mode

    if threshold is not None:
        if far is not None:
            raise EdgekdError("give either a FAR (the stored threshold at it) or a threshold, not both")
        threshold = float(threshold)
        if not -1.0 <= threshold <= 1.0:
            raise EdgekdError(f"threshold {threshold}: a cosine threshold lies in [-1, 1]")
        return {"threshold": threshold, "far": None, "source": "command line", "flip": "none"}
    far = DEFAULT_FAR if far is None else float(far)
    stored = stored_thresholds(meta or {})
    if stored is None:
        raise EdgekdError(f"{artifact}: no stored thresholds (measure and store them with `{GATE_HINT}`, "
                          "or pass --threshold)")
    table = {k: v for k, v in stored["cosine_at_far"].items() if v is not None}
    key = far_key(far)
    if key not in table:
        listed = ", ".join(sorted(table, key=float, reverse=True)) or "none"
        raise EdgekdError(f"{artifact}: no threshold stored for FAR {key} (stored FARs: {listed})")
    data = stored.get("data")
    return {"threshold": float(table[key]), "far": far,
            "source": f"stored: FAR {key} on {data}" if data else f"stored: FAR {key} (gate data not recorded)",
            "flip": flip_mode(stored.get("flip", "none"))}


def load_photo(path, size: tuple[int, int]) -> tuple[np.ndarray, str]:
    """(RGB uint8 image, "aligned" | "raw"): aligned when it is exactly `size` (H, W)."""
    from edgekd.data.image import decode_image

    img = decode_image(path)
    return img, "aligned" if img.shape[:2] == tuple(size) else "raw"


def face_of(path, img: np.ndarray, kind: str, detector, size: tuple[int, int], rule: str) -> tuple[np.ndarray, dict]:
    """(aligned crop, per-image record) of one photo; a raw photo goes through the detector."""
    from edgekd.detect.align import detect_and_align

    record = {"path": str(path), "kind": kind, "size": [int(img.shape[0]), int(img.shape[1])]}
    if kind == "aligned":
        return img, {**record, "detected": None, "chosen": None}
    photo = detect_and_align(img, detector, size, rule)
    if not photo.chosen:
        settings = getattr(detector, "settings", None)
        at = f" at minimum face size {settings.min_face:g} px" if settings is not None else ""
        raise EdgekdError(f"{path}: no face found in this {img.shape[1]}x{img.shape[0]} photo (the detector found "
                          f"none{at})")
    return photo.crops[0], {**record, "detected": photo.detected, "chosen": photo.chosen[0].to_json()}


def embed_pair(embedder, crops: np.ndarray, flip: str) -> np.ndarray:
    """(2, D) L2-normalised embeddings of two aligned crops, flip-combined as edgekd.eval does."""
    from edgekd.eval.verification import combine

    x = embedder.preprocess(crops)
    e = np.asarray(embedder(x), np.float32)
    ef = np.asarray(embedder(np.ascontiguousarray(x[..., ::-1])), np.float32) if flip != "none" else None
    return combine(e, ef, flip)


def read_photos(paths, size: tuple[int, int]) -> list[tuple[str, np.ndarray, str]]:
    """(path, image, kind) of each photo; a raw photo is kept for the detector."""
    return [(str(p), *load_photo(p, size)) for p in paths]


def needs_detector(photos) -> bool:
    return any(kind == "raw" for _, _, kind in photos)


def verify_photos(photos, embedder, detector, chosen: dict, rule: str = "largest-central") -> dict:
    """The verdict record of two read photos (read_photos) at `chosen` (choose_threshold)."""
    if rule not in ONE_FACE_RULES:
        raise EdgekdError(f"face rule {rule!r}: verification compares one face per photo ({', '.join(ONE_FACE_RULES)})")
    size = embedder.preprocess.aligned_size
    for p, img, kind in photos:
        if kind == "raw" and detector is None:
            raise EdgekdError(f"{p}: a raw {img.shape[1]}x{img.shape[0]} photo, not an aligned {size[1]}x{size[0]} "
                              "crop: pass --detector DIR (`edgekd export --detector mtcnn --out DIR`) to find and "
                              "align its face")
    faces = [face_of(p, img, kind, detector, size, rule) for p, img, kind in photos]
    e = embed_pair(embedder, np.stack([c for c, _ in faces]), chosen["flip"])
    cosine = float(np.dot(e[0].astype(np.float64), e[1].astype(np.float64)))
    return {
        "kind": "verify",
        "cosine": cosine,
        "same": bool(cosine > chosen["threshold"]),
        "threshold": chosen["threshold"],
        "threshold_source": chosen["source"],
        "far": chosen["far"],
        "rule": "cosine of L2-normalised embeddings; same when strictly above the threshold",
        "flip": chosen["flip"],
        "face_rule": rule,
        "images": [r for _, r in faces],
        "artifact": str(embedder.artifact or getattr(embedder, "name", "embedder")),
        "embedder": {"model": (embedder.meta or {}).get("model"), "runtime": getattr(embedder, "name", None),
                     "precision": getattr(embedder, "precision", None), "device": getattr(embedder, "device", None)},
        "detector": detector.describe() if detector is not None and hasattr(detector, "describe") else None,
    }


def verify_pair(a, b, embedder, detector=None, *, far: float | None = None, threshold: float | None = None,
                rule: str = "largest-central") -> dict:
    """Same or different person in photos `a` and `b` (paths), with an opened embedder (edgekd.runtime.open_artifact)
    and, for raw photos, an opened detector (edgekd.detect.open.open_detector). Returns the verdict record (see
    `edgekd verify --json`). The threshold is chosen and both images decoded before any face is detected."""
    chosen = choose_threshold(embedder.meta or {}, embedder.artifact or getattr(embedder, "name", "embedder"),
                              far, threshold)
    return verify_photos(read_photos((a, b), embedder.preprocess.aligned_size), embedder, detector, chosen, rule)


def run_verify(a, b, artifact, detector_path=None, *, far: float | None = None, threshold: float | None = None,
               rule: str = "largest-central", device: str = "cpu", threads: int | None = None,
               model: str | None = None, preprocess=None, detector_settings: dict | None = None) -> dict:
    """`edgekd verify`: open the embedder artifact (ONNX file or engine), choose the threshold, read both images,
    then open the detector (only when a photo is raw) and verify. Bad images and missing thresholds fail before the
    detector's networks load. `model` / `preprocess`: the name and preprocessing of an ONNX file without edgekd
    metadata (the CLI reads them from the model registry)."""
    import contextlib
    import warnings

    from edgekd.runtime import open_artifact

    for p in (a, b):
        if not Path(p).is_file():
            raise EdgekdError(f"{p}: no such image file")
    with contextlib.ExitStack() as stack:
        with warnings.catch_warnings(record=True) as said:  # a file that fails to open gives its one error only
            warnings.simplefilter("always")
            rt = stack.enter_context(open_artifact(artifact, model=model, device=device, threads=threads,
                                                   preprocess=preprocess))
        for w in said:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        chosen = choose_threshold(rt.meta or {}, artifact, far, threshold)
        photos = read_photos((a, b), rt.preprocess.aligned_size)
        det = None
        if detector_path is not None and needs_detector(photos):
            from edgekd.detect.open import open_detector

            det = stack.enter_context(open_detector(detector_path, device=device, threads=threads,
                                                    **(detector_settings or {})))
        return verify_photos(photos, rt, det, chosen, rule)


def format_verdict(r: dict) -> str:
    """The lines `edgekd verify` prints."""
    rows = []
    for label, im in zip("AB", r["images"]):
        h, w = im["size"]
        if im["kind"] == "aligned":
            what = f"aligned {w}x{h} crop, used as is (no detection)"
        else:
            f = im["chosen"]
            box = ", ".join(f"{v:.1f}" for v in f["box"])
            what = (f"raw {w}x{h} photo, {im['detected']} face{'s' if im['detected'] != 1 else ''} detected; "
                    f"{r['face_rule']}: box ({box}) score {f['score']:.4f}")
        rows.append((label, f"{im['path']}: {what}"))
    rows += [("cosine", f"{r['cosine']:.4f}"),
             ("threshold", f"{r['threshold']:.4f} ({r['threshold_source']})"),
             ("verdict", ("same person" if r["same"] else "different people")
              + f" (cosine {'>' if r['same'] else '<='} threshold)")]
    return "\n".join(f"{k:<10} {v}" for k, v in rows)
