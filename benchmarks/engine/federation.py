"""From a run config to a federation: normalised tensors on the device, server splits, client indices.

Order of carving (fixed, so that every algorithm of a sweep sees identical clients): optional training
subset -> server validation and proxy splits -> partition of what remains among the clients. The test
set is kept apart and handed only to the runner's final evaluation.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from benchmarks.engine.api import TensorData
from benchmarks.data.datasets import DATASETS, Dataset, load_dataset
from benchmarks.data.partition import partition, partition_stats, server_splits
from benchmarks.core.seeding import derive_seed
from benchmarks.core.typed import ConfigError
from benchmarks.engine.settings import DatasetConfig, PartitionConfig


@dataclass
class Federation:
    dataset: Dataset
    train: TensorData
    client_indices: list[torch.Tensor]
    val: TensorData
    proxy: TensorData | None
    test: TensorData | None
    stats: dict
    proxy_positions: np.ndarray
    val_positions: np.ndarray

    @property
    def num_classes(self) -> int:
        return self.dataset.num_classes

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.dataset.train_x.shape[1:])

    def describe(self) -> dict:
        return {"name": self.dataset.name, "title": DATASETS[self.dataset.name].title,
                "source": self.dataset.source, "notes": self.dataset.notes,
                "n_client_pool": int(sum(len(i) for i in self.client_indices)), "n_val": len(self.val),
                "n_proxy": 0 if self.proxy is None else len(self.proxy),
                "n_test": 0 if self.test is None else len(self.test),
                "num_classes": self.num_classes, "input_shape": list(self.input_shape)}


def normalise(x_uint8: torch.Tensor, mean, std, device: torch.device, chunk: int = 8192) -> torch.Tensor:
    """uint8 (N,C,H,W) -> float32 ((x/255 - mean) / std) on ``device``, in chunks to bound peak memory."""
    out = torch.empty(x_uint8.shape, dtype=torch.float32, device=device)
    m = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    for start in range(0, len(x_uint8), chunk):
        part = x_uint8[start:start + chunk].to(device, torch.float32).div_(255.0)
        out[start:start + chunk] = (part - m) / s
    return out


def stratified_subset(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Sorted positions of a class-stratified random subset of ``size`` labels."""
    if size >= len(labels):
        raise ConfigError(f"dataset.train_subset: {size} must be < the training set size ({len(labels)})")
    rng = np.random.default_rng(seed)
    keep = []
    classes, counts = np.unique(labels, return_counts=True)
    quotas = np.floor(counts * size / len(labels)).astype(int)
    for _ in range(size - quotas.sum()):
        quotas[np.argmax(counts - quotas * len(labels) / size)] += 1
    for cls, quota in zip(classes, quotas):
        pos = np.flatnonzero(labels == cls)
        keep.append(rng.choice(pos, size=quota, replace=False))
    return np.sort(np.concatenate(keep))


@dataclass
class SplitPlan:
    """Where every training image of a run goes, as positions in the training set: computed from labels
    alone, so `hetbench partition` shows exactly the clients a run would get without normalising pixels
    or moving them to a device."""
    subset: np.ndarray
    client_pool: np.ndarray
    val: np.ndarray
    proxy: np.ndarray
    clients: list[np.ndarray]
    stats: dict


def plan_split(data: DatasetConfig, p: PartitionConfig, labels: np.ndarray, num_classes: int) -> SplitPlan:
    """The run's subset, server splits and client partition (the runner's only code path for them)."""
    pseed = p.seed
    positions = np.arange(len(labels))
    if data.train_subset:
        positions = stratified_subset(labels, data.train_subset, derive_seed(pseed, "subset"))
    own_proxy = data.proxy_source == "train"
    splits = server_splits(labels[positions], data.val_fraction,
                           data.proxy_fraction if own_proxy else 0.0, derive_seed(pseed, "server-splits"))
    pool, val_pos, proxy_pos = positions[splits.client_pool], positions[splits.val], positions[splits.proxy]
    if data.proxy_source == "unused":
        proxy_pos = _unused_positions(len(labels), positions, data.proxy_fraction, pseed)
    parts = partition(labels[pool], p.clients, p.scheme, seed=pseed, alpha=p.alpha,
                      classes_per_client=p.classes_per_client, quantity_sizes=p.quantity_sizes,
                      quantity_sigma=p.quantity_sigma, min_size=p.min_size, num_classes=num_classes)
    stats = partition_stats(labels[pool], parts, num_classes)
    return SplitPlan(positions, pool, val_pos, proxy_pos, [pool[part] for part in parts], stats)


def build_federation(data: DatasetConfig, p: PartitionConfig, device: torch.device, data_dir=None,
                     eval_test: bool = True) -> Federation:
    """The federation a run's dataset and partition settings describe; ``eval_test`` false never
    loads the test set onto the device."""
    ds = load_dataset(data.name, data_dir=data_dir)
    plan = plan_split(data, p, ds.train_y.numpy(), ds.num_classes)
    train_x = normalise(ds.train_x, ds.mean, ds.std, device)
    train_y = ds.train_y.to(device)
    val = TensorData(train_x[torch.from_numpy(plan.val).to(device)], train_y[torch.from_numpy(plan.val).to(device)])
    if data.proxy_source == "unused":
        data = replace(data, proxy_source="train")  # taken from this run's own training tensor, as a slice
    proxy = _proxy_data(data, p.seed, ds, train_x, plan.proxy, device)
    test = TensorData(normalise(ds.test_x, ds.mean, ds.std, device), ds.test_y.to(device)) if eval_test else None
    clients = [torch.from_numpy(cp).long() for cp in plan.clients]
    return Federation(ds, TensorData(train_x, train_y), clients, val, proxy, test, plan.stats, plan.proxy, plan.val)


def _unused_positions(n_train: int, subset: np.ndarray, fraction: float, pseed: int) -> np.ndarray:
    """Sorted positions of ``fraction`` x ``n_train`` training images outside the run's subset: no client
    and no validation image is among them."""
    unused = np.setdiff1d(np.arange(n_train), subset)
    rng = np.random.default_rng(derive_seed(pseed, "unused-proxy"))
    return np.sort(rng.choice(unused, size=int(round(fraction * n_train)), replace=False))


def _proxy_data(data: DatasetConfig, pseed: int, ds: Dataset, train_x: torch.Tensor, proxy_pos: np.ndarray,
                device) -> TensorData | None:
    """The server's unlabelled proxy images: labels are dropped here so no algorithm can use them."""
    if data.proxy_source == "train":
        if len(proxy_pos) == 0:
            return None
        return TensorData(train_x[torch.from_numpy(proxy_pos).to(device)], None)
    other = load_dataset(data.proxy_source)
    if tuple(other.train_x.shape[1:]) != tuple(ds.train_x.shape[1:]):
        raise ConfigError(f"dataset.proxy_source: {data.proxy_source!r} images are "
                          f"{tuple(other.train_x.shape[1:])}, the run's are {tuple(ds.train_x.shape[1:])}")
    size = int(round(data.proxy_fraction * len(ds.train_y)))
    if size == 0:
        raise ConfigError("dataset.proxy_fraction: must be > 0 to take proxy images from another dataset")
    rng = np.random.default_rng(derive_seed(pseed, "external-proxy"))
    pick = np.sort(rng.choice(len(other.train_y), size=min(size, len(other.train_y)), replace=False))
    return TensorData(normalise(other.train_x[torch.from_numpy(pick)], ds.mean, ds.std, device), None)
