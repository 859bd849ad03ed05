"""Reading and writing weights: edgekd checkpoints, plain/wrapped state_dicts, and architecture detection.

Every failure is one EdgekdError line naming the file, so `edgekd eval --weights x.pth` never shows a traceback.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgekd import __version__
from edgekd.errors import EdgekdError
from edgekd.io import atomic_path, sha256_file
from edgekd.paths import shared_path
from edgekd.preprocess import Preprocess
from edgekd.models.registry import aliases, create_model, entries, resolve

_WRAPPERS = ("state_dict", "model", "net_state_dict", "state_dict_backbone")  # last: arcface_torch resume file
_PREFIXES = ("module.", "_orig_mod.")  # DataParallel/DDP and torch.compile


@dataclass
class ModelInfo:
    name: str
    kwargs: dict
    preprocess: Preprocess
    embedding_size: int
    weights: Path | None
    weights_sha256: str | None
    meta: dict = field(default_factory=dict)


def read_weights(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """(state_dict, edgekd meta block or {}) from any supported file, wrappers and prefixes removed."""
    path = Path(path)
    if not path.is_file():
        raise EdgekdError(f"{path}: " + ("is a folder, expected a weights file" if path.is_dir() else "no such file"))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for corrupt, non-torch or unsafe-pickle files
        raise EdgekdError(f"{path}: {describe_load_error(path, e)}") from None
    meta = obj.get("edgekd", {}) if isinstance(obj, dict) and isinstance(obj.get("edgekd"), dict) else {}
    for _ in range(3):  # e.g. {'model': {'state_dict': ...}}
        if not isinstance(obj, dict) or _is_state_dict(obj):
            break
        inner = next((obj[k] for k in _WRAPPERS if isinstance(obj.get(k), dict)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, dict) or not _is_state_dict(obj):
        found = f"keys {list(obj)[:5]}" if isinstance(obj, dict) else type(obj).__name__
        raise EdgekdError(f"{path}: no state_dict found (top level holds {found})")
    if not isinstance(meta.get("model", ""), str) or not isinstance(meta.get("model_kwargs") or {}, dict):
        raise EdgekdError(f"{path}: edgekd.model must be a model name and edgekd.model_kwargs a mapping, got "
                          f"{meta.get('model')!r} and {meta.get('model_kwargs')!r}")
    broken = [k for k, t in obj.items() if torch.is_tensor(t) and t.is_floating_point() and not _finite(t)]
    if broken:  # found at load: such a model embeds everything as NaN, and eval would fall back and score 50 %
        raise EdgekdError(f"{path}: weights hold NaN or infinite values ({len(broken)} tensors, first {broken[0]})")
    return _strip_prefixes(obj), meta


def _finite(t: torch.Tensor) -> bool:
    """Every value finite; numpy where it holds the dtype: a torch call per tensor carries dispatch overhead that, over
    the few hundred tensors of a checkpoint, grew to about a second on a busy CPU at every `edgekd eval --weights`."""
    if t.dtype in (torch.float16, torch.float32, torch.float64) and t.device.type == "cpu":
        import numpy as np

        return bool(np.isfinite(t.detach().numpy()).all())
    return bool(torch.isfinite(t).all())


def describe_load_error(path: Path, e: Exception) -> str:
    """torch's messages are long, multi-line, and advise `weights_only=False` (never right for a file the user did
    not make): name the cause in one clause instead."""
    with open(path, "rb") as f:
        head = f.read(2)
    if head != b"PK" and head[:1] != b"\x80":  # zip local-file magic / pickle PROTO opcode
        return "not a PyTorch weights file (neither a torch zip archive nor a pickle)"
    text = str(e)
    if "Weights only load failed" in text:
        m = re.search(r"WeightsUnpickler error:\s*(.*?)(?: was not an allowed global|\. Please use|\n\n|$)", text, re.S) \
            or re.search(r"(Trying to load unsupported GLOBAL [^\n]*)", text)
        detail = " ".join(m[1].split()) if m else type(e).__name__
        what = ("a plain pickle that weights-only loading cannot read" if head[:1] == b"\x80"
                else "the torch archive holds Python objects other than tensors and plain values")
        return f"refused: {what} ({detail[:160]}); edgekd never unpickles code"
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return f"truncated or corrupt PyTorch file ({lines[0][:160] if lines else type(e).__name__})"


def _is_state_dict(d: dict) -> bool:
    return bool(d) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in d.items())


def _strip_prefixes(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    for p in _PREFIXES:
        if all(k.startswith(p) for k in sd):
            sd = {k[len(p) :]: v for k, v in sd.items()}
    return sd


def detect_architecture(sd: dict[str, torch.Tensor], source: str | os.PathLike = "") -> tuple[str, dict]:
    """(registered name, kwargs) the weights belong to; an unknown or ambiguous file asks for --model."""
    hits = [(e.name, kw) for e in entries() if e.detect is not None and (kw := e.detect(sd)) is not None]
    if len(hits) == 1:
        return hits[0]
    if not hits:
        raise EdgekdError(
            f"{source}: cannot tell which architecture these weights are for "
            f"(first keys: {', '.join(list(sd)[:3])}); pass --model"
        )
    raise EdgekdError(f"{source}: weights match several architectures ({', '.join(n for n, _ in hits)}); pass --model")


def _check_fit(model: nn.Module, sd: dict, source: Path, what: str) -> None:
    """One-line description of the first differences, before load_state_dict's multi-line error can happen."""
    own = model.state_dict()
    missing = [k for k in own if k not in sd and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in sd if k not in own]
    if missing or unexpected:
        parts = [f"{label} {len(keys)} keys ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})"
                 for label, keys in (("missing", missing), ("unexpected", unexpected)) if keys]
        raise EdgekdError(f"{source}: weights do not fit {what}: {'; '.join(parts)}")
    for k, v in own.items():
        if k in sd and tuple(sd[k].shape) != tuple(v.shape):
            raise EdgekdError(
                f"{source}: weights do not fit {what}: {k} has shape {tuple(sd[k].shape)} in the file, "
                f"{tuple(v.shape)} in the model"
            )


