"""Frames as a deployed app sees them: decoded from a video file or a folder of images, fitted to the model input.

Pillow decodes folders of frames; video files need OpenCV (cv2), imported only here and only when asked.
No torch on this path.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

from edgekd.data.datasets import IMAGE_EXTS
from edgekd.data.image import decode_image
from edgekd.detect.align import align_faces, detect_and_align
from edgekd.errors import EdgekdError
from edgekd.eval.metrics import l2_normalize

BACKGROUND = (128, 128, 128)  # the flat grey of composited test frames


def composite_frame(photos: list[np.ndarray], k: int, size: tuple[int, int] = (640, 480), per_frame: int = 3,
                    side: int = 180) -> tuple[np.ndarray, list[tuple[int, list[int]]]]:
    """Frame `k` of a composited test sequence (no public video is reachable, so test frames are made from photos):
    `per_frame` of `photos` (uint8 RGB; slot j shows photo (k + per_frame * j) mod len(photos)) resized to
    `side` x `side` (bilinear) and pasted in evenly spaced slots across a flat grey frame of `size` (W, H), each
    slot drifting a few pixels from frame to frame. Returns the (H, W, 3) uint8 frame and, per slot, (photo index,
    pasted box [x0, y0, x1, y1])."""
    w, h = size
    if not photos:
        raise EdgekdError("no photos to composite into test frames")
    canvas = Image.new("RGB", (w, h), BACKGROUND)
    slots = []
    for j in range(per_frame):
        i = (k + j * per_frame) % len(photos)
        x = int((j + 0.5) * w / per_frame - side / 2 + 8 * np.sin(k / 3 + j))
        y = int(h / 2 - side / 2 + 8 * np.cos(k / 4 + j))
        canvas.paste(Image.fromarray(np.asarray(photos[i], np.uint8)).resize((side, side), Image.BILINEAR), (x, y))
        slots.append((i, [x, y, x + side, y + side]))
    return np.asarray(canvas), slots


def fit_frame(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize the shorter side to the target then centre-crop to `size` (H, W); frames already that size pass as is
    (they are assumed to be aligned faces)."""
    h, w = frame.shape[:2]
    th, tw = size
    if (h, w) == (th, tw):
        return frame
    scale = max(th / h, tw / w)
    nh, nw = max(th, round(h * scale)), max(tw, round(w * scale))
    img = Image.fromarray(frame).resize((nw, nh), Image.BILINEAR)
    top, left = (nh - th) // 2, (nw - tw) // 2
    return np.asarray(img.crop((left, top, left + tw, top + th)))


def frame_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS and p.is_file())
    if not files:
        raise EdgekdError(f"{folder}: no image frames ({', '.join(sorted(IMAGE_EXTS))}) in this folder")
    return files


def iter_frames(source: str | Path, limit: int | None = None) -> Iterator[tuple[np.ndarray, float]]:
    """Yield (uint8 HxWx3 RGB frame, seconds spent reading + decoding it)."""
    source = Path(source)
    if not source.exists():
        raise EdgekdError(f"{source}: no such video file or frame folder")
    if source.is_dir():
        for n, path in enumerate(frame_files(source)):
            if limit is not None and n >= limit:
                return
            t0 = time.perf_counter()
            frame = decode_image(path)  # the readers' decoder: 16-bit, palette and CMYK frames as faces are
            yield frame, time.perf_counter() - t0
        return
    try:
        import cv2
    except ImportError:
        raise EdgekdError(
            f"{source}: reading video files needs OpenCV (pip install opencv-python-headless); "
            "a folder of frames works without it"
        ) from None
    cap = cv2.VideoCapture(str(source))
    if not cap.isOpened():
        raise EdgekdError(f"{source}: OpenCV cannot open this video")
    try:
        n = 0
        while limit is None or n < limit:
            t0 = time.perf_counter()
            ok, bgr = cap.read()
            if not ok:
                break
            frame = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            yield frame, time.perf_counter() - t0
            n += 1
        if n == 0:
            raise EdgekdError(f"{source}: no frames could be decoded")
    finally:
        cap.release()


