"""The tests' one tiny-model factory: every small face model, ONNX graph, registered model name and synthetic LFW
folder the tests build comes from here (milliseconds on a CPU). torch is imported only by the torch kinds, so
`tiny_onnx`, `faces` and `make_lfw` also work where torch is blocked or absent.

torch modules, `tiny_model(kind, **options)` (each has `preprocess` and `embedding_size`, like a registry model):

  "pool"      112x112 -> the 2x2 average colours (12-d; `dim` keeps the first dim), no weights: tells make_lfw's
              identities apart
  "small"     16x16 conv-BN-ReLU-linear, 8-d, seeded: the runtime tests (fast to run and to export)
  "bench"     16x16 conv 3x3 (3->4, no bias)-ReLU-mean-linear (4->8, no bias): the torch twin of
              tiny_onnx(kind="conv") (same multiply-adds, tiny_macs())
  "convface"  112x112, six conv-BN-PReLU + GAP + linear + BN1d, 16-d, seeded: the INT8 gate / QAT tests
  "relu6res"  112x112, MobileFaceNet's conv -> ReLU6 and residual Add pattern, 16-d: the Q/DQ placement test
  "gdc"       FaceEmbedder with MobileFaceNet's head (conv body, GDC, flatten, FC, BN1d), 32-d: the export tests
  "distill"   FaceEmbedder with a stride-8 stem (embedding_size, channels, stride): the distillation tests

`register_tiny("gdc" | "distill")` puts a kind in edgekd's model registry (for `create_model` and `--model`) and
returns its name. `export_onnx` writes a torch kind with torch.onnx.export, `export_edgekd` with edgekd's exporter.

ONNX graphs built with onnx.helper, `tiny_onnx(path, kind=..., ...)`, N x 3 x H x W -> N x dim with edgekd metadata:

  "gap"    GlobalAveragePool-Flatten-Gemm, 112x112 (the TensorRT tests: build, sidecar, runtime)
  "conv"   one Conv 3x3-Relu in front, 16x16 (bench and report: a real conv to time and count)
  "conv3"  three Conv 3x3-Relu in front, 112x112 (the exporter's quantizer keeps the first conv and the tail in
           float, so only this body gets Q/DQ nodes)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

ONNX_KINDS = {"gap": (0, 112), "conv": (1, 16), "conv3": (3, 112)}  # kind -> (convs, default size)
REGISTERED = {"gdc": "edgekd_test_tiny", "distill": "distill_tiny"}


# ---- torch modules ------------------------------------------------------------------------------------------------

def _classes() -> dict:
    """The torch kinds, defined on first use (torch is imported here only)."""
    global _CLASSES
    if _CLASSES is not None:
        return _CLASSES
    import torch
    from torch import nn

    from edgekd.models.base import FaceEmbedder
    from edgekd.preprocess import Preprocess

    class PoolFace(nn.Module):
        preprocess = Preprocess()

        def __init__(self, dim: int = 12):
            super().__init__()
            self.embedding_size = dim

        def forward(self, x):
            return nn.functional.adaptive_avg_pool2d(x, 2).flatten(1)[:, :self.embedding_size]

    class SmallFace(nn.Module):
        preprocess = Preprocess(input_size=(16, 16), mean=(120.0, 110.0, 100.0), std=(60.0, 60.0, 60.0))
        embedding_size = 8

        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)
            self.bn = nn.BatchNorm2d(4)
            self.fc = nn.Linear(4 * 8 * 8, 8)

        def forward(self, x):
            return self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))

    class BenchFace(nn.Module):
        preprocess = Preprocess(input_size=(16, 16))
        embedding_size = 8

        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
            self.fc = nn.Linear(4, 8, bias=False)

        def forward(self, x):
            return self.fc(torch.relu(self.conv(x)).mean((2, 3)))

    class ConvFace(nn.Module):
        """Six convs (BN, PReLU) + GAP + linear + BN1d: enough layers for float fallback and fake quantization."""

        preprocess = Preprocess()
        embedding_size = 16

        def __init__(self, seed: int = 0):
            super().__init__()
            torch.manual_seed(seed)
            chans = [3, 8, 16, 16, 32, 32, 32]
            layers = []
            for i, (a, b) in enumerate(zip(chans, chans[1:])):
                layers += [nn.Conv2d(a, b, 3, stride=2 if i < 5 else 1, padding=1, bias=False), nn.BatchNorm2d(b),
                           nn.PReLU(b)]
            self.features = nn.Sequential(*layers)
            self.fc = nn.Linear(32, 16, bias=False)
            self.bn = nn.BatchNorm1d(16)

        def forward(self, x):
            return self.bn(self.fc(self.features(x).mean((2, 3))))

    class ResidualReLU6(nn.Module):
        """MobileFaceNet's pattern: conv -> ReLU6, a residual Add, then more convs (what ORT's default placement
        splits)."""

        preprocess = Preprocess()
        embedding_size = 16

        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.c = nn.ModuleList([nn.Conv2d(3, 8, 3, 2, 1)] + [nn.Conv2d(8, 8, 3, 1, 1) for _ in range(3)])
            self.act = nn.ReLU6()
            self.fc = nn.Linear(8, 16)

        def forward(self, x):
            x = self.act(self.c[0](x))
            y = self.act(self.c[1](x))
            x = x + self.c[2](y)
            return self.fc(self.act(self.c[3](x)).mean((2, 3)))

    class GdcFace(FaceEmbedder):
        """MobileFaceNet's head structure on a two-conv body (a real mobilefacenet takes over a minute to export)."""

        embedding_size = 32

        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.PReLU(8),
                                      nn.Conv2d(8, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.PReLU(16))
            self.gdc = nn.Conv2d(16, 16, 28, groups=16)
            self.fc = nn.Linear(16, 32)
            self.bn = nn.BatchNorm1d(32)

        def forward_features(self, x):
            return self.body(x)

        def forward_head(self, fmap):
            return self.bn(self.fc(self.gdc(fmap).flatten(1)))

    class DistillFace(FaceEmbedder):
        """112x112 input like real data, but a stride-8 stem so a CPU step takes milliseconds; `stride` changes
        the feature-map size (for the conv-discriminator mismatch case)."""

        def __init__(self, embedding_size: int = 16, channels: int = 8, stride: int = 2):
            super().__init__()
            self.embedding_size = embedding_size
            self.stem = nn.Sequential(nn.Conv2d(3, channels, 8, stride=8), nn.BatchNorm2d(channels),
                                      nn.PReLU(channels))
            self.body = nn.Sequential(nn.Conv2d(channels, channels, 3, stride=stride, padding=1),
                                      nn.BatchNorm2d(channels))
            size = 14 // stride if stride > 1 else 14
            self.fc = nn.Linear(channels * size * size, embedding_size)

        def forward_features(self, x):
            return self.body(self.stem(x))

        def forward_head(self, fmap):
            return self.fc(fmap.flatten(1))

    _CLASSES = {"pool": PoolFace, "small": SmallFace, "bench": BenchFace, "convface": ConvFace,
                "relu6res": ResidualReLU6, "gdc": GdcFace, "distill": DistillFace}
    return _CLASSES


