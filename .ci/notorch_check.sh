#!/usr/bin/env bash
# The torch-free install, proven on Python 3.10 (JetPack 6) and 3.13: a fresh venv holding exactly
# requirements-jetson.txt + edgekd by the README's Jetson command (pip install --no-deps -e .) must run
# `edgekd bench --onnx`, `edgekd eval --onnx` on 1,200 real LFW pairs (folds 6-7) and `edgekd build --print-trtexec`
# (no tensorrt module there), each with exit status 0, and must not have torch, torchvision or matplotlib installed
# (nor torch importable). With the shared LFW data it also runs the deployed face detector: MTCNN detection on a real
# photo and on a composited frame, `edgekd verify` on two raw photo pairs of fold 6 at the stored threshold, and
# `edgekd bench --video FRAMES --detector D --onnx M --gallery G` on composited LFW frames (benchmarks/make_test_video.py),
# each under an import guard that fails the step if anything tries to import torch, torchvision or matplotlib.
# The ONNX files come from the main venv (Python 3.11 + torch): `edgekd export` of the shared pretrained MobileFaceNet
# (with thresholds measured on the identities of folds 1-5) and `edgekd export --detector mtcnn`.
# Wheels are cached in .ci/cache/ (git-ignored), so after the first run this needs no network.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
MAIN_VENV=${VENV:-.venv}
CACHE=$ROOT/.ci/cache
PYTHONS=${EDGEKD_NOTORCH_PYTHONS:-"3.10.13 3.13.0"}  # `pyenv versions`
WORK=$(mktemp -d "${TMPDIR:-/tmp}/edgekd-notorch.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
log() { echo "[notorch] $*"; }
# Runs `edgekd ARGS` (cli) or the detection check (detect) in a torch-free venv, recording every attempt to import
# torch, torchvision or matplotlib (a finder first on sys.meta_path); any attempt fails the step, even one that a
# lazy import would have caught.
cat > "$WORK/guard.py" <<'PY'
import sys

FORBIDDEN = ("torch", "torchvision", "matplotlib")
tried = []


class Watch:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in FORBIDDEN:
            tried.append(name)
        return None


sys.meta_path.insert(0, Watch())


def detect(folder, photo, frame, truth):
    import json
    from pathlib import Path

    from edgekd.data.image import decode_image
    from edgekd.detect.open import open_detector

    with open_detector(folder, threads=2) as det:
        assert det.describe()["runtime"] == "onnxruntime"
        faces = det(decode_image(photo))
        assert len(faces) >= 1 and faces[0].landmarks.shape == (5, 2), len(faces)
        found = det(decode_image(frame))
    slots = next(f["faces"] for f in json.load(open(truth))["sequences"]["frames_640x480"] if f["frame"] == Path(frame).name)
    centres = sorted(((x0 + x1) / 2, (y0 + y1) / 2) for x0, y0, x1, y1 in (f.box for f in found))
    assert len(found) == len(slots), (len(found), len(slots))
    for (cx, cy), s in zip(centres, sorted(slots, key=lambda s: s["box"][0])):
        x0, y0, x1, y1 = s["box"]
        assert x0 < cx < x1 and y0 < cy < y1, ((cx, cy), s)
    print(f"[notorch] detection: {len(faces)} face(s) in {Path(photo).name}, {len(found)} in the composited frame "
          f"(each inside its pasted photo)")


what, args = sys.argv[1], sys.argv[2:]
code = 0
if what == "cli":
    from edgekd.cli import main

    sys.argv = ["edgekd", *args]
    try:
        main()
    except SystemExit as e:
        code = e.code
else:
    detect(*args)
if tried:
    print(f"[notorch] {what} {' '.join(args[:1])}: tried to import {sorted({t.split('.')[0] for t in tried})} "
          f"(first: {tried[0]})", file=sys.stderr)
    sys.exit(3)
sys.exit(code)
PY

DATA=$("$MAIN_VENV/bin/python" -c 'from edgekd.paths import shared_data_dir as d; print(d() or "")')
if [ -n "$DATA" ] && [ -f "$DATA/lfw/pairs.txt" ]; then
    log "ONNX: edgekd export of mobilefacenet_ms1m_foamliu with thresholds from folds 1-5 identities (main venv)"
    "$MAIN_VENV/bin/edgekd" export --model mobilefacenet_ms1m_foamliu --no-fp16 --out "$WORK/mbf.onnx" \
        --gate-data "$DATA/lfw/pairs.txt" --gate-folds 1-5 --gate-images 2000 >"$WORK/export.log" 2>&1 \
        || { cat "$WORK/export.log"; exit 1; }
    # folds 6-7 of the official pairs.txt: 2 folds x (300 same + 300 different) = 1,200 pairs
    { printf '2\t300\n'; sed -n '3002,4201p' "$DATA/lfw/pairs.txt"; } > "$WORK/pairs.txt"
    [ "$(wc -l < "$WORK/pairs.txt")" -eq 1201 ] || { log "unexpected pairs.txt layout in $DATA/lfw"; exit 1; }
    RAW=$DATA/lfw/raw_150
    log "detector: edgekd export --detector mtcnn (main venv); test frames from LFW raw photos"
    "$MAIN_VENV/bin/edgekd" export --detector mtcnn --out "$WORK/mtcnn" >"$WORK/export-mtcnn.log" 2>&1 \
        || { cat "$WORK/export-mtcnn.log"; exit 1; }
    "$MAIN_VENV/bin/python" benchmarks/make_test_video.py --out "$WORK/video" --frames 3 --root "$RAW" >/dev/null
    # fold 6's first same-person pair and first different-people pair (identities disjoint from the threshold's)
    raw_photo() { printf '%s/%s/%s_%04d.jpg' "$RAW" "$1" "$1" "$2"; }
    read -r name n1 n2 < <(sed -n '3002p' "$DATA/lfw/pairs.txt")
    SAME=("$(raw_photo "$name" "$n1")" "$(raw_photo "$name" "$n2")")
    read -r name1 n1 name2 n2 < <(sed -n '3302p' "$DATA/lfw/pairs.txt")
    DIFFERENT=("$(raw_photo "$name1" "$n1")" "$(raw_photo "$name2" "$n2")")
    ls "${SAME[@]}" "${DIFFERENT[@]}" >/dev/null
else
    log "shared data absent: bench and build run on a random-init MobileFaceNet; the LFW eval and the detector steps (detection, verify, video bench) are SKIPPED"
    DATA=""
    "$MAIN_VENV/bin/edgekd" export --model mobilefacenet --no-fp16 --out "$WORK/mbf.onnx" >"$WORK/export.log" 2>&1 \
        || { cat "$WORK/export.log"; exit 1; }
fi

for version in $PYTHONS; do
    py=${PYENV_ROOT:-$HOME/.pyenv}/versions/$version/bin/python
    [ -x "$py" ] || { log "Python $version not found at $py"; exit 1; }
    short=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    wheels=$CACHE/wheels-$short
    stamp=$wheels/.$(sha256sum requirements-jetson.txt | cut -c1-16)
    if [ ! -f "$stamp" ]; then
        log "Python $short: downloading wheels into $wheels"
        rm -rf "$wheels" && mkdir -p "$wheels"
        "$py" -m pip download --quiet --disable-pip-version-check -d "$wheels" -r requirements-jetson.txt "setuptools>=68" wheel
        touch "$stamp"
    fi
    venv=$WORK/venv-$short
    "$py" -m venv "$venv"
    pip=("$venv/bin/python" -m pip --disable-pip-version-check --quiet)
    # The README's Jetson command, offline from the cache:
    "${pip[@]}" install --no-index --find-links "$wheels" -r requirements-jetson.txt
    "${pip[@]}" install --no-index --find-links "$wheels" --no-deps -e .
    for forbidden in torch torchvision matplotlib tensorrt; do
        if "${pip[@]}" show "$forbidden" >/dev/null 2>&1; then log "Python $short: $forbidden got installed"; exit 1; fi
    done
    "$venv/bin/python" -c 'import importlib.util as u, sys; sys.exit(u.find_spec("torch") is not None)' \
        || { log "Python $short: torch is importable in the torch-free venv"; exit 1; }
    edgekd=$venv/bin/edgekd
    log "Python $short: edgekd bench --onnx"
    "$edgekd" bench --onnx "$WORK/mbf.onnx" -b 1,8 -n 5 --min-time 0 --quiet --out "$WORK/bench-$short.json" >/dev/null
    if [ -n "$DATA" ]; then
        log "Python $short: edgekd eval --onnx on 1,200 LFW pairs (folds 6-7)"
        "$edgekd" eval --onnx "$WORK/mbf.onnx" --data "$WORK/pairs.txt" --threads 2 --images-root "$DATA/lfw/aligned_112x112" \
            --device cpu --quiet --json "$WORK/eval-$short.json" >"$WORK/eval-$short.txt"
        "$venv/bin/python" - "$WORK/eval-$short.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
pairs = r.get("pairs") or r.get("num_pairs") or r.get("data", {}).get("pairs")
assert r["accuracy_mean"] > 0.95, r["accuracy_mean"]
print(f"[notorch] accuracy {100 * r['accuracy_mean']:.2f}% on {pairs} pairs")
PY
    fi
    log "Python $short: edgekd build --print-trtexec (no tensorrt module)"
    "$edgekd" build --onnx "$WORK/mbf.onnx" --precision fp16 --print-trtexec --out "$WORK/engines/mbf.fp16.engine" \
        >"$WORK/build-$short.txt"
    grep -q '^  trtexec --onnx=' "$WORK/build-$short.txt" || { cat "$WORK/build-$short.txt"; exit 1; }
    if [ -n "$DATA" ]; then
        guarded=("$venv/bin/python" "$WORK/guard.py")  # fails when anything tries to import torch
        log "Python $short: MTCNN detection (ONNX Runtime) on a real LFW photo and a composited frame"
        "${guarded[@]}" detect "$WORK/mtcnn" "${SAME[0]}" "$WORK/video/frames_640x480/00001.png" \
            "$WORK/video/ground_truth.json"
        log "Python $short: edgekd verify --detector on a same-person and a different-people pair (fold 6)"
        "${guarded[@]}" cli verify "${SAME[@]}" --onnx "$WORK/mbf.onnx" --detector "$WORK/mtcnn" --threads 2 --json \
            >"$WORK/verify-same-$short.json"
        "${guarded[@]}" cli verify "${DIFFERENT[@]}" --onnx "$WORK/mbf.onnx" --detector "$WORK/mtcnn" --threads 2 \
            --json >"$WORK/verify-different-$short.json"
        "$venv/bin/python" - "$WORK/verify-same-$short.json" "$WORK/verify-different-$short.json" <<'PY'
import json, sys
same, diff = (json.load(open(p)) for p in sys.argv[1:])
assert same["same"] is True and diff["same"] is False, (same["cosine"], diff["cosine"], same["threshold"])
assert same["threshold_source"].startswith("stored"), same["threshold_source"]
print(f"[notorch] verify: cosine {same['cosine']:.3f} (same) / {diff['cosine']:.3f} (different), "
      f"stored threshold {same['threshold']:.4f}")
PY
        log "Python $short: edgekd bench --video --detector --onnx --gallery on composited 640x480 frames"
        "${guarded[@]}" cli bench --video "$WORK/video/frames_640x480" --detector "$WORK/mtcnn" --onnx "$WORK/mbf.onnx" \
            --gallery "$WORK/video/gallery" --frames 3 --threads 2 -o "$WORK/video-$short.json" >/dev/null
        "$venv/bin/python" - "$WORK/video-$short.json" "$WORK/video/ground_truth.json" <<'PY'
import json, sys
r, truth = (json.load(open(p)) for p in sys.argv[1:])
seq = truth["sequences"]["frames_640x480"][r["warmup_frames"]:]
assert r["mode"] == "detector" and r["frames"] == 2 and r["faces_per_frame"] == 3.0, r["faces_per_frame"]
for got, want in zip(r["per_frame"], seq):
    assert sorted(got["matches"]) == sorted(f["identity"] for f in want["faces"]), (got["matches"], want)
print(f"[notorch] video: {r['frames']} frames, 3 faces each, all matched; "
      f"{r['stages_ms']['total']['mean']:.0f} ms per frame")
PY
    fi
    log "Python $short: OK"
done
