"""A small conv embedder on 112x112 faces and synthetic identities for the INT8 gate / QAT tests (seconds, CPU)."""

import json

import numpy as np
import torch
from torch import nn

from edgekd.preprocess import Preprocess


class ConvFace(nn.Module):
    """Six convs (BN, PReLU) + GAP + linear + BN1d: enough layers for float fallback and fake quantization."""

    preprocess = Preprocess()
    embedding_size = 16

    def __init__(self, seed=0):
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


def export(path, model=None):
    """ONNX via edgekd's exporter with edgekd metadata, so runtimes read the preprocessing."""
    from edgekd.export.onnx_export import export_onnx

    model = (model or ConvFace()).eval()
    meta = {"model": "convface", "method": "vanilla", "precision": "fp32", "embedding_size": 16,
            "preprocess": model.preprocess.to_dict()}
    export_onnx(model, path, meta, (112, 112), 17, False)
    return path
