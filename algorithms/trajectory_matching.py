"""Dataset distillation by trajectory matching, as DynaFed's official synthesizer does it (spec 1.2-1.3).

A synthetic set is good when a few SGD steps on it carry a model from a snapshot of the global
trajectory to where the federation took it a few rounds later. Each outer iteration therefore:
1. picks a start snapshot w_s and a target, the mean of k snapshots drawn with replacement from
   w_{s+1} .. w_{s+expert_epochs} (DynaFed's ``--weight_averaging``);
2. unrolls ``syn_steps`` SGD steps from w_s on the whole DSA-augmented synthetic set, keeping the graph;
3. scores ||theta_N - target||^2 / ||w_s - target||^2 and takes one Adam step on the images, the label
   logits and the inner learning rate.

Speed: the student is one flat parameter vector; each step unflattens it into views for
``torch.func.functional_call`` and takes one ``autograd.grad`` with respect to the flat vector, so no
Python loop runs over parameters' gradients or updates. Memory grows with
(synthetic images) x (syn_steps), because the whole unrolled graph is kept for the outer backward.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from algorithms import dsa
from benchmarks.engine.api import FlatOptimizer


def kd_loss(logits: torch.Tensor, label_logits: torch.Tensor) -> torch.Tensor:
    """DynaFed's soft-label loss: mean over all B x C entries of -softmax(y) * log_softmax(out).

    This is soft cross-entropy divided by the number of classes; the learned inner learning rate is
    tuned to this scale, so it is kept.
    """
    return -(F.softmax(label_logits, dim=1) * F.log_softmax(logits, dim=1)).mean()


@dataclass
class SyntheticSet:
    """What synthesis learns: images (normalised input space), label logits and the inner lr."""
    images: torch.Tensor
    label_logits: torch.Tensor
    syn_lr: torch.Tensor

    @classmethod
    def initial(cls, num_classes: int, ipc: int, shape: tuple[int, ...], syn_lr: float, label_init: float,
                gen: torch.Generator, device: torch.device, dtype: torch.dtype = torch.float32) -> SyntheticSet:
        """N(0,1) images and one-hot(class-major) x ``label_init`` logits (DynaFed passes 0: uniform)."""
        n = num_classes * ipc
        images = torch.randn((n, *shape), generator=gen, device=gen.device, dtype=dtype).to(device)
        classes = torch.arange(num_classes, device=device).repeat_interleave(ipc)
        logits = F.one_hot(classes, num_classes).to(dtype) * label_init
        lr = torch.tensor(syn_lr, dtype=dtype, device=device)
        return cls(images.requires_grad_(True), logits.requires_grad_(True), lr.requires_grad_(True))

    def state(self) -> dict[str, torch.Tensor]:
        return {"images": self.images.detach().clone(), "label_logits": self.label_logits.detach().clone(),
                "syn_lr": self.syn_lr.detach().clone()}

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor], device: torch.device) -> SyntheticSet:
        """Rebuild from ``state()``; checkpoints load on the CPU, so tensors move to ``device``."""
        return cls(*(state[k].to(device).clone().requires_grad_(True) for k in ("images", "label_logits", "syn_lr")))


class FunctionalNet:
    """Runs ``model``'s architecture with parameters taken from a flat vector (views, no copies)."""

    def __init__(self, model: nn.Module):
        self.model = model
        named = list(model.named_parameters())
        self.names = [name for name, _ in named]
        self.shapes = [p.shape for _, p in named]
        self.numels = [p.numel() for _, p in named]

    def __call__(self, flat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        views = flat.split(self.numels)
        params = {name: v.view(shape) for name, v, shape in zip(self.names, views, self.shapes)}
        return functional_call(self.model, params, (x,))


def sample_expert_segment(n_snapshots: int, expert_epochs: int, min_start: int, max_start: int,
                          least_ave: int, max_ave: int, gen: torch.Generator) -> tuple[int, torch.Tensor]:
    """(start index s, indices of the snapshots averaged into the target).

    s ~ U{min_start .. min(max_start, n_snapshots - 1 - expert_epochs)}; k ~ U{least_ave .. min(max_ave,
    expert_epochs)}; the k indices are drawn with replacement from s+1 .. s+expert_epochs.
    """
    last_start = min(max_start, n_snapshots - 1 - expert_epochs)
    most = min(max_ave, expert_epochs)
    if last_start < min_start or most < least_ave:
        raise ValueError(f"no expert segment: {n_snapshots} snapshots, expert_epochs {expert_epochs}, "
                         f"start in [{min_start}, {max_start}], averaging {least_ave}..{max_ave}")
    start = int(torch.randint(min_start, last_start + 1, (1,), generator=gen, device=gen.device).item())
    k = int(torch.randint(least_ave, most + 1, (1,), generator=gen, device=gen.device).item())
    picks = start + 1 + torch.randint(expert_epochs, (k,), generator=gen, device=gen.device)
    return start, picks.cpu()


def unrolled_matching_loss(net: FunctionalNet, syn: SyntheticSet, start: torch.Tensor, target: torch.Tensor,
                           syn_steps: int, gen: torch.Generator) -> torch.Tensor:
    """||theta_N - target||^2 / ||start - target||^2 after ``syn_steps`` differentiable SGD steps.

    Every step uses the whole synthetic set under a fresh DSA draw, as DynaFed's default batch_syn
    (= all synthetic images) does.
    """
    theta = start.detach().requires_grad_(True)
    for _ in range(syn_steps):
        loss = kd_loss(net(theta, dsa.augment(syn.images, gen)), syn.label_logits)
        grad, = torch.autograd.grad(loss, theta, create_graph=True)
        theta = theta - syn.syn_lr * grad
    return (theta - target).pow(2).sum() / (start - target).pow(2).sum()


class TrajectoryMatcher:
    """Owns the synthetic set and its three Adam optimisers; ``step()`` is one outer iteration.

    The optimisers are flat Adams (``benchmarks.engine.flat``, same update as ``torch.optim.Adam``), each with
    its own learning rate as in the official code.
    """

    def __init__(self, model: nn.Module, trajectory: torch.Tensor, syn: SyntheticSet, hp, gen: torch.Generator):
        """``trajectory`` is (snapshots, parameters); ``hp`` carries DynaFed's synthesis settings."""
        self.net = FunctionalNet(model)
        self.trajectory = trajectory
        self.syn = syn
        self.hp = hp
        self.gen = gen
        self.learned = (syn.images, syn.syn_lr, syn.label_logits)
        self.optimizers = tuple(FlatOptimizer("adam", lr) for lr in (hp.lr_img, hp.lr_lr, hp.lr_label))
        self.states = tuple(opt.init_state(t) for opt, t in zip(self.optimizers, self.learned))

    def target(self) -> tuple[torch.Tensor, torch.Tensor]:
        hp = self.hp
        start, picks = sample_expert_segment(len(self.trajectory), hp.expert_epochs, hp.min_start_epoch,
                                             hp.max_start_epoch, hp.least_ave_num, hp.max_ave_num, self.gen)
        return self.trajectory[start], self.trajectory[picks.to(self.trajectory.device)].mean(0)

    def step(self) -> float:
        start, target = self.target()
        loss = unrolled_matching_loss(self.net, self.syn, start, target, self.hp.syn_steps, self.gen)
        grads = torch.autograd.grad(loss, self.learned)
        for opt, tensor, grad, state in zip(self.optimizers, self.learned, grads, self.states):
            opt.step(tensor, grad, state)
        return loss.item()
