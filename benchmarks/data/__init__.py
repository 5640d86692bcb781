"""Datasets (loading, caching, download) and partition schemes: pure data, no federated logic."""
