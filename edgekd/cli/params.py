"""click parameter types for option values: a malformed value is a malformed command line (exit 2, one line),
checked before any work starts, with upper bounds so `-b 100000000` is refused instead of allocating until a
MemoryError. The text-valued types return the value unchanged once checked: the commands hand the text to the
library parsers (edgekd.data.folds, edgekd.export.gate), which also read it from settings files."""

from __future__ import annotations

import os
import pathlib

import click

from edgekd.artifacts import detector_stem, engine_path, onnx_path
from edgekd.errors import EdgekdError

MAX_BATCH = 4096  # one batch of 4096 112x112 float32 faces is 616 MB: beyond it is a typo, not a benchmark
MAX_WORKSPACE_MIB = 1 << 20  # 1 TiB
MAX_COUNT = 10_000_000  # images, steps, faces: more than any face set edgekd reads

BATCH = click.IntRange(1, MAX_BATCH)
COUNT = click.IntRange(1, MAX_COUNT)
WORKSPACE = click.IntRange(1, MAX_WORKSPACE_MIB)
# ONNX opsets export can write: per-channel Q/DQ (edgekd's INT8, TensorRT's explicit quantization) needs 13; 20 is
# the newest torch's TorchScript exporter writes (torch.onnx._constants.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET)
OPSET = click.IntRange(13, 20)


def _unprefixed(message: str) -> str:
    """"--folds '3-1': range ..." -> "'3-1': range ...": click already names the option."""
    return message.split(" ", 1)[1] if message.startswith("--") and " " in message else message


class _Checked(click.ParamType):
    """Runs `check(text)`; its EdgekdError becomes click's usage error."""

    def check(self, text: str):
        raise NotImplementedError

    def convert(self, value, param, ctx):
        if value is None or not isinstance(value, str):
            return value
        try:
            self.check(value)
        except EdgekdError as e:
            self.fail(_unprefixed(str(e)), param, ctx)
        return value


class Folds(_Checked):
    name = "folds"

    def __init__(self, option: str = "--folds"):
        self.option = option

    def check(self, text):
        from edgekd.data.folds import parse_folds

        parse_folds(text, self.option)


class GateSpec(_Checked):
    name = "spec"

    def check(self, text):
        from edgekd.export.gate import parse_spec

        parse_spec(text)


def parse_batches(text: str, option: str = "--batch-sizes") -> tuple[int, ...]:
    """'1,8,32' -> (1, 8, 32), each in 1..MAX_BATCH."""
    try:
        out = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise EdgekdError(f"{option} {text!r}: expected comma-separated integers, e.g. 1,8,32") from None
    bad = [b for b in out if not 1 <= b <= MAX_BATCH]
    if bad:
        raise EdgekdError(f"{option} {text!r}: batch size {bad[0]} is outside 1..{MAX_BATCH}")
    return out


class Profile(_Checked):
    """TensorRT optimization profile MIN,OPT,MAX: three batch sizes, 1 <= MIN <= OPT <= MAX <= MAX_BATCH."""

    name = "min,opt,max"

    def check(self, text):
        sizes = parse_batches(text, "--profile")
        if len(sizes) != 3:
            raise EdgekdError(f"--profile {text!r}: expected MIN,OPT,MAX batch sizes, e.g. 1,8,64")
        if not sizes[0] <= sizes[1] <= sizes[2]:
            raise EdgekdError(f"--profile {text!r}: needs MIN <= OPT <= MAX")

    def convert(self, value, param, ctx):
        """-> (MIN, OPT, MAX)."""
        value = super().convert(value, param, ctx)
        return parse_batches(value, "--profile") if isinstance(value, str) else value


_PNET = detector_stem("mtcnn", "pnet")
DETECTOR_HELP = ("Deployed MTCNN: the folder `edgekd export --detector mtcnn --out DIR` wrote (its FP32 ONNX files), or "
                 f"one member file naming the variant for all three networks ({onnx_path(_PNET, 'fp16')}, "
                 f"{engine_path(_PNET, 'fp16')}).")


