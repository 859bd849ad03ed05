"""Parameters and multiply-adds, measured (never hard-coded) so reports compare like with like.

Convention: GFLOPs = multiply-adds x 1e-9 for one image at the model's own input size, counted by
torch.utils.flop_counter (convolutions and matrix products; BN, activations and additions are not counted).
The count runs on the meta device: shapes only, no arithmetic and no weight memory (r200 included).
"""

from __future__ import annotations

import functools

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from edgekd.models.registry import create_model, list_models

CONVENTION = "GFLOPs = multiply-adds x 1e-9 (conv + linear, torch.utils.flop_counter, 1 image at the model's input size)"


def complexity(model_or_name: nn.Module | str) -> dict:
    """{"params": int, "macs": int, "gflops": float} for one image at the model's preprocess input size."""
    if isinstance(model_or_name, str):
        with torch.device("meta"):
            model = create_model(model_or_name)
    else:
        model = model_or_name
    h, w = model.preprocess.input_size
    meta = {k: torch.empty_like(v, device="meta") for k, v in model.state_dict(keep_vars=True).items()}
    was_training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            torch.func.functional_call(model, meta, (torch.empty(1, 3, h, w, device="meta"),))
    finally:
        model.train(was_training)
    macs = counter.get_total_flops() // 2
    params = sum(p.numel() for p in model.parameters())
    return {"params": int(params), "macs": int(macs), "gflops": macs * 1e-9}


@functools.lru_cache(maxsize=None)
def _row(name: str) -> tuple:
    """Cached per name: a registered name can never be re-registered, so its figures never change."""
    with torch.device("meta"):
        model = create_model(name)
    row = {"name": name, "input_size": list(model.preprocess.input_size), "embedding_size": model.embedding_size,
           **complexity(model)}
    return tuple(row.items())


def model_table() -> list[dict]:
    """One row per registered model: name, input size, embedding size, params, macs, gflops."""
    return [dict(_row(name)) for name in list_models()]
