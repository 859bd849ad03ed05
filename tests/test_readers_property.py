"""Every reader against damaged input (hypothesis): random truncation, bit flips and type swaps of a valid file give
either a successful read or an EdgekdError naming the file, never any other exception.

Each test builds one small valid file, then lets hypothesis damage a copy of it; `check` runs the reader the way the
CLI does (opening and reading every record/image), so a damaged file cannot slip through to a later traceback.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from edgekd.errors import EdgekdError  # noqa: E402

_QUIET = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
FAST = settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=_QUIET)  # files + decoding
CHEAP = settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=_QUIET)  # JSON only

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6)


def damage(data: bytes, draw) -> bytes:
    """Truncate, flip bits, or both (the damage a partial copy or a bad disk does)."""
    out = bytearray(data)
    how = draw(st.sampled_from(["truncate", "flip", "both"]))
    if how in ("flip", "both") and out:
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(out) - 1))
            out[i] ^= 1 << draw(st.integers(0, 7))
    if how in ("truncate", "both"):
        out = out[: draw(st.integers(0, max(0, len(out) - 1)))]
    return bytes(out)


def json_paths(obj, prefix=()):
    """Every (path to a value) in a JSON document."""
    yield prefix
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    for k, v in items:
        yield from json_paths(v, (*prefix, k))


def swap_type(obj, draw):
    """A copy of `obj` with one value (anywhere, the whole document included) replaced by a random JSON value."""
    obj = copy.deepcopy(obj)
    paths = list(json_paths(obj))
    path = draw(st.sampled_from([p for p in paths if len(p) == 1] if draw(st.booleans()) else paths))
    old = obj
    for k in path:
        old = old[k]
    how = draw(st.sampled_from(["random", "wrap", "text", "list of text", "unwrap"]))
    if how == "wrap":  # "8.7" -> ["8.7"], {...} -> [{...}]
        value = [old]
    elif how == "text":  # 0.8 -> "0.8", [1, 2] -> "[1, 2]"
        value = json.dumps(old) if not isinstance(old, str) else old + "x"
    elif how == "list of text":
        value = draw(st.lists(st.text(max_size=4), min_size=1, max_size=3))
    elif how == "unwrap" and isinstance(old, (list, dict)) and old:
        value = next(iter(old.values())) if isinstance(old, dict) else old[0]
    else:
        value = draw(JSON_VALUES)
    if not path:
        return value
    node = obj
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    return obj


def damaged_json(obj, draw) -> bytes:
    """Either the JSON text damaged bytewise or a type swap inside it."""
    if draw(st.booleans()):
        return damage(json.dumps(obj).encode(), draw)
    return json.dumps(swap_type(obj, draw)).encode()


def expect_clean(fn, *names):
    """Run `fn`; an EdgekdError must name one of `names` (file paths); anything else fails the test."""
    try:
        fn()
    except EdgekdError as e:
        msg = str(e)
        assert "\n" not in msg, msg
        assert any(str(n) in msg for n in names), f"error does not name {names}: {msg}"


def faces(n: int, seed: int = 0) -> list[bytes]:
    from edgekd.data.image import encode_jpeg

    rng = np.random.default_rng(seed)
    return [encode_jpeg(rng.integers(0, 255, (112, 112, 3), dtype=np.uint8), quality=30) for _ in range(n)]


def read_all(ds) -> None:
    for i in range(len(ds)):
        ds[i]


# ---- RecordIO .rec / .idx / property ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def shard(tmp_path_factory) -> Path:
    from edgekd.data.recordio import write_shard

    out = tmp_path_factory.mktemp("shard") / "rec"
    write_shard(out, np.array([0, 0, 1]), faces(3), (112, 112))
    return out


@FAST
@given(data=st.data(), target=st.sampled_from(["train.rec", "train.idx", "property"]))
def test_recordio_damage(shard, tmp_path_factory, data, target):
    from edgekd.data import open_dataset

    work = tmp_path_factory.mktemp("rec") / "rec"
    shutil.copytree(shard, work)
    (work / target).write_bytes(damage((shard / target).read_bytes(), data.draw))
    expect_clean(lambda: read_all(open_dataset(work)), work)


# ---- insightface .bin ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bin_file(tmp_path_factory) -> Path:
    from edgekd.data import write_bin

    path = tmp_path_factory.mktemp("bin") / "v.bin"
    write_bin(path, faces(4), [True, False])
    return path


def _read_verification(path, images_root=None):
    from edgekd.data import load_verification

    v = load_verification(path, images_root=images_root)
    for k in range(v.num_images):
        v.image(k)


@FAST
@given(data=st.data())
def test_bin_damage(bin_file, tmp_path_factory, data):
    path = tmp_path_factory.mktemp("b") / "v.bin"
    path.write_bytes(damage(bin_file.read_bytes(), data.draw))
    expect_clean(lambda: _read_verification(path), path)


@FAST
@given(data=st.data())
def test_bin_type_swaps(tmp_path_factory, data):
    """A well-formed pickle whose contents have the wrong types (images that are ints, flags that are strings...)."""
    import pickle

    images = data.draw(st.lists(st.sampled_from([b"\xff\xd8\xff", 3, None, "x", 2**40, [1], np.zeros(2, np.uint8)]),
                                max_size=4))
    issame = data.draw(st.sampled_from([[True], [1, 0], "ab", 7, None, [[1]], np.array([2, 3]), []]))
    path = tmp_path_factory.mktemp("b") / "t.bin"
    path.write_bytes(pickle.dumps(data.draw(st.sampled_from([(images, issame), [images], images, issame]))))
    expect_clean(lambda: _read_verification(path), path)


# ---- LFW pairs.txt + images ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pairs_tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pairs")
    blobs = iter(faces(4, seed=1))
    for name in ("Ann_A", "Bob_B"):
        (root / "img" / name).mkdir(parents=True)
        for i in (1, 2):
            (root / "img" / name / f"{name}_{i:04d}.jpg").write_bytes(next(blobs))
    (root / "pairs.txt").write_text("1\t1\nAnn_A\t1\t2\nAnn_A\t1\tBob_B\t2\n")
    return root


@FAST
@given(data=st.data())
def test_pairs_txt_damage(pairs_tree, tmp_path_factory, data):
    path = tmp_path_factory.mktemp("p") / "pairs.txt"
    path.write_bytes(damage((pairs_tree / "pairs.txt").read_bytes(), data.draw))
    expect_clean(lambda: _read_verification(path, pairs_tree / "img"), path, pairs_tree / "img")


# ---- label.txt ----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def label_tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("labels")
    (root / "images").mkdir()
    for i, blob in enumerate(faces(3, seed=2)):
        (root / "images" / f"{i:08d}.jpg").write_bytes(blob)
    (root / "label.txt").write_text("images/00000000.jpg\t0\nimages/00000001.jpg\t1\nimages/00000002.jpg\t1\n")
    return root


@FAST
@given(data=st.data())
def test_label_txt_damage(label_tree, tmp_path_factory, data):
    from edgekd.data import open_dataset

    work = tmp_path_factory.mktemp("l")
    shutil.copytree(label_tree / "images", work / "images")
    (work / "label.txt").write_bytes(damage((label_tree / "label.txt").read_bytes(), data.draw))
    expect_clean(lambda: read_all(open_dataset(work / "label.txt")), work)


# ---- landmarks ----------------------------------------------------------------------------------------------------

LANDMARKS = ("A/A_0001.jpg\t96\t112\t152\t111\t125\t140\t101\t168\t147\t167\n"
             "A/A_0002.jpg\t90\t110\t150\t110\t120\t140\t100\t170\t145\t168\n")


@FAST
@given(data=st.data())
def test_landmarks_damage(tmp_path_factory, data):
    from edgekd.data.align import check_landmarks, read_landmarks

    path = tmp_path_factory.mktemp("lm") / "lm.txt"
    path.write_bytes(damage(LANDMARKS.encode(), data.draw))

    def read():
        for rel, pts in read_landmarks(path).items():
            check_landmarks(pts, f"{path}: {rel}")

    expect_clean(read, path)


# ---- calibration manifests and shards -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def calib_set(tmp_path_factory) -> Path:
    from edgekd.export.calib import make_calib

    out = tmp_path_factory.mktemp("calib") / "c"
    make_calib("synthetic:2x2", out, n=4, progress=False)
    return out


def _read_calib(path):
    from edgekd.export.calib import open_calib

    for _ in open_calib(path).batches(2):
        pass


@FAST
@given(data=st.data(), target=st.sampled_from(["manifest", "manifest-types", "shard"]))
def test_calib_damage(calib_set, tmp_path_factory, data, target):
    """Shard damage keeps the manifest's sha256 in step with it, so the checks behind the hash are what is tested."""
    import hashlib

    from edgekd.io import read_json

    work = tmp_path_factory.mktemp("c") / "c"
    shutil.copytree(calib_set, work)
    manifest = read_json(calib_set / "manifest.json")
    if target == "shard":
        shard = work / manifest["shards"][0]["file"]
        if data.draw(st.booleans()):
            shard.write_bytes(damage(shard.read_bytes(), data.draw))
        else:  # a valid .npy of another shape, dtype or content
            x = np.load(shard)
            x = data.draw(st.sampled_from([x[:, :2], x.astype(np.float64), x[:1], np.full_like(x, np.nan),
                                           np.array([None] * len(x), dtype=object), x[..., :100]]))
            np.save(shard, x, allow_pickle=True)
        manifest["shards"][0]["sha256"] = hashlib.sha256(shard.read_bytes()).hexdigest()
        (work / "manifest.json").write_text(json.dumps(manifest))
    elif target == "manifest":
        (work / "manifest.json").write_bytes(damage(json.dumps(manifest).encode(), data.draw))
    else:
        (work / "manifest.json").write_text(json.dumps(swap_type(manifest, data.draw)))
    expect_clean(lambda: _read_calib(work), work)


