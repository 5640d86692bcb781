"""Classifiers shared by every algorithm.

Each model exposes ``features(x)`` and ``head(z)`` with ``forward = head(features(x))``: FedGen's
generator produces vectors in the head's input space, so the split point must be explicit. The defaults
carry no buffers (GroupNorm instead of BatchNorm): federated averaging then moves every bit of state,
and DynaFed's trajectory of ``parameters()`` is the whole model, as in the official code.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn
import torch.nn.functional as F



class _Pool2x2(torch.autograd.Function):
    """Mean of each 2x2 block of an even-sized map; its gradient is ``_Unpool2x2`` and vice versa.

    Autograd through four strided slices builds each slice's gradient as a zero-filled full-size map plus
    a copy, then adds the four: 25% of a DynaFed synthesis step (which differentiates that gradient
    again) went to filling, copying and adding. Here the gradient is one interleaving copy, and the two
    functions are each other's derivative, so any order of differentiation stays cheap. Forward values
    and first-order gradients are bitwise those of the slice form.
    """
    generate_vmap_rule = True  # the vectorised executor trains clients under torch.func.vmap

    @staticmethod
    def forward(x: torch.Tensor) -> torch.Tensor:
        return (x[..., 0::2, 0::2] + x[..., 1::2, 0::2] + x[..., 0::2, 1::2] + x[..., 1::2, 1::2]) * 0.25

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        pass

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return _Unpool2x2.apply(grad)


class _Unpool2x2(torch.autograd.Function):
    """Spreads a quarter of each value over its 2x2 block: the adjoint of ``_Pool2x2``."""
    generate_vmap_rule = True

    @staticmethod
    def forward(grad: torch.Tensor) -> torch.Tensor:
        quarter = grad * 0.25
        rows = torch.stack((quarter, quarter), dim=-1).flatten(-2)
        return torch.stack((rows, rows), dim=-2).flatten(-3, -2)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        pass

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return _Pool2x2.apply(grad)


class AvgPool2(nn.Module):
    """2x2 average pooling, stride 2 (floor on odd sizes), as ``nn.AvgPool2d(2)``.

    Four strided slices instead of ``avg_pool2d``: on our CPUs ``avg_pool2d`` and its backward took 28%
    of a ConvNet-32 training step, this form about half of that (same values up to float rounding).
    The gradient is written by hand (``_Pool2x2``) for DynaFed's second-order synthesis."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2], x.shape[-1]
        if h % 2 or w % 2:  # a full-size slice would still cost a zero-filled gradient, so crop only when odd
            x = x[..., :h - h % 2, :w - w % 2]
        return _Pool2x2.apply(x)


class ConvNet(nn.Module):
    """The DynaFed ConvNet: depth x [conv3x3 -> instance norm -> ReLU -> avgpool 2] -> linear.

    "Instance norm" is GroupNorm with one group per channel (affine), as in the official code.
    A 28x28 input gets padding 3 on the first conv so the feature map matches a 32x32 input.
    """

    def __init__(self, in_shape: tuple[int, int, int], num_classes: int, width: int = 128, depth: int = 3):
        super().__init__()
        channels, height, width_px = in_shape
        first_pad = 3 if (height, width_px) == (28, 28) else 1
        layers: list[nn.Module] = []
        size = height + 2 * (first_pad - 1)
        for i in range(depth):
            layers += [
                nn.Conv2d(channels if i == 0 else width, width, 3, padding=first_pad if i == 0 else 1),
                nn.GroupNorm(width, width, affine=True),
                nn.ReLU(inplace=True),
                AvgPool2(),
            ]
            size //= 2
        if size < 1:
            raise ValueError(f"model.depth: {depth} pools a {height}x{width_px} input to nothing; use a smaller depth")
        self.body = nn.Sequential(*layers)
        self.feature_dim = width * size * size
        self.classifier = nn.Linear(self.feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).flatten(1)

    def head(self, z: torch.Tensor) -> torch.Tensor:
        return self.classifier(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class FedAvgCNN(nn.Module):
    """McMahan et al.'s CNN: conv5x5(32) -> pool -> conv5x5(64) -> pool -> fc512 -> fc classes.

    The head is the last linear layer only; fc512 + ReLU belong to the features.
    """

    def __init__(self, in_shape: tuple[int, int, int], num_classes: int, width: int = 32):
        super().__init__()
        channels, height, width_px = in_shape
        self.conv1 = nn.Conv2d(channels, width, 5, padding=2)
        self.conv2 = nn.Conv2d(width, 2 * width, 5, padding=2)
        flat = 2 * width * (height // 4) * (width_px // 4)
        self.fc = nn.Linear(flat, 512)
        self.feature_dim = 512
        self.classifier = nn.Linear(512, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return F.relu(self.fc(x.flatten(1)))

    def head(self, z: torch.Tensor) -> torch.Tensor:
        return self.classifier(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _group_norm(channels: int) -> nn.GroupNorm:
    # 32 groups is the usual GroupNorm choice; small widths fall back to one group per 2+ channels.
    return nn.GroupNorm(min(32, max(1, channels // 2)), channels)


class _BasicBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.norm1 = _group_norm(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.norm2 = _group_norm(out_ch)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), _group_norm(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18GN(nn.Module):
    """ResNet-18 (CIFAR stem: 3x3 conv, no max-pool) with GroupNorm instead of BatchNorm."""

    def __init__(self, in_shape: tuple[int, int, int], num_classes: int, width: int = 64):
        super().__init__()
        channels = in_shape[0]
        self.stem = nn.Sequential(nn.Conv2d(channels, width, 3, 1, 1, bias=False), _group_norm(width), nn.ReLU())
        blocks: list[nn.Module] = []
        in_ch = width
        for stage, mult in enumerate((1, 2, 4, 8)):
            out_ch = width * mult
            for b in range(2):
                blocks.append(_BasicBlock(in_ch, out_ch, 2 if (b == 0 and stage > 0) else 1))
                in_ch = out_ch
        self.blocks = nn.Sequential(*blocks)
        self.feature_dim = in_ch
        self.classifier = nn.Linear(in_ch, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(self.blocks(self.stem(x)), 1).flatten(1)

    def head(self, z: torch.Tensor) -> torch.Tensor:
        return self.classifier(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


# The model registry: name -> builder(in_shape, num_classes, width, depth). Config choices come from it,
# so a new architecture is a class and one registration here.
MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str, builder: Callable[..., nn.Module]) -> None:
    if name in MODELS and MODELS[name] is not builder:
        raise RuntimeError(f"model {name!r} registered twice")
    MODELS[name] = builder


register_model("convnet", lambda shape, classes, width, depth: ConvNet(shape, classes, width=width, depth=depth))
register_model("cnn", lambda shape, classes, width, depth: FedAvgCNN(shape, classes, width=width))
register_model("resnet18", lambda shape, classes, width, depth: ResNet18GN(shape, classes, width=width))
MODEL_NAMES = tuple(MODELS)


def build_model(name: str, in_shape: tuple[int, int, int], num_classes: int, width: int, depth: int) -> nn.Module:
    """Build a model by config name; ``width`` is the conv width (channels of the first stage)."""
    if name not in MODELS:
        raise ValueError(f"model.name: {name!r} is not one of {', '.join(MODELS)}")
    return MODELS[name](in_shape, num_classes, width, depth)
