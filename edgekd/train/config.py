"""Training options: one dataclass for the CLI, config files, checkpoints and DISTILL."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekd.errors import EdgekdError
from edgekd.io import read_settings_file

# The named choices of a run, listed once: TrainConfig's fields, their click.Choice options (cli/train_cmd.py) and
# check_choices() read them. The trainer maps each name to its implementation (optimiser class, AMP dtype, schedule).
OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("poly", "cosine", "constant")
MARGIN_HEADS = ("arcface", "cosface", "combined")  # presets in edgekd.losses.MARGINS; combined takes m1-m3
AMP_MODES = ("off", "bf16", "fp16")
# Options that describe this process, not the run: a resumed run never takes them from its checkpoint.
PER_PROCESS = ("resume", "progress", "device", "num_workers")


def setting(default=None, help: str = "", choices: tuple[str, ...] | None = None, cli: tuple[str, ...] = (),
            factory=None):
    """A TrainConfig field with the help text and choices its command-line option shows: `edgekd train` / `distill`
    options are generated from these fields (edgekd/cli/train_cmd.py), so every default lives here once.
    `cli`: option names when they differ from --field-name (first one wins for the help)."""
    meta = {"help": help, "choices": choices, "cli": cli}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    """Everything a run depends on. `batch_size` is per process; steps = epochs * len(data) // global batch
    when `steps` is not given (exactly one of steps/epochs; neither means 1 epoch)."""

    model: str = setting("r18", "Architecture (edgekd models list).")
    data: str = setting("", "Training data: folder, train.rec, label.txt or synthetic:IDSxPER[:SEED].")
    out: str = setting("", "Run folder (checkpoint.pt, model.pt, log.jsonl, summary.json).")
    model_kwargs: dict = setting(factory=dict, help="Model constructor option, e.g. embedding_size=128, dropout=0.1 "
                                                    "(repeatable).", cli=("--model-opt",))
    num_classes: int | None = setting(None, "Expected identity count (checked against the data).")
    steps: int | None = setting(None, "Optimiser steps (or --epochs; default 1 epoch).")
    epochs: int | None = setting(None, "Passes over the data.")
    batch_size: int = setting(128, "Per process.")
    optimizer: str = setting("sgd", "Optimiser.", OPTIMIZERS)
    lr: float = setting(0.1, "Peak learning rate.")
    momentum: float = setting(0.9, "SGD momentum.")
    weight_decay: float = setting(5e-4, "Weight decay.")
    schedule: str = setting("poly", "Learning-rate schedule after warm-up.", SCHEDULES)
    warmup: int = setting(0, "Linear warm-up steps.")
    margin: str = setting("arcface", "Margin head: arcface (m2=0.5), cosface (m3=0.35) or combined (give m1-m3).",
                          MARGIN_HEADS)
    scale: float = setting(64.0, "Logit scale s.")
    m1: float | None = setting(None, "Multiplicative angular margin (overrides the preset).")
    m2: float | None = setting(None, "Additive angular margin (ArcFace).")
    m3: float | None = setting(None, "Additive cosine margin (CosFace).")
    easy_margin: bool = setting(False, "Apply the angular margin only where cos > 0.")
    sample_rate: float = setting(1.0, "Partial FC: fraction of class centres per step.",
                                 cli=("--sample-rate", "--partial-fc"))
    amp: str = setting("off", "Mixed precision (fp16 needs CUDA and uses a GradScaler).", AMP_MODES)
    grad_clip: float = setting(5.0, "Max gradient norm (0 = off).")
    channels_last: bool = setting(False, "channels_last memory format.")
    flip: bool = setting(True, "Random horizontal flips.")
    val: list[str] = setting(factory=list, help="Verification set (.bin or pairs.txt), repeatable.")
    val_every: int = setting(0, "Steps between verifications (0 = at the end).")
    val_batch_size: int = setting(64, "Verification batch size.")
    bn_recal: int = setting(0, "Re-estimate BatchNorm statistics on this many training batches before the final "
                               "verification and model.pt (short or high-lr runs otherwise keep stale running "
                               "averages).")
    ckpt_every: int = setting(0, "Steps between checkpoints (also every epoch end).")
    log_every: int = setting(10, "Steps between log lines.")
    seed: int = setting(0, "Seed of weights, data order and augmentation.")
    num_workers: int = setting(0, "Data loading processes.")
    device: str = setting("auto", "auto, cpu, cuda, cuda:N (torchrun: local rank); auto = CUDA when torch sees one.")
    resume: bool = setting(False, "Continue the run in --out from its checkpoint.")
    init_weights: str | None = setting(None, "Start from these weights (same architecture).", cli=("--init",))
    resize: bool = setting(False, "Resize images that are not 112x112 instead of failing.")
    progress: bool = setting(True, "Progress bar.")

    def check_choices(self) -> None:
        """A named choice outside its list (from a settings file or a saved run; click checks the command line)."""
        for f in dataclasses.fields(self):
            choices, value = f.metadata.get("choices"), getattr(self, f.name)
            if choices and value not in choices:
                raise EdgekdError(f"unknown --{f.name.replace('_', '-')} {value!r} (known: {', '.join(choices)})")

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
        """Checked against the fields' types (edgekd.options): a wrong key or type is a one-line error."""
        from edgekd.options import check_fields

        return cls(**check_fields(cls, d, source))


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Option defaults from YAML (.yaml/.yml), TOML (.toml) or JSON; keys use the dataclass names ('-' or '_')."""
    d = read_settings_file(path)
    return {k.replace("-", "_"): v for k, v in d.items()}


def merge_config(given: dict[str, Any], config_file: str | Path | None = None) -> TrainConfig:
    """The one override order of `edgekd train` and `distill`, lowest first: TrainConfig's defaults, the saved
    config of the run being resumed (`resume` with an `out` holding checkpoint.pt; PER_PROCESS keys excepted), the
    settings file, then `given` (the options typed on the command line)."""
    merged = {**(load_config_file(config_file) if config_file else {}), **given}
    ckpt = Path(merged["out"]) / "checkpoint.pt" if merged.get("resume") and merged.get("out") else None
    if ckpt is not None and ckpt.exists():
        from edgekd.train.checkpoint import load_checkpoint  # torch, only when resuming

        saved = {k: v for k, v in load_checkpoint(ckpt)["config"].items() if k not in PER_PROCESS}
        merged = {**saved, **merged}
    return TrainConfig.from_dict(merged, source=str(config_file or "options"))