# ---- engine sidecars (read through the runtime's public reader and check) -----------------------------------------

SIDECAR = {"kind": "engine", "tensorrt_version": "10.3.0", "gpu_name": "Orin", "compute_capability": "8.7",
           "driver_version": None, "cuda_version": "12.6", "jetpack": "R36.4.0", "precision": "fp16",
           "profile": {"min": [1, 3, 112, 112], "opt": [8, 3, 112, 112], "max": [32, 3, 112, 112]},
           "calib_sha256": None, "onnx": "m.onnx", "onnx_sha256": "ab", "build_seconds": 12.5, "engine_bytes": 1000,
           "api_path": "strongly-typed", "dla_core": None, "model": "mbf", "method": "soft",
           "preprocess": {"input_size": [112, 112], "mean": [127.5] * 3, "std": [127.5] * 3}, "embedding_size": 512}


@CHEAP
@given(data=st.data())
def test_engine_sidecar_damage(tmp_path_factory, data):
    sidecar = pytest.importorskip("edgekd.runtime.tensorrt.sidecar")
    engine = tmp_path_factory.mktemp("e") / "m.engine"
    engine.write_bytes(b"engine")
    sidecar.sidecar_path(engine).write_bytes(damaged_json(SIDECAR, data.draw))

    def read():
        side = sidecar.read_sidecar(engine)
        sidecar.check_sidecar(side, engine, "10.3.0", {"gpu_name": "Orin", "compute_capability": "8.7"})

    expect_clean(read, engine)


