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
    import onnx

    model = (model or TinyFace()).eval()
    x = torch.zeros(batch or 2, 3, *size)
    torch.onnx.export(model, (x,), str(path), input_names=["input"], output_names=["embedding"],
                      dynamic_axes=None if batch else {"input": {0: "n"}, "embedding": {0: "n"}},
                      opset_version=17, dynamo=False)
    if metadata:
        m = onnx.load(str(path))
        for k, v in metadata.items():
            m.metadata_props.add(key=k, value=v)
        onnx.save(m, str(path))
    return path