class _Timed:
    """A network callable that adds its wall time (ms) to `log[name]`: the per-network share of detection. P-Net's
    pyramid levels may run concurrently (Mtcnn level_workers), so its figure is the sum over its calls."""

    def __init__(self, fn, log: dict, name: str):
        self.fn, self.log, self.name, self.lock = fn, log, name, threading.Lock()  # concurrent calls: one name

    def __call__(self, x):
        t0 = time.perf_counter()
        out = self.fn(x)
        with self.lock:
            self.log[self.name] = self.log.get(self.name, 0.0) + (time.perf_counter() - t0) * 1e3
        return out


def build_gallery(folder: str | Path, detector, embedder) -> dict:
    """{"names": [...], "embeddings": (K, D) unit rows}: one row per identity subfolder, the mean of its photos'
    normalised embeddings. A photo already the aligned size is taken as an aligned crop; others are detected and
    their largest-central face aligned."""

    folder = Path(folder)
    subs = sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    if not subs:
        raise EdgekdError(f"{folder}: a gallery is a folder of identity subfolders of photos")
    pp = embedder.preprocess
    size = pp.aligned_size
    names, rows = [], []
    for sub in subs:
        crops = []
        for path in sorted(p for p in sub.iterdir() if p.suffix.lower() in IMAGE_EXTS):
            img = decode_image(path)
            if img.shape[:2] == tuple(size):
                crops.append(img)
            elif detector is not None:
                crops.extend(detect_and_align(img, detector, size).crops)
        if crops:
            names.append(sub.name)
            rows.append(l2_normalize(embedder(pp(np.stack(crops)))).mean(0))
    if not names:
        raise EdgekdError(f"{folder}: no face found in any gallery photo")
    return {"names": names, "embeddings": l2_normalize(np.stack(rows))}