_CLASSES = None


def tiny_class(kind: str):
    """The class of a torch kind (for its `preprocess` without building one)."""
    classes = _classes()
    if kind not in classes:
        raise ValueError(f"unknown tiny model kind {kind!r}; known: {', '.join(classes)}")
    return classes[kind]


def tiny_model(kind: str = "small", **options):
    """A fresh torch module of `kind` (see the module docstring), in train mode like any new nn.Module."""
    return tiny_class(kind)(**options)


def register_tiny(kind: str) -> str:
    """Register "gdc" or "distill" in edgekd's model registry (once per process); returns the registered name."""
    from edgekd.models import list_models, register_model

    name = REGISTERED[kind]
    if name not in list_models():
        if kind == "distill":
            def build(embedding_size: int = 16, channels: int = 8, stride: int = 2):
                return tiny_model("distill", embedding_size=embedding_size, channels=channels, stride=stride)
        else:
            def build():
                return tiny_model(kind)
        register_model(name)(build)
    return name


def export_onnx(path, model=None, batch=None, metadata=None, size=(16, 16)):
    """torch.onnx.export (TorchScript exporter) of `model` (default: a "small" one): dynamic batch unless `batch`
    fixes it, `metadata` added as metadata_props as given (full keys, e.g. "edgekd.model")."""
    import warnings

    import onnx
    import torch

    model = (model or tiny_model("small")).eval()
    x = torch.zeros(batch or 2, 3, *size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter is deprecated, still fine here
        torch.onnx.export(model, (x,), str(path), input_names=["input"], output_names=["embedding"],
                          dynamic_axes=None if batch else {"input": {0: "n"}, "embedding": {0: "n"}},
                          opset_version=17, dynamo=False)
    if metadata:
        m = onnx.load(str(path))
        for k, v in metadata.items():
            m.metadata_props.add(key=k, value=v)
        onnx.save(m, str(path))
    return path


def export_edgekd(path, model=None):
    """ONNX via edgekd's exporter with edgekd metadata (default: a "convface"), so runtimes read the
    preprocessing."""
    from edgekd.export.onnx_export import export_onnx as edgekd_export

    model = (model or tiny_model("convface")).eval()
    meta = {"model": "convface", "method": "vanilla", "precision": "fp32", "embedding_size": model.embedding_size,
            "preprocess": model.preprocess.to_dict()}
    edgekd_export(model, path, meta, tuple(model.preprocess.input_size), 17, False)
    return path


# ---- ONNX graphs (no torch) ---------------------------------------------------------------------------------------

def tiny_onnx(path, *, kind: str = "gap", precision: str = "fp32", size=None, dim: int = 8, channels: int = 4,
              out_rank: int = 2, seed: int = 0, preprocess=None, metadata: dict | None = None) -> Path:
    """An ONNX face-model-shaped graph of `kind` ("gap", "conv", "conv3"; module docstring): input "input"
    N x 3 x H x W (`size`: int or (H, W), default per kind), output "embedding" N x dim (N x dim x 1 with
    out_rank=3: not a face model). edgekd metadata: model "tiny", method "vanilla", `precision`, `preprocess`
    (default: ArcFace normalisation at the input size; another size makes the file not a face model), plus
    `metadata` (keys without the "edgekd." prefix)."""
    from onnx import TensorProto, helper

    from edgekd.export import graph
    from edgekd.preprocess import Preprocess

    if kind not in ONNX_KINDS:
        raise ValueError(f"unknown tiny ONNX kind {kind!r}; known: {', '.join(ONNX_KINDS)}")
    convs, default = ONNX_KINDS[kind]
    size = default if size is None else size
    h, w = (size, size) if isinstance(size, int) else size
    rng = np.random.default_rng(seed)
    inits, nodes, prev, ch = [], [], "input", 3
    for i in range(convs):
        inits.append(helper.make_tensor(f"cw{i}", TensorProto.FLOAT, [channels, ch, 3, 3],
                                        rng.normal(scale=0.3, size=(channels, ch, 3, 3)).astype(np.float32).ravel()))
        nodes += [helper.make_node("Conv", [prev, f"cw{i}"], [f"c{i}"], name=f"conv{i}", pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"relu{i}")]
        prev, ch = f"r{i}", channels
    nodes += [helper.make_node("GlobalAveragePool", [prev], ["p"], name="gap"),
              helper.make_node("Flatten", ["p"], ["f"], name="flat"),
              helper.make_node("Gemm", ["f", "W"], ["embedding"], name="fc")]
    inits.append(helper.make_tensor("W", TensorProto.FLOAT, [ch, dim], rng.normal(size=(ch, dim)).astype(np.float32)
                                    .ravel()))
    out_shape = ["batch", dim] if out_rank == 2 else ["batch", dim, 1]
    g = helper.make_graph(nodes, f"tiny_{kind}",
                          [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, h, w])],
                          [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, out_shape)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    graph.set_metadata(m, {"model": "tiny", "method": "vanilla", "precision": precision, "embedding_size": dim,
                           "preprocess": (preprocess or Preprocess(input_size=(h, w))).to_dict(), **(metadata or {})})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    graph.save(m, path)
    return path


