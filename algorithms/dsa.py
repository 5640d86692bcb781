"""Differentiable Siamese Augmentation (Zhao & Bilen, 2021) as DynaFed's official code configures it.

DynaFed learns synthetic images by backpropagating through training steps on augmented copies of them,
so every augmentation here is differentiable with respect to the images (the random parameters are not
learned). DynaFed uses strategy ``color_crop_cutout_flip_scale_rotate`` in mode 'S': each call picks
ONE family at random and applies it with per-sample random parameters; the 'color' family applies
brightness, saturation and contrast together. All randomness comes from the ``torch.Generator`` passed
in, so a seeded generator reproduces an augmentation exactly.

Geometric families follow the official conventions: scale and rotate resample with
``affine_grid``/``grid_sample`` (bilinear, zero padding, ``align_corners=True``); crop is an integer
translation with zero fill; cutout zeroes one square per image across all channels. On 1-channel images
saturation is a no-op (the channel mean is the pixel itself), as in the official code.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

STRATEGY = "color_crop_cutout_flip_scale_rotate"


@dataclass(frozen=True)
class DSAParams:
    """Strengths of each augmentation (DynaFed's values, from the official ``ParamDiffAug``)."""
    flip: float = 0.5        # probability of a horizontal flip
    scale: float = 1.2       # per-axis scale factor drawn from [1/scale, scale]
    rotate: float = 15.0     # angle drawn from [-rotate, rotate] degrees
    crop: float = 0.125      # translation of up to this fraction of the side (zero fill)
    cutout: float = 0.5      # side of the zeroed square as a fraction of the image side
    brightness: float = 1.0  # additive shift drawn from [-brightness/2, brightness/2]
    saturation: float = 2.0  # colour deviation scaled by a factor drawn from [0, saturation]
    contrast: float = 0.5    # deviation from the image mean scaled by a factor from [contrast, 1 + contrast]


def _uniform(n: int, gen: torch.Generator, like: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """``n`` draws from U[low, high), one per sample, in ``like``'s dtype and device."""
    u = torch.rand(n, generator=gen, device=gen.device, dtype=like.dtype).to(like.device)
    return low + (high - low) * u


def _randint(low: int, high: int, n: int, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    """``n`` integers from [low, high] inclusive."""
    return torch.randint(low, high + 1, (n,), generator=gen, device=gen.device).to(device)


def brightness(x: torch.Tensor, gen: torch.Generator, p: DSAParams) -> torch.Tensor:
    shift = _uniform(len(x), gen, x, -0.5 * p.brightness, 0.5 * p.brightness)
    return x + shift.view(-1, 1, 1, 1)


def saturation(x: torch.Tensor, gen: torch.Generator, p: DSAParams) -> torch.Tensor:
    factor = _uniform(len(x), gen, x, 0.0, p.saturation).view(-1, 1, 1, 1)
    grey = x.mean(dim=1, keepdim=True)
    return (x - grey) * factor + grey


def contrast(x: torch.Tensor, gen: torch.Generator, p: DSAParams) -> torch.Tensor:
    factor = _uniform(len(x), gen, x, p.contrast, 1.0 + p.contrast).view(-1, 1, 1, 1)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * factor + mean


def flip(x: torch.Tensor, gen: torch.Generator, p: DSAParams) -> torch.Tensor:
    chosen = _uniform(len(x), gen, x, 0.0, 1.0) < p.flip
    return torch.where(chosen.view(-1, 1, 1, 1), x.flip(3), x)


def _resample(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    grid = F.affine_grid(theta, list(x.shape), align_corners=True)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def scale(x: torch.Tensor, gen: torch.Generator, p: DSAParams) -> torch.Tensor:
    """Independent x and y factors: a factor > 1 samples a wider window, so the content shrinks."""
    n = len(x)
    sx = _uniform(n, gen, x, 1.0 / p.scale, p.scale)
    sy = _uniform(n, gen, x, 1.0 / p.scale, p.scale)
    zero = torch.zeros_like(sx)
    theta = torch.stack([torch.stack([sx, zero, zero], 1), torch.stack([zero, sy, zero], 1)], 1)
    return _resample(x, theta)


def rotate(x: torch.Tensor, gen: torch.Generator, p: DSAParams) -> torch.Tensor:
    angle = _uniform(len(x), gen, x, -p.rotate, p.rotate) * (math.pi / 180.0)
    cos, sin, zero = angle.cos(), angle.sin(), torch.zeros_like(angle)
    theta = torch.stack([torch.stack([cos, sin, zero], 1), torch.stack([-sin, cos, zero], 1)], 1)
    return _resample(x, theta)


def crop(x: torch.Tensor, gen: torch.Generator, p: DSAParams) -> torch.Tensor:
    """Shift each image by whole pixels (up to ``crop`` of its side per axis); vacated pixels are 0.

    Implemented as a gather from a 1-pixel zero-padded copy with clamped indices: any index that
    falls outside the image lands on the zero border.
    """
    n, _, h, w = x.shape
    dy = _randint(-int(h * p.crop + 0.5), int(h * p.crop + 0.5), n, gen, x.device)
    dx = _randint(-int(w * p.crop + 0.5), int(w * p.crop + 0.5), n, gen, x.device)
    rows = (torch.arange(h, device=x.device) + dy.view(-1, 1) + 1).clamp(0, h + 1)
    cols = (torch.arange(w, device=x.device) + dx.view(-1, 1) + 1).clamp(0, w + 1)
    padded = F.pad(x, (1, 1, 1, 1)).permute(0, 2, 3, 1)
    batch = torch.arange(n, device=x.device).view(-1, 1, 1)
    return padded[batch, rows.view(n, h, 1), cols.view(n, 1, w)].permute(0, 3, 1, 2)


def cutout(x: torch.Tensor, gen: torch.Generator, p: DSAParams) -> torch.Tensor:
    """Zero one square of side ``cutout`` * side per image, centred anywhere and clipped to the image."""
    n, _, h, w = x.shape
    size_h, size_w = int(h * p.cutout + 0.5), int(w * p.cutout + 0.5)
    top = _randint(0, h - size_h % 2, n, gen, x.device) - size_h // 2
    left = _randint(0, w - size_w % 2, n, gen, x.device) - size_w // 2
    rows = torch.arange(h, device=x.device).view(1, h, 1) - top.view(-1, 1, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w) - left.view(-1, 1, 1)
    inside = (rows >= 0) & (rows < size_h) & (cols >= 0) & (cols < size_w)
    return x * (~inside).unsqueeze(1).to(x.dtype)


FAMILIES: dict[str, tuple[Callable, ...]] = {
    "color": (brightness, saturation, contrast),
    "crop": (crop,),
    "cutout": (cutout,),
    "flip": (flip,),
    "scale": (scale,),
    "rotate": (rotate,),
}


def augment(x: torch.Tensor, gen: torch.Generator, strategy: str = STRATEGY,
            params: DSAParams = DSAParams()) -> torch.Tensor:
    """Mode 'S': apply one family of ``strategy`` (names joined by '_'), chosen uniformly at random."""
    names = strategy.split("_")
    unknown = [name for name in names if name not in FAMILIES]
    if unknown:
        raise ValueError(f"DSA strategy: {unknown[0]!r} is not one of {', '.join(FAMILIES)}")
    name = names[int(torch.randint(len(names), (1,), generator=gen, device=gen.device).item())]
    for op in FAMILIES[name]:
        x = op(x, gen, params)
    return x
