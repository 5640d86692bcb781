"""ReGL (Yao, "Recovering Global Data Distribution Locally in Federated Learning", arXiv 2409.14063):
each client makes images of the classes it lacks and trains on its real plus synthetic data; the server
averages as FedAvg.

No official code was found, and the paper itself could not be read from this machine (it reaches only
package registries), so this follows the method's description as we were given it:
- from the description: every client finds the classes it lacks (missing) or has few of (minority) in
  its own data, generates images of them with a foundation text-to-image model (Stable Diffusion prompted
  with the class name), training-free or after adapting the model to its own data with LoRA, and trains
  its local model on the union of real and synthetic data; aggregation is FedAvg's;
- our choices (defaults): a class is missing when the client holds none of it and a minority class when it
  holds fewer than ``minority_fraction`` (0.5) x its mean images per class (its images / classes); each
  missing or minority class is topped up to ``images_per_class`` images (0, the default: the client's mean
  per class, so that its label distribution becomes about uniform, which is the global distribution of our
  balanced datasets); every client generates once, before the first round (as it would once on joining,
  whether or not it is sampled), with its own seed, and keeps its images for the whole run (in checkpoints
  too, for backends whose images are costly to remake; the oracle's are redrawn, which is exact);
- local training is the run's client setting over the union: an epoch is a pass over real and synthetic
  images, so the local steps grow with the synthetic share; a client's sample count (for
  ``aggregation = "samples"``) counts its synthetic images, the data it trained on;
- the generator is a pluggable backend (``algorithms/regl_backends``), and every backend is its own
  registered algorithm with its own title, never plain "ReGL": ``regl_diffusers`` (the paper's: Stable
  Diffusion from local weights, optionally with LoRA), ``regl_oracle`` (real held-out images of the asked
  classes: the upper bound of any generator) and ``regl_proxy`` (a small conditional VAE trained on the
  server from labelled public data, FedDF's amount of it: a cheap stand-in, not the paper's generator).
  Our published numbers use the oracle and the proxy only; both read labelled data held out of the
  federation, which ReGL's clients do not have (its prior is a web-scale model).

Diagnostics (rounds.csv, split ``server``): missing classes per client and how many were filled, minority
classes filled, the synthetic share of the round's clients' local data, and the global model's accuracy on
a fixed sample of the synthetic images (how class-faithful they are to it). Generation is timed as the
one-off parts ``regl_prepare`` (training or loading the generator) and ``regl_generate`` in round 1.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from algorithms.fedavg import FedAvg
from algorithms.regl_backends.base import ImageGenerator
from algorithms.regl_backends.oracle import OracleGenerator
from algorithms.regl_backends.proxy import ProxyGenerator
from algorithms.regl_backends.stable_diffusion import DTYPES, RANDOM_TINY, StableDiffusionGenerator, check_weights
from benchmarks.engine.api import (ConfigError, derive_seed, evaluate, register, SearchRange, series_mean, setting,
                                   TensorData)


@dataclass(frozen=True)
class ReGLParams:
    # ReGL has no official code, so no setting of it deviates from one (benchmarks.core.typed).
    OFFICIAL_CODE: ClassVar[bool] = False
    minority_fraction: float = setting(0.5, ge=0.0, le=1.0,
                                       doc="a class is lacking when the client holds fewer than this x its mean "
                                           "images per class (0: only classes it holds none of)",
                                       tune=SearchRange(0.1, 1.0))
    images_per_class: int = setting(0, ge=0, doc="images a lacking class is topped up to, synthetic included; "
                                                 "0 = the client's mean images per class")
    diagnostic_images: int = setting(256, ge=0, diagnostic=True,
                                     doc="synthetic images (a fixed sample over all clients) the global model "
                                         "is scored on each round, as a diagnostic")


def images_to_make(counts: torch.Tensor, minority_fraction: float, images_per_class: int) -> torch.Tensor:
    """How many synthetic images of each class a client with label histogram ``counts`` makes: a class it
    holds none of, or fewer than ``minority_fraction`` x its mean per class, is topped up to
    ``images_per_class`` (0: that mean, rounded); the other classes get none."""
    counts = counts.to(torch.int64)
    mean = counts.sum().item() / len(counts)
    lacking = (counts == 0) | (counts < minority_fraction * mean)
    target = images_per_class if images_per_class > 0 else round(mean)
    return torch.where(lacking, (target - counts).clamp(min=0), torch.zeros_like(counts))


class ReGL(FedAvg):
    """FedAvg whose clients extend their data with a generator's images of the classes they lack.
    Subclasses choose the generator (``make_generator``) and register under its name."""
    Params = ReGLParams
    extends_client_data = True
    # Synthetic images were 42-44% of the sampled clients' local data in quick-suite cells (Fashion-MNIST,
    # alpha 0.01 and 0.04, oracle and proxy alike): about 0.75 extra images per real one.
    EXTRA_DATA = 0.75

    @classmethod
    def estimate_extra_seconds(cls, cfg, work, costs) -> float:
        """The clients' longer epochs over their synthetic images (none when they take fixed local steps).
        Generation is not counted: milliseconds for the oracle, the VAE's steps for the proxy (added there),
        unknown for Stable Diffusion (it depends on the weights and the device)."""
        if cfg.clients.local_steps:
            return 0.0
        return cfg.rounds * work.client_samples_per_round * costs.train_sample * cls.EXTRA_DATA

    def __init__(self, params, server):
        super().__init__(params, server)
        self.generator: ImageGenerator = self.make_generator()
        self.prepared = False
        self.synthetic: dict[int, TensorData] = {}  # per client, made once per run
        self.owned: dict[int, torch.Tensor] = {}    # per client: its real label histogram
        self.made: dict[int, torch.Tensor] = {}     # per client: synthetic images per class
        self.diagnostic: TensorData | None = None

    def make_generator(self) -> ImageGenerator:
        raise NotImplementedError

    # What a backend reads the server's reserve for, if it does: the reserve exists only outside a subset.
    reserve_use: str | None = None

    @classmethod
    def validate(cls, cfg) -> None:
        if cls.reserve_use and not cfg.dataset.train_subset:
            raise ConfigError(f"dataset.train_subset: {cls.reserve_use}, which exist only outside a training "
                              "subset; set train_subset > 0")

    # ---- client side: once per client -----------------------------------------------------------
    def extra_local_data(self, client_id, x, y):
        classes = self.server.num_classes
        counts = torch.bincount(y.cpu(), minlength=classes)
        self.owned[client_id] = counts
        if client_id not in self.synthetic:
            wanted = images_to_make(counts, self.params.minority_fraction, self.params.images_per_class)
            if wanted.sum() > 0:
                made = self.make(client_id, wanted, TensorData(x, y))
                if len(made):
                    self.synthetic[client_id] = made
        data = self.synthetic.get(client_id)
        self.made[client_id] = (torch.bincount(data.y.cpu(), minlength=classes) if data is not None
                                else torch.zeros(classes, dtype=torch.int64))
        return data

    def make(self, client_id: int, wanted: torch.Tensor, local: TensorData) -> TensorData:
        if not self.prepared:
            with self.server.timed("regl_prepare"):
                self.generator.prepare()
            self.prepared = True
        with self.server.timed("regl_generate"):
            return self.generator.generate(wanted, derive_seed(self.server.seed, "regl", client_id), local)

    # ---- diagnostics ---------------------------------------------------------------------------
    def after_aggregate(self, rnd, global_model, global_flat, updates):
        clients = sorted(self.owned)
        missing = [int((self.owned[c] == 0).sum()) for c in clients]
        filled = [int(((self.owned[c] == 0) & (self.made[c] > 0)).sum()) for c in clients]
        minority = [int(((self.owned[c] > 0) & (self.made[c] > 0)).sum()) for c in clients]
        synthetic = sum(int(self.made[u.client_id].sum()) for u in updates)
        self.server.log("regl_missing_classes", sum(missing) / len(clients))
        self.server.log("regl_missing_filled", sum(filled) / len(clients))
        self.server.log("regl_minority_filled", sum(minority) / len(clients))
        self.server.log("regl_synthetic_share", synthetic / max(1, sum(u.num_samples for u in updates)))
        sample = self.diagnostic_sample()
        if sample is not None:
            with self.server.timed("regl_diagnostic"):
                accuracy, _ = evaluate(global_model, sample, self.server.eval_batch_size)
            self.server.log("regl_synthetic_accuracy", accuracy)

    def diagnostic_sample(self) -> TensorData | None:
        """A fixed seeded sample of every client's synthetic images (client order), made once."""
        if self.diagnostic is None and self.synthetic and self.params.diagnostic_images:
            parts = [self.synthetic[c] for c in sorted(self.synthetic)]
            x, y = torch.cat([p.x for p in parts]), torch.cat([p.y for p in parts])
            gen = torch.Generator(device="cpu").manual_seed(derive_seed(self.server.seed, "regl-diagnostic"))
            pick = torch.randperm(len(y), generator=gen)[:self.params.diagnostic_images].to(y.device)
            self.diagnostic = TensorData(x[pick], y[pick])
        return self.diagnostic

    def mechanism(self, series):
        share = series_mean(series, "server.regl_synthetic_share")
        if not share > 0:  # NaN (never logged) or zero
            return {"engaged": False, "evidence": "no synthetic image was added (no client lacked a class, or the "
                                                  "generator made none)"}
        accuracy = series.get("server.regl_synthetic_accuracy", {})
        scored = (f"; the global model classed {100 * accuracy[max(accuracy)]:.3g}% of a sample of them as their "
                  "class in the last round" if accuracy else "")
        return {"engaged": True,
                "evidence": f"synthetic images were {100 * share:.3g}% of the sampled clients' local data (mean "
                            f"over rounds); per client {series_mean(series, 'server.regl_missing_filled'):.3g} of "
                            f"{series_mean(series, 'server.regl_missing_classes'):.3g} missing classes and "
                            f"{series_mean(series, 'server.regl_minority_filled'):.3g} minority classes filled"
                            + scored}

    # ---- state ---------------------------------------------------------------------------------
    def server_state(self):
        """The synthetic images, when the backend's are worth keeping (a resume then never remakes them)."""
        if not self.generator.caches:
            return {}
        return {"synthetic": {cid: {"x": data.x, "y": data.y} for cid, data in sorted(self.synthetic.items())}}

    def load_server_state(self, state):
        device = self.server.device
        self.synthetic = {int(cid): TensorData(d["x"].to(device), d["y"].to(device))
                          for cid, d in state.get("synthetic", {}).items()}


