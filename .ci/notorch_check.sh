#!/usr/bin/env bash
# The torch-free install, proven on Python 3.10 (JetPack 6) and 3.13: a fresh venv holding exactly
# requirements-jetson.txt + edgekd by the README's Jetson command (pip install --no-deps -e .) must run
# `edgekd bench --onnx`, `edgekd eval --onnx` on 1,200 real LFW pairs (folds 6-7) and `edgekd build --print-trtexec`
# (no tensorrt module there), each with exit status 0, and must not have torch, torchvision or matplotlib installed.
# The ONNX file comes from the main venv (Python 3.11 + torch): `edgekd export` of the shared pretrained MobileFaceNet.
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

DATA=$("$MAIN_VENV/bin/python" -c 'from edgekd.paths import shared_data_dir as d; print(d() or "")')
if [ -n "$DATA" ] && [ -f "$DATA/lfw/pairs.txt" ]; then
    log "ONNX: edgekd export of mobilefacenet_ms1m_foamliu (main venv)"
    "$MAIN_VENV/bin/edgekd" export --model mobilefacenet_ms1m_foamliu --no-fp16 --out "$WORK/mbf.onnx" >"$WORK/export.log" 2>&1 \
        || { cat "$WORK/export.log"; exit 1; }
    # folds 6-7 of the official pairs.txt: 2 folds x (300 same + 300 different) = 1,200 pairs
    { printf '2\t300\n'; sed -n '3002,4201p' "$DATA/lfw/pairs.txt"; } > "$WORK/pairs.txt"
    [ "$(wc -l < "$WORK/pairs.txt")" -eq 1201 ] || { log "unexpected pairs.txt layout in $DATA/lfw"; exit 1; }
else
    log "shared data absent: bench and build run on a random-init MobileFaceNet; the LFW eval is SKIPPED"
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
    log "Python $short: OK"
done
