"""Fig 1: verification accuracy against GFLOPs (log scale), one point per model / method / precision."""

from __future__ import annotations

from pathlib import Path

from edgekd.io import atomic_path
from edgekd.report.collect import Accuracy, method_column
from edgekd.report.tables import METHOD_ORDER

MARKERS = {"fp32": "o", "fp16": "s", "int8": "^", "bf16": "D"}


def accuracy_vs_gflops(entries: list[Accuracy], gflops: dict[str, float], path: str | Path,
                       title: str = "Accuracy vs compute") -> tuple[int, list[str]]:
    """Write the PNG atomically; returns (points plotted, notes on entries left out for want of a GFLOPs figure)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    notes, points = [], []
    for e in entries:
        g = e.gflops if e.gflops is not None else gflops.get(e.model)
        if e.accuracy_mean is None:
            continue
        if g is None or g <= 0:
            notes.append(f"{e.model}/{e.method}/{e.precision} ({e.runtime}): not plotted, no GFLOPs figure recorded")
            continue
        points.append((e, g))
    datasets = sorted({e.dataset for e, _ in points}) or ["(no data)"]
    fig, axes = plt.subplots(1, len(datasets), figsize=(6.4 * len(datasets), 4.8), squeeze=False)
    present = {method_column(e.method) for e, _ in points}
    methods = [m for m in METHOD_ORDER if m in present] + sorted(present - set(METHOD_ORDER))
    colors = {m: plt.cm.tab10(i % 10) for i, m in enumerate(methods)}
    precisions_all = sorted({e.precision for e, _ in points}, key=lambda p: list(MARKERS).index(p)
                            if p in MARKERS else 9)
    slots = [(m, p) for m in methods for p in precisions_all]
    dodge = {k: 1.045 ** (i - (len(slots) - 1) / 2) for i, k in enumerate(slots)}
    for ax, ds in zip(axes[0], datasets):
        labelled: dict[str, tuple[float, float]] = {}
        for e, g in points:
            if e.dataset != ds:
                continue
            m = method_column(e.method)
            x, y = g * dodge[(m, e.precision)], 100 * e.accuracy_mean
            ax.errorbar(x, y, yerr=100 * (e.accuracy_std or 0), fmt=MARKERS.get(e.precision, "x"),
                        color=colors[m], markersize=7, capsize=3, alpha=0.85)
            if e.model not in labelled or y > labelled[e.model][1]:
                labelled[e.model] = (g, y)
        for model, (g, y) in labelled.items():  # one name per architecture, above its best point
            ax.annotate(model, (g, y), textcoords="offset points", xytext=(0, 12), ha="center", fontsize=8)
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        xs = [g for e, g in points if e.dataset == ds]
        if xs:
            ax.set_xlim(min(xs) / 1.6, max(xs) * 1.6)
        ax.set_xlabel("GFLOPs per image (log scale; points of one model dodged sideways)")
        ax.set_ylabel("verification accuracy (%)")
        ax.set_title(f"{title}: {ds}", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        if not points:
            ax.text(0.5, 0.5, "no accuracy result with a GFLOPs figure", ha="center", transform=ax.transAxes)
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=colors[m], marker="o", linestyle="", label=m) for m in methods]
    handles += [Line2D([], [], color="gray", marker=MARKERS.get(p, "x"), linestyle="", label=p) for p in precisions_all]
    if handles:
        axes[0][-1].legend(handles=handles, fontsize=8, loc="best")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return len(points), notes
