"""MTCNN's three networks (Zhang et al. 2016) as torch modules, loaded strict from facenet-pytorch 2.6.0's weight
files (`pnet.pt`, `rnet.pt`, `onet.pt`: plain state dicts; MIT licence; fetched by `make setup`, see
edgekd.detect.fetch). The weights were converted from TensorFlow, so R-Net and O-Net flatten their feature map in
(N, W, H, C) order (permute (0, 3, 2, 1)) before the dense layer; a different order loads but detects nothing.

Outputs are named tuples of arrays in the order the numpy pipeline (edgekd.detect.mtcnn) and the ONNX export use:
P-Net (reg, prob), R-Net (reg, prob), O-Net (reg, landmarks, prob); `prob` is the softmax over (non-face, face).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from edgekd.errors import EdgekdError
from edgekd.paths import mtcnn_weights_dir


class PNet(nn.Module):
    """Fully convolutional proposal net: 12x12 windows at stride 2 on each pyramid level."""

    outputs = ("reg", "prob")

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
        self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, 1)
        self.conv4_2 = nn.Conv2d(32, 4, 1)

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return self.conv4_2(x), torch.softmax(self.conv4_1(x), dim=1)


class RNet(nn.Module):
    """Refinement net on 24x24 crops."""

    outputs = ("reg", "prob")

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x)).permute(0, 3, 2, 1).reshape(x.shape[0], -1)
        x = self.prelu4(self.dense4(x))
        return self.dense5_2(x), torch.softmax(self.dense5_1(x), dim=1)


class ONet(nn.Module):
    """Output net on 48x48 crops: box regression, five landmarks (x1..x5, y1..y5 relative to the box), score."""

    outputs = ("reg", "landmarks", "prob")

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x)).permute(0, 3, 2, 1).reshape(x.shape[0], -1)
        x = self.prelu5(self.dense5(x))
        return self.dense6_2(x), self.dense6_3(x), torch.softmax(self.dense6_1(x), dim=1)


NETWORKS = {"pnet": PNet, "rnet": RNet, "onet": ONet}


def weights_file(network: str, folder: str | os.PathLike | None = None) -> Path:
    """The weight file of one network; a missing one is the one-line error that names the fix."""
    path = Path(folder) if folder is not None else mtcnn_weights_dir()
    path = path / f"{network}.pt"
    if not path.is_file():
        try:
            shown = path.resolve().relative_to(Path.cwd())
        except ValueError:
            shown = path
        raise EdgekdError(f"{shown}: MTCNN weights not found; run make setup")
    return path


def load_network(network: str, folder: str | os.PathLike | None = None) -> nn.Module:
    """One network in eval mode with its weights loaded strict (every key, every shape)."""
    if network not in NETWORKS:
        raise EdgekdError(f"unknown MTCNN network {network!r} ({', '.join(NETWORKS)})")
    path = weights_file(network, folder)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises pickle / zip / runtime errors for a damaged file
        raise EdgekdError(f"{path}: cannot load MTCNN weights ({str(e).splitlines()[0][:160]})") from None
    model = NETWORKS[network]()
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, AttributeError) as e:
        raise EdgekdError(f"{path}: not facenet-pytorch's {network} weights ({str(e).splitlines()[0][:160]})") from None
    return model.eval()


def load_networks(folder: str | os.PathLike | None = None) -> dict[str, nn.Module]:
    """{"pnet", "rnet", "onet"} -> loaded module."""
    return {name: load_network(name, folder) for name in NETWORKS}


def torch_callables(networks: dict[str, nn.Module]) -> dict:
    """The three networks as numpy -> numpy functions (no grad, float32): the PyTorch reference of the deployed
    pipeline, same weights, same numpy pre- and post-processing."""
    def wrap(net):
        def run(x):
            with torch.no_grad():
                return tuple(o.numpy() for o in net(torch.from_numpy(x)))
        return run

    return {name: wrap(net) for name, net in networks.items()}
