"""Test "video" for `edgekd bench --video --detector`: no public video is reachable here, so frames are composited
from LFW photos (raw_150, unaligned 150x150): each frame pastes 3 photos of 3 known identities, upscaled 1.2x,
on a flat grey 640x480 or 1280x720 background, the three slots shifting a few pixels per frame
(edgekd.bench.video.composite_frame, which `edgekd device-check --detector` uses too). Identities with
at least 4 photos: the first photo goes into the frames, the next 3 into a gallery folder (different photos of
the same people). Writes DIR/frames_640x480/, DIR/frames_1280x720/, DIR/gallery/<identity>/ and
DIR/ground_truth.json (per frame: the identity of each slot and its box).

    python benchmarks/make_test_video.py --out runs/video_test --frames 30 [--root /path/to/lfw/raw_150]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from edgekd.bench.video import composite_frame
from edgekd.paths import shared_path

LFW = shared_path("lfw", "raw_150") or Path("/work/shared/data/lfw/raw_150")
SIZES = ((640, 480), (1280, 720))
SCALE = 1.2
PER_FRAME = 3


def identities(root: Path, n: int, min_photos: int = 4) -> list[tuple[str, list[Path]]]:
    out = []
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        photos = sorted(d.glob("*.jpg"))
        if len(photos) >= min_photos:
            out.append((d.name, photos))
            if len(out) == n:
                break
    return out


def make(out: Path, frames: int, n_ids: int = 9, root: Path = LFW) -> dict:
    ids = identities(root, n_ids)
    if len(ids) < PER_FRAME:
        raise SystemExit(f"Error: {root}: fewer than {PER_FRAME} identities with 4 photos")
    gallery = out / "gallery"
    for name, photos in ids:
        (gallery / name).mkdir(parents=True, exist_ok=True)
        for p in photos[1:4]:
            Image.open(p).convert("RGB").save(gallery / name / p.name)
    faces = [np.asarray(Image.open(photos[0]).convert("RGB")) for _, photos in ids]
    side = round(150 * SCALE)
    truth = {"identities": [n for n, _ in ids], "gallery": "gallery", "sequences": {}}
    for w, h in SIZES:
        folder = out / f"frames_{w}x{h}"
        folder.mkdir(parents=True, exist_ok=True)
        seq = []
        for k in range(frames):
            frame, slots = composite_frame(faces, k, (w, h), PER_FRAME, side)
            path = folder / f"{k:05d}.png"
            Image.fromarray(frame).save(path)
            seq.append({"frame": path.name, "faces": [{"identity": ids[i][0], "box": box} for i, box in slots]})
        truth["sequences"][folder.name] = seq
    (out / "ground_truth.json").write_text(json.dumps(truth, indent=1))
    return truth


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/video_test"))
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--root", type=Path, default=LFW, help="LFW raw photos (identity folders; default the shared "
                                                             "data's lfw/raw_150)")
    a = ap.parse_args(argv)
    if not a.root.is_dir():
        raise SystemExit(f"Error: {a.root}: no such folder of LFW photos (--root)")
    make(a.out, a.frames, root=a.root)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
