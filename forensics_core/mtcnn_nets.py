"""MTCNN's three networks (Zhang et al. 2016), built here and loaded with the weights the facenet-pytorch wheel ships.

Why not ``facenet_pytorch.models.mtcnn``: importing that package imports torchvision's models and ops, and through
them ``torch._dynamo``: 1.5-3 s of every scanner process's start (``python -X importtime``), for three networks of
a dozen layers. The wheel's ``data/{pnet,rnet,onet}.pt`` files (plain state dicts) are found without importing the
package, and the layers below carry the same names, so the same tensors load and every output is the same.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import nn

from forensics_core.errors import UsageError


def weights_file(name: str) -> Path:
    """``facenet_pytorch/data/<name>.pt`` inside the installed wheel, located without importing the package."""
    spec = importlib.util.find_spec("facenet_pytorch")
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        path = Path(folder) / "data" / f"{name}.pt"
        if path.is_file():
            return path
    raise UsageError(f"MTCNN weights '{name}.pt' not found: install facenet-pytorch (pip install facenet-pytorch)")


def _conv(cin: int, cout: int, k: int) -> tuple[nn.Conv2d, nn.PReLU]:
    return nn.Conv2d(cin, cout, kernel_size=k), nn.PReLU(cout)


def _caffe_flat(x: torch.Tensor) -> torch.Tensor:
    """Flattened in the (W, H, C) order the original Caffe weights' dense layers expect."""
    return x.permute(0, 3, 2, 1).contiguous().view(x.shape[0], -1)


class PNet(nn.Module):
    """Proposal network: fully convolutional, run on every pyramid level (box offsets, face probability maps)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = _conv(3, 10, 3)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2, self.prelu2 = _conv(10, 16, 3)
        self.conv3, self.prelu3 = _conv(16, 32, 3)
        self.conv4_1 = nn.Conv2d(32, 2, kernel_size=1)
        self.softmax4_1 = nn.Softmax(dim=1)
        self.conv4_2 = nn.Conv2d(32, 4, kernel_size=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return self.conv4_2(x), self.softmax4_1(self.conv4_1(x))


class RNet(nn.Module):
    """Refinement network on 24 px candidate crops (box offsets, face probability)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = _conv(3, 28, 3)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = _conv(28, 48, 3)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = _conv(48, 64, 2)
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.softmax5_1 = nn.Softmax(dim=1)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu4(self.dense4(_caffe_flat(self.prelu3(self.conv3(x)))))
        return self.dense5_2(x), self.softmax5_1(self.dense5_1(x))


class ONet(nn.Module):
    """Output network on 48 px crops (box offsets, five landmarks, face probability)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = _conv(3, 32, 3)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = _conv(32, 64, 3)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = _conv(64, 64, 3)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4, self.prelu4 = _conv(64, 128, 2)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.softmax6_1 = nn.Softmax(dim=1)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu5(self.dense5(_caffe_flat(self.prelu4(self.conv4(x)))))
        return self.dense6_2(x), self.dense6_3(x), self.softmax6_1(self.dense6_1(x))


NETS: dict[str, type[nn.Module]] = {"PNet": PNet, "RNet": RNet, "ONet": ONet}


def build(name: str) -> nn.Module:
    """``PNet`` / ``RNet`` / ``ONet`` with the wheel's weights, in eval mode on the CPU."""
    net = NETS[name]()
    net.load_state_dict(torch.load(weights_file(name.lower()), map_location="cpu", weights_only=True))
    return net.eval()
