"""Artifact names: the one place that formats and parses the file names edgekd writes and reads.

An exported model is a family of files around one base stem, e.g. `engines/r18`:

    r18.onnx                               FP32 graph                       variant "fp32"
    r18.fp16.onnx                          FP16 graph                       variant "fp16"
    r18.int8-<form>.onnx                   INT8 Q/DQ graph                  variant "int8-<form>"
    r18.export_report.json                 what `edgekd export` measured
    r18.<precision>.engine                 TensorRT engine (built from any member of the family)
    r18.<precision>.engine.json            the engine's sidecar (build facts, thresholds)
    r18.<precision>.engine.calib-<sha>.cache   TensorRT calibration cache (keyed by the calibration set)

An INT8 form is a calibration method (minmax, entropy, percentile), `gated` (the accuracy-gated TensorRT file),
`cpu` (the form chosen for ONNX Runtime on x86) or `qat-s<seed>` (quantization-aware fine-tuning). A detector is a
folder of such families, one per network: `mtcnn-pnet`, `mtcnn-rnet`, `mtcnn-onet`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from edgekd.errors import EdgekdError

ONNX_SUFFIX = ".onnx"
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")  # .engine is what edgekd writes; the others are trtexec habits
ENGINE_SUFFIX = ENGINE_SUFFIXES[0]
PRECISIONS = ("fp32", "fp16", "int8")  # what a deployed artifact (ONNX file or engine) can be
GATED, CPU = "gated", "cpu"  # the INT8 forms that are not a calibration method
EXPORT_REPORT = ".export_report.json"
SIDECAR = ".json"

_VARIANT = re.compile(r"\.(fp16|int8-[a-z0-9][a-z0-9-]*)$")
_ENGINE_PRECISION = re.compile(r"\.(fp32|fp16|int8)$")


@dataclass(frozen=True)
class Variant:
    """One member of a family: a precision and, for INT8, its form. `tag` is the name used in file names and as
    the key of an export report's `artifacts` ("fp32", "fp16", "int8-minmax")."""

    precision: str
    form: str | None = None

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise EdgekdError(f"unknown precision {self.precision!r} ({', '.join(PRECISIONS)})")
        if (self.precision == "int8") != bool(self.form):
            raise EdgekdError("an INT8 variant needs its form (e.g. minmax, gated), other precisions have none")

    @property
    def tag(self) -> str:
        return f"int8-{self.form}" if self.precision == "int8" else self.precision

    @classmethod
    def parse(cls, tag: str) -> Variant:
        """"fp32" | "fp16" | "int8-<form>" -> Variant."""
        if tag in ("fp32", "fp16"):
            return cls(tag)
        if tag.startswith("int8-") and len(tag) > 5:
            return cls("int8", tag[5:])
        raise EdgekdError(f"unknown artifact variant {tag!r} (fp32, fp16 or int8-<form>)")


def family(path: str | Path) -> Path:
    """The base stem of any member: engines/r18.int8-gated.onnx, engines/r18.fp16.engine -> engines/r18."""
    path = Path(path)
    name = path.name
    if path.suffix.lower() in ENGINE_SUFFIXES:
        return path.with_name(_ENGINE_PRECISION.sub("", name[: -len(path.suffix)]))
    if name.endswith(EXPORT_REPORT):
        return path.with_name(name[: -len(EXPORT_REPORT)])
    if path.suffix.lower() == ONNX_SUFFIX:
        return path.with_name(_VARIANT.sub("", name[: -len(path.suffix)]))
    return path


def variant_of(onnx: str | Path) -> Variant:
    """The variant an ONNX file's name declares: r18.onnx -> fp32, r18.int8-gated.onnx -> int8/gated."""
    stem = Path(onnx).name[: -len(ONNX_SUFFIX)] if str(onnx).lower().endswith(ONNX_SUFFIX) else Path(onnx).name
    m = _VARIANT.search(stem)
    return Variant.parse(m.group(1)) if m else Variant("fp32")


def onnx_path(member: str | Path, variant: Variant | str = "fp32") -> Path:
    """The ONNX file of `variant` in the family of `member` (a base stem or any member's path)."""
    v = variant if isinstance(variant, Variant) else Variant.parse(variant)
    base = family(member)
    return base.with_name(base.name + ("" if v.precision == "fp32" else f".{v.tag}") + ONNX_SUFFIX)


def engine_path(member: str | Path, precision: str, engines_dir: str | Path | None = None) -> Path:
    """engines/r18.onnx (or r18.fp16.onnx, r18.int8-gated.onnx), fp16 -> engines/r18.fp16.engine; `engines_dir`
    puts it in another folder."""
    if precision not in PRECISIONS:
        raise EdgekdError(f"unknown precision {precision!r} ({', '.join(PRECISIONS)})")
    base = family(member)
    if engines_dir is not None:
        base = Path(engines_dir) / base.name
    return base.with_name(f"{base.name}.{precision}{ENGINE_SUFFIX}")


def sidecar_path(engine: str | Path) -> Path:
    """model.engine -> model.engine.json (the suffix is kept so .engine and .plan of one stem don't collide)."""
    return Path(f"{engine}{SIDECAR}")


def calib_cache_path(engine: str | Path, calib_sha256: str) -> Path:
    """The TensorRT calibration cache of `engine` for one calibration set (its sha256; 12 hex digits kept)."""
    return Path(f"{engine}.calib-{calib_sha256[:12]}.cache")


def export_report_path(member: str | Path) -> Path:
    base = family(member)
    return base.with_name(base.name + EXPORT_REPORT)


def gated_int8_onnx(member: str | Path) -> Path | None:
    """The accuracy-gated Q/DQ file of the family, if `edgekd export --int8-gate` wrote one: TensorRT INT8 builds
    prefer it to any calibration method's file."""
    gated = onnx_path(member, Variant("int8", GATED))
    return gated if gated.is_file() else None


def int8_onnx_for_tensorrt(member: str | Path, method: str) -> Path:
    """The Q/DQ file a TensorRT INT8 build uses: the accuracy-gated file when it exists, else `int8-<method>`."""
    return gated_int8_onnx(member) or onnx_path(member, Variant("int8", method))


def typed_onnx_for(member: str | Path, precision: str, method: str) -> Path:
    """The graph whose own types a strongly typed build of `precision` needs (fp32 / fp16 / INT8 Q/DQ file)."""
    if precision == "int8":
        return int8_onnx_for_tensorrt(member, method)
    return onnx_path(member, Variant(precision))


def qat_variant(seed) -> Variant:
    """The INT8 variant `edgekd qat` writes for one seed (tag "int8-qat-s<seed>")."""
    return Variant("int8", f"qat-s{seed}")


def artifact_kind(path: str | Path) -> str:
    """"engine", "onnx" or "checkpoint", by suffix."""
    suffix = Path(path).suffix.lower()
    return "engine" if suffix in ENGINE_SUFFIXES else "onnx" if suffix == ONNX_SUFFIX else "checkpoint"


def detector_stem(detector: str, network: str) -> str:
    """("mtcnn", "pnet") -> "mtcnn-pnet": the family stem of one network of a multi-network detector."""
    return f"{detector}-{network}"
