"""Flat parameter vectors: a model whose parameters are views into one contiguous tensor.

Copying a client's starting point, averaging clients, storing a trajectory snapshot and stepping an
optimizer each become one tensor operation instead of a Python loop over parameters. Every federated
model is bound this way once; algorithms and executors exchange flat vectors.
"""
from __future__ import annotations

import math

import torch
from torch import nn


def bind_flat(model: nn.Module) -> torch.Tensor:
    """Re-home ``model``'s parameters as views of one new flat tensor, which is returned.

    Models with buffers are refused: a flat vector of parameters would silently drop them.
    """
    buffers = [name for name, _ in model.named_buffers()]
    if buffers:
        raise ValueError(f"federated models must have no buffers (found {buffers[:3]}); use GroupNorm, not BatchNorm")
    params = list(model.parameters())
    flat = torch.cat([p.detach().reshape(-1) for p in params]).clone()
    offset = 0
    for p in params:
        n = p.numel()
        p.data = flat[offset:offset + n].view_as(p)
        offset += n
    return flat


def flat_grad(loss: torch.Tensor, params: list[torch.Tensor]) -> torch.Tensor:
    """Gradient of ``loss`` w.r.t. ``params`` as one flat vector (zeros for unused parameters)."""
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params)])


def unflatten(flat: torch.Tensor, like: list[torch.Tensor]) -> list[torch.Tensor]:
    """Split a flat vector into views shaped like ``like`` (for functional forwards)."""
    out, offset = [], 0
    for p in like:
        n = p.numel()
        out.append(flat[offset:offset + n].view_as(p))
        offset += n
    return out


class FlatOptimizer:
    """SGD (momentum, L2 weight decay) or Adam (L2 weight decay, as torch.optim.Adam) on a flat vector.

    The state is a plain dict of tensors so that it can persist per client across rounds (DynaFed keeps
    every client's Adam moments) and be checkpointed or stacked for a vectorised executor.
    """

    def __init__(self, kind: str, lr: float, momentum: float = 0.0, weight_decay: float = 0.0,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        if kind not in ("sgd", "adam"):
            raise ValueError(f"clients.optimizer: {kind!r} is not one of sgd, adam")
        self.kind, self.lr, self.momentum, self.weight_decay = kind, lr, momentum, weight_decay
        self.betas, self.eps = betas, eps

    def init_state(self, flat: torch.Tensor) -> dict:
        if self.kind == "adam":
            return {"step": 0, "exp_avg": torch.zeros_like(flat), "exp_avg_sq": torch.zeros_like(flat)}
        return {"step": 0, "momentum_buffer": torch.zeros_like(flat) if self.momentum else None}

    @torch.no_grad()
    def step(self, flat: torch.Tensor, grad: torch.Tensor, state: dict) -> None:
        if self.weight_decay:
            grad = grad.add(flat, alpha=self.weight_decay)
        state["step"] += 1
        if self.kind == "sgd":
            if self.momentum:
                buf = state["momentum_buffer"]
                if state["step"] == 1:
                    buf.copy_(grad)
                else:
                    buf.mul_(self.momentum).add_(grad)
                grad = buf
            flat.add_(grad, alpha=-self.lr)
            return
        beta1, beta2 = self.betas
        step = state["step"]
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        bias1 = 1 - beta1 ** step
        bias2_sqrt = math.sqrt(1 - beta2 ** step)
        denom = (exp_avg_sq.sqrt() / bias2_sqrt).add_(self.eps)
        flat.addcdiv_(exp_avg, denom, value=-self.lr / bias1)
