"""LFW view-2 fold lists: the one parser of `--folds 1-5` / `1,3,5` (folds are numbered 1..10 as in pairs.txt)."""

from __future__ import annotations

from edgekd.errors import EdgekdError

NUM_FOLDS = 10


def parse_folds(spec: str | None, option: str = "--folds") -> list[int] | None:
    """'1-5' or '1,3,5' -> sorted unique fold numbers; None or '' -> None (all folds)."""
    if spec is None or not str(spec).strip():
        return None
    out: list[int] = []
    try:
        for part in str(spec).split(","):
            a, _, b = part.strip().partition("-")
            out += list(range(int(a), int(b or a) + 1))
    except ValueError:
        raise EdgekdError(f"{option} {spec!r}: expected a fold list such as 1-5 or 1,3,5") from None
    if not out or not set(out) <= set(range(1, NUM_FOLDS + 1)):
        raise EdgekdError(f"{option} {spec!r}: folds are numbered 1..{NUM_FOLDS}")
    return sorted(set(out))