def load_model(weights: str | os.PathLike | None, name: str | None = None, **kw: Any) -> tuple[nn.Module, ModelInfo]:
    """Model in eval mode with the file's weights loaded strictly, and what it is.

    `name=None` detects the architecture (edgekd meta block, else key names/shapes). `weights=None` takes the
    named model's shared pretrained file. `kw` overrides constructor options (embedding_size, fp16, ...).
    """
    if weights is None:
        entry = resolve(name) if name else None
        rel = entry.default_weights if entry else None
        weights = shared_path(*rel) if rel else None
        if weights is None:
            raise EdgekdError(f"model {name}: no weights given" + (" and the shared pretrained file is absent" if rel else ""))
    path = Path(weights)
    sd, meta = read_weights(path)
    if name is None:
        if meta.get("model"):
            name, kwargs = meta["model"], dict(meta.get("model_kwargs") or {})
        else:
            name, kwargs = detect_architecture(sd, path)
    else:  # an explicit name keeps the checkpoint's options only when it names the same architecture
        same = aliases().get(meta.get("model"), meta.get("model")) == resolve(name).name
        kwargs = dict(meta.get("model_kwargs") or {}) if same else {}
    kwargs.update(kw)
    try:
        name = resolve(name).name
        model = create_model(name, **kwargs)
    except EdgekdError as e:  # e.g. a checkpoint from a newer edgekd naming an unknown model
        raise EdgekdError(f"{path}: {e}") from None
    what = f"{name}({', '.join(f'{k}={v}' for k, v in kwargs.items())})"
    _check_fit(model, sd, path, what)
    model.load_state_dict(sd, strict=True)
    model.eval()
    info = ModelInfo(
        name=name,
        kwargs=kwargs,
        preprocess=model.preprocess,
        embedding_size=model.embedding_size,
        weights=path,
        weights_sha256=sha256_file(path),
        meta=meta,
    )
    return model, info


def _unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside DDP/DataParallel or torch.compile wrappers."""
    while hasattr(model, "module") or hasattr(model, "_orig_mod"):
        model = getattr(model, "module", None) or model._orig_mod
    return model


def save_checkpoint(
    path: str | os.PathLike, model: nn.Module, name: str, model_kwargs: dict, extra: dict | None = None
) -> Path:
    """Atomically write an edgekd checkpoint: an `edgekd` meta block (how to rebuild the model) + state_dict.

    Only tensors and Python primitives go in, so it loads with torch.load(weights_only=True).
    """
    model = _unwrap(model)
    extra = dict(extra or {})
    meta = {
        "format": 1,
        "version": __version__,
        "model": resolve(name).name,
        "model_kwargs": dict(model_kwargs),
        "preprocess": model.preprocess.to_dict(),
        "embedding_size": int(model.embedding_size),
        **extra.pop("meta", {}),
    }
    payload = {"edgekd": meta, "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}, **extra}
    with atomic_path(path) as tmp:
        try:
            torch.save(payload, tmp)
        except RuntimeError as e:  # torch's C++ writer reports a full disk as "unexpected pos" / "file write failed"
            raise EdgekdError(f"{path}: write failed ({_write_failure(tmp, e)}); nothing was written") from None
    return Path(path)


def _write_failure(tmp: Path, e: RuntimeError) -> str:
    """Name the cause torch's writer hides: a full disk shows as no free space where the file was being written."""
    import shutil

    try:
        if shutil.disk_usage(tmp.parent).free < 1 << 20:
            return "No space left on device"
    except OSError:
        pass
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return f"torch.save: {lines[0][:200]}" if lines else "torch.save failed"
