"""A tiny face-embedder look-alike (16x16 input) for the EVAL runtime tests: fast to run and to export."""

import torch
from torch import nn

from edgekd.preprocess import Preprocess

PRE = Preprocess(input_size=(16, 16), mean=(120.0, 110.0, 100.0), std=(60.0, 60.0, 60.0))


class TinyFace(nn.Module):
    preprocess = PRE
    embedding_size = 8

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 8 * 8, 8)

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))


def export_onnx(path, model=None, batch=None, metadata=None, size=(16, 16)):
    """torch.onnx.export (TorchScript exporter), optional fixed batch and edgekd metadata_props."""
    import warnings

    import onnx

    model = (model or TinyFace()).eval()
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


class PoolFace(nn.Module):
    """112x112 input, 12-d embedding of 2x2 average colours: enough to tell the synthetic identities apart."""

    preprocess = Preprocess()
    embedding_size = 12

    def forward(self, x):
        return nn.functional.adaptive_avg_pool2d(x, 2).flatten(1)


def make_lfw(root, folds=2, per=3, seed=0):
    """An LFW-format pairs.txt + aligned_112x112/ folder: identity k's faces share a random colour layout."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
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
