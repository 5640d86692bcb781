"""Federated-learning algorithms, one module each, all registered by name."""
from algorithms.registry import algorithm_names, get_algorithm, register
from algorithms import fedavg, fedprox  # noqa: F401  (registers them)
from algorithms import feddf, fedgen  # noqa: F401  (registers them)
from algorithms import dynafed  # noqa: F401  (registers it)

__all__ = ["algorithm_names", "get_algorithm", "register"]
