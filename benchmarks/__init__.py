"""hetbench: the shared federated runner, data, partitions, models, suites, tuning and CLI."""
