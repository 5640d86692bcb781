"""hetbench's tensors as Flower records, and back, bit for bit.

Parameters travel as an ``ArrayRecord`` of the model's named parameters (what ``model.state_dict()``
would give, so any Flower tool can read them) and are joined back into hetbench's flat vector in the
model's parameter order. The algorithm's dicts (``client_config``, payloads, client and optimizer
state) hold tensors, numbers and None: tensors go to an ``ArrayRecord``, the rest to a
``ConfigRecord``. Arrays are serialised with ``numpy.save``, so values and dtypes survive exactly.
"""
from __future__ import annotations

import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict
from torch import nn

# Message and context keys shared by the strategy and the client app.
PARAMS = "params"              # ArrayRecord: named parameters (global ones out, the client's back)
ROUND_INFO = "round"           # ConfigRecord: server-round, client-id
CLIENT_CONFIG = "client-config"  # the algorithm's client_config of the round
UPDATE = "update"              # MetricRecord: what a ClientUpdate holds besides parameters and payload
PAYLOAD = "payload"            # the algorithm's payload from finish_client
SUMMARY = "summary"            # the client's client_summary (algorithms that set shares_client_data)
NODE = "node"                  # ConfigRecord: the node's partition id, answered to the server's query
OPTIMIZER_STATE = "hetbench.optimizer-state"  # in Context.state: the client's optimizer state
ALGORITHM_STATE = "hetbench.algorithm-state"  # in Context.state: the algorithm's client state

# ConfigRecord values cannot be None, so the names of None entries are listed under one key; the
# entries' order under another, so that a dict comes back as it went (tensors and scalars interleaved).
_NONE = "hetbench.none"
_ORDER = "hetbench.order"
_SCALARS = ".scalars"


def params_record(model: nn.Module, flat: torch.Tensor) -> ArrayRecord:
    """``flat`` (a vector laid out as ``model``'s parameters) as named arrays."""
    record, offset = ArrayRecord(), 0
    for name, p in model.named_parameters():
        n = p.numel()
        record[name] = Array(flat[offset:offset + n].detach().reshape(p.shape).cpu().numpy())
        offset += n
    return record


def flat_from_record(record: ArrayRecord, model: nn.Module, device) -> torch.Tensor:
    """The flat vector of named arrays, in ``model``'s parameter order."""
    return torch.cat([torch.from_numpy(record[name].numpy()).reshape(-1)
                      for name, _ in model.named_parameters()]).to(device)


def put_dict(content: RecordDict, key: str, values: dict) -> None:
    """Store an algorithm's dict under ``key`` (its tensors) and ``key.scalars`` (numbers, None)."""
    arrays, scalars, none = ArrayRecord(), ConfigRecord(), []
    for name, value in values.items():
        if isinstance(value, torch.Tensor):
            arrays[name] = Array(value.detach().cpu().numpy())
        elif value is None:
            none.append(name)
        elif isinstance(value, (bool, int, float, str)):
            scalars[name] = value
        else:
            raise TypeError(f"{key}.{name}: a {type(value).__name__} cannot travel in a Flower record "
                            "(tensors, numbers, strings and None can)")
    if none:
        scalars[_NONE] = none
    if values:
        scalars[_ORDER] = list(values)
    content[key] = arrays
    content[key + _SCALARS] = scalars


def get_dict(content: RecordDict, key: str, device) -> dict | None:
    """The dict ``put_dict`` stored under ``key``, tensors on ``device``; None when there is none."""
    if key not in content:
        return None
    values: dict = {name: torch.from_numpy(array.numpy()).to(device) for name, array in content[key].items()}
    scalars = content[key + _SCALARS]
    values.update({name: value for name, value in scalars.items() if name not in (_NONE, _ORDER)})
    values.update({name: None for name in scalars.get(_NONE, [])})
    return {name: values[name] for name in scalars.get(_ORDER, [])}
