"""Data beyond a federation's partition: the reserve of held-out labelled images, and clients' extra
local examples (an algorithm's ``extra_local_data``, such as ReGL's synthetic images).

Both leave the federation as it is (its splits, its clients' real data, the statistics saved with every
run): the reserve is a view chosen by positions, and extra examples go into a separate training tensor
that only the executor trains on.
"""
from __future__ import annotations

import numpy as np
import torch

from benchmarks.engine.api import Reserve, TensorData


def reserve_of(train: TensorData, client_indices: list[torch.Tensor], val_positions: np.ndarray,
               proxy_positions: np.ndarray) -> Reserve | None:
    """The training images no client, validation or proxy split holds, as a lazily gathered
    :class:`Reserve`; None when every image has a place (no ``train_subset``).

    The subset is carved whole into the client pool, validation and own-proxy splits, and an ``unused``
    proxy lies outside it, so "no split holds it" is exactly "outside the subset, less the proxy slice".
    """
    taken = np.concatenate([*(idx.numpy() for idx in client_indices), val_positions, proxy_positions])
    free = np.setdiff1d(np.arange(len(train)), taken.astype(np.int64))
    if len(free) == 0:
        return None
    positions = torch.from_numpy(free).to(train.x.device)
    return Reserve(train.x, positions, train.y[positions])


def with_extra_data(train: TensorData, client_indices: list[torch.Tensor],
                    extras: list[TensorData | None]) -> tuple[TensorData, list[torch.Tensor]]:
    """A training tensor of the clients' own images followed by their extra examples, and each client's
    indices into it: its real images first, in their original order (so a client without extras draws
    exactly the batches it would have), then its extras. Only the client pool is copied, not the whole
    training set."""
    for cid, extra in enumerate(extras):
        if extra is None or len(extra) == 0:
            continue
        if extra.y is None or len(extra.y) != len(extra.x):
            raise ValueError(f"extra_local_data of client {cid}: every extra image needs a label")
        if extra.x.shape[1:] != train.x.shape[1:] or extra.x.dtype != train.x.dtype:
            raise ValueError(f"extra_local_data of client {cid}: images are {tuple(extra.x.shape[1:])} "
                             f"{extra.x.dtype}, the run's are {tuple(train.x.shape[1:])} {train.x.dtype}")
    pool = torch.cat(client_indices).to(train.x.device)
    xs, ys, indices = [train.x[pool]], [train.y[pool]], []
    start, end = 0, len(pool)
    for idx, extra in zip(client_indices, extras):
        own = torch.arange(start, start + len(idx))
        start += len(idx)
        if extra is None or len(extra) == 0:
            indices.append(own)
            continue
        xs.append(extra.x.to(train.x.device))
        ys.append(extra.y.to(train.y.device, torch.int64))
        indices.append(torch.cat([own, torch.arange(end, end + len(extra))]))
        end += len(extra)
    return TensorData(torch.cat(xs), torch.cat(ys)), indices
