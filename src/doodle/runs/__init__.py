"""Runs and checkpoints: a training run's folder (`Run`) and the self-describing checkpoints in it."""

from doodle.runs.run import Run, resolve_checkpoint

__all__ = ["Run", "resolve_checkpoint"]
