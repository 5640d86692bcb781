"""Differentiable augmentation: shapes, seeding, gradients and what each family does to an image."""
from __future__ import annotations

import math

import pytest
import torch

from algorithms import dsa
from algorithms.dsa import DSAParams

OPS = [dsa.brightness, dsa.saturation, dsa.contrast, dsa.crop, dsa.cutout, dsa.flip, dsa.scale, dsa.rotate]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(n=4, c=3, h=8, w=8, seed=1, dtype=torch.float32):
    return torch.randn(n, c, h, w, generator=gen(seed), dtype=dtype)


@pytest.mark.parametrize("op", OPS, ids=lambda f: f.__name__)
def test_each_op_keeps_shape_and_is_seeded(op):
    x = images(n=16)
    a, b = op(x, gen(5), DSAParams()), op(x, gen(5), DSAParams())
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b)
    assert not torch.equal(op(x, gen(6), DSAParams()), a)


@pytest.mark.parametrize("op", OPS, ids=lambda f: f.__name__)
def test_each_op_is_differentiable(op):
    x = images(n=2, c=2, h=5, w=5, dtype=torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: op(t, gen(3), DSAParams()), (x,))


def test_augment_mode_s_applies_exactly_one_family():
    x = images()
    for seed in range(12):
        out = dsa.augment(x, gen(seed))
        choice = gen(seed)
        names = dsa.STRATEGY.split("_")
        name = names[int(torch.randint(len(names), (1,), generator=choice).item())]
        expected = x
        for op in dsa.FAMILIES[name]:
            expected = op(expected, choice, DSAParams())
        assert torch.equal(out, expected), name


def test_augment_picks_every_family_and_is_seeded():
    x = images()
    outs = [dsa.augment(x, gen(seed)) for seed in range(40)]
    assert torch.equal(dsa.augment(x, gen(3)), outs[3])
    distinct = {tuple(o.flatten()[:6].tolist()) for o in outs}
    assert len(distinct) > 6


def test_augment_rejects_unknown_family():
    with pytest.raises(ValueError, match="'blur'"):
        dsa.augment(images(), gen(), strategy="flip_blur")


def test_augment_backpropagates_to_images():
    x = images().requires_grad_(True)
    dsa.augment(x, gen(2)).pow(2).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_flip_probability_extremes_and_mirror():
    x = images()
    assert torch.equal(dsa.flip(x, gen(), DSAParams(flip=1.0)), x.flip(3))
    assert torch.equal(dsa.flip(x, gen(), DSAParams(flip=0.0)), x)
    mixed = dsa.flip(images(n=64), gen(), DSAParams())
    flipped = [torch.equal(m, o.flip(2)) for m, o in zip(mixed, images(n=64))]
    assert 10 < sum(flipped) < 54


def test_zero_strength_geometry_is_identity():
    x = images()
    assert torch.allclose(dsa.rotate(x, gen(), DSAParams(rotate=0.0)), x, atol=1e-5)
    assert torch.allclose(dsa.scale(x, gen(), DSAParams(scale=1.0)), x, atol=1e-5)
    assert torch.equal(dsa.crop(x, gen(), DSAParams(crop=0.0)), x)


def disc(size=33, radius=10.0):
    coords = torch.arange(size, dtype=torch.float32) - size // 2
    return ((coords.view(-1, 1) ** 2 + coords.view(1, -1) ** 2) <= radius ** 2).float().view(1, 1, size, size)


def test_rotate_keeps_a_centred_disc_and_turns_a_bar():
    d = disc().repeat(8, 1, 1, 1)
    rotated = dsa.rotate(d, gen(), DSAParams())
    assert (rotated - d).abs().mean() < 0.02
    bar = torch.zeros(8, 1, 33, 33)
    bar[:, :, 16, 4:29] = 1.0
    turned = dsa.rotate(bar, gen(), DSAParams())
    rows_touched = (turned[0, 0].sum(1) > 0.05).sum()
    assert rows_touched > 1  # a horizontal bar no longer lies on one row
    assert abs(turned.sum() / bar.sum() - 1) < 0.1


def test_scale_changes_area_within_the_ratio():
    d = disc(radius=8.0).repeat(16, 1, 1, 1)
    scaled = dsa.scale(d, gen(), DSAParams())
    ratio = scaled.sum((1, 2, 3)) / d.sum((1, 2, 3))
    # factors in [1/1.2, 1.2] per axis change the area by 1 / (sx * sy), in [1/1.44, 1.44]
    assert (ratio > 1 / 1.44 - 0.05).all() and (ratio < 1.44 + 0.05).all()
    assert ratio.std() > 0.02


def test_crop_translates_by_whole_pixels_with_zero_fill():
    x = torch.rand(16, 1, 8, 8) + 1.0  # strictly positive, so zeros mark vacated pixels
    out = dsa.crop(x, gen(), DSAParams())
    shift = int(8 * 0.125 + 0.5)
    for orig, moved in zip(x, out):
        matches = [(dy, dx) for dy in range(-shift, shift + 1) for dx in range(-shift, shift + 1)
                   if torch.equal(moved, _shifted(orig, dy, dx))]
        assert len(matches) == 1


def _shifted(img: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    out = torch.zeros_like(img)
    h, w = img.shape[1:]
    for i in range(h):
        for j in range(w):
            if 0 <= i + dy < h and 0 <= j + dx < w:
                out[:, i, j] = img[:, i + dy, j + dx]
    return out


def test_cutout_zeroes_one_clipped_square_across_channels():
    x = torch.rand(32, 3, 8, 8) + 1.0
    out = dsa.cutout(x, gen(), DSAParams())
    side = int(8 * 0.5 + 0.5)
    for orig, cut in zip(x, out):
        zero = cut[0] == 0
        assert torch.equal(zero, cut[1] == 0) and torch.equal(zero, cut[2] == 0)
        rows, cols = zero.any(1).nonzero().flatten(), zero.any(0).nonzero().flatten()
        assert 1 <= len(rows) <= side and 1 <= len(cols) <= side
        assert zero.sum() == len(rows) * len(cols)  # a rectangle: the square clipped by the border
        assert torch.equal(cut[:, ~zero], orig[:, ~zero])
    full = sum(int((c[0] == 0).sum()) == side * side for c in out)
    assert full > 0


def test_colour_ops():
    x = images(n=16)
    grey = torch.randn(16, 1, 8, 8, generator=gen(4))
    assert torch.equal(dsa.saturation(grey, gen(), DSAParams()), grey)
    shift = dsa.brightness(x, gen(), DSAParams()) - x
    per_image = shift.flatten(1)
    assert torch.allclose(per_image, per_image[:, :1].expand_as(per_image))
    assert (per_image.abs() <= 0.5 + 1e-6).all()
    c = dsa.contrast(x, gen(), DSAParams())
    assert torch.allclose(c.mean((1, 2, 3)), x.mean((1, 2, 3)), atol=1e-5)
    factor = (c - c.mean((1, 2, 3), keepdim=True)).std((1, 2, 3)) / (x - x.mean((1, 2, 3), keepdim=True)).std((1, 2, 3))
    assert (factor >= 0.5 - 1e-4).all() and (factor <= 1.5 + 1e-4).all()


def test_every_family_keeps_float64():
    x = images(dtype=torch.float64)
    for name in dsa.FAMILIES:
        out = dsa.augment(x, gen(), strategy=name)
        assert out.dtype == torch.float64 and math.isfinite(out.sum().item())