# ---- result JSONs (edgekd report) ---------------------------------------------------------------------------------

def _results(root: Path) -> dict[str, dict]:
    lat = {"mean": 5.0, "std": 0.5, "p50": 4.9, "p90": 5.6, "p99": 6.0, "min": 4.5}
    ver = {"accuracy_mean": 0.8, "accuracy_std": 0.01, "tar_at_far": {"1e-01": 0.9, "1e-02": 0.5, "1e-03": None},
           "eer": 0.1, "auc": 0.95, "num_pairs": 600, "data": "/x/lfw/pairs.txt"}
    return {
        "train/summary.json": {"kind": "train", "label": {"model": "mbf", "method": "vanilla", "precision": "fp32",
                                                          "artifact": "m.pt"},
                               "model": "mbf", "method": "vanilla", "verification": ver, "accuracy_mean": 0.8,
                               "accuracy_std": 0.01, "tar_at_far": ver["tar_at_far"]},
        "eval/e.json": {"kind": "eval", "label": {"model": "mbf", "method": "soft", "precision": "int8",
                                                  "artifact": "m.onnx"}, **ver, "runtime": "onnxruntime",
                        "precision": "int8", "reference": {"cosine_min": 0.97, "cosine_mean": 0.99}},
        "bench/b.json": {"kind": "bench", "label": {"model": "mbf", "method": "soft", "precision": "fp32",
                                                    "artifact": "m.onnx"}, "runtime": "onnxruntime", "device": "cpu",
                         "results": [{"batch": 1, "latency_ms": lat, "device_ms": None, "throughput_img_s": 200.0}],
                         "memory": {"rss_peak_bytes": 3e8}, "artifact_bytes": 4e6, "params": 1e6, "gflops": 0.23},
    }


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data(), target=st.sampled_from(["train/summary.json", "eval/e.json", "bench/b.json"]))
def test_result_json_damage(tmp_path_factory, data, target):
    from edgekd.report import build_report

    root = tmp_path_factory.mktemp("r") / "results"
    for rel, obj in _results(root).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(damaged_json(obj, data.draw) if rel == target else json.dumps(obj).encode())
    expect_clean(lambda: build_report(root, root.parent / "report"), root / target, root)


