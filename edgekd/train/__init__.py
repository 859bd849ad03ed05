"""Training: the loop shared by vanilla margin training and distillation (see objective.py for the plug-in point)."""

from edgekd.train.config import TrainConfig, load_config_file
from edgekd.train.objective import MarginObjective, Objective
from edgekd.train.trainer import Trainer, run_training

__all__ = ["TrainConfig", "load_config_file", "Objective", "MarginObjective", "Trainer", "run_training"]
