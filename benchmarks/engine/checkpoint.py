"""Per-round checkpoints, so an interrupted run resumes and still writes a byte-identical rounds.csv.

A checkpoint holds everything the rest of the run depends on: the global parameters, every persistent
client store (optimizer state and the algorithm's client state), the algorithm's server state, the
client-sampling generator's state, the evaluation history, and how many bytes of rounds.csv / timings.csv belong to the rounds done (the
files are cut back to that on resume). Per-client and per-round generators are derived from the seed,
so they need no saving. Files are written atomically (write, fsync, rename) and loaded with
``torch.load(weights_only=True)``, which refuses anything but tensors and plain containers: a
tampered checkpoint cannot run code.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch

CHECKPOINT_NAME = "checkpoint.pt"
FORMAT = 2  # 2: client states split into optimizer and algorithm stores


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message says which file and why."""


def save_checkpoint(path: Path, state: dict) -> None:
    tmp = path.with_suffix(".part")
    with open(tmp, "wb") as fh:
        torch.save({"format": FORMAT, **state}, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: Path, run_hash: str) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"checkpoint {path}: unreadable or not a plain-tensor checkpoint ({first[:200]})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path}: unknown checkpoint format")
    if state.get("run_hash") != run_hash:
        raise CheckpointError(f"checkpoint {path}: written by another config (hash {state.get('run_hash')!r}, "
                              f"this run {run_hash!r}); delete it to start over")
    return state


def tensors_to(obj, device: torch.device):
    """``obj`` with every tensor inside its dicts, lists and tuples moved to ``device``: checkpoints load onto
    the CPU, and a CUDA run's client stores must go back to the GPU."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {key: tensors_to(value, device) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(tensors_to(value, device) for value in obj)
    return obj


def sampler_state(rng) -> dict:
    """numpy Generator state as plain ints and strings (weights_only-loadable)."""
    state = rng.bit_generator.state
    return {"bit_generator": state["bit_generator"], "state": int(state["state"]["state"]),
            "inc": int(state["state"]["inc"]), "has_uint32": int(state["has_uint32"]),
            "uinteger": int(state["uinteger"])}


def restore_sampler(rng, saved: dict) -> None:
    rng.bit_generator.state = {"bit_generator": saved["bit_generator"],
                               "state": {"state": saved["state"], "inc": saved["inc"]},
                               "has_uint32": saved["has_uint32"], "uinteger": saved["uinteger"]}
