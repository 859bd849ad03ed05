"""Settings of `edgekd pipeline`: dataclass defaults are the demo (finishes in minutes on a 2-core CPU);
`--config FILE` (YAML/TOML/JSON, same keys, nested sections) gives the full-scale run (configs/paper.yaml)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekd.errors import EdgekdError
from edgekd.io import read_settings_file


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


@dataclass
class TrainSettings:
    steps: int = 20
    batch_size: int = 32
    lr: float = 0.1
    optimizer: str = "sgd"
    weight_decay: float = 5e-4
    warmup: int = 5
    bn_recal: int = 10  # batches re-estimating BatchNorm statistics at the end (see TrainConfig.bn_recal)
    schedule: str = "poly"
    amp: str = "off"
    sample_rate: float = 1.0
    num_workers: int = 0
    seed: int = 0


@dataclass
class ExportConfig:
    precisions: list[str] = field(default_factory=lambda: ["fp32", "fp16", "int8"])
    calib_images: int = 64
    opset: int = 17
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
    train: TrainSettings = field(default_factory=TrainSettings)
    export: ExportConfig = field(default_factory=ExportConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    bench: BenchConfig = field(default_factory=BenchConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "config") -> "PipelineConfig":
        return _build(cls, d, source, "")


def _build(cls, d: dict, source: str, prefix: str):
    if not isinstance(d, dict):
        raise EdgekdError(f"{source}: section {prefix.rstrip('.') or 'top level'} must be a mapping")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    d = {str(k).replace("-", "_"): v for k, v in d.items()}
    unknown = sorted(set(d) - set(fields))
    if unknown:
        raise EdgekdError(f"{source}: unknown option(s) {', '.join(prefix + u for u in unknown)} "
                          f"(known: {', '.join(prefix + f for f in fields)})")
    kw = {}
    for k, v in d.items():
        default = fields[k].default_factory() if fields[k].default_factory is not dataclasses.MISSING else None
        if dataclasses.is_dataclass(default):
            kw[k] = _build(type(default), v or {}, source, f"{prefix}{k}.")
        else:
            kw[k] = v
    try:
        return cls(**kw)
    except TypeError as e:
        raise EdgekdError(f"{source}: {e}") from None


def load_pipeline_config(path: str | Path | None = None, overrides: list[str] | None = None) -> PipelineConfig:
    """Defaults, then the file (YAML .yaml/.yml, TOML .toml, JSON .json), then `key.sub=value` overrides."""
    d: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        d = read_settings_file(path)
        source = str(path)
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
    bad = [p for p in cfg.export.precisions if p not in ("fp32", "fp16", "int8")]
    if bad or "fp32" not in cfg.export.precisions:
        raise EdgekdError(f"{source}: export.precisions must include fp32 and only fp32/fp16/int8 (got "
                          f"{cfg.export.precisions})")
    if not cfg.methods:
        raise EdgekdError(f"{source}: no methods given (vanilla, soft, adv, ...)")
    if cfg.train.steps <= 0 or cfg.train.batch_size <= 0:
        raise EdgekdError(f"{source}: train.steps and train.batch_size must be positive")
    if not (cfg.threads == "auto" or (isinstance(cfg.threads, int) and cfg.threads > 0)):
        raise EdgekdError(f"{source}: threads must be auto or a positive integer (got {cfg.threads!r})")
    bad = [p for p in cfg.eval.reference if p not in cfg.export.precisions or p == "fp32"]
    if bad:
        raise EdgekdError(f"{source}: eval.reference lists {bad[0]!r}, not an exported non-fp32 precision")
    if not cfg.bench.batch_sizes or min(cfg.bench.batch_sizes) < 1:
        raise EdgekdError(f"{source}: bench.batch_sizes must be positive integers")
