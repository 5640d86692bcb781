"""ReGL's upper bound: "generated" images that are real held-out training images of the asked classes.

They come from the server's reserve (``ServerContext.reserve``): labelled training images outside the
run's ``dataset.train_subset`` that no client, no validation split and no proxy split (FedDF's
``unused`` slice included) holds. A perfect generator could do no better than images from the clients'
own distribution that no client has, so this backend bounds what any real generator can add.
"""
from __future__ import annotations

import torch

from benchmarks.engine.api import ConfigError, ServerContext, TensorData


def reserve_needed(server: ServerContext, who: str):
    """The server's reserve, or one line saying why there is none."""
    if server.reserve is None or len(server.reserve) == 0:
        raise ConfigError(f"dataset.train_subset: {who} draws labelled images held out of the federation, "
                          "which exist only outside a training subset; set train_subset > 0")
    return server.reserve


class OracleGenerator:
    """Draws, without replacement within a client, from the reserve's images of each asked class. A class
    with fewer reserve images than asked gives all it has (never the case in our suites: each class keeps
    thousands)."""
    caches = False  # a draw costs an index gather, cheaper than keeping it in every checkpoint

    def __init__(self, server: ServerContext):
        self.server = server
        self.by_class: list[torch.Tensor] = []

    def prepare(self) -> None:
        reserve = reserve_needed(self.server, "regl_oracle")
        labels = reserve.y.cpu()
        self.by_class = [torch.nonzero(labels == c).flatten() for c in range(self.server.num_classes)]

    def generate(self, counts: torch.Tensor, seed: int, local: TensorData) -> TensorData:
        gen = torch.Generator(device="cpu").manual_seed(seed)
        picks = []
        for cls, wanted in enumerate(counts.tolist()):
            pool = self.by_class[cls]
            if wanted > 0 and len(pool):
                picks.append(pool[torch.randperm(len(pool), generator=gen)[:wanted]])
        index = torch.cat(picks) if picks else torch.zeros(0, dtype=torch.long)
        reserve = self.server.reserve
        return TensorData(reserve.images(index), reserve.y[index.to(reserve.y.device)])
