"""Pipelines: the steps the CLI and the DAGs both call, with their rules (when to train, retrain, publish)."""
