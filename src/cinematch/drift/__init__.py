"""Drift: statistics of a new batch against the training data, the stored decision, model drift."""
