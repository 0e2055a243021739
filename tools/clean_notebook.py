"""Strip noisy metadata from notebooks, keep their outputs, check execution order.

Usage: python tools/clean_notebook.py [--check] NOTEBOOK...

For each notebook:
- cell metadata is reduced to ``tags`` (and ``mystnb``, the website's per-cell render
  options, where a cell has them); execution timings, collapsed/scrolled states, ids
  of widgets and the like are dropped;
- notebook metadata is reduced to ``kernelspec`` and ``language_info.name``;
- outputs are kept (they are what the website shows and what nbval compares);
- the execution counts of the non-empty code cells must be 1, 2, ..., n in order (the
  notebook was run top to bottom in a fresh kernel); a notebook that fails this is
  reported and the exit status is 1.

With ``--check`` nothing is written; the exit status is 1 when a notebook would change
or its execution counts are out of order.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

KEEP_CELL_METADATA = ("tags", "mystnb")


def clean(nb) -> None:
    """Strip metadata in place."""
    meta = nb.metadata
    kept = {}
    if "kernelspec" in meta:
        kept["kernelspec"] = meta["kernelspec"]
    name = meta.get("language_info", {}).get("name")
    if name:
        kept["language_info"] = {"name": name}
    nb.metadata = nbformat.from_dict(kept)
    for cell in nb.cells:
        cell.metadata = nbformat.from_dict(
            {k: cell.metadata[k] for k in KEEP_CELL_METADATA if cell.metadata.get(k)}
        )
        if cell.cell_type != "code":
            cell.pop("outputs", None)
            cell.pop("execution_count", None)


def execution_problems(nb) -> list[str]:
    """Messages for code cells whose execution counts are not 1..n in order."""
    problems = []
    expected = 1
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or not cell.source.strip():
            continue
        count = cell.get("execution_count")
        if count != expected:
            first = cell.source.strip().splitlines()[0][:60]
            problems.append(
                f"cell {i} ({first!r}): execution count {count}, expected {expected}"
            )
            if count is None:
                expected += 1
                continue
        expected = (count or 0) + 1
    return problems


def process(path: Path, check: bool) -> int:
    text = path.read_text(encoding="utf-8")
    nb = nbformat.reads(text, as_version=4)
    clean(nb)
    nbformat.validate(nb)
    new = nbformat.writes(nb)
    if not new.endswith("\n"):
        new += "\n"
    status = 0
    problems = execution_problems(nb)
    if problems:
        status = 1
        print(f"{path}: not run top to bottom in a fresh kernel:", file=sys.stderr)
        for p in problems:
            print(f"  {p}", file=sys.stderr)
    if new != text:
        if check:
            print(
                f"{path}: has noisy metadata (run tools/clean_notebook.py {path})",
                file=sys.stderr,
            )
            status = 1
        else:
            path.write_text(new, encoding="utf-8")
            print(f"{path}: cleaned")
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if a notebook would change",
    )
    args = parser.parse_args(argv)
    status = 0
    for path in args.notebooks:
        if not path.exists():
            print(f"{path}: no such file", file=sys.stderr)
            status = 1
            continue
        status |= process(path, args.check)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
