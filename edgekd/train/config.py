"""Training options: one dataclass for the CLI, config files, checkpoints and DISTILL."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekd.errors import EdgekdError
from edgekd.io import read_settings_file


@dataclass
class TrainConfig:
    """Everything a run depends on. `batch_size` is per process; steps = epochs * len(data) // global batch
    when `steps` is not given (exactly one of steps/epochs; neither means 1 epoch)."""

    model: str = "r18"
    data: str = ""
    out: str = ""
    model_kwargs: dict = field(default_factory=dict)
    num_classes: int | None = None  # checked against the dataset when given
    steps: int | None = None
    epochs: int | None = None
    batch_size: int = 128
    optimizer: str = "sgd"  # sgd | adamw
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "poly"  # poly | cosine | constant
    warmup: int = 0  # steps of linear warm-up
    margin: str = "arcface"  # arcface | cosface | combined
    scale: float = 64.0
    m1: float | None = None  # None: the preset of `margin`
    m2: float | None = None
    m3: float | None = None
    easy_margin: bool = False
    sample_rate: float = 1.0  # Partial FC: fraction of class centres per step
    amp: str = "off"  # off | bf16 | fp16
    grad_clip: float = 5.0  # max global grad norm; 0 disables
    channels_last: bool = False
    flip: bool = True
    val: list[str] = field(default_factory=list)
    val_every: int = 0  # steps; 0 = only at the end
    val_batch_size: int = 64
    bn_recal: int = 0  # batches to re-estimate BatchNorm statistics on before the final validation and model.pt
    ckpt_every: int = 0  # steps; checkpoints are also written at every epoch end
    log_every: int = 10
    seed: int = 0
    num_workers: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    resume: bool = False
    init_weights: str | None = None
    resize: bool = False  # resize non-112x112 training/val images instead of failing
    progress: bool = True

    def margins(self) -> tuple[float, float, float]:
        """(m1, m2, m3): the preset of `margin`, overridden by explicit values."""
        from edgekd.losses import margin_preset

        if self.margin == "combined":
            preset = (1.0, 0.0, 0.0)
        else:
            preset = margin_preset(self.margin)
        given = (self.m1, self.m2, self.m3)
        return tuple(float(g) if g is not None else p for g, p in zip(given, preset))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "config") -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise EdgekdError(f"{source}: unknown option(s) {', '.join(unknown)}")
        return cls(**d)


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Option defaults from YAML (.yaml/.yml), TOML (.toml) or JSON; keys use the dataclass names ('-' or '_')."""
    d = read_settings_file(path)
    return {k.replace("-", "_"): v for k, v in d.items()}
