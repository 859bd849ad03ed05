"""Resumable training state. Everything is saved as tensors and Python primitives so the files load with
torch.load(weights_only=True), and through edgekd.models.save_checkpoint so `load_model` (export, eval) reads
the weights of any training checkpoint without being told the architecture."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import numpy as np
import torch

from edgekd.errors import EdgekdError


def rng_state() -> dict:
    """Python, numpy, torch (and CUDA) generator states: dropout and anything else random resumes identically."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    return {
        "python": [py_state[0], list(py_state[1]), py_state[2]],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_checkpoint(path: str | Path) -> dict:
    """A training checkpoint, with a one-line error when it is missing, truncated or not an edgekd checkpoint."""
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as e:
        raise EdgekdError(f"{path}: no such checkpoint") from e
    except IsADirectoryError:
        raise EdgekdError(f"{path}: is a folder, not a checkpoint file") from None
    except Exception as e:  # unpickling errors come in many types
        from edgekd.models.loading import describe_load_error

        raise EdgekdError(f"{path}: {describe_load_error(path, e)}") from None
    if not isinstance(ckpt, dict) or "train" not in ckpt or "edgekd" not in ckpt:
        raise EdgekdError(f"{path}: not an edgekd training checkpoint (no training state to resume)")
    return ckpt


def git_commit() -> str | None:
    """The source commit the run was made with ('-dirty' when the tree had changes), None outside a checkout."""
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("-dirty" if dirty else "")
