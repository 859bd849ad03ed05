"""Flags runs that did not learn, so a distillation sweep does not report a diverged student as a result."""

from __future__ import annotations

CHANCE_ACCURACY = 0.55  # verification is a balanced binary task: ~0.5 is guessing
MIN_DROP = 0.05  # the last loss window must be this fraction below the first
ACC_FALL = 0.05  # final accuracy this far below the best one counts as a collapse


def assess(losses: list[float], accuracies: list[float]) -> tuple[bool, str]:
    """(converged, note) from the logged loss means (in step order) and the periodic verification accuracies."""
    problems = []
    if len(losses) < 2:
        problems.append(f"too few logged losses ({len(losses)}) to tell whether the loss fell")
    else:
        w = max(1, len(losses) // 5)
        first, last = sum(losses[:w]) / w, sum(losses[-w:]) / w
        if not last < first - MIN_DROP * abs(first):
            problems.append(f"loss did not fall (first-window mean {first:.4g}, last-window mean {last:.4g})")
    if accuracies:
        best, final = max(accuracies), accuracies[-1]
        if final <= CHANCE_ACCURACY:
            problems.append(f"verification accuracy {final:.4f} is at chance level")
        elif final < best - ACC_FALL:
            problems.append(f"verification accuracy fell from its best {best:.4f} to {final:.4f}")
    if problems:
        return False, "not converged: " + "; ".join(problems)
    note = f"loss fell from {losses[0]:.4g} to {losses[-1]:.4g}"
    if accuracies:
        note += f"; verification accuracy {accuracies[-1]:.4f} (best {max(accuracies):.4f})"
    return True, "converged: " + note
