"""`edgekd` commands: train. Options shared with `edgekd distill` live in `train_options`/`config_from_options`."""

from __future__ import annotations

import dataclasses
import typing
from typing import Callable

import click

from edgekd.cli import params
from edgekd.cli.app import cli
from edgekd.train.config import TrainConfig

CONFIG_FILE_HELP = "YAML/TOML/JSON file of option defaults (TrainConfig field names)."


def _option(f: dataclasses.Field) -> Callable:
    """The click option of one TrainConfig field: name, default, type, choices and help all come from the field."""
    meta = f.metadata
    names = list(meta.get("cli") or (f"--{f.name.replace('_', '-')}",))
    default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    kw: dict = {"help": meta.get("help") or None}
    if f.name == "model_kwargs":  # KEY=VALUE items, parsed in config_from_options
        return click.option(*names, "model_opt", multiple=True, metavar="KEY=VALUE", **kw)
    if isinstance(default, bool):
        if default:
            names = [f"{names[0]}/--no-{names[0][2:]}"]
        return click.option(*names, f.name, is_flag=True, default=default, show_default=default, **kw)
    if isinstance(default, list):
        return click.option(*names, f.name, multiple=True, **kw)
    if f.name in params.TRAIN_RANGES:
        kw["type"] = params.TRAIN_RANGES[f.name]
    elif meta.get("choices"):
        kw["type"] = click.Choice(list(meta["choices"]))
    elif default is None:
        hint = typing.get_type_hints(TrainConfig)[f.name]
        kw["type"] = next((t for t in (int, float) if t in typing.get_args(hint)), str)
        if f.name == "init_weights":
            kw["type"] = params.Path(dir_okay=False)
    return click.option(*names, f.name, default=default, show_default=default not in (None, ""), **kw)


def train_options(f):
    """Every TrainConfig field as an option (defaults and choices are TrainConfig's), plus --config FILE."""
    opts = [_option(fld) for fld in dataclasses.fields(TrainConfig)]
    opts.insert(3, click.option("--config", "config_file", type=params.Path(dir_okay=False), help=CONFIG_FILE_HELP))
    for opt in reversed(opts):
        f = opt(f)
    return f


def config_from_options(ctx: click.Context, options: dict):
    """TrainConfig from the options typed on the command line and --config FILE, in train.config.merge_config's
    order (defaults < resumed run < file < command line)."""
    import yaml

    from edgekd.errors import EdgekdError
    from edgekd.train.config import merge_config

    given = {name: value for name, value in options.items()
             if name != "config_file" and ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE}
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
    return merge_config(given, options.get("config_file"))


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
