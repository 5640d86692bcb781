"""The federated engine: the algorithm API, the round loop, executors, federation, checkpoints."""
