"""Every figure in README.md's "Results measured here" section names the benchmarks/results file holding it, and
that file (written by a script in benchmarks/) holds it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FILE = re.compile(r"benchmarks/results/[\w./-]+\.(?:md|json)")
NUMBER = re.compile(r"(?<![\w.])\d+\.\d+")  # decimals: the measured figures (integers are counts, folds, steps)


def _subsections() -> list[tuple[str, list[str]]]:
    """(text, results files it names) per subsection of the section: each starts with a **bold** lead-in paragraph
    and runs to the next one, so a table or a closing paragraph is covered by the files its lead-in names."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Results measured here", 1)[1].split("\n## ", 1)[0]
    parts: list[str] = []
    for block in (b.strip() for b in section.split("\n\n") if b.strip()):
        if block.startswith("**") or not parts:
            parts.append(block)
        else:
            parts[-1] += "\n\n" + block
    return [(p, FILE.findall(p)) for p in parts]


def _writer(result: str) -> str:
    """The benchmarks/ script expected to write a results file: runtimes_cpu.md -> runtimes, demo/x -> demo_run."""
    rel = Path(result).relative_to("benchmarks/results")
    if len(rel.parts) > 1:
        return {"demo": "demo_run"}.get(rel.parts[0], rel.parts[0])
    return re.sub(r"_(cpu|gpu|r18|r50)$", "", rel.stem)


def test_results_section_names_existing_files_written_by_benchmark_scripts():
    scripts = {p.stem for p in (ROOT / "benchmarks").glob("*.py")}
    named = {f for _, files in _subsections() for f in files}
    assert named, "the Results section names no results file"
    for f in sorted(named):
        assert (ROOT / f).is_file(), f"README names {f}, which does not exist"
        assert _writer(f) in scripts, f"{f}: no benchmarks/{_writer(f)}.py writes it"


def test_every_figure_is_in_the_file_named_beside_it():
    for text, files in _subsections():
        numbers = NUMBER.findall(text)
        if not numbers:
            continue
        assert files, f"figures without a results file: {text[:120]!r}"
        held = "\n".join((ROOT / f).read_text() for f in files if (ROOT / f).is_file())
        missing = [n for n in numbers if n not in held]
        assert not missing, f"{missing} not found in {files} (subsection {text[:80]!r})"
