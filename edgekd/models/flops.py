"""Parameters and multiply-adds, measured so reports compare like with like.

Convention: GFLOPs = multiply-adds x 1e-9 for one image at the model's own input size, counted by
torch.utils.flop_counter (convolutions and matrix products; BN, activations and additions are not counted).
The count runs on the meta device: shapes only, no arithmetic and no weight memory (r200 included).

The count is the rule; the figures of each registered model's default build are recorded in its cfg
(edgekd.models.cfgs) because running the counter imports torch's compiler stack (torch._dynamo, seconds), a fixed
cost every `edgekd eval --weights` would pay. tests/test_models_complexity.py checks each recorded figure against
the count, so they cannot drift apart.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from edgekd.models.cfgs import ALIASES, CFGS, ModelCfg
from edgekd.models.registry import create_model, list_models

CONVENTION = "GFLOPs = multiply-adds x 1e-9 (conv + linear, torch.utils.flop_counter, 1 image at the model's input size)"


def _figures(params: int, macs: int) -> dict:
    return {"params": int(params), "macs": int(macs), "gflops": int(macs) * 1e-9}


def count_complexity(model: nn.Module) -> dict:
    """{"params", "macs", "gflops"} of `model` counted by torch.utils.flop_counter (the module is left untouched)."""
    from torch.utils.flop_counter import FlopCounterMode

    h, w = model.preprocess.input_size
    meta = {k: torch.empty_like(v, device="meta") for k, v in model.state_dict(keep_vars=True).items()}
    was_training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            torch.func.functional_call(model, meta, (torch.empty(1, 3, h, w, device="meta"),))
    finally:
        model.train(was_training)
    return _figures(sum(p.numel() for p in model.parameters()), counter.get_total_flops() // 2)


def recorded_cfg(name: str | None) -> ModelCfg | None:
    """The cfg of registered `name` (or alias) when it records the default build's figures, else None."""
    cfg = CFGS.get(ALIASES.get(name, name)) if isinstance(name, str) else None
    return cfg if cfg is not None and cfg.params is not None and cfg.macs is not None else None


def complexity(model_or_name: nn.Module | str, name: str | None = None) -> dict:
    """{"params": int, "macs": int, "gflops": float} for one image at the model's preprocess input size.

    A registered name, or a module built by registered model `name` whose parameter count, input size and embedding
    size are those of the default build, takes the figures its cfg records (no built-in option changes the
    multiply-adds without changing the parameter count: embedding_size does both, fp16 and dropout neither).
    Anything else (another embedding size, a model without recorded figures) is counted."""
    if isinstance(model_or_name, str):
        cfg = recorded_cfg(model_or_name)
        if cfg is not None:
            return _figures(cfg.params, cfg.macs)
        with torch.device("meta"):
            return count_complexity(create_model(model_or_name))
    model, cfg = model_or_name, recorded_cfg(name)
    if cfg is not None:
        params = sum(p.numel() for p in model.parameters())
        if (params == cfg.params and tuple(model.preprocess.input_size) == tuple(cfg.preprocess.input_size)
                and getattr(model, "embedding_size", None) == cfg.embedding_size):
            return _figures(params, cfg.macs)
    return count_complexity(model)


@functools.lru_cache(maxsize=None)
def _row(name: str) -> tuple:
    """Cached per name: a registered name can never be re-registered, so its figures never change."""
    with torch.device("meta"):
        model = create_model(name)
    row = {"name": name, "input_size": list(model.preprocess.input_size), "embedding_size": model.embedding_size,
           **complexity(model, name)}
    return tuple(row.items())


def model_table() -> list[dict]:
    """One row per registered model: name, input size, embedding size, params, macs, gflops."""
    return [dict(_row(name)) for name in list_models()]
