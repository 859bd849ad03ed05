"""ROC curve PNG (matplotlib with the Agg backend, so it works headless on servers and Jetsons)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekd.eval.metrics import roc_curve
from edgekd.errors import EdgekdError
from edgekd.io import atomic_path


def plot_roc(path: str | Path, scores: np.ndarray, issame: np.ndarray, title: str = "") -> Path:
    """TAR against FAR on a log FAR axis (the region deployments care about), written atomically."""
    try:
        import matplotlib
    except ImportError:  # the torch-free Jetson install has no matplotlib
        raise EdgekdError(f"{path}: writing a ROC plot needs matplotlib (pip install matplotlib)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fpr, tpr = roc_curve(scores, issame)
    keep = fpr > 0
    fig, ax = plt.subplots(figsize=(5, 4), dpi=120)
    try:
        ax.plot(fpr[keep], tpr[keep], lw=1.5)
        ax.set_xscale("log")
        ax.set_xlim(max(fpr[keep].min(), 1e-4) if keep.any() else 1e-4, 1.0)
        ax.set_ylim(max(0.0, float(tpr[keep].min()) - 0.02) if keep.any() else 0.0, 1.002)  # zoom on good models
        ax.set_xlabel("FAR (false accept rate)")
        ax.set_ylabel("TAR (true accept rate)")
        ax.grid(True, which="both", alpha=0.3)
        ax.set_title(title, fontsize=9)
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)
    return Path(path)