def tiny_macs(size: int = 16, channels: int = 4, dim: int = 8) -> int:
    """Multiply-adds of tiny_onnx(kind="conv") and tiny_model("bench"): the conv and the linear layer."""
    return size * size * channels * 3 * 3 * 3 + dim * channels


# ---- inputs and data ----------------------------------------------------------------------------------------------

def faces(n: int, seed: int = 0, size: int = 112) -> np.ndarray:
    """n preprocessed-looking inputs (uniform in [-1, 1]), N x 3 x size x size float32."""
    return np.random.default_rng(seed).uniform(-1, 1, size=(n, 3, size, size)).astype(np.float32)


def make_lfw(root, folds=2, per=3, seed=0):
    """An LFW-format pairs.txt + aligned_112x112/ folder: identity k's faces share a random colour layout."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    names = [f"Person_{k}" for k in range(folds * per + 1)]
    for name in names:
        base = rng.integers(0, 256, size=(2, 2, 3))
        for i in (1, 2):
            img = np.kron(base, np.ones((56, 56, 1))) + rng.normal(0, 8, size=(112, 112, 3))
            (root / "aligned_112x112" / name).mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(
                root / "aligned_112x112" / name / f"{name}_{i:04d}.jpg", quality=95)
    lines = [f"{folds}\t{per}"]
    for f in range(folds):
        ids = names[f * per:(f + 1) * per]
        lines += [f"{n}\t1\t2" for n in ids]
        lines += [f"{n}\t1\t{names[(names.index(n) + 1) % len(names)]}\t2" for n in ids]
    (root / "pairs.txt").write_text("\n".join(lines) + "\n")
    return root / "pairs.txt"
