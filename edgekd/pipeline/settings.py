"""Settings of `edgekd pipeline`: dataclass defaults are the demo (finishes in minutes on a 2-core CPU);
`--config FILE` (YAML/TOML/JSON, same keys, nested sections) gives the full-scale run (configs/paper.yaml)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekd.errors import EdgekdError
from edgekd.export import DEFAULT_OPSET
from edgekd.io import read_settings_file
from edgekd.options import check_fields
from edgekd.train.config import TrainConfig


@dataclass
class DataConfig:
    """`source`: "auto" (real LFW from the shared data when present, else synthetic), "lfw", "synthetic", or a
    training dataset path (RecordIO / folder / label list) used with `val` for verification."""

    source: str = "auto"
    train_folds: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])  # LFW view-2 folds (identity-disjoint)
    val_folds: list[int] = field(default_factory=lambda: [6, 7, 8, 9, 10])
    min_images_per_identity: int = 2  # identities with a single photo teach a classifier nothing
    max_identities: int | None = None  # most-photographed first; None = all
    max_images_per_identity: int | None = 20
    val: str | None = None  # verification set for a custom `source` (.bin or pairs.txt); LFW uses its own pairs
    val_pairs_per_fold: int | None = 40  # positives + negatives each; None = every pair of the val folds
    synthetic_identities: int = 40
    synthetic_images_per_identity: int = 8
    synthetic_val_pairs: int = 200


@dataclass
class TeacherConfig:
    """`weights`: "auto" = the shared pretrained MobileFaceNet (foamliu, MS1M) when present; a path loads those
    weights (architecture detected); null, or "auto" without the shared data, trains `model` for `train_steps`."""

    weights: str | None = "auto"
    model: str = "mobilefacenet"
    train_steps: int = 150
    model_kwargs: dict = field(default_factory=dict)


def demo_training() -> TrainConfig:
    """The demo's training settings: TrainConfig's defaults but for these few (20 fast steps on a 2-core CPU).
    `train:` in a settings file overrides TrainConfig fields; model, data, out, val, device and resume are set by
    each stage (students, teacher, the data stage, `device`)."""
    return TrainConfig(steps=20, batch_size=32, warmup=5,
                       bn_recal=10)  # 20 fast steps leave stale BatchNorm statistics (see TrainConfig.bn_recal)


@dataclass
class ExportConfig:
    precisions: list[str] = field(default_factory=lambda: ["fp32", "fp16", "int8"])
    calib_images: int = 64
    opset: int = DEFAULT_OPSET
    tensorrt: str = "auto"  # auto: build engines when tensorrt imports; off


@dataclass
class EvalConfig:
    batch_size: int = 64
    flip: bool = False
    reference: list[str] = field(default_factory=lambda: ["int8"])  # also report cosine agreement with fp32 ONNX


@dataclass
class BenchConfig:
    batch_sizes: list[int] = field(default_factory=lambda: [1, 32])
    warmup: int = 2
    iterations: int = 10
    min_time_s: float = 0.5
    max_time_s: float = 5.0


@dataclass
class PipelineConfig:
    name: str = "demo"
    device: str = "cpu"  # training device (auto|cpu|cuda); artifacts are evaluated/benchmarked on `runtime_device`
    runtime_device: str = "cpu"
    threads: int | str = "auto"  # torch/onnxruntime threads; auto: all cores, or 1 when the machine is already busy
    students: list[dict] = field(default_factory=lambda: [{"model": "mobilefacenet"}])
    methods: list[str] = field(default_factory=lambda: ["vanilla", "soft", "adv"])  # distill --method specs
    method_options: dict = field(default_factory=dict)  # method -> ["soft.temperature=4", ...]
    data: DataConfig = field(default_factory=DataConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    train: TrainConfig = field(default_factory=demo_training)  # TrainConfig overrides
    export: ExportConfig = field(default_factory=ExportConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    bench: BenchConfig = field(default_factory=BenchConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "config") -> "PipelineConfig":
        return _build(cls(), d, source, "")


def _build(default, d: dict, source: str, prefix: str):
    """`default` (a settings dataclass instance) with the keys of `d` replaced, types checked; nested sections
    (DataConfig, TrainConfig, ...) override their own defaults key by key."""
    if not isinstance(d, dict):
        raise EdgekdError(f"{source}: section {prefix.rstrip('.') or 'top level'} must be a mapping")
    d = check_fields(type(default), {str(k).replace("-", "_"): v for k, v in d.items()}, source, prefix)
    kw = {}
    for k, v in d.items():
        current = getattr(default, k)
        if dataclasses.is_dataclass(current):
            kw[k] = _build(current, v or {}, source, f"{prefix}{k}.")
        else:
            kw[k] = v
    return dataclasses.replace(default, **kw)


def load_pipeline_config(path: str | Path | None = None, overrides: list[str] | None = None) -> PipelineConfig:
    """Defaults, then the file (YAML .yaml/.yml, TOML .toml, JSON .json), then `key.sub=value` overrides."""
    d: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        d = read_settings_file(path)
        source = str(path)
    if overrides:
        source = f"{path} with --set" if path is not None else "--set"
    for item in overrides or []:
        key, eq, value = item.partition("=")
        if not eq:
            raise EdgekdError(f"--set {item!r}: expected KEY=VALUE (e.g. train.steps=20)")
        try:
            import yaml

            parsed = yaml.safe_load(value)
        except Exception:  # noqa: BLE001 - a plain string then
            parsed = value
        node = d
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p.replace("-", "_"), {})
            if not isinstance(node, dict):
                raise EdgekdError(f"--set {item!r}: {p} is not a section")
        node[parts[-1].replace("-", "_")] = parsed
    cfg = PipelineConfig.from_dict(d, source)
    _check(cfg, source)
    return cfg


def _check(cfg: PipelineConfig, source: str) -> None:
    if not cfg.students:
        raise EdgekdError(f"{source}: no students given")
    for s in cfg.students:
        if not isinstance(s, dict) or "model" not in s:
            raise EdgekdError(f"{source}: each student needs a `model` (got {json.dumps(s)})")
    from edgekd.artifacts import PRECISIONS as ARTIFACT_PRECISIONS

    bad = [p for p in cfg.export.precisions if p not in ARTIFACT_PRECISIONS]
    if bad or "fp32" not in cfg.export.precisions:
        raise EdgekdError(f"{source}: export.precisions must include fp32 and only fp32/fp16/int8 (got "
                          f"{cfg.export.precisions})")
    if not cfg.methods:
        raise EdgekdError(f"{source}: no methods given (vanilla, soft, adv, ...)")
    _check_methods(cfg, source)
    if cfg.train.steps is None or cfg.train.steps <= 0 or cfg.train.batch_size <= 0 or cfg.teacher.train_steps <= 0:
        raise EdgekdError(f"{source}: train.steps, train.batch_size and teacher.train_steps must be positive")
    for key in ("device", "runtime_device"):
        if getattr(cfg, key).split(":")[0] not in ("auto", "cpu", "cuda"):
            raise EdgekdError(f"{source}: {key} must be auto, cpu, cuda or cuda:N (got {getattr(cfg, key)!r})")
    if not (cfg.threads == "auto" or (isinstance(cfg.threads, int) and cfg.threads > 0)):
        raise EdgekdError(f"{source}: threads must be auto or a positive integer (got {cfg.threads!r})")
    bad = [p for p in cfg.eval.reference if p not in cfg.export.precisions or p == "fp32"]
    if bad:
        raise EdgekdError(f"{source}: eval.reference lists {bad[0]!r}, not an exported non-fp32 precision")
    if not cfg.bench.batch_sizes or min(cfg.bench.batch_sizes) < 1:
        raise EdgekdError(f"{source}: bench.batch_sizes must be positive integers")


def _check_methods(cfg: PipelineConfig, source: str) -> None:
    """Every method is "vanilla" or a `distill --method` spec of known KD methods, with valid options, and every
    student a registered model: found here, not after the first stages ran."""
    from edgekd.distill.methods import parse_methods, parse_options
    from edgekd.models.registry import resolve

    for s in cfg.students:
        try:
            resolve(s["model"])
        except EdgekdError as e:
            raise EdgekdError(f"{source}: students: {e}") from None
    for method in cfg.methods:
        if method == "vanilla":
            continue
        try:
            names = [n for n, _ in parse_methods(method)]
            parse_options(list(cfg.method_options.get(method, [])), names)
        except EdgekdError as e:
            raise EdgekdError(f"{source}: methods: {e} (or vanilla)") from None
    unused = sorted(set(cfg.method_options) - set(cfg.methods))
    if unused:
        raise EdgekdError(f"{source}: method_options for {unused[0]!r}, which is not in methods {cfg.methods}")