# The conformance tests' synthetic data has no images outside a subset unless it is given one.
_TINY_SUBSET = {"dataset": {"train_subset": 600}}


@register("regl_oracle", title="ReGL (oracle)")
class ReGLOracle(ReGL):
    """ReGL whose "generator" hands out real held-out images: the upper bound of what generation can add.
    Reads the server's reserve (labelled images outside ``train_subset`` that no split holds)."""
    tiny_settings = _TINY_SUBSET
    reserve_use = "regl_oracle draws real images held out of the federation"

    def make_generator(self):
        return OracleGenerator(self.server)


@dataclass(frozen=True)
class ReGLProxyParams(ReGLParams):
    # 600 steps of 32 took 12.4 s once per run in a quick-suite cell (Fashion-MNIST, one thread, both
    # cores busy with a sweep), beside the run's ~100 s; 6.4 passes over the default 3,000 images.
    vae_steps: int = setting(600, ge=0, doc="training steps of the server's conditional VAE (once per run)")
    vae_batch_size: int = setting(32, ge=1, doc="reserve images per VAE step")
    vae_images: int = setting(0, ge=0, doc="reserve images the VAE trains on, a seeded draw (0 = as many as the "
                                           "run's unlabelled proxy split holds: FedDF's amount of server data)")
    vae_lr: float = setting(1e-3, gt=0.0, doc="VAE Adam learning rate")
    vae_width: int = setting(16, ge=1, doc="channels of the VAE's first convolution (the second has twice)")
    vae_latent: int = setting(16, ge=1, doc="VAE latent size")
    vae_beta: float = setting(1.0, ge=0.0, doc="weight of the VAE's KL term")


