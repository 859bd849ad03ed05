"""`edgekd` commands: train. Options shared with `edgekd distill` live in `train_options`/`config_from_options`."""

from __future__ import annotations

import click

from edgekd.cli.app import cli

# CLI option name -> TrainConfig field where they differ
_RENAMED = {"init": "init_weights"}


def train_options(f):
    """Every TrainConfig option. Defaults shown here are TrainConfig's; only options given on the command line
    override --config FILE, which overrides the saved config of a --resume'd run."""
    opts = [
        click.option("--model", default="r18", show_default=True, help="Architecture (edgekd models list)."),
        click.option("--model-opt", "model_opt", multiple=True, metavar="KEY=VALUE",
                     help="Model constructor option, e.g. embedding_size=128, dropout=0.1 (repeatable)."),
        click.option("--data", default="", help="Training data: folder, train.rec, label.txt or synthetic:IDSxPER[:SEED]."),
        click.option("--out", default="", help="Run folder (checkpoint.pt, model.pt, log.jsonl, summary.json)."),
        click.option("--config", "config_file", type=click.Path(dir_okay=False),
                     help="YAML/TOML/JSON file of option defaults (TrainConfig field names)."),
        click.option("--num-classes", type=int, help="Expected identity count (checked against the data)."),
        click.option("--steps", type=int, help="Optimiser steps (or --epochs; default 1 epoch)."),
        click.option("--epochs", type=int, help="Passes over the data."),
        click.option("--batch-size", default=128, show_default=True, help="Per process."),
        click.option("--optimizer", type=click.Choice(["sgd", "adamw"]), default="sgd", show_default=True),
        click.option("--lr", default=0.1, show_default=True),
        click.option("--momentum", default=0.9, show_default=True),
        click.option("--weight-decay", default=5e-4, show_default=True),
        click.option("--schedule", type=click.Choice(["poly", "cosine", "constant"]), default="poly", show_default=True),
        click.option("--warmup", default=0, show_default=True, help="Linear warm-up steps."),
        click.option("--margin", type=click.Choice(["arcface", "cosface", "combined"]), default="arcface",
                     show_default=True, help="Margin head: arcface (m2=0.5), cosface (m3=0.35) or combined (give m1-m3)."),
        click.option("--scale", default=64.0, show_default=True, help="Logit scale s."),
        click.option("--m1", type=float, help="Multiplicative angular margin (overrides the preset)."),
        click.option("--m2", type=float, help="Additive angular margin (ArcFace)."),
        click.option("--m3", type=float, help="Additive cosine margin (CosFace)."),
        click.option("--easy-margin", is_flag=True, help="Apply the angular margin only where cos > 0."),
        click.option("--sample-rate", "--partial-fc", "sample_rate", default=1.0, show_default=True, help="Partial FC: fraction of class centres per step."),
        click.option("--amp", type=click.Choice(["off", "bf16", "fp16"]), default="off", show_default=True,
                     help="Mixed precision (fp16 needs CUDA and uses a GradScaler)."),
        click.option("--grad-clip", default=5.0, show_default=True, help="Max gradient norm (0 = off)."),
        click.option("--channels-last", is_flag=True),
        click.option("--flip/--no-flip", default=True, show_default=True, help="Random horizontal flips."),
        click.option("--val", multiple=True, help="Verification set (.bin or pairs.txt), repeatable."),
        click.option("--val-every", default=0, show_default=True, help="Steps between verifications (0 = at the end)."),
        click.option("--val-batch-size", default=64, show_default=True),
        click.option("--bn-recal", default=0, show_default=True, metavar="BATCHES",
                     help="Re-estimate BatchNorm statistics on this many training batches before the final "
                          "verification and model.pt (short or high-lr runs otherwise keep stale running averages)."),
        click.option("--ckpt-every", default=0, show_default=True, help="Steps between checkpoints (also every epoch end)."),
        click.option("--log-every", default=10, show_default=True),
        click.option("--seed", default=0, show_default=True),
        click.option("--num-workers", default=0, show_default=True, help="Data loading processes."),
        click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N (torchrun: local rank)."),
        click.option("--resume", is_flag=True, help="Continue the run in --out from its checkpoint."),
        click.option("--init", type=click.Path(dir_okay=False), help="Start from these weights (same architecture)."),
        click.option("--resize", is_flag=True, help="Resize images that are not 112x112 instead of failing."),
        click.option("--progress/--no-progress", default=True, show_default=True),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def config_from_options(ctx: click.Context, options: dict, extra_fields: tuple[str, ...] = ()):
    """TrainConfig from: dataclass defaults < saved config of the resumed run < --config file < explicit options.

    `extra_fields`: option names the caller (distill) consumes itself; they are skipped here.
    """
    import yaml

    from edgekd.errors import EdgekdError
    from edgekd.train.checkpoint import load_checkpoint
    from edgekd.train.config import TrainConfig, load_config_file

    given = {}
    for name, value in options.items():
        if name in ("config_file", *extra_fields):
            continue
        if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE:
            given[_RENAMED.get(name, name)] = value
    if "model_opt" in given:
        kwargs = {}
        for item in given.pop("model_opt"):
            key, sep, value = item.partition("=")
            if not sep:
                raise EdgekdError(f"--model-opt {item}: expected KEY=VALUE")
            kwargs[key.strip()] = yaml.safe_load(value)
        given["model_kwargs"] = kwargs
    if "val" in given:
        given["val"] = list(given["val"])
    file_opts = load_config_file(options["config_file"]) if options.get("config_file") else {}
    merged = {**file_opts, **given}
    if merged.get("resume") and merged.get("out"):
        from pathlib import Path

        ckpt = Path(merged["out"]) / "checkpoint.pt"
        if ckpt.exists():
            saved = load_checkpoint(ckpt)["config"]
            for k in ("resume", "progress", "device", "num_workers"):
                saved.pop(k, None)
            merged = {**saved, **merged}
    return TrainConfig.from_dict(merged, source=options.get("config_file") or "options")


@cli.command()
@train_options
@click.pass_context
def train(ctx: click.Context, **options) -> None:
    """Train a face-embedding model with a margin head (ArcFace/CosFace/combined, optional Partial FC).

    Runs under torchrun for several processes/GPUs (same command).
    """
    import os

    from edgekd.train import run_training

    s = run_training(config_from_options(ctx, options))
    if os.environ.get("RANK", "0") == "0":
        acc = f", verification {s['accuracy_mean']:.4f}" if s["accuracy_mean"] is not None else ""
        img = f"{s['img_per_s']:.1f} img/s" if s["img_per_s"] else "n/a img/s"
        click.echo(f"{s['checkpoint']}: {s['steps']} steps, loss {s['final_loss']:.4f}{acc}, {img}")