def detector_option(extra: str = "", settings: bool = False):
    """--detector (an existing folder or file; edgekd.detect.open) of every command that finds faces; with
    `settings`, also --detector-set KEY=VALUE (the MTCNN settings it runs with, a dict under `detector_set`)."""
    def add(f):
        if settings:
            f = click.option("--detector-set", "detector_set", multiple=True, type=DetectorSetting(),
                             callback=_as_dict,
                             help="With --detector: one MTCNN setting instead of the reference default, e.g. "
                                  "min_face=40, thresholds=0.6,0.7,0.8, factor=0.8 (edgekd.detect.mtcnn."
                                  "MtcnnSettings; repeatable).")(f)
        return click.option("--detector", type=Path(exists=True), help=DETECTOR_HELP + (" " + extra if extra else ""))(f)
    return add


def _as_dict(ctx, param, value):
    return dict(value or ())


class DetectorSetting(click.ParamType):
    """KEY=VALUE of edgekd.detect.mtcnn.MtcnnSettings -> (key, value): a number, or comma-separated numbers for
    the three stage thresholds; checked against the settings' own rules."""

    name = "key=value"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        from edgekd.detect.mtcnn import MtcnnSettings

        key, sep, text = str(value).partition("=")
        try:
            if not sep:
                raise ValueError
            numbers = tuple(float(v) for v in text.split(","))
            setting = (key.strip(), numbers if len(numbers) > 1 else
                       int(numbers[0]) if key.strip() == "max_batch" else numbers[0])
            MtcnnSettings.make(**dict([setting]))
        except ValueError:
            self.fail(f"{value!r}: expected KEY=NUMBER or thresholds=P,R,O", param, ctx)
        except (EdgekdError, TypeError) as e:
            self.fail(f"{value!r}: {e}", param, ctx)
        return setting


class FrameSize(click.ParamType):
    """WxH, e.g. 640x480 -> (640, 480); each side 12..8192 (P-Net's window up to an 8K frame)."""

    name = "WxH"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            w, h = (int(v) for v in str(value).lower().split("x"))
        except ValueError:
            self.fail(f"{value!r}: expected WxH, e.g. 640x480", param, ctx)
        if not (12 <= w <= 8192 and 12 <= h <= 8192):
            self.fail(f"{value!r}: each side must be 12..8192 pixels", param, ctx)
        return w, h


class Batches(click.ParamType):
    """Comma-separated batch sizes -> a tuple of ints."""

    name = "sizes"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            return parse_batches(str(value), f"--{param.name.replace('_', '-')}" if param else "--batch-sizes")
        except EdgekdError as e:
            self.fail(_unprefixed(str(e)), param, ctx)


# `edgekd train` / `distill` options generated from TrainConfig fields that take these ranges on the command line
TRAIN_RANGES = {"batch_size": BATCH, "val_batch_size": BATCH, "steps": COUNT, "epochs": click.IntRange(1, 100_000)}


_KIND_NAMES = {"onnx": ("an ONNX file", "--onnx"), "engine": ("a TensorRT engine", "--engine"),
               "checkpoint": ("a PyTorch checkpoint", "--weights")}


def artifact_of(kind: str):
    """Callback of --onnx / --engine / --weights: a file of another kind (by suffix, as open_artifact decides) is
    refused, as an input error (exit 1), instead of silently run by another backend (`--onnx model.pt` ran
    PyTorch)."""
    def check(ctx, param, value):
        from edgekd.runtime import artifact_kind

        actual = artifact_kind(value) if value is not None else kind
        if actual != kind:
            what, option = _KIND_NAMES[actual]
            raise EdgekdError(f"{value}: {what} by its name, not {_KIND_NAMES[kind][0]}; give it as {option}")
        return value

    return check


class Path(click.Path):
    """click.Path whose failed check is an input error naming the path (`Error: <path>: <problem>`, exit 1), worded
    here from the path's own state rather than parsed out of click's (translatable) message; a malformed command
    line keeps exit status 2."""

    def convert(self, value, param, ctx):
        try:
            return super().convert(value, param, ctx)
        except click.BadParameter:
            raise EdgekdError(f"{os.fsdecode(value)}: {self.problem(pathlib.Path(os.fsdecode(value)))}") from None

    def problem(self, path: pathlib.Path) -> str:
        if not path.exists():
            return "does not exist"
        if path.is_dir() and not self.dir_okay:
            return "is a folder, expected a file"
        if not path.is_dir() and not self.file_okay:
            return "is a file, expected a folder"
        for wanted, mode, word in ((self.readable, os.R_OK, "readable"), (self.writable, os.W_OK, "writable"),
                                   (self.executable, os.X_OK, "executable")):
            if wanted and not os.access(path, mode):
                return f"is not {word}"
        return "cannot be used here"
