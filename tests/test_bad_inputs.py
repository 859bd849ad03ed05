"""Issue 10's and issue 20's bad-input cases as a table, run as a user would (the CLI): exit status 1, exactly one `Error:` line
naming the file, no traceback, and no output left behind (only what the case itself set up remains).

A full disk is a real 256 KiB tmpfs where this runs as root (CI containers), else torch.save's own failure
("unexpected pos", a RuntimeError) and a full disk's zero free bytes are modelled; a read-only folder is a read-only
tmpfs as root, else a chmod 555 folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from click.testing import CliRunner

from edgekd.cli import cli

TRAIN = ["--model", "mbf", "--data", "synthetic:4x4", "--batch-size", "8", "--steps", "2", "--device", "cpu",
         "--no-progress"]


def invoke(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args])


def error_line(r, code: int = 1) -> str:
    """The one `Error:` line of a failed command (tqdm's carriage returns split lines too)."""
    assert r.exit_code == code, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert "Traceback" not in r.output, r.output
    lines = [ln for ln in re.split(r"[\r\n]", r.output) if "Error:" in ln]
    assert len(lines) == 1, r.output
    return lines[0][lines[0].index("Error:"):]


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def mount_tmpfs(where: Path, options: str) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    where.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                          capture_output=True).returncode == 0


@pytest.fixture
def full_disk(tmp_path):
    """A 256 KiB filesystem (None where it cannot be mounted)."""
    mnt = tmp_path / "full"
    if not mount_tmpfs(mnt, "size=256k"):
        yield None
        return
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=True)


@pytest.fixture
def read_only(tmp_path):
    mnt = tmp_path / "ro"
    if mount_tmpfs(mnt, "ro,size=64k"):
        yield mnt
        subprocess.run(["umount", "-l", str(mnt)], check=True)
        return
    mnt.mkdir(exist_ok=True)
    mnt.chmod(0o555)
    if os.access(mnt, os.W_OK):
        pytest.skip("cannot make an unwritable folder here")
    yield mnt
    mnt.chmod(0o755)


# ---- the table: one row per case ------------------------------------------------------------------------------------

@dataclass
class Case:
    """`setup(tmp)` makes the inputs and returns the command line; each `expect` text ("a|b": either) must appear in
    the Error line; after the run the tree under tmp must be exactly what setup made."""

    setup: Callable[[Path], list]
    expect: tuple[str, ...]
    code: int = 1  # 2: a malformed command line (an option value), click's usage error


def _file(tmp: Path, name: str = "X", text: str = "a file\n") -> Path:
    (tmp / name).write_text(text)
    return tmp / name


def _shard(tmp: Path) -> Path:
    from edgekd.data.image import encode_jpeg
    from edgekd.data.recordio import write_shard

    rng = np.random.default_rng(0)
    imgs = [encode_jpeg(rng.integers(0, 255, (112, 112, 3), dtype=np.uint8)) for _ in range(4)]
    write_shard(tmp / "rec", np.array([0, 0, 1, 1]), imgs, (112, 112))
    return tmp / "rec"


def _cut_rec(tmp: Path) -> list:
    rec = _shard(tmp) / "train.rec"
    last = max(int(line.split()[1]) for line in (tmp / "rec" / "train.idx").read_text().splitlines())
    rec.write_bytes(rec.read_bytes()[: last + 12])  # the file ends inside its last record
    return ["data", "info", rec]


def _bin(tmp: Path) -> Path:
    from edgekd.data import write_bin
    from edgekd.data.image import encode_jpeg

    rng = np.random.default_rng(1)
    write_bin(tmp / "v.bin", [encode_jpeg(rng.integers(0, 255, (112, 112, 3), dtype=np.uint8)) for _ in range(4)],
              [True, False])
    return tmp / "v.bin"


def _calib(tmp: Path, change: Callable[[np.ndarray], np.ndarray]) -> list:
    from edgekd.export.calib import make_calib

    make_calib("synthetic:2x2", tmp / "calib", n=4, progress=False)
    shard = tmp / "calib" / "shard_0000.npy"
    np.save(shard, change(np.load(shard)), allow_pickle=True)
    manifest = json.loads((tmp / "calib" / "manifest.json").read_text())
    manifest["shards"][0]["sha256"] = hashlib.sha256(shard.read_bytes()).hexdigest()  # hashes updated to match
    (tmp / "calib" / "manifest.json").write_text(json.dumps(manifest))
    return ["export", "--model", "mbf", "--no-fp16", "--calib", tmp / "calib", "--out", tmp / "out" / "m.onnx"]


def _nan(x):
    x = x.copy()
    x[1, 0, 3, 3] = np.nan
    return x


def _report_abc(tmp: Path) -> list:
    res = tmp / "results" / "train" / "a"
    res.mkdir(parents=True)
    (res / "summary.json").write_text(json.dumps({
        "kind": "train", "label": {"model": "mbf", "method": "vanilla", "precision": "fp32", "artifact": "m.pt"},
        "accuracy_mean": "abc", "accuracy_std": 0.01}))
    return ["report", tmp / "results"]


