"""Training: the loop shared by vanilla margin training and distillation (see objective.py for the plug-in point).

TrainConfig (train/config.py) imports no torch, so settings can be read and checked before torch loads; the loop
itself (Trainer, run_training, objectives) is imported on first use.
"""

from edgekd.train.config import TrainConfig, load_config_file

__all__ = ["TrainConfig", "load_config_file", "Objective", "MarginObjective", "Trainer", "run_training"]


def __getattr__(name):
    if name in ("Objective", "MarginObjective"):
        from edgekd.train import objective

        return getattr(objective, name)
    if name in ("Trainer", "run_training"):
        from edgekd.train import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module 'edgekd.train' has no attribute {name!r}")
