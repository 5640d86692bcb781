"""Values that the typed bounds let through but a run cannot survive: checked when a config is built, so
they fail as one line before any work instead of as a traceback minutes into a sweep."""
from __future__ import annotations

import re
from functools import lru_cache

import torch

from benchmarks.core.typed import ConfigError
from benchmarks.data.datasets import DATASETS
from benchmarks.engine.settings import RunConfig
from benchmarks.models import build_model

# The Dirichlet draws divide by alpha in log space; below ~1e-307 that overflows to -inf and the
# partition turns into NaN sizes (measured: 1e-307 works, 2.2e-308 does not), so keep a wide margin.
ALPHA_FLOOR = 1e-300
# A run holds the global model, every sampled client's copy and optimizer state and the algorithm's
# extras; past ~1e9 float32 parameters (4 GB a copy) that cannot fit, and a width typo is the usual cause.
MAX_PARAMETERS = 10 ** 9
DEVICE = re.compile(r"cpu|cuda(:[0-9]+)?")


def check_values(cfg: RunConfig) -> None:
    if cfg.partition.alpha < ALPHA_FLOOR:
        raise ConfigError(f"partition.alpha: {cfg.partition.alpha!r} must be >= {ALPHA_FLOOR:g} "
                          "(smaller values overflow the Dirichlet draws)")
    if not DEVICE.fullmatch(cfg.device):
        raise ConfigError(f"device: {cfg.device!r} is not one of cpu, cuda, cuda:N (N a GPU index)")
    facts = DATASETS[cfg.dataset.name].facts
    m = cfg.model
    count = model_parameters(m.name, facts.input_shape, facts.num_classes, m.width, m.depth if m.name == "convnet" else 1)
    if count > MAX_PARAMETERS:
        raise ConfigError(f"model.width: {m.width} gives a {m.name} of {count:.2g} parameters on {cfg.dataset.name}; "
                          f"at most {MAX_PARAMETERS:.0e} fit, as a run holds many copies of the model")


@lru_cache(maxsize=256)
def model_parameters(name: str, shape: tuple[int, int, int], classes: int, width: int, depth: int) -> int:
    """Parameters of the model, built on the meta device (no memory, a few ms), so that a model that does
    not fit its input fails here with the model's own message."""
    side = max(shape[1:])
    if depth > side.bit_length() + 1:  # building a million-layer net just to be told it is too deep is slow
        raise ConfigError(f"model.depth: {depth} pools a {shape[1]}x{shape[2]} input to nothing; use a smaller depth")
    try:
        with torch.device("meta"):
            model = build_model(name, shape, classes, width, depth)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    except RuntimeError:  # sizes past int64: far beyond any limit below
        return MAX_PARAMETERS ** 3
    return sum(p.numel() for p in model.parameters())


def check_devices(cells: list[RunConfig]) -> None:
    """Refuse, before any run starts, a device this machine does not have."""
    for device in sorted({c.device for c in cells}):
        if device == "cpu":
            continue
        if not torch.cuda.is_available():
            raise ConfigError(f"device: {device!r} needs a CUDA GPU, and torch {torch.__version__} sees none on this "
                              "machine; use device = \"cpu\"")
        index = int(device.partition(":")[2] or 0)
        count = torch.cuda.device_count()
        if index >= count:
            raise ConfigError(f"device: {device!r}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