def _zero_landmarks(tmp: Path) -> list:
    from edgekd.data.image import encode_jpeg

    (tmp / "raw" / "A").mkdir(parents=True)
    (tmp / "raw" / "A" / "A_0001.jpg").write_bytes(encode_jpeg(np.full((150, 150, 3), 128, np.uint8)))
    (tmp / "lm.txt").write_text("A/A_0001.jpg" + "\t0" * 10 + "\n")
    return ["data", "align", tmp / "raw", tmp / "aligned", "--landmarks", tmp / "lm.txt", "--workers", "1"]


def _pickle_bomb(tmp: Path) -> list:
    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {tmp / 'PWNED'}",))

    (tmp / "evil.pt").write_bytes(pickle.dumps({"state_dict": Payload()}))
    return ["eval", "--weights", tmp / "evil.pt", "--data", _bin(tmp)]


def _sidecar(tmp: Path, text: str) -> list:
    (tmp / "m.engine").write_bytes(b"not checked before the sidecar")
    (tmp / "m.engine.json").write_text(text)
    return ["eval", "--engine", tmp / "m.engine", "--data", _bin(tmp)]


# ---- issue 20: non-finite, degenerate and duplicated inputs; option values; the last tracebacks ---------------------

def _onnx(tmp: Path, name: str, out: str = "float", dim: int = 4, scale: float = 1.0, input_type: str = "float") -> Path:
    """A tiny "face model": N x 3 x 112 x 112 in, the channel means times a constant matrix (N x dim) out, then
    scaled (NaN / 0) and cast; `input_type` int8 adds a Cast in front."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    types = {"float": TensorProto.FLOAT, "int8": TensorProto.INT8, "int64": TensorProto.INT64}
    nodes, x = [], "input"
    if input_type != "float":
        nodes.append(helper.make_node("Cast", ["input"], ["xf"], to=TensorProto.FLOAT))
        x = "xf"
    w = numpy_helper.from_array(np.arange(1, 3 * dim + 1, dtype=np.float32).reshape(3, dim), "w")
    k = numpy_helper.from_array(np.array(scale, np.float32), "k")
    nodes += [helper.make_node("GlobalAveragePool", [x], ["g"]), helper.make_node("Flatten", ["g"], ["f"]),
              helper.make_node("MatMul", ["f", "w"], ["m"]), helper.make_node("Add", ["m", "w1"], ["m1"]),
              helper.make_node("Mul", ["m1", "k"], ["y" if out == "float" else "yf"])]
    if out != "float":
        nodes.append(helper.make_node("Cast", ["yf"], ["y"], to=types[out]))
    w1 = numpy_helper.from_array(np.ones(dim, np.float32), "w1")
    graph = helper.make_graph(nodes, "face", [helper.make_tensor_value_info("input", types[input_type],
                                                                            ["N", 3, 112, 112])],
                              [helper.make_tensor_value_info("y", types[out], ["N", dim])], [w, k, w1])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp / name)
    return tmp / name


def _eval_onnx(tmp: Path, **kw) -> list:
    return ["eval", "--onnx", _onnx(tmp, "m.onnx", **kw), "--data", _bin(tmp), "--device", "cpu", "--quiet",
            "--json", tmp / "out" / "e.json"]


def _faces_tree(tmp: Path, names=("A", "B"), per: int = 2, ext: str = "jpg") -> Path:
    from edgekd.data.image import encode_jpeg

    rng = np.random.default_rng(2)
    for name in names:
        (tmp / "img" / name).mkdir(parents=True, exist_ok=True)
        for i in range(1, per + 1):
            (tmp / "img" / name / f"{name}_{i:04d}.{ext}").write_bytes(
                encode_jpeg(rng.integers(0, 255, (112, 112, 3), dtype=np.uint8)))
    return tmp / "img"


def _dup_pairs(tmp: Path) -> list:
    _faces_tree(tmp)
    (tmp / "pairs.txt").write_text("A\t1\t2\nA\t1\tB\t1\n" * 20)
    return ["eval", "--onnx", _onnx(tmp, "m.onnx"), "--data", tmp / "pairs.txt", "--images-root", tmp / "img",
            "--device", "cpu", "--quiet"]


def _label_list(tmp: Path, lines: list[str]) -> Path:
    _faces_tree(tmp)
    (tmp / "img" / "label.txt").write_text("".join(f"{ln}\n" for ln in lines))
    return tmp / "img" / "label.txt"


def _dup_labels(tmp: Path) -> list:
    lst = _label_list(tmp, [f"{n}/{n}_000{i}.jpg\t{k}" for k, n in enumerate("AB") for i in (1, 2)] * 2)
    return ["eval", "--onnx", _onnx(tmp, "m.onnx"), "--data", lst, "--protocol", "all-pairs", "--device", "cpu",
            "--quiet"]


def _nan_checkpoint(tmp: Path) -> list:
    import torch

    from edgekd.models import create_model, save_checkpoint

    model = create_model("mbf")
    with torch.no_grad():
        next(model.parameters())[0].fill_(float("nan"))
    save_checkpoint(tmp / "nan.pt", model, "mbf", {})
    return ["eval", "--weights", tmp / "nan.pt", "--data", _bin(tmp), "--device", "cpu", "--quiet"]


def _list_model_checkpoint(tmp: Path) -> list:
    import torch

    from edgekd.models import create_model

    torch.save({"state_dict": create_model("mbf").state_dict(), "edgekd": {"model": ["mbf"]}}, tmp / "l.pt")
    return ["eval", "--weights", tmp / "l.pt", "--data", _bin(tmp), "--device", "cpu", "--quiet"]


def _report(tmp: Path, **fields) -> list:
    res = tmp / "results" / "eval"
    res.mkdir(parents=True)
    record = {"kind": "eval", "label": {"model": "mbf", "method": "vanilla", "precision": "fp32", "artifact": "m"},
              "accuracy_mean": 0.9, "accuracy_std": 0.01, **fields}
    (res / "e.json").write_text(json.dumps(record))  # json.dumps writes NaN as the bare token NaN
    return ["report", tmp / "results"]


def _calib_without_shape(tmp: Path) -> list:
    from edgekd.export.calib import make_calib

    make_calib("synthetic:2x2", tmp / "calib", n=4, progress=False)
    m = json.loads((tmp / "calib" / "manifest.json").read_text())
    del m["shape"]
    (tmp / "calib" / "manifest.json").write_text(json.dumps(m))
    return ["calib", "show", tmp / "calib"]


def _calib_false_shape(tmp: Path) -> list:
    from edgekd.export.calib import make_calib

    make_calib("synthetic:2x2", tmp / "calib", n=4, progress=False)
    m = json.loads((tmp / "calib" / "manifest.json").read_text())
    m["shape"] = [4, 3, 64, 64]
    (tmp / "calib" / "manifest.json").write_text(json.dumps(m))
    return ["calib", "show", tmp / "calib"]


def _info_folder(tmp: Path, bad: bytes | np.ndarray) -> list:
    root = _faces_tree(tmp)
    if isinstance(bad, np.ndarray):
        from PIL import Image

        Image.fromarray(bad).save(root / "B" / "B_0003.png")
    else:
        (root / "B" / "B_0003.jpg").write_bytes(bad)
    return ["data", "info", root]


def _dup_idx(tmp: Path) -> list:
    rec = _shard(tmp)
    idx = rec / "train.idx"
    lines = idx.read_text().splitlines()
    idx.write_text("\n".join(lines + [f"{lines[2].split()[0]}\t{lines[3].split()[1]}"]) + "\n")
    return ["data", "info", rec / "train.rec"]


def _only_positive_bin(tmp: Path) -> list:
    from edgekd.data import write_bin
    from edgekd.data.image import encode_jpeg

    rng = np.random.default_rng(3)
    write_bin(tmp / "pos.bin", [encode_jpeg(rng.integers(0, 255, (112, 112, 3), dtype=np.uint8)) for _ in range(4)],
              [True, True])
    return ["eval", "--onnx", _onnx(tmp, "m.onnx"), "--data", tmp / "pos.bin", "--device", "cpu", "--quiet"]


def _single_identity(tmp: Path) -> list:
    lst = _label_list(tmp, ["A/A_0001.jpg\t0", "A/A_0002.jpg\t0"])
    return ["eval", "--onnx", _onnx(tmp, "m.onnx"), "--data", lst, "--protocol", "all-pairs", "--device", "cpu",
            "--quiet"]


def _no_genuine(tmp: Path) -> list:
    lst = _label_list(tmp, ["A/A_0001.jpg\t0", "B/B_0001.jpg\t1"])
    return ["eval", "--onnx", _onnx(tmp, "m.onnx"), "--data", lst, "--protocol", "all-pairs", "--device", "cpu",
            "--quiet"]


def _other_reference(tmp: Path) -> list:
    ref = _onnx(tmp, "ref.onnx", dim=8)
    return ["eval", "--onnx", _onnx(tmp, "m.onnx"), "--reference", ref, "--data", _bin(tmp), "--device", "cpu",
            "--quiet"]


def _unknown_kwargs(tmp: Path) -> list:
    import torch

    from edgekd.models import create_model

    torch.save({"state_dict": create_model("mbf").state_dict(),
                "edgekd": {"model": "mbf", "model_kwargs": {"wingspan": 3}}}, tmp / "k.pt")
    return ["eval", "--weights", tmp / "k.pt", "--data", _bin(tmp), "--device", "cpu", "--quiet"]


LONG = "n" * 300


CASES = {
    # issue item 1 (engine sidecar that is a number or null): one line, whether TensorRT is absent or present
    "1 sidecar null": Case(lambda t: _sidecar(t, "null"), ("m.engine.json|tensorrt Python package is not installed",)),
    "1 sidecar number": Case(lambda t: _sidecar(t, "5"), ("m.engine.json|tensorrt Python package is not installed",)),
    "3 report accuracy_mean abc": Case(_report_abc, ("summary.json: accuracy_mean is \"abc\"",)),
    "4 calib shard wrong shape": Case(lambda t: _calib(t, lambda x: x[:, :, :56]), ("shard_0000.npy", "expected float32")),
    "4 calib shard dtype object": Case(lambda t: _calib(t, lambda x: np.array([None] * len(x), object)),
                                       ("shard_0000.npy", "not a plain .npy array")),
    "4 calib shard NaN": Case(lambda t: _calib(t, _nan), ("shard_0000.npy", "NaN")),
    "5 pipeline --set train.steps=abc": Case(lambda t: ["pipeline", "--out", t / "p", "--set", "train.steps=abc"],
                                             ("train.steps",)),
    "5 pipeline --set train.steps=1.5": Case(lambda t: ["pipeline", "--out", t / "p", "--set", "train.steps=1.5"],
                                             ("train.steps",)),
    "5 pipeline --set methods=bogus": Case(lambda t: ["pipeline", "--out", t / "p", "--set", "methods=bogus"],
                                           ("bogus",)),
    "6 train --out FILE": Case(lambda t: ["train", *TRAIN, "--out", _file(t)], ("X: is a file",)),
    "6 train --out under a FILE": Case(lambda t: ["train", *TRAIN, "--out", _file(t) / "run"], ("X is a file",)),
    "7 data pack onto a FILE --overwrite": Case(lambda t: ["data", "pack", "synthetic:2x2", _file(t), "--overwrite"],
                                                ("X: is a file",)),
    "8 data align, all-zero landmarks": Case(_zero_landmarks, ("lm.txt: A/A_0001.jpg", "landmarks")),
    "9 data info, .rec cut in its last record": Case(_cut_rec, ("train.rec: truncated",)),
    "resume from an empty folder": Case(lambda t: ["train", "--out", t / "empty", "--resume"],
                                        ("checkpoint.pt: no checkpoint to resume from",)),
    "plain-pickle payload": Case(_pickle_bomb, ("evil.pt: refused",)),
    "folder given for a file (argument)": Case(lambda t: ["data", "pack-pairs", t, t, t / "o.bin"],
                                               ("is a folder, expected a file",)),
    "folder given for a file (option)": Case(lambda t: ["eval", "--weights", t, "--data", _bin(t)],
                                             ("is a folder, expected a file",)),
    "file given for a folder": Case(lambda t: ["report", _file(t)], ("X: is a file, expected a folder",)),
    "missing file": Case(lambda t: ["data", "pack-pairs", t / "nope.txt", t, t / "o.bin"], ("nope.txt: does not exist",)),
    # ---- issue 20 ----
    "20.2 ONNX embeddings NaN": Case(lambda t: _eval_onnx(t, scale=float("nan")), ("m.onnx", "NaN or infinite")),
    "20.3 checkpoint with NaN weights": Case(_nan_checkpoint, ("nan.pt", "NaN or infinite")),
    "20.4 report accuracy_mean 7.5": Case(lambda t: _report(t, accuracy_mean=7.5), ("e.json", "accuracy_mean is 7.5")),
    "20.4 report accuracy_mean NaN": Case(lambda t: _report(t, accuracy_mean=float("nan")), ("e.json", "NaN")),
    "20.4 report tar_at_far Infinity": Case(lambda t: _report(t, tar_at_far={"1e-03": float("inf")}),
                                            ("e.json", "Infinity")),
    "20.5 duplicate pairs in pairs.txt": Case(_dup_pairs, ("pairs.txt:3", "repeats the pair of line 1")),
    "20.5 label.txt lists each image twice": Case(_dup_labels, ("label.txt:5", "listed again (first on line 1)")),
    "20.6 ONNX int64 output": Case(lambda t: _eval_onnx(t, out="int64"), ("m.onnx", "tensor(int64)")),
    "20.6 ONNX all-zero embeddings": Case(lambda t: _eval_onnx(t, scale=0.0), ("m.onnx", "all zeros")),
    "20.6 ONNX N x 1 embedding": Case(lambda t: _eval_onnx(t, dim=1), ("m.onnx", "embedding size 1")),
    "20.8 label.txt names ../../etc/passwd": Case(
        lambda t: ["data", "info", _label_list(t, ["../../../../../../../../etc/passwd\t0", "A/A_0001.jpg\t1"])],
        ("label.txt:1", "outside the dataset folder")),
    "20 ONNX int8 input (eval)": Case(lambda t: _eval_onnx(t, input_type="int8"), ("m.onnx", "tensor(int8)")),
    "20 ONNX int8 input (bench)": Case(lambda t: ["bench", "--onnx", _onnx(t, "m.onnx", input_type="int8"), "-b", "1",
                                                  "-n", "1", "--warmup", "0"], ("m.onnx", "tensor(int8)")),
    "20 checkpoint edgekd.model is a list": Case(_list_model_checkpoint, ("l.pt", "edgekd.model must be a model name")),
    "20 qat --out under a file": Case(lambda t: ["qat", "--model", "mbf", "--data", "synthetic:2x2", "--out",
                                                 _file(t) / "q.onnx", "--steps", "1", "--quiet"],
                                      ("X: is a file|X is a file",)),
    "20 export --opset 99": Case(lambda t: ["export", "--model", "mbf", "--no-fp16", "--opset", "99",
                                            "--out", t / "out" / "m.onnx"], ("--opset", "13<=x<=20"), 2),
    "20 export --opset 7": Case(lambda t: ["export", "--model", "mbf", "--no-fp16", "--opset", "7",
                                           "--out", t / "out" / "m.onnx"], ("--opset", "13<=x<=20"), 2),
    "20 300-byte data file name": Case(lambda t: ["data", "info", t / f"{LONG}.bin"], (LONG[:40],)),
    "20 300-byte output folder name": Case(lambda t: ["train", *TRAIN, "--out", t / LONG], (LONG[:40],)),
    "20 data info synthetic:1e8x1e8": Case(lambda t: ["data", "info", "synthetic:100000000x100000000"],
                                           ("synthetic:100000000x100000000",)),
    "20 calib show, manifest without shape": Case(_calib_without_shape, ("manifest.json", "shape")),
    "20 calib show, manifest with a false shape": Case(_calib_false_shape, ("shard_0000.npy|manifest.json", "64")),
    "20 export --out under a file": Case(lambda t: ["export", "--model", "mbf", "--no-fp16", "--out",
                                                    _file(t) / "m.onnx"], ("X: is a file|X is a file",)),
    "20 data info: 0-byte image": Case(lambda t: _info_folder(t, b""), ("B_0003.jpg", "empty file")),
    "20 data info: 1x1 image": Case(lambda t: _info_folder(t, np.zeros((1, 1, 3), np.uint8)), ("B_0003.png", "1x1")),
    "20 duplicate .idx key": Case(_dup_idx, ("train.idx:", "key 2 is listed again")),
    "20 eval --onnx model.pt": Case(lambda t: ["eval", "--onnx", _file(t, "model.pt"), "--data", _bin(t)],
                                    ("model.pt", "--weights")),
    "20 only-positive .bin": Case(_only_positive_bin, ("pos.bin", "all 2 pairs are same-identity")),
    "20 all-pairs, one identity": Case(_single_identity, ("label.txt", "at least 2 identities")),
    "20 all-pairs, no genuine pairs": Case(_no_genuine, ("label.txt", "genuine")),
    "20 --reference of another embedding size": Case(_other_reference, ("ref.onnx", "embedding size 8")),
    "20 checkpoint with unknown model_kwargs": Case(_unknown_kwargs, ("k.pt", "wingspan")),
    **{f"20 --int8-gate {g}": Case(lambda t, g=g: ["export", "--model", "mbf", "--int8-gate", g], ("--int8-gate", why), 2)
       for g, why in (("tar@abc=1", "expected METRIC@FAR"), ("far@1e-4=0.3", "unknown metric 'far'"),
                      ("tar@1e-4=-1", "expected METRIC@FAR"), ("tar@1e-4=250", "0..100"))},
    **{f"20 --folds {f}": Case(lambda t, f=f: ["eval", "--onnx", _onnx(t, "m.onnx"), "--data", _bin(t), "--folds", f],
                               ("--folds", why), 2)
       for f, why in (("0", "numbered 1..10"), ("11", "numbered 1..10"), ("3-1", "range 3-1 is reversed"),
                      ("abc", "expected a fold list"), ("1,,2", "expected a fold list"),
                      ("1-99999999999", "expected a fold list|numbered 1..10"))},
    "20 calib make --folds 3-1": Case(lambda t: ["calib", "make", "--from", _bin(t), "--out", t / "c", "--folds", "3-1"],
                                      ("--folds", "reversed"), 2),
    **{f"20 build --print-trtexec --profile {p}": Case(
        lambda t, p=p: ["build", "--onnx", _onnx(t, "m.onnx"), "--precision", "fp16", "--print-trtexec", "--profile", p],
        ("--profile", why), 2)
       for p, why in (("8,1,64", "MIN <= OPT <= MAX"), ("0,0,0", "outside 1..4096"), ("a,b", "comma-separated integers"),
                      ("1,8", "expected MIN,OPT,MAX"), ("1,8,100000", "outside 1..4096"))},
    "20 build --print-trtexec --workspace -5": Case(
        lambda t: ["build", "--onnx", _onnx(t, "m.onnx"), "--precision", "fp16", "--print-trtexec", "--workspace", "-5"],
        ("--workspace",), 2),
    "20 bench -b 100000000": Case(lambda t: ["bench", "--onnx", _onnx(t, "m.onnx"), "-b", "100000000"],
                                  ("--batch-sizes", "outside 1..4096"), 2),
    "20 bench -b 0": Case(lambda t: ["bench", "--onnx", _onnx(t, "m.onnx"), "-b", "0"], ("--batch-sizes",), 2),
    "20 train --batch-size 0": Case(lambda t: ["train", "--model", "mbf", "--data", "synthetic:4x4", "--batch-size", "0",
                                               "--out", t / "run"], ("--batch-size",), 2),
    "20 eval --batch-size 100000000": Case(lambda t: ["eval", "--onnx", _onnx(t, "m.onnx"), "--data", _bin(t),
                                                      "--batch-size", "100000000"], ("--batch-size",), 2),
    "20 data pack under a file": Case(lambda t: ["data", "pack", "synthetic:2x2", _file(t) / "sub" / "out"],
                                      ("X is a file",)),
    "20 bench --onnx model.pt": Case(lambda t: ["bench", "--onnx", _file(t, "model.pt")], ("model.pt", "--weights")),
    "20 eval --weights m.onnx": Case(lambda t: ["eval", "--weights", _onnx(t, "m.onnx"), "--data", _bin(t)],
                                     ("m.onnx", "an ONNX file", "--onnx")),
    "20 train --model-opt unknown": Case(lambda t: ["train", *TRAIN, "--model-opt", "wingspan=3", "--out", t / "run"],
                                         ("--model-opt", "wingspan")),
    "20 pipeline --set data.source=/nonexistent": Case(
        lambda t: ["pipeline", "--out", t / "p", "--set", "data.source=/nonexistent"], ("/nonexistent",)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_table(name, tmp_path, monkeypatch, one_torch_thread):
    case = CASES[name]
    work = tmp_path / "w"
    work.mkdir()
    (work / "empty").mkdir()
    monkeypatch.chdir(work)
    args = case.setup(work)
    before = tree(work)
    line = error_line(invoke(*args), case.code)
    for text in case.expect:
        assert any(alt in line for alt in text.split("|")), line
    assert tree(work) == before, f"left behind: {sorted(set(tree(work)) - set(before))}"
    assert not (work / "PWNED").exists()
    if "sidecar" not in name and "pipeline" not in name:
        assert "False" not in line and "weights_only" not in line


# ---- cases that need a full or read-only filesystem, a training run, or the shared data ----------------------------

def test_training_into_a_full_disk(full_disk, tmp_path, monkeypatch, one_torch_thread):
    """Issue item 2: torch.save fails with RuntimeError on a full disk; one line naming the checkpoint, no run."""
    if full_disk is None:  # model torch's failure: a partial write, then RuntimeError, with no space left
        import torch

        real_save = torch.save

        def failing_save(obj, f, *a, **k):
            Path(f).write_bytes(b"PK\x03\x04partial")
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 128 vs 0")

        monkeypatch.setattr(torch, "save", failing_save)
        monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9, 0))
        where = tmp_path
        assert real_save is not failing_save
    else:
        where = full_disk
    line = error_line(invoke("train", *TRAIN, "--out", where / "run"))
    assert "run/checkpoint.pt: write failed (No space left on device); nothing was written" in line
    assert not (where / "run").exists()


def test_pack_into_a_full_disk_names_the_output(full_disk):
    if full_disk is None:
        pytest.skip("needs root to mount a small tmpfs")
    line = error_line(invoke("data", "pack", "synthetic:30x4", full_disk / "packed"))
    assert "packed: write failed (No space left on device)" in line
    assert tree(full_disk) == []


def test_unwritable_out_is_found_before_step_one(read_only, tmp_path, monkeypatch, one_torch_thread):
    """Checked before the data and model load (a first-checkpoint failure would come after every step)."""
    import edgekd.data

    def no_data(*a, **k):
        raise AssertionError("the data was opened before --out was checked")

    monkeypatch.setattr(edgekd.data, "open_dataset", no_data)
    line = error_line(invoke("train", *TRAIN, "--out", read_only / "run"))
    assert "run: cannot write here" in line
    line = error_line(invoke("distill", "--teacher", tmp_path / "absent.pt", *TRAIN, "--out", read_only / "run"))
    assert "absent.pt" in line or "cannot write here" in line
    line = error_line(invoke("export", "--model", "mbf", "--out", read_only / "m.onnx"))
    assert "cannot write here" in line


def test_nan_before_the_first_checkpoint(tmp_path, one_torch_thread):
    line = error_line(invoke("train", *TRAIN, "--lr", "1e30", "--out", tmp_path / "run"))
    assert "not finite" in line or "loss is nan" in line, line
    assert "None" not in line and "no checkpoint had been written" in line
    assert not (tmp_path / "run").exists()


def test_resume_cleans_temps_and_records_the_device(tmp_path, one_torch_thread):
    """A kill -9 during a checkpoint write leaves `.checkpoint.pt.<random>.tmp`; the resumed run removes it.
    Without --device the run records the device it used, not `auto`."""
    run = tmp_path / "run"
    common = [a for a in TRAIN if a not in ("--device", "cpu")]
    r = invoke("train", *common, "--out", run)
    assert r.exit_code == 0, r.output
    assert json.loads((run / "summary.json").read_text())["config"]["device"] in ("cpu", "cuda:0")
    stale = run / ".checkpoint.pt.k9x_abc.tmp"
    stale.write_bytes(b"PK\x03\x04half")
    (run / "summary.json").unlink()
    r = invoke("train", *[a if a != "2" else "4" for a in common], "--out", run, "--resume")
    assert r.exit_code == 0, r.output
    assert not stale.exists()
    assert json.loads((run / "summary.json").read_text())["config"]["device"] != "auto"


def test_cuda_device_with_cpu_only_onnxruntime(shared_data, tmp_path):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    onnx = shared_data / "weights" / "mobilefacenet_ms1m_foamliu" / "MobileFaceNet.onnx"
    line = error_line(invoke("eval", "--onnx", onnx, "--data", shared_data / "bins" / "small_lfw.bin",
                             "--device", "cuda", "--json", tmp_path / "e.json"))
    assert "MobileFaceNet.onnx: device 'cuda' needs ONNX Runtime's CUDAExecutionProvider" in line
    assert "edgekd[gpu]" in line and not (tmp_path / "e.json").exists()


def test_paper_config_on_cpu_only_onnxruntime(tmp_path):
    """configs/paper.yaml evaluates its ONNX files on CUDA: with CPU-only onnxruntime that is one line before the
    first stage, not a failure at the first evaluation after the training."""
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    root = Path(__file__).resolve().parents[1]
    line = error_line(invoke("pipeline", "--config", root / "configs" / "paper.yaml", "--out", tmp_path / "p"))
    assert "runtime_device cuda" in line and "edgekd[gpu]" in line
    assert not (tmp_path / "p").exists()


def test_real_rec_cut_inside_its_last_record(shared_data, tmp_path):
    src = shared_data / "recordio" / "adaface_tiny"
    rec = tmp_path / "train.rec"
    rec.write_bytes((src / "train.rec").read_bytes()[:-100])
    shutil.copy(src / "train.idx", tmp_path / "train.idx")
    assert "train.rec: truncated" in error_line(invoke("data", "info", rec))
    assert "train.rec: truncated" in error_line(invoke("data", "pack", rec, tmp_path / "packed"))
    assert not (tmp_path / "packed").exists()


def test_build_without_tensorrt_leaves_no_engines_folder(shared_data, tmp_path, monkeypatch):
    from edgekd.runtime.tensorrt import tensorrt_installed

    if tensorrt_installed():
        pytest.skip("tensorrt is installed")
    monkeypatch.chdir(tmp_path)
    onnx = shared_data / "weights" / "mobilefacenet_ms1m_foamliu" / "MobileFaceNet.onnx"
    assert "tensorrt" in error_line(invoke("build", "--onnx", onnx, "--precision", "fp16", "--profile", "1,1,1"))
    assert tree(tmp_path) == []


def test_usage_errors_keep_exit_status_2():
    """A malformed command line (not a bad input file) is click's usage error: exit 2, usage + one Error line."""
    r = invoke("train", "--steps", "abc")
    assert r.exit_code == 2 and "Traceback" not in r.output and r.output.count("Error:") == 1