# ---- pipeline --set values (validated by the pipeline's settings loader) -------------------------------------------

SET_KEYS = ["train.steps", "train.batch_size", "train.lr", "methods", "students", "device", "runtime_device",
            "threads", "export.precisions", "eval.reference", "bench.batch_sizes", "teacher.train_steps",
            "data.source", "nosuch.key", "train", "train.steps.x"]


@CHEAP
@given(key=st.sampled_from(SET_KEYS), value=st.one_of(
    st.text(max_size=12), st.sampled_from(["abc", "1.5", "-3", "0", "[1, x]", "{a: 1}", "null", "true", "bogus",
                                           "[fp32, int9]", "1e400", "~", "'", "[[]]"])))
def test_pipeline_set_values(key, value):
    settings_mod = pytest.importorskip("edgekd.pipeline.settings")
    expect_clean(lambda: settings_mod.load_pipeline_config(None, [f"{key}={value}"]), "--set")


# ---- issue 20: image modes and bit depths, duplicates, non-finite and degenerate values -----------------------------

def _png(width: int, height: int, depth: int, color: int, raw_rows: bytes) -> bytes:
    """A PNG written by hand (Pillow cannot write 16-bit RGB): filter type 0 on every row."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw_rows)) + chunk(b"IEND", b"")


MODES = ["L", "P", "CMYK", "LA", "RGBA", "PA", "I;16", "I;16B", "I", "RGB48", "1"]


@FAST
@given(mode=st.sampled_from(MODES), level=st.integers(0, 65535), h=st.integers(1, 9), w=st.integers(1, 9))
def test_every_mode_decodes_to_its_8_bit_level(mode, level, h, w):
    """A uniform image of `level` (16-bit scale; its high byte for 8-bit modes) decodes to uint8 H x W x 3 of the
    same brightness in every mode: 16-bit grey used to clip to 255."""
    import io

    from PIL import Image

    from edgekd.data.image import decode_image

    want8 = round(level * 255 / 65535)
    if mode == "RGB48":
        row = b"\0" + level.to_bytes(2, "big") * 3 * w
        data = _png(w, h, 16, 2, row * h)
    else:
        if mode in ("I;16", "I;16B", "I"):
            im = Image.new(mode, (w, h), level)
        else:
            want8 = level >> 8 if mode != "1" else (255 if level >> 8 >= 128 else 0)
            im = Image.new("L", (w, h), level >> 8).convert(mode)
        buf = io.BytesIO()
        im.save(buf, format="TIFF" if mode in ("CMYK", "LA", "PA", "I;16B", "I") else "PNG")
        data = buf.getvalue()
    img = decode_image(data, "x.png")
    assert img.dtype == np.uint8 and img.shape == (h, w, 3)
    assert np.abs(img.astype(int) - want8).max() <= 1, (mode, level, img[0, 0], want8)


@CHEAP
@given(pairs=st.lists(st.tuples(st.sampled_from("AB"), st.integers(1, 3), st.sampled_from("AB"), st.integers(1, 3)),
                      min_size=1, max_size=12))
def test_pairs_txt_duplicates_found(tmp_path_factory, pairs):
    """A pairs.txt parses iff no line pairs an image with itself and no pair repeats (in either order)."""
    from edgekd.data.verification import parse_pairs

    path = tmp_path_factory.mktemp("dup") / "pairs.txt"
    path.write_text("".join(f"{a}\t{i}\t{j}\n" if a == b else f"{a}\t{i}\t{b}\t{j}\n" for a, i, b, j in pairs))
    keys = [frozenset({(a, i), (b, j)}) for a, i, b, j in pairs]
    clean = all(len(k) == 2 for k in keys) and len(set(keys)) == len(keys)
    try:
        parse_pairs(path)
    except EdgekdError as e:
        assert not clean and str(path) in str(e) and ("itself" in str(e) or "repeats the pair" in str(e)), str(e)
    else:
        assert clean


@FAST
@given(entries=st.lists(st.sampled_from(["images/00000000.jpg", "images/00000001.jpg", "images/00000002.jpg",
                                         "./images/00000001.jpg", "images/../images/00000002.jpg"]),
                        min_size=1, max_size=6))
def test_label_list_duplicates_found(label_tree, entries):
    """The same image under two spellings is found: paths are compared resolved."""
    from edgekd.data import open_dataset

    (label_tree / "dup.txt").write_text("".join(f"{e}\t{k % 2}\n" for k, e in enumerate(entries)))
    resolved = [(label_tree / e).resolve() for e in entries]
    try:
        open_dataset(label_tree / "dup.txt")
    except EdgekdError as e:
        assert len(set(resolved)) < len(resolved) and "listed again" in str(e), str(e)
    else:
        assert len(set(resolved)) == len(resolved)


@CHEAP
@given(n=st.integers(1, 6), d=st.integers(1, 6), dtype=st.sampled_from(["float32", "float16", "float64", "int64",
                                                                        "int8"]),
       bad=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5), st.sampled_from([np.nan, np.inf, -np.inf])),
                    max_size=3),
       zero_rows=st.lists(st.integers(0, 5), max_size=2), seed=st.integers(0, 9))
def test_embedding_check_refuses_exactly_the_bad_outputs(n, d, dtype, bad, zero_rows, seed):
    """Runtime.check_embeddings: float N x D (D >= 2), finite, no zero row passes unchanged; anything else is an
    EdgekdError naming the artifact."""
    from edgekd.preprocess import ARCFACE
    from edgekd.runtime.base import Runtime

    y = np.random.default_rng(seed).uniform(0.5, 2.0, (n, d))
    for i, j, v in bad:
        if i < n and j < d:
            y[i, j] = v
    for i in zero_rows:
        if i < n:
            y[i] = 0
    y = y.astype(dtype) if dtype.startswith("float") else np.nan_to_num(y).astype(dtype)
    ok = dtype.startswith("float") and d >= 2 and np.isfinite(y).all() and y.any(axis=1).all()
    rt = Runtime(ARCFACE, 512, artifact=Path("m.onnx"))
    try:
        out = rt.check_embeddings(y)
    except EdgekdError as e:
        assert not ok and str(e).startswith("m.onnx: "), str(e)
    else:
        assert ok and out is not None and out.shape == (n, d)
