"""Find and normalise result JSON files (train/distill summaries, eval and bench JSONs) under a folder."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from edgekd.errors import EdgekdError

RESULT_KINDS = ("train", "distill", "eval", "bench", "pipeline", "video_pipeline")
METHOD_NAMES = {"vanilla": "vanilla", "soft": "soft KD"}
FAR_KEYS = ("1e-01", "1e-02", "1e-03")


def method_column(method: str | None) -> str:
    """Paper's columns: vanilla, soft KD, adversarial KD (any adv* variant); other methods keep their own name."""
    if not method:
        return "—"
    if method in METHOD_NAMES:
        return METHOD_NAMES[method]
    if method.startswith("adv"):
        return "adversarial KD" + ("" if method in ("adv", "adv+arcface") else f" ({method})")
    return method


def dataset_label(verification: dict) -> str:
    """`lfw (3000 pairs)`: the set's folder (pairs.txt) or file stem (.bin), and its pair count, so subsets differ."""
    if verification.get("dataset"):
        name = str(verification["dataset"])
    else:
        data = str(verification.get("data") or "unknown")
        p = Path(data)
        name = p.parent.name if p.name == "pairs.txt" and p.parent.name else (p.stem or data)
    n = verification.get("num_pairs")
    return f"{name} ({n} pairs)" if n else name


@dataclass
class Accuracy:
    dataset: str
    model: str
    method: str | None
    precision: str
    runtime: str
    kind: str
    source: str
    accuracy_mean: float | None
    accuracy_std: float | None
    tar_at_far: dict = field(default_factory=dict)
    eer: float | None = None
    auc: float | None = None
    cosine_min: float | None = None
    cosine_mean: float | None = None
    gflops: float | None = None
    artifact: str | None = None


def read_results(root: str | Path) -> list[tuple[Path, dict]]:
    """Every JSON under `root` (recursively) whose `kind` is a result kind; other JSON files are ignored."""
    root = Path(root)
    if not root.is_dir():
        raise EdgekdError(f"{root}: no such results folder")
    out = []
    for path in sorted(root.rglob("*.json")):
        if any(part.startswith(".") for part in path.relative_to(root).parts):
            continue
        try:
            data = json.loads(path.read_text(), parse_constant=_no_constant, parse_float=_finite)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise EdgekdError(f"{path}: not valid JSON ({e})") from e
        except ValueError as e:  # NaN, Infinity, 1e999
            raise EdgekdError(f"{path}: {e}") from None
        if isinstance(data, dict) and data.get("kind") in RESULT_KINDS:
            if data["kind"] != "pipeline" and not isinstance(data.get("label"), dict):
                raise EdgekdError(f"{path}: result of kind {data['kind']!r} has no \"label\" object")
            check_fields(data, RESULT_FIELDS, path)
            check_ranges(data, path)
            out.append((path, data))
    return out


# The fields the tables and figure read, with the JSON types they may hold (absent = null). A result written by
# hand or by another version with e.g. "accuracy_mean": "abc" is one line naming the file and the field.
NUM, INT, STR, NULL = "number", "integer", "string", "null"
_VERIFICATION = {"accuracy_mean": (NUM, NULL), "accuracy_std": (NUM, NULL), "eer": (NUM, NULL), "auc": (NUM, NULL),
                 "num_pairs": (INT, NULL), "data": (STR, NULL), "dataset": (STR, NULL),
                 "tar_at_far": ({"*": (NUM, NULL)}, NULL),
                 "reference": ({"cosine_min": (NUM, NULL), "cosine_mean": (NUM, NULL)}, NULL)}
_TIMES = {"mean": (NUM,), "std": (NUM,), "p99": (NUM, NULL)}
RESULT_FIELDS = {
    **_VERIFICATION,
    "label": ({"model": (STR, NULL), "method": (STR, NULL), "precision": (STR, NULL), "artifact": (STR, NULL)}, NULL),
    "model": (STR, NULL), "method": (STR, NULL), "precision": (STR, NULL), "device": (STR, NULL),
    "runtime": (STR, {"runtime": (STR, NULL), "name": (STR, NULL)}, NULL),
    "verification": (_VERIFICATION, NULL),
    "gflops": (NUM, NULL), "params": (NUM, NULL), "artifact_bytes": (NUM, NULL),
    "memory": ({k: (NUM, NULL) for k in ("gpu_bytes", "torch_peak_bytes", "unified_bytes", "rss_peak_bytes")},
               NULL),  # the figures table 2 reads; beside them bench records reasons (gpu_bytes_reason: text)
    "results": ([{"batch": (INT,), "latency_ms": (_TIMES,), "throughput_img_s": (NUM,),
                  "device_ms": (_TIMES, NULL)}], NULL),
    "data_source": (STR, NULL), "environment_note": (STR, NULL),
    "stages_ms": ({"total": (_TIMES, NULL)}, NULL), "faces_per_frame": (NUM, NULL),  # a video_pipeline result
}


def _no_constant(name: str):
    raise ValueError(f"holds {name}, which is not a number (and not valid JSON)")


def _finite(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):
        raise ValueError(f"holds {text}, which overflows to {v}")
    return v