# ---- issue 20: cases that succeed (exit 0) with the right result, or need more than one command ----------------------

def _png16(path: Path, grey: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(grey.astype(np.uint16)).save(path)  # mode I;16: a 16-bit grey PNG


def test_sixteen_bit_png_faces_keep_their_levels(tmp_path):
    """Item 1: 16-bit PNGs were clipped to white (mean 254.9) by convert("RGB"); pack + read keep the grey levels."""
    levels = np.linspace(0, 65535, 112 * 112).reshape(112, 112)
    for name in ("A", "B"):
        (tmp_path / "src" / name).mkdir(parents=True)
        for i in range(2):
            _png16(tmp_path / "src" / name / f"{i}.png", levels)
    r = invoke("data", "pack", tmp_path / "src", tmp_path / "rec")
    assert r.exit_code == 0, r.output
    from edgekd.data import open_dataset

    img, _ = open_dataset(tmp_path / "rec")[0]
    assert abs(float(img.mean()) - 127.5) < 1.5, img.mean()  # JPEG of a 0..255 ramp, not white squares


def test_bom_in_pairs_and_label_lists(tmp_path):
    """A UTF-8 byte-order mark (Windows editors) is skipped in pairs.txt and label.txt."""
    _faces_tree(tmp_path)
    (tmp_path / "pairs.txt").write_bytes("\ufeffA\t1\t2\nA\t1\tB\t1\n".encode())
    r = invoke("data", "info", tmp_path / "pairs.txt", "--images-root", tmp_path / "img")
    assert r.exit_code == 0 and "2 pairs (1 same)" in r.output, r.output
    (tmp_path / "img" / "label.txt").write_bytes("\ufeffA/A_0001.jpg\t0\nB/B_0001.jpg\t1\n".encode())
    r = invoke("data", "info", tmp_path / "img" / "label.txt")
    assert r.exit_code == 0 and "2 images 112x112 (all decoded), 2 identities" in r.output, r.output


def test_export_rerun_removes_a_killed_exports_temp(tmp_path, one_torch_thread):
    """A kill -9 mid-write leaves `.m.onnx.<pid>-<random>.tmp`; the next successful export removes it, while a temp
    of a writer still running (its pid alive) is kept."""
    out = tmp_path / "out"
    out.mkdir()
    dead, live = out / ".m.onnx.999999999-k9x_abc.tmp", out / f".m.onnx.{os.getppid()}-live_abc.tmp"
    dead.write_bytes(b"\x08half an onnx")
    live.write_bytes(b"\x08being written")
    r = invoke("export", "--model", "mbf", "--no-fp16", "--out", out / "m.onnx")
    assert r.exit_code == 0, r.output
    assert not dead.exists() and live.exists() and (out / "m.onnx").is_file()


def test_250_byte_output_name(tmp_path):
    """The temporary name (name + pid + random + .tmp) stays within 255 bytes for a 250-byte output name."""
    name = "o" * 250
    r = invoke("data", "pack", "synthetic:2x2", tmp_path / name)
    assert r.exit_code == 0, r.output
    assert tree(tmp_path) == sorted([name, f"{name}/property", f"{name}/train.idx", f"{name}/train.rec"])


def test_errors_name_the_users_path_not_the_temp(tmp_path):
    from edgekd.errors import EdgekdError
    from edgekd.io import atomic_dir, atomic_path

    with pytest.raises(EdgekdError) as e:
        with atomic_path(tmp_path / "new" / "m.onnx") as tmp:
            raise EdgekdError(f"{tmp}: exported graph fails onnx.checker")
    assert str(e.value) == f"{tmp_path / 'new' / 'm.onnx'}: exported graph fails onnx.checker"
    with pytest.raises(EdgekdError) as e:
        with atomic_dir(tmp_path / "new" / "calib") as tmp:
            raise EdgekdError(f"{tmp / 'shard_0000.npy'}: bad")
    assert str(e.value) == f"{tmp_path / 'new' / 'calib' / 'shard_0000.npy'}: bad"
    assert tree(tmp_path) == []  # and the folder the failed writes created is gone


def test_report_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    """A report whose last file cannot be written leaves the earlier report as it was, not a mix."""
    import errno

    import edgekd.report.build as build

    _report(tmp_path)
    assert invoke("report", tmp_path / "results").exit_code == 0
    report = tmp_path / "results" / "report"
    before = {p.name: p.read_bytes() for p in report.iterdir()}
    real = build.json.dumps

    def full_disk(obj, *a, **k):
        if isinstance(obj, dict) and obj.get("kind") == "report":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(obj, *a, **k)

    (tmp_path / "results" / "eval" / "e.json").write_text(json.dumps({
        "kind": "eval", "label": {"model": "r18", "method": "vanilla", "precision": "fp32", "artifact": "m"},
        "accuracy_mean": 0.5, "accuracy_std": 0.01}))
    monkeypatch.setattr(build.json, "dumps", full_disk)
    line = error_line(invoke("report", tmp_path / "results"))
    assert "report: write failed (No space left on device)" in line
    assert {p.name: p.read_bytes() for p in report.iterdir()} == before
    assert [p.name for p in report.parent.iterdir() if p.name.startswith(".")] == []


def test_report_json_has_no_bare_nan(tmp_path):
    _report(tmp_path, eer=None, auc=None)
    assert invoke("report", tmp_path / "results").exit_code == 0
    text = (tmp_path / "results" / "report" / "report.json").read_text()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"bare {c} in report.json"))


