"""Metrics: pure functions from features (or images) to numbers."""
