"""timm-style model registry: architectures register a builder by name; everything else creates models by name."""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from edgekd.errors import EdgekdError
from edgekd.models.cfgs import ALIASES, CFGS

if TYPE_CHECKING:
    from torch import nn

# The built-in architectures, imported on first use (they import torch; the cfgs do not), in listing order.
ARCHITECTURES = ("iresnet", "mobilefacenet", "mobilenet", "pretrained")


@dataclass(frozen=True)
class Entry:
    """A registered builder. `detect(state_dict) -> kwargs | None` recognises this architecture's weights;
    `default_weights` is a path inside the shared data (the real pretrained files)."""

    name: str
    builder: Callable[..., nn.Module]
    detect: Callable[[dict], dict | None] | None = None
    default_weights: tuple[str, ...] | None = None


_MODELS: dict[str, Entry] = {}
_ALIASES: dict[str, str] = {}


def register_model(
    name: str | None = None,
    *,
    aliases: tuple[str, ...] = (),
    detect: Callable[[dict], dict | None] | None = None,
    default_weights: tuple[str, ...] | None = None,
):
    """Decorator: `@register_model()` registers a builder under its function name (or `name`); aliases default to
    the name's cfg (edgekd.models.cfgs)."""

    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        key = name or fn.__name__
        if key in _MODELS or key in _ALIASES:
            raise ValueError(f"model {key!r} registered twice")
        _MODELS[key] = Entry(key, fn, detect, default_weights)
        for a in aliases or (CFGS[key].aliases if key in CFGS else ()):
            _ALIASES[a] = key
        return fn

    return wrap


def _load_architectures() -> None:
    for mod in ARCHITECTURES:
        importlib.import_module(f"edgekd.models.{mod}")


def list_models(include_aliases: bool = False) -> list[str]:
    _load_architectures()
    names = list(_MODELS)
    return names + sorted(_ALIASES) if include_aliases else names


def aliases() -> dict[str, str]:
    """alias -> registered name (e.g. mbf -> mobilefacenet)."""
    _load_architectures()
    return dict(_ALIASES)


def resolve(name: str) -> Entry:
    """The entry for a name or alias; an unknown name is a one-line error listing the known ones."""
    _load_architectures()
    entry = _MODELS.get(_ALIASES.get(name, name)) if isinstance(name, str) else None  # a list: unhashable
    if entry is None:
        raise EdgekdError(f"unknown model {name!r}; known: {', '.join(list_models(include_aliases=True))}")
    return entry


def entries() -> list[Entry]:
    _load_architectures()
    return list(_MODELS.values())


def create_model(name: str, **kw: Any) -> nn.Module:
    """Build a registered model (random init unless the builder takes `pretrained=True`)."""
    entry = resolve(name)
    try:
        inspect.signature(entry.builder).bind(**kw)
    except TypeError as e:
        raise EdgekdError(f"model {entry.name}: bad option(s) {sorted(kw)} ({e})") from None
    return entry.builder(**kw)


def model_preprocess(name: str, **kw: Any):
    """The preprocessing of a registered model (e.g. for an ONNX file without edgekd metadata): from its cfg without
    importing torch; a model registered elsewhere without a cfg is built on the meta device (no weights allocated)."""
    key = ALIASES.get(name, name) if isinstance(name, str) else name
    if key in CFGS:  # no built-in option changes the preprocessing
        return CFGS[key].preprocess
    if key not in _MODELS and key not in _ALIASES:  # answered without torch too
        known = list(dict.fromkeys([*CFGS, *_MODELS, *sorted({**ALIASES, **_ALIASES})]))
        raise EdgekdError(f"unknown model {name!r}; known: {', '.join(known)}")
    import torch

    with torch.device("meta"):
        return create_model(name, **kw).preprocess