def test_qdq_with_nonzero_zero_points_gets_no_trtexec_line(tmp_path):
    """TensorRT requires zero zero points: an asymmetric (u8) Q/DQ file gets the reason instead of a trtexec line."""
    import onnx
    from onnx import helper, numpy_helper

    fp32 = _onnx(tmp_path, "m.onnx")
    model = onnx.load(fp32)
    g = model.graph
    g.initializer.extend([numpy_helper.from_array(np.array(0.02, np.float32), "s"),
                          numpy_helper.from_array(np.array(128, np.uint8), "zp")])  # u8, asymmetric
    first = g.node[0]
    first.input[0] = "dq"
    g.node.insert(0, helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["dq"]))
    g.node.insert(0, helper.make_node("QuantizeLinear", ["input", "s", "zp"], ["q"]))
    helper.set_model_props(model, {"edgekd.precision": "int8"})
    onnx.save(model, tmp_path / "m.int8.onnx")
    r = invoke("build", "--onnx", fp32, "--typed-onnx", tmp_path / "m.int8.onnx", "--precision", "int8",
               "--print-trtexec")
    assert r.exit_code == 0, r.output
    assert "TensorRT requires zero zero points" in r.output and "trtexec --onnx" not in r.output


def test_align_names_a_photo_without_landmarks(tmp_path):
    from edgekd.data.image import encode_jpeg

    (tmp_path / "raw" / "A").mkdir(parents=True)
    for i in (1, 2):
        (tmp_path / "raw" / "A" / f"A_000{i}.jpg").write_bytes(encode_jpeg(np.full((250, 250, 3), 90, np.uint8)))
    (tmp_path / "lm.txt").write_text("A/A_0001.jpg\t96\t112\t152\t111\t125\t140\t101\t168\t147\t167\n")
    r = invoke("data", "align", tmp_path / "raw", tmp_path / "out", "--landmarks", tmp_path / "lm.txt", "--workers", "1")
    assert r.exit_code == 0, r.output
    assert "1 images without landmarks skipped (first: A/A_0002.jpg)" in r.output


