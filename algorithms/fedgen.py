"""FedGen (Zhu, Hong, Zhou, ICML 2021): a server-trained generator of classifier features that
regularises clients (spec: /work/shared/reference/algorithms.md, section 4 and pitfalls 12-14).

The generator maps (noise, label) to the input space of the model's ``head`` (its final Linear), because
that is the only part of the classifier the official code applies to generated vectors. The server
trains it after every round against the ensemble of the sampled clients' own heads; from the second
round on, clients add two terms computed with the frozen generator (eval mode, no gradients into it).

Deliberate deviations from the official code, and choices it leaves open:
- Rounds are 1-based here. The official regulariser is active for ``glob_iter > 0`` and its coefficients
  decay as 0.98^glob_iter, so ours is active from round 2 with alpha_r = max(1e-4, alpha * 0.98^(r-1)).
  A coefficient configured as 0 switches its term off (the official 1e-4 floor would keep it alive).
- Generator output size = ``model.feature_dim`` (e.g. 2048 for the DynaFed ConvNet), not the official
  32-dimensional latent: our models have no narrow bottleneck before the classifier. Hidden 256 and noise
  32 are the official mnist sizes. The output is an unconstrained Linear, as in the official code, even
  though our real features are non-negative (they come out of ReLU and pooling).
- The official teacher loss multiplies a (B,) loss by (B, 1) weights, which broadcasts to (B, B): its
  mean is mean(loss) x mean(weight), decoupling each sample's loss from its label's weight. We weight
  each sample's loss by its own label's weight, as the paper describes (the reference spec's section
  4.3 describes this per-sample form too, though the official code does not compute it).
- Clients use the run's shared client settings (Adam 1e-3, 1 epoch in the suite) for a fair comparison;
  the official clients run 20 plain-SGD steps at lr 0.01 with an ExponentialLR schedule. The regulariser
  applies at every local step (the official ``early_stop`` = 20 covers all of its 20 steps).
- The adversarial student term (``ensemble_beta``, 0 in every official config) is not implemented, and the
  teacher term's weight (``ensemble_alpha``, 1 in every official config) is fixed at 1.
- Aggregation follows the run's ``aggregation`` setting (uniform by default); the official FedGen weights
  clients by sample count.
- The generator is trained in ``after_aggregate`` rather than just before aggregation as in the official
  loop; it reads only the clients' own heads, so the order changes nothing.
- The generator is initialised from its own seeded stream, so it never shifts the global torch RNG.

Diagnostics (ours; they change no trained number): the generator's teacher and diversity losses, how
often the clients' heads classify its features (always near 100%: it is trained for exactly that), and
the mechanism test, a linear probe trained only on generated features and scored on the global model's
features of real validation images (``probe_accuracy``).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from algorithms.fedavg import FedAvg
from benchmarks.engine.api import ClientUpdate, ConfigError, derive_seed, register, SearchRange, series_mean, setting


@dataclass(frozen=True)
class FedGenParams:
    generative_alpha: float = setting(10.0, ge=0.0, doc="client teacher-term coefficient (decays per round)",
                                      tune=SearchRange(0.1, 100.0, log=True))
    generative_beta: float = setting(10.0, ge=0.0, doc="client latent-KL coefficient (decays per round)",
                                     tune=SearchRange(0.1, 100.0, log=True))
    coefficient_decay: float = setting(0.98, gt=0.0, le=1.0, doc="per-round decay of both client coefficients")
    gen_batch_size: int = setting(32, ge=1, doc="generated samples per client step for the teacher term")
    ensemble_lr: float = setting(3e-4, gt=0.0, doc="generator Adam learning rate",
                                 tune=SearchRange(1e-5, 1e-2, log=True))
    ensemble_eta: float = setting(1.0, ge=0.0, doc="weight of the generator's diversity loss",
                                  tune=SearchRange(0.1, 10.0, log=True))
    generator_steps: int = setting(50, ge=0, doc="generator steps per round (official 10 x 5)",
                                   tune=SearchRange(10, 200, log=True))
    generator_lr_decay: float = setting(0.98, gt=0.0, le=1.0, doc="ExponentialLR gamma, stepped once per round")
    generator_weight_decay: float = setting(1e-2, ge=0.0, doc="generator Adam weight decay")
    hidden_dim: int = setting(256, ge=1, doc="generator hidden width (official mnist 256)")
    noise_dim: int = setting(32, ge=1, doc="generator noise size (official mnist 32)")


class FeatureGenerator(nn.Module):
    """(noise, one-hot label) -> Linear -> BatchNorm1d -> ReLU -> Linear -> a vector for the head.

    Its BatchNorm is harmless here: the generator is server state, never averaged or flattened.
    """

    def __init__(self, noise_dim: int, num_classes: int, hidden_dim: int, feature_dim: int):
        super().__init__()
        self.num_classes = num_classes
        self.net = nn.Sequential(nn.Linear(noise_dim + num_classes, hidden_dim), nn.BatchNorm1d(hidden_dim),
                                 nn.ReLU(), nn.Linear(hidden_dim, feature_dim))

    def forward(self, noise: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        onehot = F.one_hot(labels, self.num_classes).to(noise.dtype)
        return self.net(torch.cat([noise, onehot], dim=1))


def head_slices(model: nn.Module) -> tuple[slice, slice]:
    """Where the final Linear's weight and bias lie in the model's flat parameter vector, so a client's
    head can be read straight out of its update without building a model."""
    offsets, start = {}, 0
    for p in model.parameters():
        offsets[id(p)] = start
        start += p.numel()
    weight, bias = model.classifier.weight, model.classifier.bias
    return (slice(offsets[id(weight)], offsets[id(weight)] + weight.numel()),
            slice(offsets[id(bias)], offsets[id(bias)] + bias.numel()))


def label_weights(counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-client label weights (K, C), each label's column summing to one, and the qualified labels.

    ``counts`` (K, C) are the labels each client drew this round; +1 smoothing as the official counters,
    which start at 1, so a label nobody drew gets equal weights but is not qualified for sampling.
    """
    smoothed = counts.to(torch.float32) + 1.0
    weights = smoothed / smoothed.sum(dim=0, keepdim=True)
    qualified = torch.nonzero(smoothed.max(dim=0).values > 1.0).flatten()
    return weights, qualified


