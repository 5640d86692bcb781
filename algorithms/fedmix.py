"""FedMix (Yoon, Shin, Hwang and Yang, ICLR 2021): approximate global mixup from clients' averaged data.

Privacy relaxation: every client sends the server the mean of its images and the mean of its one-hot
labels (its label histogram) before training, and the server hands all of them to every client. FedAvg
shares no data at all; a report row for FedMix is a method that sees these averages.

Procedure. There is no official code; this follows the paper's derivation and Flower's unmerged
reimplementation (adap/flower ``baselines/fedmix``, branch commit c41009f7b4) for the settings:
- mean batches: ``mean_batch = 0`` ("all", Flower's default) gives one mean image and soft label per
  client; M > 0 averages consecutive chunks of M local samples (after a seeded shuffle);
- each local step draws one mean (x_bar, y_bar) at random from all clients' means (own included, as
  Flower) and uses it for the whole batch;
- with z = (1 - lambda) x_i, the loss is the first-order expansion of mixup's
  CE(f((1 - lambda) x_i + lambda x_bar), (1 - lambda) y_i + lambda y_bar):
  (1 - lambda) CE(f(z), y_i) + lambda CE(f(z), y_bar) + lambda (1 - lambda) <dCE(f(z), y_i)/dz, x_bar>,
  where the input gradient is per sample and kept in the graph (the model learns through it).
  Flower's final version detaches that term (it never reaches the weights) and differentiates the
  logits of a B x B slice instead of the loss; its earlier version kept it differentiable, as here;
- ``variant = "naivemix"``: CE of f((1 - lambda) x_i + lambda x_bar) against the mixed labels.
Defaults: lambda 0.05 (Flower's CIFAR-10 value; the paper tunes it per dataset), mean batch "all".

Deviations: clients train with the run's optimizer (DynaFed's Adam), not Flower's SGD with momentum;
no weight decay or crop/flip augmentation; Flower weights aggregation by batches, we follow the run's
``aggregation``. The input-gradient term needs a double backward, so a FedMix step costs about three
plain steps, and it cannot run under the vectorised executor (nor can the random draw of the mean).

Diagnostic: the mixup terms' share of the local loss, lambda CE(f(z), y_bar) plus the magnitude of
the Taylor term over the whole loss, measured each round with the global model on the validation split
(the clients' own losses are not visible to the server).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from algorithms.fedavg import FedAvg
from benchmarks.engine.api import derive_seed, register, SearchRange, series_mean, setting


@dataclass(frozen=True)
class FedMixParams:
    lam: float = setting(0.05, ge=0.0, lt=1.0, doc="mixup weight lambda", tune=SearchRange(0.01, 0.3, log=True))
    mean_batch: int = setting(0, ge=0, doc="samples averaged into one shared mean (0: all of a client's data)")
    variant: str = setting("fedmix", choices=("fedmix", "naivemix"),
                           doc="fedmix: the first-order approximation; naivemix: mix with the mean directly")


def mix_terms(model, x, y, x_bar, y_bar, lam: float, variant: str,
              train: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(total loss, the part that comes from the shared means) for one batch and one mean; ``train=False``
    (the diagnostic) keeps no graph through the input gradient."""
    if variant == "naivemix":
        out = model((1 - lam) * x + lam * x_bar)
        mixed = lam * F.cross_entropy(out, y_bar.expand(len(y), -1))
        return (1 - lam) * F.cross_entropy(out, y) + mixed, mixed
    z = ((1 - lam) * x).requires_grad_(True)
    out = model(z)
    own = F.cross_entropy(out, y, reduction="none")
    input_grad, = torch.autograd.grad(own.sum(), z, create_graph=train)  # per sample: losses are independent
    taylor = lam * (1 - lam) * (input_grad * x_bar).flatten(1).sum(1).mean()
    mixed = lam * F.cross_entropy(out, y_bar.expand(len(y), -1)) + taylor
    return (1 - lam) * own.mean() + mixed, mixed


@register("fedmix", title="FedMix")
class FedMix(FedAvg):
    Params = FedMixParams
    shares_client_data = True
    vectorised_opt_out = "each client step draws its own random mean batch and, for fedmix, needs an input gradient"

    # A FedMix step measured 3.2x a plain step (ConvNet-32, Fashion-MNIST, batch 32, one thread).
    STEP_COST = 3.2

    @classmethod
    def estimate_extra_seconds(cls, cfg, work, costs) -> float:
        if cfg.hparams.variant == "naivemix":
            return 0.0
        return cfg.rounds * work.client_samples_per_round * costs.train_sample * (cls.STEP_COST - 1)

    def client_summary(self, client_id, x, y):
        labels = F.one_hot(y, self.server.num_classes).to(x.dtype)
        m = self.params.mean_batch
        if m == 0 or m >= len(x):
            return {"x": x.mean(0, keepdim=True), "y": labels.mean(0, keepdim=True)}
        gen = torch.Generator(device="cpu").manual_seed(derive_seed(self.server.seed, "fedmix-means", client_id))
        order = torch.randperm(len(x), generator=gen).to(x.device)
        chunks = [order[start:start + m] for start in range(0, len(x) - m + 1, m)]  # whole chunks only
        return {"x": torch.stack([x[c].mean(0) for c in chunks]), "y": torch.stack([labels[c].mean(0) for c in chunks])}

    def receive_client_summaries(self, summaries):
        self.mean_x = torch.cat([s["x"] for s in summaries])
        self.mean_y = torch.cat([s["y"] for s in summaries])

    def client_config(self, rnd):
        return {"mean_x": self.mean_x, "mean_y": self.mean_y}

    def local_loss(self, model, batch, ctx):
        means = ctx.config["mean_x"]
        pick = int(torch.randint(len(means), (1,), generator=ctx.generator).item())
        loss, _ = mix_terms(model, batch.x, batch.y, means[pick], ctx.config["mean_y"][pick], self.params.lam,
                            self.params.variant)
        return loss

    def after_aggregate(self, rnd, global_model, global_flat, updates):
        with self.server.timed("mix_diagnostic"):
            self.server.log("fedmix_mix_share", self.mix_share(global_model, rnd))

    def mix_share(self, model, rnd: int) -> float:
        """|mean terms| / |loss| of the global model on the validation split, one random mean per batch."""
        val = self.server.val
        gen = self.server.generator("fedmix-diagnostic", rnd)
        total, mixed = 0.0, 0.0
        was_training = model.training
        model.eval()
        for start in range(0, len(val), self.server.eval_batch_size):
            x, y = val.x[start:start + self.server.eval_batch_size], val.y[start:start + self.server.eval_batch_size]
            pick = int(torch.randint(len(self.mean_x), (1,), generator=gen, device=gen.device).item())
            loss, part = mix_terms(model, x, y, self.mean_x[pick], self.mean_y[pick], self.params.lam,
                                   self.params.variant, train=False)
            total += abs(loss.item()) * len(x)
            mixed += abs(part.item()) * len(x)
        model.train(was_training)
        return mixed / total if total > 0 else float("nan")

    # The shared means must carry at least this share of the loss to count as engaged.
    ENGAGED_SHARE = 0.02

    def mechanism(self, series):
        share = series_mean(series, "server.fedmix_mix_share")
        if share != share:
            return {"engaged": False, "evidence": "no round measured the mixup terms"}
        return {"engaged": bool(share >= self.ENGAGED_SHARE),
                "evidence": f"the shared means' terms are {100 * share:.3g}% of the loss (global model on "
                            f"validation, mean over rounds; engaged at >= {100 * self.ENGAGED_SHARE:g}%), "
                            f"lambda {self.params.lam:g}"}
