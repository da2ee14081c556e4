"""The Python blocks of the README and of the docs pages written as runnable code run: each
page's blocks in order in one namespace (a later block may use an earlier one's names), in a
temporary folder. Pages whose blocks are sketches with placeholders (a model of your own, a
file of your own, a search of hours) are listed apart and left out."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RUNNABLE = ["README.md", "docs/grid.md", "docs/regularisers.md", "docs/training.md"]
SKETCHES = {"docs/search.md", "docs/study.md", "docs/tasks.md"}  # placeholders, or hours


def blocks(page: str) -> list[tuple[int, str]]:
    text = (REPO / page).read_text(encoding="utf-8")
    return [(text[:m.start()].count("\n") + 2, m.group(1))
            for m in re.finditer(r"```python\n(.*?)```", text, re.S)]


def test_every_page_with_python_is_run_or_named_a_sketch():
    pages = ["README.md", *(f"docs/{p.name}" for p in sorted((REPO / "docs").glob("*.md")))]
    with_code = {page for page in pages if blocks(page)}
    assert with_code == set(RUNNABLE) | SKETCHES


@pytest.mark.parametrize("page", RUNNABLE)
def test_the_page_s_python_runs(page, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__docs__"}
    for line, code in blocks(page):
        exec(compile(code, f"{page}:{line}", "exec"), namespace)  # noqa: S102 (the docs' code)