def ensemble_teacher_loss(features: torch.Tensor, labels: torch.Tensor, head_w: torch.Tensor,
                          head_b: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """sum_k mean_i CE(head_k(z_i), y_i) * w_k(y_i), all K heads in one batched matmul.

    ``head_w`` is (K, C, D), ``head_b`` (K, C), ``weights`` (K, C).
    """
    k, b = head_w.shape[0], features.shape[0]
    logits = torch.matmul(features, head_w.transpose(1, 2)) + head_b[:, None, :]
    ce = F.cross_entropy(logits.flatten(0, 1), labels.repeat(k), reduction="none").view(k, b)
    return (ce * weights[:, labels]).mean(dim=1).sum()


def diversity_loss(noise: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
    """exp(-mean over all pairs of (mean squared noise distance) x (mean absolute output distance)):
    close to 1 when different noises give the same output, smaller as the outputs spread."""
    out_dist = (outputs[:, None, :] - outputs[None, :, :]).abs().mean(dim=2)
    noise_dist = (noise[:, None, :] - noise[None, :, :]).pow(2).mean(dim=2)
    return torch.exp(-(noise_dist * out_dist).mean())


@register("fedgen", title="FedGen")
class FedGen(FedAvg):
    Params = FedGenParams
    tiny_budget = {"generator_steps": 3}
    PROBE_PER_CLASS = 32
    PROBE_STEPS = 100
    PROBE_LR = 1e-2
    client_reads_server_state = ("the clients' teacher and latent terms run the server's generator, which "
                                 "client_config does not send")

    def __init__(self, params, server):
        super().__init__(params, server)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(server.seed, "fedgen-init"))
            probe = server.build_model()
            self.head_weight, self.head_bias = head_slices(probe)
            self.generator = FeatureGenerator(params.noise_dim, server.num_classes, params.hidden_dim,
                                              probe.feature_dim).to(server.device)
        self.generator.eval()
        self.feature_dim = probe.feature_dim
        present = np.flatnonzero(np.asarray(server.client_class_counts).sum(axis=0) > 0)
        self.available_labels = torch.as_tensor(present, dtype=torch.long)
        self.optimizer = torch.optim.Adam(self.generator.parameters(), lr=params.ensemble_lr, betas=(0.9, 0.999),
                                          eps=1e-8, weight_decay=params.generator_weight_decay)
        self.scheduler = torch.optim.lr_scheduler.ExponentialLR(self.optimizer, gamma=params.generator_lr_decay)

    @classmethod
    def validate(cls, cfg) -> None:
        if cfg.clients.batch_size < 2:
            raise ConfigError(f"clients.batch_size: {cfg.clients.batch_size} must be >= 2 for fedgen, whose "
                              "generator (trained at the client batch size) has BatchNorm")

    # ---- client side -------------------------------------------------------------------------
    def coefficients(self, rnd: int) -> tuple[float, float]:
        """(alpha_r, beta_r) for 1-based round ``rnd``: off in round 1, as the official ``glob_iter > 0``."""
        if rnd < 2:
            return 0.0, 0.0
        decay = self.params.coefficient_decay ** (rnd - 1)
        return tuple(max(1e-4, c * decay) if c > 0 else 0.0
                     for c in (self.params.generative_alpha, self.params.generative_beta))

    def local_loss(self, model, batch, ctx):
        logits = model(batch.x)
        loss = F.cross_entropy(logits, batch.y)
        alpha, beta = self.coefficients(ctx.round)
        if beta:
            loss = loss + beta * self._latent_loss(model, logits, batch.y, ctx.generator)
        if alpha:
            ratio = self.params.gen_batch_size / self.server.clients.batch_size
            loss = loss + ratio * alpha * self._teacher_loss(model, ctx.generator)
        return loss

    @torch.no_grad()
    def _generate(self, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Frozen-generator features for ``labels``; noise comes from the client's own stream (on CPU)."""
        noise = torch.rand(len(labels), self.params.noise_dim, generator=generator).to(labels.device)
        return self.generator(noise, labels)

    def _latent_loss(self, model, logits, labels, generator) -> torch.Tensor:
        """KL pulling the prediction on real data towards the head's prediction on generated features."""
        with torch.no_grad():
            target = F.softmax(model.head(self._generate(labels, generator)), dim=1)
        return F.kl_div(F.log_softmax(logits, dim=1), target, reduction="batchmean")

    def _teacher_loss(self, model, generator) -> torch.Tensor:
        """CE of the client's head on generated features of labels drawn from every client's labels."""
        pick = torch.randint(len(self.available_labels), (self.params.gen_batch_size,), generator=generator)
        labels = self.available_labels[pick].to(self.server.device)
        return F.cross_entropy(model.head(self._generate(labels, generator)), labels)

    # ---- server side -------------------------------------------------------------------------
    def after_aggregate(self, rnd, global_model, global_flat, updates):
        """Train the generator on this round's client heads (a round in which no client drew a batch has
        no qualified label, so it trains nothing)."""
        if self.params.generator_steps == 0 or not any(u.steps for u in updates):
            return
        with self.server.timed("generator"):
            teacher, diversity = self.train_generator(rnd, updates)
        self.server.log("generator_teacher_loss", teacher)
        self.server.log("generator_diversity_loss", diversity)
        self.server.log("generator_teacher_accuracy", self.generator_accuracy(rnd, updates))
        with self.server.timed("probe_diagnostic"):
            scores = self.probe_accuracy(rnd, global_model)
        if scores is not None:
            self.server.log("generator_probe_val_accuracy", scores[0])
            self.server.log("global_head_probe_val_accuracy", scores[1])

    def client_heads(self, updates: list[ClientUpdate]) -> tuple[torch.Tensor, torch.Tensor]:
        """Each sampled client's own trained head, (K, C, D) weights and (K, C) biases."""
        weight = torch.stack([u.params[self.head_weight] for u in updates])
        bias = torch.stack([u.params[self.head_bias] for u in updates])
        return weight.view(len(updates), self.server.num_classes, self.feature_dim), bias

    def train_generator(self, rnd: int, updates: list[ClientUpdate]) -> tuple[float, float]:
        """The round's generator steps; returns the last step's (teacher loss, diversity loss)."""
        device = self.server.device
        head_w, head_b = self.client_heads(updates)
        weights, qualified = label_weights(torch.stack([u.label_counts for u in updates]).to(device))
        rng = self.server.generator("fedgen", rnd)
        batch = self.server.clients.batch_size
        self.generator.train()
        for _ in range(self.params.generator_steps):
            noise = torch.rand(batch, self.params.noise_dim, generator=rng, device=device)
            labels = qualified[torch.randint(len(qualified), (batch,), generator=rng, device=device)]
            features = self.generator(noise, labels)
            teacher = ensemble_teacher_loss(features, labels, head_w, head_b, weights)
            diversity = diversity_loss(noise, features)
            self.optimizer.zero_grad(set_to_none=True)
            (teacher + self.params.ensemble_eta * diversity).backward()
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.generator.eval()
        return teacher.item(), diversity.item()

    @torch.no_grad()
    def generator_accuracy(self, rnd: int, updates: list[ClientUpdate]) -> float:
        """How often the clients' ensemble of heads (mean logits) classifies generated features as the label
        they were generated for, on a fresh seeded batch: near chance, the generator teaches nothing."""
        device = self.server.device
        head_w, head_b = self.client_heads(updates)
        _, qualified = label_weights(torch.stack([u.label_counts for u in updates]).to(device))
        rng = self.server.generator("fedgen-diagnostic", rnd)
        batch = max(self.server.clients.batch_size, 4 * self.server.num_classes)
        noise = torch.rand(batch, self.params.noise_dim, generator=rng, device=device)
        labels = qualified[torch.randint(len(qualified), (batch,), generator=rng, device=device)]
        features = self.generator(noise, labels)
        logits = (torch.matmul(features, head_w.transpose(1, 2)) + head_b[:, None, :]).mean(0)
        return float((logits.argmax(1) == labels).float().mean())

    def _held_val_mask(self) -> torch.Tensor:
        """Which validation images show a class some client holds (the only classes the generator learns)."""
        val = self.server.val
        return torch.isin(val.y, self.available_labels.to(val.y.device))

    def scored_classes(self) -> int:
        """How many classes the probe is scored on: held by a client and present in the validation split."""
        return len(self.server.val.y[self._held_val_mask()].unique())

    @torch.no_grad()
    def _real_val_features(self, global_model: nn.Module) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The global model's features of the validation images whose class some client holds (None when
        there are none)."""
        val = self.server.val
        keep = self._held_val_mask()
        if not bool(keep.any()):
            return None
        x, y = val.x[keep], val.y[keep]
        step = self.server.eval_batch_size
        was_training = global_model.training
        global_model.eval()
        features = torch.cat([global_model.features(x[i:i + step]) for i in range(0, len(x), step)])
        global_model.train(was_training)
        return features, y

    def probe_accuracy(self, rnd: int, global_model: nn.Module) -> tuple[float, float] | None:
        """Validation accuracy of a linear head trained only on the generator's features, applied to the
        global model's features of real validation images (classes some client holds); and, for scale, the
        global model's own head's accuracy on the same images (the most a linear head on them is likely to get).

        The clients' heads always classify the generator's features (it is trained to make them agree), so
        that number cannot fail. The probe asks whether the classes as the generator draws them separate the
        global model's real validation features the way their labels do, which is what the clients' heads
        learn from the teacher term. It does not ask whether generated vectors look like real ones (scale,
        sign, spread): a generator whose classes lie along the heads' class directions passes, and one whose
        classes separate along directions real features do not use fails. Zero-initialised, full-batch Adam
        on ``PROBE_PER_CLASS`` samples of each held class, from its own seeded stream (no run stream moves).
        None when the validation split has no image of a held class.
        """
        found = self._real_val_features(global_model)
        if found is None:
            return None
        real, real_labels = found
        with torch.no_grad():
            own_head = float((global_model.head(real).argmax(1) == real_labels).float().mean())
        device = self.server.device
        labels = self.available_labels.to(device).repeat_interleave(self.PROBE_PER_CLASS)
        rng = self.server.generator("fedgen-probe", rnd)
        noise = torch.rand(len(labels), self.params.noise_dim, generator=rng, device=device)
        with torch.no_grad():
            generated = self.generator(noise, labels)
        # Plain zero tensors, not nn.Linear, whose initialisation would draw from the global RNG.
        weight = torch.zeros(self.server.num_classes, self.feature_dim, device=device, requires_grad=True)
        bias = torch.zeros(self.server.num_classes, device=device, requires_grad=True)
        optimizer = torch.optim.Adam((weight, bias), lr=self.PROBE_LR)
        with torch.enable_grad():
            for _ in range(self.PROBE_STEPS):
                loss = F.cross_entropy(F.linear(generated, weight, bias), labels)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        with torch.no_grad():
            probe = float((F.linear(real, weight, bias).argmax(1) == real_labels).float().mean())
        return probe, own_head

    def mechanism(self, series):
        probe = series.get("server.generator_probe_val_accuracy", {})
        if not probe:
            if series.get("server.generator_teacher_accuracy"):
                return {"engaged": None, "evidence": "not judged: the generator trained, but its probe was not "
                                                     "recorded (no validation image of a class the clients hold)"}
            return {"engaged": False, "evidence": "the generator never trained"}
        last = probe[max(probe)]
        chance = 1.0 / self.scored_classes()

        def last_text(key: str) -> str:
            values = series.get(key, {})
            return f"{100 * values[max(values)]:.1f}%" if values else "not recorded"

        return {"engaged": last >= 2 * chance,
                "evidence": f"a linear head trained only on the generator's last features classifies real "
                            f"validation features {100 * last:.1f}% of the time (chance {100 * chance:.1f}%, "
                            f"engaged at 2x chance; the global model's own head "
                            f"{last_text('server.global_head_probe_val_accuracy')}); the clients' heads classify "
                            f"its features {last_text('server.generator_teacher_accuracy')}; teacher loss "
                            f"{series_mean(series, 'server.generator_teacher_loss'):.3g} (mean)"}

    # ---- state -------------------------------------------------------------------------------
    def server_state(self) -> dict:
        return copy.deepcopy({"generator": self.generator.state_dict(), "optimizer": self.optimizer.state_dict(),
                              "scheduler": self.scheduler.state_dict()})

    def load_server_state(self, state: dict) -> None:
        self.generator.load_state_dict(state["generator"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.generator.eval()
