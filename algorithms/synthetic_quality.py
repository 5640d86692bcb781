"""Diagnostics of DynaFed's synthetic set: is it informative, or noise?

- the matching loss over the synthesis iterations (start and end as means of the first and last tenth,
  since each iteration draws its own trajectory segment);
- label sharpness: the mean top probability of the learned soft labels and how many distinct classes
  their argmax covers (near-uniform labels collapse onto one or two classes);
- quality: the validation accuracy of fresh models trained on the synthetic set alone, as the official
  ``evaluate()`` trains them (SGD momentum 0.9, weight decay 5e-4, lr = the learned inner lr, x0.1 after
  half the epochs, batch 256, DSA), but scored on the server's validation split, never the test set.
  The models train on the learned soft labels through ``kd_loss``, as the server fine-tuning does (the
  spec does not say which loss ``evaluate()`` uses).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from algorithms import dsa
from algorithms.trajectory_matching import SyntheticSet, kd_loss
from benchmarks.engine.api import derive_seed


def loss_start_end(losses: list[float]) -> tuple[float, float]:
    """Means of the first and last tenth (at least one iteration each)."""
    k = max(1, len(losses) // 10)
    return sum(losses[:k]) / k, sum(losses[-k:]) / k


def label_sharpness(label_logits: torch.Tensor) -> tuple[float, int]:
    """(mean top soft-label probability, number of distinct argmax classes)."""
    probs = F.softmax(label_logits.detach(), dim=1)
    return float(probs.max(1).values.mean()), int(probs.argmax(1).unique().numel())


def synthetic_only_accuracy(server, syn: SyntheticSet, models: int, epochs: int, batch: int = 256) -> float:
    """Mean validation accuracy of ``models`` fresh models trained only on ``syn`` (see the module doc)."""
    images, labels = syn.images.detach(), syn.label_logits.detach()
    lr = float(syn.syn_lr.detach())
    scores = []
    for index in range(models):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(server.seed, "dynafed-quality-init", index))
            model, _ = server.make_model()
        gen = server.generator("dynafed-quality", index)
        optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
        model.train()
        for epoch in range(epochs):
            if epoch == epochs // 2 + 1:
                for group in optimizer.param_groups:
                    group["lr"] = lr * 0.1
            order = torch.randperm(len(images), generator=gen, device=gen.device).to(images.device)
            for idx in order.split(batch):
                loss = kd_loss(model(dsa.augment(images[idx], gen)), labels[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        scores.append(server.evaluate(model, server.val, server.eval_batch_size)[0])
    return sum(scores) / len(scores)
