"""A training verdict against chance, so a sweep does not report a briefly trained or diverged student as converged.

Two reference points say whether a run learned at all: a uniform classifier's cross-entropy, log(#classes), for
the margin loss, and AUC 0.5 for verification. Whether it converged is whether the loss stopped falling (the last
two windows of logged losses within PLATEAU of each other) while beating those references.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

MIN_LOGGED = 4  # logged loss means needed to tell a trend from noise
MIN_DROP = 0.05  # the last loss window must be this fraction below the first for "learning"
PLATEAU = 0.02  # ... and within this fraction of the window before it for "converged"
AUC_CHANCE = 0.55  # verification AUC at or below this is guessing (0.5 = chance; ~6 sd on 3,000 pairs)
CHANCE_ACCURACY = 0.55  # balanced verification: ~0.5 is guessing
ACC_FALL = 0.05  # final accuracy this far below the best one counts as a collapse

CONVERGED, LEARNING, NOT_LEARNING, TOO_SHORT = "converged", "learning, not converged", "not learning", "too short to tell"


class Verdict(NamedTuple):
    verdict: str  # one of CONVERGED, LEARNING, NOT_LEARNING, TOO_SHORT
    converged: bool
    note: str  # "<verdict>: <the evidence>"


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs)


def assess(losses: Sequence[float], accuracies: Sequence[float] = (), num_classes: int | None = None,
           aucs: Sequence[float] = (), margin_losses: Sequence[float] | None = None) -> Verdict:
    """Verdict from the logged loss means (step order), the periodic verification accuracies and AUCs, and the
    class count behind the margin loss (`margin_losses`: its own log when the total loss adds KD terms)."""
    if len(losses) < MIN_LOGGED:
        return Verdict(TOO_SHORT, False, f"{TOO_SHORT}: {len(losses)} logged loss values (need {MIN_LOGGED}; "
                                         "log more often or train longer)")
    ce = list(margin_losses) if margin_losses and len(margin_losses) == len(losses) else list(losses)
    w = max(1, len(losses) // 5)
    first, prev, last = _mean(losses[:w]), _mean(losses[-2 * w : -w]), _mean(losses[-w:])
    ce_last = _mean(ce[-w:])
    chance_loss = math.log(num_classes) if num_classes and num_classes > 1 else None
    facts = [f"loss {first:.4g} -> {last:.4g}"]
    if chance_loss is not None:
        facts.append(f"margin loss {ce_last:.4g} vs a uniform guess's log({num_classes}) = {chance_loss:.3g}")
    if aucs:
        facts.append(f"verification AUC {aucs[-1]:.3f} (chance 0.5)")
    if accuracies:
        facts.append(f"accuracy {accuracies[-1]:.4f} (best {max(accuracies):.4f})")

    not_learning = []
    if not (math.isfinite(last) and last < first - MIN_DROP * abs(first)):
        not_learning.append("the loss did not fall")
    if aucs and not aucs[-1] > AUC_CHANCE:
        not_learning.append("verification is at chance")
    elif not aucs and chance_loss is not None and not ce_last < chance_loss:
        not_learning.append("the margin loss is no better than a uniform guess")
    if not_learning:
        return Verdict(NOT_LEARNING, False, f"{NOT_LEARNING}: {'; '.join(not_learning)} ({'; '.join(facts)})")

    pending = []
    drop = (prev - last) / abs(prev) if prev else 0.0
    if drop >= PLATEAU:
        pending.append(f"the loss still falls {100 * drop:.0f} % per window")
    elif drop <= -PLATEAU:
        pending.append(f"the loss rose {100 * -drop:.0f} % in the last window")
    if chance_loss is not None and not ce_last < chance_loss:
        pending.append("the margin loss is not yet below a uniform guess's")
    if accuracies:
        best, final = max(accuracies), accuracies[-1]
        if final <= CHANCE_ACCURACY:
            pending.append(f"verification accuracy {final:.4f} is near chance")
        elif final < best - ACC_FALL:
            pending.append(f"verification accuracy fell from its best {best:.4f}")
    if pending:
        return Verdict(LEARNING, False, f"{LEARNING}: {'; '.join(pending)} ({'; '.join(facts)})")
    return Verdict(CONVERGED, True, f"{CONVERGED}: the loss levelled off ({'; '.join(facts)})")