def test_bench_warnings_are_one_line(tmp_path):
    """A warning (here: an ONNX file without edgekd metadata) is one `Warning:` line on stderr, not Python's
    `file:line: UserWarning` plus the source line. A process of its own: pytest captures warnings in-process."""
    import sys

    r = subprocess.run([sys.executable, "-c", "from edgekd.cli import cli; cli()", "bench", "--onnx",
                        str(_onnx(tmp_path, "m.onnx")), "-b", "1", "-n", "1", "--warmup", "0", "--min-time", "0",
                        "--quiet"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stderr.startswith("Warning: ") and "no edgekd preprocess metadata" in r.stderr, r.stderr
    assert "UserWarning" not in r.stderr and "warnings.warn" not in r.stderr


def test_qat_errors_name_the_data_not_its_temp_copy(tmp_path, monkeypatch, one_torch_thread):
    """qat draws --data into a temporary calibration set; an error there names --data, not /tmp/edgekd-qat-data-*."""
    import edgekd.export.calib as calib
    from edgekd.errors import EdgekdError
    from edgekd.models import create_model, save_checkpoint

    save_checkpoint(tmp_path / "m.pt", create_model("mbf"), "mbf", {})

    def failing(source, out, *a, **k):
        raise EdgekdError(f"{out}: write failed (No space left on device); nothing was written")

    monkeypatch.setattr(calib, "make_calib", failing)
    line = error_line(invoke("qat", "--weights", tmp_path / "m.pt", "--data", "synthetic:2x2", "--out",
                             tmp_path / "q.onnx", "--steps", "1", "--quiet"))
    assert "--data synthetic:2x2: write failed" in line and "edgekd-qat-data" not in line
