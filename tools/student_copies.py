"""Write student copies of the notebooks: solutions removed, outputs cleared.

Run by ``make student``. For every ``notebooks/*.ipynb`` (or the paths given) it writes
``_build/student/<name>.ipynb`` where

- code cells tagged ``solution`` are removed,
- markdown cells holding a ``{solution-start}``, ``{solution-end}`` or ``{solution}``
  directive are removed (the solution's prose and the gates around solution cells),
- every output and execution count is cleared.

The exercise stubs (``raise NotImplementedError(...)`` or ``answer = ...``) and the
self-check cells stay, so a student copy runs top to bottom and raises only
``NotImplementedError`` (``ganrec_lite.check.NoAnswerYet`` is a subclass) until the
exercises are done; ``tests/test_student.py`` checks exactly that.

Usage: python tools/student_copies.py [--out DIR] [NOTEBOOK ...]
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
OUT = ROOT / "_build" / "student"

# A MyST directive fence (``` or :::, any length) opening a solution directive.
SOLUTION_DIRECTIVE = re.compile(
    r"^\s*(`{3,}|:{3,})\s*\{solution(?:-start|-end)?\}", re.MULTILINE
)


def is_solution_cell(cell) -> bool:
    if cell.cell_type == "code":
        return "solution" in cell.get("metadata", {}).get("tags", [])
    if cell.cell_type == "markdown":
        return bool(SOLUTION_DIRECTIVE.search(cell.source))
    return False


def student_copy(nb):
    """Return a new notebook: solutions removed, outputs and counts cleared."""
    copy = nbformat.from_dict(nb)  # deep copy
    cells = []
    for cell in copy.cells:
        if is_solution_cell(cell):
            continue
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
            cell.metadata.pop("execution", None)
        cells.append(cell)
    copy.cells = cells
    return copy


def _show(path: Path) -> str:
    return str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)


def write_copies(paths: list[Path], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        copy = student_copy(nb)
        nbformat.validate(copy)
        dest = out / path.name
        nbformat.write(copy, dest)
        removed = len(nb.cells) - len(copy.cells)
        print(
            f"student_copies: {_show(path)} -> {_show(dest)}"
            f" ({removed} solution cells removed)"
        )
        written.append(dest)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "notebooks",
        nargs="*",
        type=Path,
        help="notebooks to copy (default: notebooks/*.ipynb)",
    )
    parser.add_argument(
        "--out", type=Path, default=OUT, help="output folder (default: _build/student)"
    )
    args = parser.parse_args(argv)
    paths = [p.resolve() for p in args.notebooks] or sorted(NOTEBOOKS.glob("*.ipynb"))
    if not paths:
        print("student_copies: no notebooks yet (notebooks/*.ipynb)")
        return 0
    missing = [p for p in paths if not p.exists()]
    if missing:
        print(f"student_copies: no such notebook: {missing}", file=sys.stderr)
        return 1
    write_copies(paths, args.out.resolve())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
