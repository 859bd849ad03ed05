"""The documentation (README.md, docs/*.md, CONTRIBUTING.md) quotes only measured figures: every figure sits in a
passage naming the benchmarks/results file that holds it, written by a script in benchmarks/. README.md stays a
front door (<= 10 KB) and relative links among the pages resolve, so moving a figure or a page cannot strand it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README_LIMIT = 10_000  # bytes: the front door holds what a newcomer needs; the rest lives in docs/
FILE = re.compile(r"benchmarks/results/[\w./-]+\.(?:md|json)")
NUMBER = re.compile(r"(?<![\w.])\d+\.\d+")  # decimals: the measured figures (integers are counts, folds, steps)
CODE = re.compile(r"^\s*```.*?^\s*```|`[^`\n]*`", re.S | re.M)  # commands and option values are not figures
# Versions are not figures: "Python 3.10–3.13", "torch 2.14.1", "JetPack 6.0 / 6.1 / 6.2", "Apache-2.0".
_V = r"\d+(?:\.\d+)+"
VERSION = re.compile(
    r"\b(?i:Python|TensorRT|JetPack|CUDA|torch|torchvision|onnx|onnxruntime|numpy|Polygraphy|cuda-python|pycuda|Apache)"
    rf"[\s-]+{_V}(?:(?:\s*[/–-]\s*|,\s*|\s+and\s+|\s+or\s+){_V})*"
)
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _pages() -> list[Path]:
    return [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]


def _passages(text: str) -> list[str]:
    """A passage starts at a heading, a top-level list item or a **bold** lead-in paragraph, and runs to the next
    one, so a table, an indented sub-list or a closing paragraph is covered by the files its lead-in names."""
    passages: list[str] = [""]
    fenced, previous = False, ""
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        starts = not fenced and (
            line.startswith("#") or line.startswith("- ") or (line.startswith("**") and not previous.strip())
        )
        if starts:
            passages.append(line)
        else:
            passages[-1] += "\n" + line
        previous = line
    return [p for p in passages if p.strip()]


def _figures(passage: str) -> list[str]:
    return NUMBER.findall(VERSION.sub(" ", CODE.sub(" ", passage)))


def _held(files: list[str]) -> set[str]:
    """The decimals a results file holds, as written (0.9534 is not held by 0.95341)."""
    text = "\n".join((ROOT / f).read_text() for f in files if (ROOT / f).is_file())
    return set(re.findall(r"(?<![\d.])\d+\.\d+(?!\d)", text))


def _writer(result: str) -> str:
    """The benchmarks/ script expected to write a results file: runtimes_cpu.md -> runtimes, demo/x -> demo_run."""
    rel = Path(result).relative_to("benchmarks/results")
    if len(rel.parts) > 1:
        return {"demo": "demo_run"}.get(rel.parts[0], rel.parts[0])
    return re.sub(r"_(cpu|gpu|r18|r50)$", "", rel.stem)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = CODE.sub(" ", page.read_text())
    return {_slug(m) for m in re.findall(r"^#+\s+(.*)$", text, re.M)}


def test_results_pages_name_existing_files_written_by_benchmark_scripts():
    scripts = {p.stem for p in (ROOT / "benchmarks").glob("*.py")}
    named = {(page.name, f) for page in _pages() for f in FILE.findall(page.read_text())}
    assert {f for _, f in named}, "no page names a results file"
    for page, f in sorted(named):
        assert (ROOT / f).is_file(), f"{page} names {f}, which does not exist"
        assert _writer(f) in scripts, f"{page}: {f}: no benchmarks/{_writer(f)}.py writes it"


@pytest.mark.parametrize("page", _pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_figure_is_in_the_file_named_beside_it(page):
    for passage in _passages(page.read_text()):
        figures = _figures(passage)
        if not figures:
            continue
        files = FILE.findall(passage)
        assert files, f"{page.name}: figures {figures} without a results file: {passage.strip()[:120]!r}"
        missing = [n for n in figures if n not in _held(files)]
        assert not missing, f"{page.name}: {missing} not found in {files} (passage {passage.strip()[:80]!r})"


def test_figure_check_catches_an_unmeasured_or_unsourced_figure():
    """The checker itself: a version or an option value is no figure; a decimal beside no file, or beside a file
    that does not hold it, is caught."""
    assert _figures("torch 2.14.1 / torchvision 0.29.1 on Python 3.10–3.13, `--scale 0.6`") == []
    assert _figures("JetPack 6.0 / 6.1 / 6.2 (CUDA 12.2 / 12.6)") == []
    assert _figures("soft KD 73.13 ± 0.97 %") == ["73.13", "0.97"]
    held = _held(["benchmarks/results/kd_lfw.md"])
    assert "73.13" in held and "73.1" not in held


def test_readme_is_a_front_door():
    size = (ROOT / "README.md").stat().st_size
    assert size <= README_LIMIT, f"README.md is {size} bytes (limit {README_LIMIT}): move detail into docs/"


@pytest.mark.parametrize("page", _pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    for target in LINK.findall(CODE.sub(" ", page.read_text())):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto: not checked here
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        assert dest.exists(), f"{page.name}: link {target} points to a missing file"
        if anchor and dest.suffix == ".md":
            assert anchor in _anchors(dest), f"{page.name}: link {target}: no heading #{anchor} in {dest.name}"
