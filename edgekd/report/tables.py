"""Table 1 (verification accuracy) and Table 2 (latency, memory, size) as rows of strings; markdown and CSV.

Absent figures are shown as "—", never filled in.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from edgekd.report.collect import FAR_KEYS, Accuracy, method_column

MISSING = "—"
METHOD_ORDER = ["vanilla", "soft KD", "adversarial KD"]


def pct(mean, std=None) -> str:
    if mean is None:
        return MISSING
    return f"{100 * mean:.2f}" + ("" if std is None else f" ± {100 * std:.2f}")


def num(v, fmt: str = "{:.3f}") -> str:
    return MISSING if v is None else fmt.format(v)


def mib(b) -> str:
    return MISSING if b is None else f"{b / 2**20:.1f}"


def _method_columns(entries: list[Accuracy]) -> list[str]:
    present = {method_column(e.method) for e in entries}
    return METHOD_ORDER + sorted(present - set(METHOD_ORDER))


def table1(entries: list[Accuracy]) -> tuple[list[str], list[list[str]]]:
    """Accuracy % (mean ± std over the 10 folds): rows dataset × model × precision × runtime, columns methods."""
    cols = _method_columns(entries)
    head = ["dataset", "model", "precision", "runtime", *cols]
    rows: dict[tuple, dict[str, str]] = {}
    for e in entries:
        key = (e.dataset, e.model, e.precision, e.runtime)
        rows.setdefault(key, {})[method_column(e.method)] = pct(e.accuracy_mean, e.accuracy_std)
    body = [[*key, *(cells.get(c, MISSING) for c in cols)] for key, cells in sorted(rows.items())]
    return head, body


def table1_details(entries: list[Accuracy]) -> tuple[list[str], list[list[str]]]:
    """Every accuracy figure with its TAR@FAR, EER, AUC and agreement with the FP32 reference."""
    head = ["dataset", "model", "method", "precision", "runtime", "accuracy %", *(f"TAR@FAR={k}" for k in FAR_KEYS),
            "EER", "AUC", "cos vs FP32 (min/mean)", "GFLOPs", "source"]
    body = []
    for e in sorted(entries, key=lambda e: (e.dataset, e.model, METHOD_ORDER.index(method_column(e.method))
                                            if method_column(e.method) in METHOD_ORDER else 9, str(e.method),
                                            e.precision, e.runtime)):
        far = [pct(e.tar_at_far.get(k)) for k in FAR_KEYS]
        cos = MISSING if e.cosine_min is None else f"{e.cosine_min:.4f} / {e.cosine_mean:.4f}"
        body.append([e.dataset, e.model, e.method or MISSING, e.precision, e.runtime,
                     pct(e.accuracy_mean, e.accuracy_std), *far, pct(e.eer), num(e.auc, "{:.4f}"), cos,
                     num(e.gflops), e.source])
    return head, body


def _row_key(r: dict) -> tuple:
    lab = r["label"]
    return (lab.get("model"), lab.get("method"), lab.get("precision") or r.get("precision"), r.get("runtime"),
            r.get("device"))


def table2(results: list[tuple[Path, dict]], root: Path) -> tuple[list[str], list[list[str]]]:
    """One row per bench JSON and batch size: latency ± std, p99, throughput, device time, memory, size; beside
    them the per-frame time of the whole detect -> align -> embed -> match path (`edgekd bench --video --detector`)
    of the same model, precision, runtime and device, when there is one (a row of its own otherwise)."""
    head = ["model", "method", "precision", "runtime", "device", "batch", "latency ms (mean ± std)", "p99 ms",
            "img/s", "device ms", "GPU MiB", "unified MiB", "peak RSS MiB", "artifact MiB", "params M", "GFLOPs",
            "frame e2e ms (mean ± std)", "faces/frame", "source"]
    frames = {}
    for path, r in results:
        if r["kind"] == "video_pipeline" and (r.get("stages_ms") or {}).get("total"):
            frames.setdefault(_row_key(r), (path, r))
    body, used = [], set()
    for path, r in results:
        if r["kind"] != "bench":
            continue
        lab, mem = r["label"], r.get("memory") or {}
        gpu = mem.get("gpu_bytes") if mem.get("gpu_bytes") is not None else mem.get("torch_peak_bytes")
        video = frames.get(_row_key(r))
        used.add(_row_key(r))
        e2e = _frame_cells(video, root)
        for x in r.get("results") or []:
            L, dev = x["latency_ms"], x.get("device_ms")
            body.append([
                str(lab.get("model") or MISSING), str(lab.get("method") or MISSING),
                str(lab.get("precision") or r.get("precision") or MISSING), str(r.get("runtime") or MISSING),
                str(r.get("device") or MISSING), str(x["batch"]), f"{L['mean']:.2f} ± {L['std']:.2f}",
                f"{L['p99']:.2f}", f"{x['throughput_img_s']:.1f}",
                MISSING if not dev else f"{dev['mean']:.2f} ± {dev['std']:.2f}",
                mib(gpu), mib(mem.get("unified_bytes")), mib(mem.get("rss_peak_bytes")), mib(r.get("artifact_bytes")),
                num(None if r.get("params") is None else r["params"] / 1e6, "{:.2f}"), num(r.get("gflops")),
                *e2e[:2], str(path.relative_to(root)) + e2e[2],
            ])
    for key, (path, r) in frames.items():
        if key not in used:
            e2e = _frame_cells((path, r), root)
            body.append([str(v or MISSING) for v in key] + ["frame"] + [MISSING] * 10 + [*e2e[:2],
                                                                                          e2e[2].lstrip(" +")])
    body.sort(key=lambda row: (row[0], row[1], row[2], row[3], int(row[5]) if row[5].isdigit() else 0))
    return head, body


def _frame_cells(video, root: Path) -> list[str]:
    """[e2e mean ± std, faces/frame, " + <its file>"] of a video_pipeline result (or dashes)."""
    if video is None:
        return [MISSING, MISSING, ""]
    path, r = video
    t = r["stages_ms"]["total"]
    return [f"{t['mean']:.2f} ± {t['std']:.2f}", num(r.get("faces_per_frame"), "{:.2f}"),
            f" + {path.relative_to(root)}"]


def markdown(head: list[str], body: list[list[str]]) -> str:
    esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(map(esc, head)) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(map(esc, row)) + " |" for row in body]
    if not body:
        lines.append("| " + " | ".join(MISSING for _ in head) + " |")
    return "\n".join(lines) + "\n"


def csv_text(head: list[str], body: list[list[str]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(head)
    w.writerows(body)
    return buf.getvalue()
