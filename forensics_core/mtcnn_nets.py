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


#: each network's conv blocks as (in, out, kernel, max-pool (kernel, stride) or None): conv -> PReLU -> pool
PNET_BLOCKS = ((3, 10, 3, (2, 2)), (10, 16, 3, None), (16, 32, 3, None))
RNET_BLOCKS = ((3, 28, 3, (3, 2)), (28, 48, 3, (3, 2)), (48, 64, 2, None))
ONET_BLOCKS = ((3, 32, 3, (3, 2)), (32, 64, 3, (3, 2)), (64, 64, 3, (2, 2)), (64, 128, 2, None))


class _ConvTrunk(nn.Module):
    """The conv blocks of one network, named ``conv{i}`` / ``prelu{i}`` / ``pool{i}`` as the weight files are."""

    def __init__(self, blocks: tuple[tuple[int, int, int, tuple[int, int] | None], ...]) -> None:
        super().__init__()
        self.depth = len(blocks)
        for i, (cin, cout, kernel, pool) in enumerate(blocks, 1):
            self.add_module(f"conv{i}", nn.Conv2d(cin, cout, kernel_size=kernel))
            self.add_module(f"prelu{i}", nn.PReLU(cout))
            if pool:
                self.add_module(f"pool{i}", nn.MaxPool2d(*pool, ceil_mode=True))

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(1, self.depth + 1):
            x = getattr(self, f"prelu{i}")(getattr(self, f"conv{i}")(x))
            pool = getattr(self, f"pool{i}", None)
            x = pool(x) if pool is not None else x
        return x


class PNet(_ConvTrunk):
    """Proposal network: fully convolutional, run on every pyramid level (box offsets, face probability maps)."""

    def __init__(self) -> None:
        super().__init__(PNET_BLOCKS)
        self.conv4_1 = nn.Conv2d(32, 2, kernel_size=1)
        self.softmax4_1 = nn.Softmax(dim=1)
        self.conv4_2 = nn.Conv2d(32, 4, kernel_size=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.trunk(x)
        return self.conv4_2(x), self.softmax4_1(self.conv4_1(x))


class _Refiner(_ConvTrunk):
    """R-Net / O-Net: the conv trunk, one hidden dense layer on it (flattened in the (W, H, C) order of the original
    Caffe weights), then dense heads: ``dense{k}_1`` the face / non-face logits (softmaxed), ``dense{k}_2`` the box
    offsets, O-Net's ``dense{k}_3`` the five landmarks. Outputs: the heads after the first, then the probabilities."""

    def __init__(self, blocks: tuple, flat: int, hidden: int, heads: tuple[int, ...]) -> None:
        super().__init__(blocks)
        k = self.depth + 1
        self.add_module(f"dense{k}", nn.Linear(flat, hidden))
        self.add_module(f"prelu{k}", nn.PReLU(hidden))
        for j, size in enumerate(heads, 1):
            self.add_module(f"dense{k + 1}_{j}", nn.Linear(hidden, size))
        self.add_module(f"softmax{k + 1}_1", nn.Softmax(dim=1))
        self.n_heads = len(heads)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        k = self.depth + 1
        x = self.trunk(x).permute(0, 3, 2, 1).contiguous()
        x = getattr(self, f"prelu{k}")(getattr(self, f"dense{k}")(x.view(x.shape[0], -1)))
        rest = tuple(getattr(self, f"dense{k + 1}_{j}")(x) for j in range(2, self.n_heads + 1))
        return (*rest, getattr(self, f"softmax{k + 1}_1")(getattr(self, f"dense{k + 1}_1")(x)))


class RNet(_Refiner):
    """Refinement network on 24 px candidate crops: (box offsets, face probability)."""

    def __init__(self) -> None:
        super().__init__(RNET_BLOCKS, flat=576, hidden=128, heads=(2, 4))


class ONet(_Refiner):
    """Output network on 48 px crops: (box offsets, five landmarks, face probability)."""

    def __init__(self) -> None:
        super().__init__(ONET_BLOCKS, flat=1152, hidden=256, heads=(2, 4, 10))


NETS: dict[str, type[nn.Module]] = {"PNet": PNet, "RNet": RNet, "ONet": ONet}


def build(name: str) -> nn.Module:
    """``PNet`` / ``RNet`` / ``ONet`` with the wheel's weights, in eval mode on the CPU."""
    net = NETS[name]()
    net.load_state_dict(torch.load(weights_file(name.lower()), map_location="cpu", weights_only=True))
    return net.eval()