# Fractions in [0, 1] (accuracy 7.5 printed "750.00 ± 7.50") and cosines in [-1, 1], wherever a result holds them.
_FRACTIONS = ("accuracy_mean", "accuracy_std", "eer", "auc")


def check_ranges(r: dict, path: Path) -> None:
    for where, v in (("", r), ("verification.", r.get("verification") or {})):
        checks = [(k, v.get(k), 0, 1) for k in _FRACTIONS]
        checks += [(f"tar_at_far.{k}", x, 0, 1) for k, x in (v.get("tar_at_far") or {}).items()]
        checks += [(f"reference.{k}", (v.get("reference") or {}).get(k), -1, 1) for k in ("cosine_min", "cosine_mean")]
        for key, x, lo, hi in checks:
            if x is not None and not lo <= x <= hi:
                raise EdgekdError(f"{path}: {where}{key} is {x!r}, outside {lo}..{hi}")


def _kind_of(value) -> str | None:
    if value is None:
        return NULL
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return INT
    if isinstance(value, float):
        return NUM
    return STR if isinstance(value, str) else None


def check_fields(obj: dict, spec: dict, path: Path, where: str = "") -> None:
    """Check the fields of `obj` named in `spec` (absent fields are null); `{"*": ...}` applies to every value of
    a mapping, `[item_spec]` to every element of a list."""
    items = obj.items() if "*" in spec else ((k, obj.get(k)) for k in spec)
    for key, value in items:
        allowed, name = spec.get(key, spec.get("*")), f"{where}{key}"
        if isinstance(value, dict):
            sub = next((a for a in allowed if isinstance(a, dict)), None)
            if sub is not None:
                check_fields(value, sub, path, f"{name}.")
                continue
        elif isinstance(value, list):
            sub = next((a for a in allowed if isinstance(a, list)), None)
            if sub is not None:
                for i, item in enumerate(value):
                    if not isinstance(item, dict):
                        raise EdgekdError(f"{path}: {name}[{i}] is {_describe(item)}, expected an object")
                    check_fields(item, sub[0], path, f"{name}[{i}].")
                continue
        kind = _kind_of(value)
        if kind in allowed or (kind == INT and NUM in allowed):
            continue
        names = [a if isinstance(a, str) else "an object" if isinstance(a, dict) else "a list" for a in allowed]
        raise EdgekdError(f"{path}: {name} is {_describe(value)}, expected {' or '.join(names)}")


def _describe(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _runtime_name(r: dict) -> str:
    rt = r.get("runtime")
    if isinstance(rt, dict):
        rt = rt.get("runtime") or rt.get("name")
    return str(rt) if rt else "torch"


def accuracy_entries(results: list[tuple[Path, dict]], root: Path) -> tuple[list[Accuracy], list[str]]:
    """One entry per (dataset, model, method, precision, runtime); an eval JSON wins over a training summary."""
    best: dict[tuple, Accuracy] = {}
    notes = []
    for path, r in results:
        if r["kind"] not in ("train", "distill", "eval"):
            continue
        lab = r["label"]
        v = r if r["kind"] == "eval" else (r.get("verification") or {})
        if not v and r.get("accuracy_mean") is None:
            notes.append(f"{path.relative_to(root)}: no verification result (skipped)")
            continue
        ref = v.get("reference") or r.get("reference") or {}
        e = Accuracy(
            dataset=dataset_label({**v, "dataset": r.get("dataset") or v.get("dataset")}),
            model=str(lab.get("model") or r.get("model") or "—"),
            method=lab.get("method") or r.get("method"),
            precision=str(lab.get("precision") or r.get("precision") or "fp32"),
            runtime=_runtime_name(r) if r["kind"] == "eval" else "torch",
            kind=r["kind"],
            source=str(path.relative_to(root)),
            accuracy_mean=r.get("accuracy_mean", v.get("accuracy_mean")),
            accuracy_std=r.get("accuracy_std", v.get("accuracy_std")),
            tar_at_far=r.get("tar_at_far") or v.get("tar_at_far") or {},
            eer=v.get("eer"),
            auc=v.get("auc"),
            cosine_min=ref.get("cosine_min"),
            cosine_mean=ref.get("cosine_mean"),
            gflops=r.get("gflops"),
            artifact=lab.get("artifact"),
        )
        key = (e.dataset, e.model, e.method, e.precision, e.runtime)
        old = best.get(key)
        if old is None or (old.kind != "eval" and e.kind == "eval"):
            if old is not None:
                notes.append(f"{old.source}: superseded by the eval result {e.source}")
            best[key] = e
        else:
            notes.append(f"{e.source}: same model/method/precision/runtime/data as {old.source} (not shown)")
    return list(best.values()), notes


def gflops_by_model(results: list[tuple[Path, dict]]) -> dict[str, float]:
    """GFLOPs are a property of the architecture: take them from any result that recorded them (bench JSONs)."""
    out: dict[str, float] = {}
    for _, r in results:
        g = r.get("gflops")
        model = (r.get("label") or {}).get("model") or r.get("model")
        if g is not None and model:
            out.setdefault(str(model), float(g))
    return out
