"""ReGL with a cheap stand-in for its foundation model: a small class-conditional VAE that the server
trains once, for a fixed step budget, on labelled public data disjoint from the clients.

Assumption (ours, not the paper's): the public data is a seeded draw from the server's reserve
(``ServerContext.reserve``, the labelled training images outside the run's ``train_subset`` that no
client, validation or proxy split holds), by default as many images as the run's unlabelled proxy split
holds. That is FedDF's kind and amount of server data (in-distribution, disjoint from every client) with
labels added, not the web-scale prior of ReGL's text-to-image model: this row shows what a weak generator
from modest public data adds, between FedAvg and the oracle. Every client receives samples of the same
generator (it is trained once, not per client), drawn with the client's own seed.

The VAE: two stride-2 convolutions encode (image, one-hot class) into a Gaussian latent; a linear layer
and two stride-2 transposed convolutions decode (latent, one-hot class) into sigmoid pixels; Bernoulli
(binary cross-entropy) reconstruction plus beta x KL, Adam, seeded batches and noise, and an
initialisation from its own seed, so the run's global random stream is untouched; the engine's flat Adam.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from algorithms.regl_backends.base import class_labels, to_dataset_space, to_pixels
from algorithms.regl_backends.oracle import reserve_needed
from benchmarks.engine.api import bind_flat, derive_seed, flat_grad, FlatOptimizer, ServerContext, TensorData


class ConditionalVAE(nn.Module):
    def __init__(self, shape: tuple[int, int, int], num_classes: int, width: int, latent: int):
        super().__init__()
        channels, height, wide = shape
        self.shape, self.num_classes, self.latent = shape, num_classes, latent
        # k=4, s=2, p=1 halves a side (rounding down): 28 -> 14 -> 7, 32 -> 16 -> 8.
        self.grid = (height // 4, wide // 4)
        cells = 2 * width * self.grid[0] * self.grid[1]
        self.encoder = nn.Sequential(nn.Conv2d(channels, width, 4, 2, 1), nn.ReLU(),
                                     nn.Conv2d(width, 2 * width, 4, 2, 1), nn.ReLU(), nn.Flatten())
        self.to_latent = nn.Linear(cells + num_classes, 2 * latent)
        self.from_latent = nn.Sequential(nn.Linear(latent + num_classes, cells), nn.ReLU())
        self.decoder = nn.Sequential(nn.ConvTranspose2d(2 * width, width, 4, 2, 1), nn.ReLU(),
                                     nn.ConvTranspose2d(width, channels, 4, 2, 1))
        self.width = width

    def encode(self, pixels: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.cat([self.encoder(pixels), F.one_hot(y, self.num_classes).to(pixels.dtype)], dim=1)
        mu, logvar = self.to_latent(h).chunk(2, dim=1)
        return mu, logvar

    def decode_logits(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.from_latent(torch.cat([z, F.one_hot(y, self.num_classes).to(z.dtype)], dim=1))
        logits = self.decoder(h.view(len(z), 2 * self.width, *self.grid))
        if tuple(logits.shape[2:]) != tuple(self.shape[1:]):  # sides not divisible by 4
            logits = F.interpolate(logits, size=self.shape[1:], mode="bilinear", align_corners=False)
        return logits


def vae_loss(model: ConditionalVAE, pixels: torch.Tensor, y: torch.Tensor, noise: torch.Tensor,
             beta: float) -> torch.Tensor:
    """Per-image negative ELBO: summed binary cross-entropy of the pixels plus beta x KL to N(0, I)."""
    mu, logvar = model.encode(pixels, y)
    z = mu + torch.exp(0.5 * logvar) * noise
    recon = F.binary_cross_entropy_with_logits(model.decode_logits(z, y), pixels, reduction="sum")
    kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return (recon + beta * kl) / len(pixels)


class ProxyGenerator:
    caches = True  # cheap to sample, but keeping the images spares a resume the generator's training

    def __init__(self, server: ServerContext, params):
        self.server, self.params = server, params
        self.model: ConditionalVAE | None = None
        self.train_images = 0

    def prepare(self) -> None:
        p, server = self.params, self.server
        reserve = reserve_needed(server, "regl_proxy")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(server.seed, "regl-proxy-init"))
            model = ConditionalVAE(server.input_shape, server.num_classes, p.vae_width, p.vae_latent)
        model = model.to(server.device)
        # The engine's flat Adam (torch.optim's first use imports dynamo: seconds, for a few hundred steps).
        flat, params = bind_flat(model), list(model.parameters())
        optimizer = FlatOptimizer("adam", p.vae_lr)
        state = optimizer.init_state(flat)
        picks = torch.Generator(device="cpu").manual_seed(derive_seed(server.seed, "regl-proxy-batches"))
        size = p.vae_images or (len(server.proxy) if server.proxy is not None else len(reserve))
        self.train_images = min(size, len(reserve))
        public = torch.randperm(len(reserve), generator=picks)[:self.train_images]
        noise_gen = server.generator("regl-proxy-noise")
        model.train()
        for _ in range(p.vae_steps):
            index = public[torch.randint(len(public), (p.vae_batch_size,), generator=picks)]
            pixels = to_pixels(reserve.images(index), server.mean, server.std)
            y = reserve.y[index.to(reserve.y.device)]
            noise = torch.randn(len(index), p.vae_latent, generator=noise_gen, device=server.device)
            loss = vae_loss(model, pixels, y, noise, p.vae_beta)
            optimizer.step(flat, flat_grad(loss, params), state)
        self.model = model.eval()

    @torch.no_grad()
    def generate(self, counts: torch.Tensor, seed: int, local: TensorData) -> TensorData:
        device = self.server.device
        y = class_labels(counts, device)
        gen = torch.Generator(device=device).manual_seed(seed)
        z = torch.randn(len(y), self.params.vae_latent, generator=gen, device=device)
        pixels = torch.sigmoid(self.model.decode_logits(z, y))
        return TensorData(to_dataset_space(pixels, self.server.input_shape, self.server.mean, self.server.std), y)
