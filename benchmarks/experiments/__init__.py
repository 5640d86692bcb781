"""The experiment layer: run configs from TOML and --set, suites, sweeps, tuning and run-time estimates."""
