"""DynaFed (Pi et al., CVPR 2023): FedAvg whose server distils the global trajectory into a small
synthetic set once, then fine-tunes every aggregated model on it (spec: reference/algorithms.md §1).

Procedure, as the official code runs it:
- the server records the global parameters after every round, the initial model first;
- at the start of round ``trajectory_length`` (once the trajectory holds that many snapshots) it
  synthesises ``ipc`` images per class by trajectory matching (``algorithms.trajectory_matching``) with
  learned soft labels and a learned inner learning rate;
- from then on every round is a uniform client mean followed by ``distill_epochs`` passes of Adam
  (fresh every round) over the DSA-augmented synthetic set against its learned soft labels.
Clients never see the synthetic data.

Deliberate deviations from the official code, and choices it leaves open:
- Aggregation is always the uniform client mean, whatever ``aggregation`` the run config says,
  because that is what the official code does before and after synthesis.
- Recording stops once synthesis has run. The official code keeps appending snapshots but never reads
  them again (synthesis runs once), so the result is the same without the memory.
- The official fine-tuning first does 3 no-grad forward passes to refresh BatchNorm statistics; our
  models have no buffers (GroupNorm), where those passes do nothing, so they are skipped.
- The synthesizer's diagnostic ``evaluate()`` (fresh nets trained on the synthetic set) runs once after
  synthesis, scored on the validation split instead of the test set (``quality_models`` x
  ``quality_epochs``; ``algorithms.synthetic_quality``), with the matching-loss curve and the labels'
  sharpness; ``mechanism`` flags a synthetic set whose models stay under twice chance.
- ``validate`` refuses runs that would never synthesise (rounds < trajectory_length) rather than
  silently running FedAvg.
- Snapshots are kept on the run's device, not copied to the CPU.
- Randomness (initial images, start snapshots, target draws, DSA) comes from one seeded server stream
  for synthesis and one per round for fine-tuning, instead of the official global RNGs, so runs are
  bit-reproducible; the Adams are ``benchmarks.engine.flat`` Adams, the same update as ``torch.optim.Adam``.
- No reduced-precision synthesis option: bfloat16 autocast could only be measured on a GPU, which this
  implementation was not timed on.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from algorithms import dsa, synthetic_quality
from algorithms.fedavg import FedAvg
from benchmarks.engine.api import ConfigError, flat_grad, FlatOptimizer, register, SearchRange, series_mean, setting
from algorithms.trajectory_matching import SyntheticSet, TrajectoryMatcher, kd_loss

ARTIFACT_TENSORS = "dynafed_synthetic.pt"
ARTIFACT_GRID = "dynafed_synthetic.png"
ARTIFACT_CURVE = "dynafed_matching_loss.csv"


@dataclass(frozen=True)
class DynaFedParams:
    trajectory_length: int = setting(25, ge=2, doc="snapshots (initial model included) before synthesis; "
                                                   "synthesis runs at the start of this round")
    ipc: int = setting(15, ge=1, doc="synthetic images per class")
    syn_steps: int = setting(20, ge=1, doc="unrolled SGD steps per matching iteration")
    expert_epochs: int = setting(3, ge=1, doc="target snapshots lie this many rounds after the start")
    iterations: int = setting(3000, ge=1, doc="outer matching iterations")
    lr_img: float = setting(0.05, gt=0.0, doc="Adam lr of the synthetic images")
    lr_lr: float = setting(1e-5, ge=0.0, doc="Adam lr of the learned inner learning rate")
    lr_label: float = setting(0.01, ge=0.0, doc="Adam lr of the label logits")
    syn_lr_init: float = setting(0.04, gt=0.0, doc="initial inner learning rate (official lr_teacher)")
    label_init: float = setting(0.0, doc="initial logits = one-hot(class) x label_init; 0 = uniform labels")
    distill_lr: float = setting(1e-4, gt=0.0, official_by_dataset={"cinic10": 2.5e-4},
                                doc="server fine-tuning Adam lr (2.5e-4 in the CINIC-10 scripts)",
                                tune=SearchRange(1e-5, 1e-2, log=True))
    distill_epochs: int = setting(20, ge=0, official_by_dataset={"cifar100": 8},
                                  doc="server fine-tuning passes over the synthetic set per round "
                                      "(8 in the CIFAR-100 scripts)",
                                  tune=SearchRange(1, 40))
    finetune_batch: int = setting(256, ge=1, doc="server fine-tuning batch size")
    max_start_epoch: int = setting(50, ge=0, doc="latest start snapshot")
    min_start_epoch: int = setting(0, ge=0, doc="earliest start snapshot")
    least_ave_num: int = setting(2, ge=1, doc="fewest snapshots averaged into a target")
    max_ave_num: int = setting(10, ge=1, doc="most snapshots averaged into a target (capped by expert_epochs)")
    quality_models: int = setting(3, ge=0, diagnostic=True,
                                  doc="diagnostic: fresh models trained on the synthetic set alone after "
                                      "synthesis, scored on the validation split (official evaluate(): 3, on "
                                      "the test set); 0 = skip")
    quality_epochs: int = setting(500, ge=1, diagnostic=True,
                                  doc="diagnostic: their training epochs (official 500)")


# One unrolled matching step per synthetic image costs this many client training samples (measured here).
UNROLLED_STEP_COST = 3.0


@register("dynafed", title="DynaFed")
class DynaFed(FedAvg):
    Params = DynaFedParams
    tiny_budget = {"trajectory_length": 4, "expert_epochs": 2, "iterations": 2, "syn_steps": 2, "ipc": 2,
                   "distill_epochs": 1, "quality_models": 1, "quality_epochs": 2}

    def __init__(self, params: DynaFedParams, server):
        super().__init__(params, server)
        self.trajectory: list[torch.Tensor] = []
        self.synthetic: SyntheticSet | None = None
        self.matching_losses: list[float] = []

    @classmethod
    def validate(cls, cfg) -> None:
        hp, where = cfg.hparams, "algorithms.dynafed"
        if hp.min_start_epoch > hp.max_start_epoch:
            raise ConfigError(f"{where}.min_start_epoch: {hp.min_start_epoch} must be <= max_start_epoch "
                              f"({hp.max_start_epoch})")
        needed = hp.min_start_epoch + hp.expert_epochs + 1
        if hp.trajectory_length < needed:
            raise ConfigError(f"{where}.trajectory_length: {hp.trajectory_length} leaves no start snapshot; "
                              f"must be >= min_start_epoch + expert_epochs + 1 ({needed})")
        if hp.least_ave_num > min(hp.max_ave_num, hp.expert_epochs):
            raise ConfigError(f"{where}.least_ave_num: {hp.least_ave_num} must be <= min(max_ave_num, "
                              f"expert_epochs) ({min(hp.max_ave_num, hp.expert_epochs)})")
        if cfg.rounds < hp.trajectory_length:
            raise ConfigError(f"{where}.trajectory_length: {hp.trajectory_length} must be <= rounds "
                              f"({cfg.rounds}), or synthesis never runs")

    @classmethod
    def estimate_extra_seconds(cls, cfg, work, costs) -> float:
        hp = cfg.hparams
        images = hp.ipc * work.num_classes
        # Every unrolled step trains on the whole synthetic set; the backward pass through the unrolled
        # graph roughly doubles it again (UNROLLED_STEP_COST, fitted to the quick suite's 94 s synthesis).
        synthesis = hp.iterations * hp.syn_steps * images * costs.train_sample * UNROLLED_STEP_COST
        finetune_rounds = cfg.rounds - hp.trajectory_length + 1
        finetune = finetune_rounds * hp.distill_epochs * images * costs.train_sample
        quality = hp.quality_models * hp.quality_epochs * images * costs.train_sample
        return synthesis + finetune + quality

    @property
    def synthesised(self) -> bool:
        return self.synthetic is not None

    # ---- trajectory and synthesis --------------------------------------------------------------
    def setup(self, global_model, global_flat) -> None:
        self.trajectory = [global_flat.detach().clone()]

    def before_round(self, rnd, global_model, global_flat) -> None:
        if self.synthesised or len(self.trajectory) < self.params.trajectory_length:
            return
        with self.server.timed("synthesis"):
            self.synthetic = self.synthesise()
        self.log_synthetic_set(global_model)

    def synthesise(self) -> SyntheticSet:
        hp, server = self.params, self.server
        gen = server.generator("dynafed-synthesis")
        model, _ = server.make_model()
        dtype = self.trajectory[0].dtype
        syn = SyntheticSet.initial(server.num_classes, hp.ipc, server.input_shape, hp.syn_lr_init, hp.label_init,
                                   gen, server.device, dtype)
        matcher = TrajectoryMatcher(model, torch.stack(self.trajectory), syn, hp, gen)
        self.matching_losses = []
        for iteration in range(1, hp.iterations + 1):
            self.matching_losses.append(matcher.step())
            server.show_status(f"synthesis {iteration}/{hp.iterations}, matching loss {self.matching_losses[-1]:.3f}")
        server.show_status("")
        server.log("synthesis_matching_loss", self.matching_losses[-1])
        server.log("synthesis_lr", syn.syn_lr.item())
        return syn

    def log_synthetic_set(self, global_model) -> None:
        """The synthetic set's diagnostics (``algorithms.synthetic_quality``), logged in the synthesis round;
        with the quality diagnostic, the validation accuracy of the trajectory's last model (``global_model``
        at this point) beside it: a set distilled from the trajectory can hardly teach more than its models
        know."""
        server, syn = self.server, self.synthetic
        start, end = synthetic_quality.loss_start_end(self.matching_losses)
        top, distinct = synthetic_quality.label_sharpness(syn.label_logits)
        server.log("synthesis_loss_start", start)
        server.log("synthesis_loss_end", end)
        server.log("label_top_probability", top)
        server.log("label_distinct_argmax", distinct)
        if self.params.quality_models:
            with server.timed("quality"):
                accuracy = synthetic_quality.synthetic_only_accuracy(server, syn, self.params.quality_models,
                                                                     self.params.quality_epochs,
                                                                     self.params.finetune_batch)
            server.log("synthetic_only_val_accuracy", accuracy)
            server.log("trajectory_val_accuracy", server.evaluate(global_model, server.val, server.eval_batch_size)[0])

    def mechanism(self, series):
        if "server.synthesis_loss_end" not in series:
            return {"engaged": False, "evidence": "synthesis never ran"}
        only = lambda key: next(iter(series.get(key, {}).values()), float("nan"))  # noqa: E731 (one round)
        chance = 1.0 / self.server.num_classes
        labels = (f"labels: mean top probability {only('server.label_top_probability'):.2f}, "
                  f"{only('server.label_distinct_argmax'):.0f} of {self.server.num_classes} classes as argmax; "
                  f"matching loss {only('server.synthesis_loss_start'):.3f} -> {only('server.synthesis_loss_end'):.3f}")
        accuracy = only("server.synthetic_only_val_accuracy")
        if accuracy != accuracy:
            return {"engaged": None, "evidence": f"quality not measured (quality_models = 0); {labels}"}
        known = only("server.trajectory_val_accuracy")
        source = "" if known != known else f", the trajectory's last model {100 * known:.1f}%"
        return {"engaged": accuracy >= 2 * chance,
                "evidence": f"fresh models trained on the synthetic set alone reach {100 * accuracy:.1f}% on "
                            f"validation (chance {100 * chance:.1f}%, engaged at 2x chance{source}); {labels}; "
                            f"fine-tuning {series_mean(series, 'server.finetune_steps'):.0f} steps a round"}

    # ---- aggregation and fine-tuning ---------------------------------------------------------
    def aggregation_weights(self, updates):
        return torch.full((len(updates),), 1.0 / len(updates), dtype=torch.float64)

    def after_aggregate(self, rnd, global_model, global_flat, updates) -> None:
        if not self.synthesised:
            self.trajectory.append(global_flat.detach().clone())
            return
        with self.server.timed("finetune"):
            losses = self.finetune(rnd, global_model, global_flat)
        self.server.log("finetune_steps", len(losses))
        if losses:
            self.server.log("finetune_last_loss", losses[-1])

    def finetune(self, rnd: int, model, flat: torch.Tensor) -> list[float]:
        """Fresh Adam, ``distill_epochs`` shuffled passes over the synthetic set; returns each step's loss."""
        hp, syn = self.params, self.synthetic
        gen = self.server.generator("dynafed-finetune", rnd)
        images, label_logits = syn.images.detach(), syn.label_logits.detach()
        params = list(model.parameters())
        optimizer = FlatOptimizer("adam", hp.distill_lr)
        state = optimizer.init_state(flat)
        was_training = model.training
        model.train()
        losses = []
        for _ in range(hp.distill_epochs):
            order = torch.randperm(len(images), generator=gen, device=gen.device).to(images.device)
            for idx in order.split(hp.finetune_batch):
                loss = kd_loss(model(dsa.augment(images[idx], gen)), label_logits[idx])
                optimizer.step(flat, flat_grad(loss, params), state)
                losses.append(loss.item())
        model.train(was_training)
        return losses

    # ---- state and artifacts -----------------------------------------------------------------
    def server_state(self) -> dict:
        state = {"trajectory": [t.clone() for t in self.trajectory], "synthesised": self.synthesised,
                 "matching_losses": torch.tensor(self.matching_losses, dtype=torch.float64)}
        if self.synthetic is not None:
            state.update(self.synthetic.state())
        return state

    def load_server_state(self, state: dict) -> None:
        device = self.server.device
        self.trajectory = [t.to(device).clone() for t in state["trajectory"]]
        self.synthetic = SyntheticSet.from_state(state, device) if state["synthesised"] else None
        self.matching_losses = state.get("matching_losses", torch.zeros(0)).tolist()

    def write_artifacts(self, run_dir: Path) -> list[str]:
        if self.synthetic is None:
            return []
        run_dir = Path(run_dir)
        state = {k: v.cpu() for k, v in self.synthetic.state().items()}
        torch.save(state, run_dir / ARTIFACT_TENSORS)
        save_grid(state["images"], state["label_logits"], self.server.num_classes, self.params.ipc,
                  self.server.mean, self.server.std, run_dir / ARTIFACT_GRID)
        with open(run_dir / ARTIFACT_CURVE, "w") as fh:
            fh.write("iteration,matching_loss\n")
            fh.writelines(f"{i},{loss!r}\n" for i, loss in enumerate(self.matching_losses, start=1))
        return [ARTIFACT_TENSORS, ARTIFACT_GRID, ARTIFACT_CURVE]


