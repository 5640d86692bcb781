"""Any registered hetbench algorithm under Flower: a server strategy and a client app.

``AlgorithmStrategy`` (``strategy.py``) runs the algorithm's server hooks inside Flower's round loop;
``client_app`` (``client.py``) runs its local objective through the engine's own client training and
keeps each client's state in Flower's ``Context.state``; ``simulate`` (``simulation.py``) runs a run
config under ``flwr.simulation.run_simulation``. ``records.py`` converts tensors to Flower records and
back exactly; ``wiring.py`` seeds models, samplers and contexts as the runner does. This is the only
package that imports ``flwr`` (the ``flower`` extra).
"""
from __future__ import annotations

from benchmarks.flower.client import client_app, client_data
from benchmarks.flower.simulation import server_app, simulate
from benchmarks.flower.strategy import AlgorithmStrategy
from benchmarks.flower.wiring import ServerData

__all__ = ["AlgorithmStrategy", "ServerData", "client_app", "client_data", "server_app", "simulate"]
