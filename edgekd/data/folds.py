"""LFW view-2 fold lists: the one parser of `--folds 1-5` / `1,3,5` (folds are numbered 1..10 as in pairs.txt)."""

from __future__ import annotations

import re

from edgekd.errors import EdgekdError

NUM_FOLDS = 10
_NUMBER = re.compile(r"[0-9]{1,9}")  # ASCII digits only (str.isdigit would take '٣')


def parse_folds(spec: str | None, option: str = "--folds") -> list[int] | None:
    """'1-5' or '1,3,5' -> sorted unique fold numbers; None or '' -> None (all folds)."""
    if spec is None or not str(spec).strip():
        return None
    out: list[int] = []
    for part in str(spec).split(","):
        a, dash, b = part.strip().partition("-")
        if not (_NUMBER.fullmatch(a.strip()) and (not dash or _NUMBER.fullmatch(b.strip()))):
            raise EdgekdError(f"{option} {spec!r}: expected a fold list such as 1-5 or 1,3,5")
        lo, hi = int(a), int(b) if dash else int(a)
        if lo > hi:
            raise EdgekdError(f"{option} {spec!r}: range {lo}-{hi} is reversed (write {hi}-{lo})")
        if not (1 <= lo and hi <= NUM_FOLDS):  # checked before the range is built: 1-10000000000 allocates nothing
            raise EdgekdError(f"{option} {spec!r}: folds are numbered 1..{NUM_FOLDS}")
        out += range(lo, hi + 1)
    return sorted(set(out))