def tile(images: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """(rows*cols, C, H, W) images in row-major order -> one (rows*H, cols*W, C) picture."""
    c, h, w = images.shape[1:]
    return images.view(rows, cols, c, h, w).permute(0, 3, 1, 4, 2).reshape(rows * h, cols * w, c)


def save_grid(images: torch.Tensor, label_logits: torch.Tensor, num_classes: int, ipc: int,
              mean, std, path: Path) -> None:
    """One row per initial class slot, un-normalised to pixels; each row says which class its images'
    learned labels now favour (labels start uniform, so a slot's class is not imposed)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c, h = images.shape[1:3]
    m = torch.tensor(mean, dtype=images.dtype).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=images.dtype).view(1, -1, 1, 1)
    tiles = tile(((images * s + m).clamp(0, 1)).float(), num_classes, ipc)
    learned = label_logits.argmax(1).view(num_classes, ipc).mode(1).values.tolist()
    fig, ax = plt.subplots(figsize=(max(3.5, 0.4 * ipc + 1.5), max(2.0, 0.4 * num_classes)))
    ax.imshow(tiles.squeeze(2).numpy(), cmap="gray" if c == 1 else None, interpolation="nearest")
    ax.set_yticks([(i + 0.5) * h for i in range(num_classes)])
    ax.set_yticklabels([f"slot {i}: {k}" for i, k in enumerate(learned)], fontsize=max(3, 8 - num_classes // 20))
    ax.set_xticks([])
    ax.set_title("DynaFed synthetic set", fontsize=8)
    ax.set_ylabel("slot: majority learned label", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
