"""Foundations with no dependency beyond the standard library: typed settings, seed derivation, dotted paths."""