def bench_video_pipeline(frames, detector, embedder, gallery: dict | None = None, threshold: float | None = None,
                         warmup: int = 1, progress=None) -> dict:
    """Per-frame time of the deployed verification app: decode, detect (MTCNN; P/R/O-Net network time reported
    inside it), align, embed (all faces of the frame in one batch), match (top-1 cosine against the gallery;
    below `threshold` -> "unknown"). `frames` yields (frame, decode seconds) as iter_frames does; the first
    `warmup` frames run untimed. Returns the stage statistics and, per frame, the matched names."""
    from edgekd.bench.bench import _stats

    pp = embedder.preprocess
    size = pp.aligned_size
    net_log: dict = {}
    nets = detector.networks
    detector.networks = {n: _Timed(f, net_log, n) for n, f in nets.items()}
    stages = {k: [] for k in ("decode", "detect", "align", "embed", "match", "total")}
    nets_ms = {n: [] for n in nets}
    per_frame, faces_n = [], []
    try:
        for k, (frame, t_decode) in enumerate(frames):
            net_log.clear()
            t0 = time.perf_counter()
            faces = detector(frame)
            t1 = time.perf_counter()
            crops = align_faces(frame, faces, size)
            t2 = time.perf_counter()
            emb = l2_normalize(embedder(pp(crops))) if len(crops) else np.zeros((0, 1))
            t3 = time.perf_counter()
            names = []
            if gallery is not None and len(crops):
                sim = emb @ gallery["embeddings"].T
                best = sim.argmax(1)
                names = [gallery["names"][b] if threshold is None or sim[i, b] >= threshold else "unknown"
                         for i, b in enumerate(best)]
            t4 = time.perf_counter()
            if progress is not None:
                progress(1)
            if k < warmup:
                continue
            ms = [t_decode * 1e3, (t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3, (t4 - t3) * 1e3]
            for key, v in zip(stages, ms + [sum(ms)]):
                stages[key].append(v)
            for n in nets_ms:
                nets_ms[n].append(net_log.get(n, 0.0))
            faces_n.append(len(faces))
            per_frame.append({"shape": list(frame.shape[:2]), "faces": [f.to_json() for f in faces],
                              "matches": names})
    finally:
        detector.networks = nets
    if not per_frame:
        raise EdgekdError(f"no frames to benchmark after {warmup} warm-up frame(s)")
    total_s = sum(stages["total"]) / 1e3
    return {
        "mode": "detector",
        "frames": len(per_frame),
        "warmup_frames": warmup,
        "aligned_size": list(size),
        "stages_ms": {k: _stats(v) for k, v in stages.items()},
        "detector_networks_ms": {n: _stats(v) for n, v in nets_ms.items()},
        "faces_per_frame": float(np.mean(faces_n)),
        "frames_per_s": len(per_frame) / total_s,
        "faces_per_s": sum(faces_n) / total_s,
        "gallery": None if gallery is None else {"identities": len(gallery["names"]), "threshold": threshold},
        "per_frame": per_frame,
    }


def format_pipeline(r: dict) -> str:
    """Markdown table of the detector pipeline's stages."""
    lines = [f"video pipeline: {r['frames']} frames, {r['faces_per_frame']:.2f} faces/frame, "
             f"{r['frames_per_s']:.2f} frames/s, {r['faces_per_s']:.2f} faces/s", "",
             "| stage | mean ± std ms | p50 | p90 | p99 |", "|---|---|---|---|---|"]
    summed = " summed over parallel levels" if (r.get("detector") or {}).get("pyramid_workers", 1) > 1 else ""
    rows = list(r["stages_ms"].items()) + [(f"  {n} (in detect{summed if n == 'pnet' else ''})", s)
                                           for n, s in r["detector_networks_ms"].items()]
    for k, s in rows:
        lines.append(f"| {k} | {s['mean']:.2f} ± {s['std']:.2f} | {s['p50']:.2f} | {s['p90']:.2f} | {s['p99']:.2f} |")
    return "\n".join(lines)


def run_video_pipeline(video: str | Path, detector: str | Path, artifact: str | Path, gallery: str | Path | None = None,
                       far: float = 1e-4, device: str = "cpu", threads: int | None = None,
                       max_frames: int | None = 200, warmup: int = 1, detector_settings: dict | None = None) -> dict:
    """`edgekd bench --video V --detector D`: open the detector (edgekd.detect.open) and the embedder artifact, build the
    gallery, time the pipeline; matches use the artifact's stored cosine threshold at `far` (none stored: top-1
    without a threshold, said in the JSON)."""
    from edgekd.detect.open import open_detector
    from edgekd.eval.allpairs import stored_thresholds
    from edgekd.eval.metrics import far_key
    from edgekd.runtime import open_artifact

    video = Path(video)
    if not video.exists():
        raise EdgekdError(f"{video}: no such video file or frame folder")
    if video.is_dir():
        frame_files(video)  # an empty folder fails here, before the networks load
    with open_detector(detector, device=device, threads=threads, **(detector_settings or {})) as det, \
            open_artifact(artifact, device=device, threads=threads, spin_between_runs=False) as rt:
        stored = stored_thresholds(rt.meta or {})
        threshold = (stored or {}).get("cosine_at_far", {}).get(far_key(far))
        g = build_gallery(gallery, det, rt) if gallery is not None else None
        r = bench_video_pipeline(iter_frames(video, limit=max_frames), det, rt, g, threshold=threshold,
                                 warmup=warmup)
        meta = rt.meta or {}
        r = {"kind": "video_pipeline",  # edgekd report: the per-frame figure beside the embedder's in Table 2
             "label": {"model": meta.get("model"), "method": meta.get("method"), "precision": rt.precision,
                       "artifact": str(artifact)},
             "runtime": rt.name, "device": rt.device, **r}
    r.update(source=str(video), detector=det.describe(), artifact=str(artifact), threads=threads,
             far=far, threshold_source="stored" if threshold is not None else "none stored: top-1 only")
    return r
