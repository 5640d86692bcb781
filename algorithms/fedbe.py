"""FedBE (Chen & Chao, ICLR 2021): distil a Bayesian ensemble of global models into the global model.

Procedure, from the official code (hongyouc/FedBE: ``main.py``, ``swag.py``, ``models/Update.py``,
``utils/tools.py``; its ``run.sh`` FedBE line), each round after FedAvg:
1. Fit a diagonal Gaussian over the clients' normalised updates, tensor by tensor, relative to the
   round's starting global model w0: g_i = (w_i - w0) / ||w_i - w0||; mu = mean g_i;
   sigma^2 = max(mean g_i^2 - mu^2, 1e-5); n = mean ||w_i - w0||. A sample is
   w0 + step_size * n * (mu + var_scale * sigma * eps), eps ~ N(0, I) (the repository's "SWAG"
   teacher with ``sample_teacher = gaussian``; there is no low-rank SWAG covariance in it).
2. Teachers: the FedAvg model, ``samples`` Gaussian samples and the round's client models (``--use_client``).
3. Targets on the unlabelled server data, once per round: the teachers' softmax probabilities
   averaged, then sharpened, p^(1/T) renormalised (T = 0.5, floor 1e-8).
4. The FedAvg model, as student, learns KL(targets || softmax(student)) (divided by batch x classes,
   as the official loss), with SGD (lr 1e-3, momentum 0.9, weight decay 1e-5) over ``server_epochs``
   shuffled epochs of batch 128, and stochastic weight averaging of the student every ``swa_freq`` steps
   from step ``swa_start``; the SWA average (or the last iterate, when no step reached ``swa_start``)
   becomes the global model. No validation-based selection, as in the official code.

Deviations and choices:
- Unlabelled server data is the run's proxy (``dataset.proxy_source``; ``unused`` gives training images
  outside the subset, disjoint from every client), as for FedDF; the official code keeps 10,000 CIFAR-10
  training images for the server. Nothing touches the test set.
- ``max_distill_steps`` caps the budget for reduced suites (0: the official 20 epochs); with fewer than
  ``swa_start`` steps there is no SWA and the last iterate is kept, as the official code would. The
  teachers then score only the server images the capped budget uses (same targets, fewer forwards).
- The FedAvg teacher follows the run's ``aggregation`` (uniform by default; the official code weights
  by client data size).
- No augmentation (the official ``--aug`` works only with SWA and crops without flipping).
- The official repository does not run as published (undefined arguments ``logit_method``,
  ``is_logit``, ``soft_vote``); we use the values its FedBE run takes (mean of probabilities, KL).

Diagnostic (as FedDF's): the ensemble teacher's and the student's validation accuracy before and
after distillation; the mechanism engaged when the teacher beats the student in most scored rounds.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from algorithms.feddf import FedDF, proxy_batches
from benchmarks.engine.api import ClientUpdate, ConfigError, register, SearchRange, setting


@dataclass(frozen=True)
class FedBEParams:
    samples: int = setting(10, ge=0, doc="Gaussian samples in the ensemble (official num_sample_teacher)")
    var_scale: float = setting(0.1, ge=0.0, doc="scale of the Gaussian's standard deviation")
    step_size: float = setting(1.0, gt=0.0, doc="scale of the sampled update (official swag_stepsize)")
    temperature: float = setting(0.5, gt=0.0, doc="sharpening of the averaged probabilities, p^(1/T)",
                                 tune=SearchRange(0.25, 1.0, log=True))
    server_epochs: int = setting(20, ge=0, doc="distillation epochs over the unlabelled server data")
    max_distill_steps: int = setting(0, ge=0, doc="cap on distillation steps per round (0: no cap)")
    batch_size: int = setting(128, ge=1, doc="server images per distillation step")
    distill_lr: float = setting(1e-3, gt=0.0, doc="server SGD learning rate (hard-coded 1e-3 officially)",
                                tune=SearchRange(1e-4, 1e-2, log=True))
    momentum: float = setting(0.9, ge=0.0, lt=1.0)
    weight_decay: float = setting(1e-5, ge=0.0)
    swa_start: int = setting(500, ge=0, doc="first distillation step averaged into the SWA student")
    swa_freq: int = setting(25, ge=1, doc="average the student every this many steps after swa_start")
    teacher_eval_every: int = setting(1, ge=1, diagnostic=True,
                                      doc="diagnostic: score the ensemble teacher on the validation split "
                                          "every k rounds (and the last)")


def sharpen(probs: torch.Tensor, temperature: float) -> torch.Tensor:
    sharp = probs.pow(1.0 / temperature).clamp_min(1e-8)
    return sharp / sharp.sum(1, keepdim=True)


def gaussian_teachers(start: torch.Tensor, clients: list[torch.Tensor], sizes: list[int], samples: int,
                      var_scale: float, step_size: float, gen: torch.Generator) -> list[torch.Tensor]:
    """``samples`` flat parameter vectors drawn from the diagonal Gaussian over the clients' normalised
    updates, fitted tensor by tensor (``sizes``: each parameter tensor's length in the flat vector)."""
    updates = torch.stack(clients) - start
    pieces_mu, pieces_sigma, pieces_norm = [], [], []
    for part in updates.split(sizes, dim=1):
        norms = part.norm(dim=1, keepdim=True)
        unit = part / norms.clamp_min(1e-12)
        mu = unit.mean(0)
        var = (unit.pow(2).mean(0) - mu.pow(2)).clamp_min(1e-5)
        pieces_mu.append(mu)
        pieces_sigma.append(var.sqrt())
        pieces_norm.append(norms.mean().expand(part.shape[1]))
    mu, sigma, norm = torch.cat(pieces_mu), torch.cat(pieces_sigma), torch.cat(pieces_norm)
    draws = []
    for _ in range(samples):
        eps = torch.randn(mu.shape, generator=gen, device=gen.device, dtype=mu.dtype).to(mu.device)
        draws.append(start + step_size * norm * (mu + var_scale * sigma * eps))
    return draws


@register("fedbe", title="FedBE")
class FedBE(FedDF):
    Params = FedBEParams
    tiny_budget = {"samples": 3, "max_distill_steps": 6, "swa_start": 2, "swa_freq": 2}
    AFTER_KEY = "server.distill_final_val_accuracy"

    @classmethod
    def validate(cls, cfg) -> None:
        if cfg.dataset.proxy_fraction <= 0:
            raise ConfigError("dataset.proxy_fraction: fedbe distils on unlabelled server images; set it > 0")
        if cfg.dataset.val_fraction <= 0:
            raise ConfigError("dataset.val_fraction: fedbe's diagnostic scores teacher and student on the "
                              "validation split; set it > 0")

    @classmethod
    def estimate_extra_seconds(cls, cfg, work, costs) -> float:
        p = cfg.hparams
        teachers = 1 + p.samples + work.clients_per_round
        steps = p.server_epochs * -(-work.proxy_size // p.batch_size)
        if p.max_distill_steps:
            steps = min(steps, p.max_distill_steps)
        scored = min(work.proxy_size, steps * p.batch_size)
        per_round = (teachers * (scored + work.val_size / p.teacher_eval_every) * costs.forward_sample
                     + steps * p.batch_size * costs.train_sample + 2 * work.val_size * costs.forward_sample)
        return cfg.rounds * per_round

    def before_round(self, rnd, global_model, global_flat):
        self.round_start = global_flat.detach().clone()

    def teachers(self, rnd: int, global_flat: torch.Tensor, updates: list[ClientUpdate]) -> list[torch.Tensor]:
        model, _ = self.teacher_model()
        sizes = [p.numel() for p in model.parameters()]
        clients = [u.params for u in updates]
        sampled = gaussian_teachers(self.round_start, clients, sizes, self.params.samples, self.params.var_scale,
                                    self.params.step_size, self.server.generator("fedbe-sample", rnd))
        return [global_flat.detach().clone(), *sampled, *clients]

    @torch.no_grad()
    def ensemble_probs(self, teachers: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """The teachers' mean softmax probabilities, then sharpened."""
        model, flat = self.teacher_model()
        model.eval()
        total = torch.zeros(len(x), self.server.num_classes, device=x.device)
        step = self.server.eval_batch_size
        for teacher in teachers:
            flat.copy_(teacher)
            for start in range(0, len(x), step):
                total[start:start + step] += F.softmax(model(x[start:start + step]), dim=1)
        return sharpen(total / len(teachers), self.params.temperature)

    def after_aggregate(self, rnd, global_model, global_flat, updates):
        teachers = self.teachers(rnd, global_flat, updates)
        if rnd % self.params.teacher_eval_every == 0 or rnd == self.server.rounds:
            with self.server.timed("teacher_diagnostic"):
                val = self.server.val
                teacher = float((self.ensemble_probs(teachers, val.x).argmax(1) == val.y).float().mean())
            self.server.log("distill_teacher_val_accuracy", teacher)
        self.server.log("distill_initial_val_accuracy", self.val_accuracy(global_model))
        with self.server.timed("distill"):
            steps = self.distill_ensemble(rnd, global_model, global_flat, teachers)
        self.server.log("distill_steps", steps)
        self.server.log("distill_final_val_accuracy", self.val_accuracy(global_model))

    def distill_ensemble(self, rnd: int, model, flat: torch.Tensor, teachers: list[torch.Tensor]) -> int:
        """Distil into ``model`` (views of ``flat``) with SGD and SWA; returns the steps taken."""
        p = self.params
        x = self.proxy().x
        steps = p.server_epochs * -(-len(x) // p.batch_size)
        if p.max_distill_steps:
            steps = min(steps, p.max_distill_steps)
        stream = proxy_batches(len(x), p.batch_size, self.server.generator("fedbe", rnd))
        batches = [next(stream) for _ in range(steps)]
        # The teachers score only the images the budget will use: with a cut budget (CPU suites) that is
        # a fraction of the server data, and the ensemble's forwards dominate a round.
        used = torch.unique(torch.cat(batches)) if batches else torch.zeros(0, dtype=torch.long)
        row = torch.full((len(x),), -1, dtype=torch.long, device=x.device)
        row[used] = torch.arange(len(used), device=x.device)
        targets = self.ensemble_probs(teachers, x[used])
        optimizer = torch.optim.SGD(model.parameters(), lr=p.distill_lr, momentum=p.momentum,
                                    weight_decay=p.weight_decay)
        swa, averaged = torch.zeros_like(flat), 0
        was_training = model.training
        model.train()
        for step, idx in enumerate(batches, start=1):
            log_q = F.log_softmax(model(x[idx]), dim=1)
            target = targets[row[idx]]
            loss = (target * (target.log() - log_q)).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if step >= p.swa_start and (step - p.swa_start) % p.swa_freq == 0:
                averaged += 1
                swa.add_(flat.detach() - swa, alpha=1.0 / averaged)
        optimizer.zero_grad(set_to_none=True)
        model.train(was_training)
        if averaged:
            with torch.no_grad():
                flat.copy_(swa)
        return steps