@register("regl_proxy", title="ReGL (proxy)")
class ReGLProxy(ReGL):
    """ReGL with a small conditional VAE, trained once on the server from the labelled reserve (public data
    disjoint from the clients; ``regl_backends/proxy.py`` states the assumption), for its generator."""
    Params = ReGLProxyParams
    tiny_budget = {"vae_steps": 20}
    tiny_settings = _TINY_SUBSET
    reserve_use = "regl_proxy trains its generator on labelled images held out of the federation"

    @classmethod
    def estimate_extra_seconds(cls, cfg, work, costs) -> float:
        # The VAE's steps priced as classifier training steps of as many images (unmeasured; same order of size).
        vae = cfg.hparams.vae_steps * cfg.hparams.vae_batch_size * costs.train_sample
        return super().estimate_extra_seconds(cfg, work, costs) + vae

    def make_generator(self):
        return ProxyGenerator(self.server, self.params)


@dataclass(frozen=True)
class ReGLDiffusersParams(ReGLParams):
    weights: str = setting("", doc="local folder of a Stable Diffusion pipeline in diffusers format (nothing is "
                                   f"downloaded); \"{RANDOM_TINY}\" = a random miniature, for checks only")
    prompt: str = setting("a photo of a {}", doc="text prompt; {} is replaced by the class name")
    inference_steps: int = setting(25, ge=1, doc="DDIM sampling steps")
    guidance_scale: float = setting(7.5, ge=0.0, doc="classifier-free guidance scale (1 = no guidance)")
    resolution: int = setting(0, ge=0, doc="generated side in pixels, a multiple of 8 (0 = the UNet's native "
                                           "size); images are then resized to the dataset's")
    sample_batch_size: int = setting(8, ge=1, doc="images sampled together")
    dtype: str = setting("float32", choices=DTYPES, doc="weights' type (float16 / bfloat16 on GPUs); LoRA "
                                                        "weights train in float32")
    lora_rank: int = setting(0, ge=0, doc="rank of the LoRA adapter fine-tuned on each client's images before "
                                          "it generates (0 = training-free)")
    lora_steps: int = setting(100, ge=0, doc="LoRA steps per client")
    lora_lr: float = setting(1e-4, gt=0.0, doc="LoRA AdamW learning rate")
    lora_batch_size: int = setting(4, ge=1, doc="client images per LoRA step")


@register("regl_diffusers", title="ReGL (diffusers)")
class ReGLDiffusers(ReGL):
    """ReGL as the paper describes it: Stable Diffusion prompted with class names, from local weights,
    optionally LoRA-adapted to each client (``regl_backends/stable_diffusion.py``)."""
    Params = ReGLDiffusersParams
    tiny_budget = {"weights": RANDOM_TINY, "inference_steps": 1, "images_per_class": 2, "lora_rank": 2,
                   "lora_steps": 1, "lora_batch_size": 2}

    @classmethod
    def validate(cls, cfg) -> None:
        p = cfg.hparams
        check_weights(p.weights, p.lora_rank)
        if "{}" not in p.prompt:
            raise ConfigError(f"algorithms.regl_diffusers.prompt: {p.prompt!r} has no {{}} for the class name")
        if p.resolution % 8:
            raise ConfigError(f"algorithms.regl_diffusers.resolution: {p.resolution} must be a multiple of 8")

    def make_generator(self):
        return StableDiffusionGenerator(self.server, self.params)
