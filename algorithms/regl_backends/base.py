"""The interface every ReGL generator implements, and the one way its pixels enter the dataset's space."""
from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F

from benchmarks.engine.api import TensorData

# ITU-R BT.601 luma weights: how an RGB image becomes one grey channel (PIL's "L" conversion uses them too).
LUMA = (0.299, 0.587, 0.114)


class ImageGenerator(Protocol):
    """Makes labelled images for one client at a time.

    ``prepare`` does the one-off work before the first client's images (training a generator, loading
    weights) and is timed apart from ``generate``. ``generate(counts, seed, local)`` returns about
    ``counts[c]`` images of every class ``c`` (fewer only where a backend says it can run out), ordered by
    class, normalised as the run's data, on the run's device, the same for the same ``seed``; ``local``
    is the client's own labelled data, which a backend may adapt to (LoRA) and must not return.
    ``caches`` says whether its images are worth keeping in checkpoints rather than made again on resume.
    """
    caches: bool

    def prepare(self) -> None: ...

    def generate(self, counts: torch.Tensor, seed: int, local: TensorData) -> TensorData: ...


def class_labels(counts: torch.Tensor, device) -> torch.Tensor:
    """``counts[c]`` copies of every label ``c``, in class order."""
    return torch.repeat_interleave(torch.arange(len(counts), device=device), counts.to(device))


def to_dataset_space(pixels: torch.Tensor, shape: tuple[int, int, int], mean, std) -> torch.Tensor:
    """Generated pixels in [0, 1], (N, C', H', W') -> the dataset's (N, C, H, W), as its own images arrive:
    grey (luma) or RGB as the dataset has them, resized with antialiasing, quantised to 8 bits (real images
    are uint8, and ReGL saves its images as files), then normalised with the dataset's statistics."""
    channels, height, width = shape
    x = pixels.float().clamp(0.0, 1.0)
    if x.shape[1] == 3 and channels == 1:
        x = sum(w * x[:, i:i + 1] for i, w in enumerate(LUMA))
    elif x.shape[1] == 1 and channels == 3:
        x = x.expand(-1, 3, -1, -1)
    elif x.shape[1] != channels:
        raise ValueError(f"generated images have {x.shape[1]} channels, the dataset {channels}")
    if tuple(x.shape[2:]) != (height, width):
        x = F.interpolate(x, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    x = torch.round(x.clamp(0.0, 1.0) * 255.0) / 255.0
    m = torch.tensor(mean, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s


def to_pixels(x: torch.Tensor, mean, std) -> torch.Tensor:
    """The dataset's normalised images back to pixels in [0, 1]."""
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x * s + m).clamp(0.0, 1.0)
