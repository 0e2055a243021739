"""Student copies: solutions removed, outputs cleared, and they run raising only
``NotImplementedError`` (``ganrec_lite.check.NoAnswerYet`` is a subclass).

The copies are written by ``tools/student_copies.py`` into ``_build/student/`` and each
is executed with nbclient (kernel ``python3`` of this environment, cwd ``notebooks/``,
errors allowed). Executing re-runs every notebook, so:

- ``GANREC_STUDENT_NOTEBOOKS`` limits the run to a comma-separated list of name globs
  (e.g. ``ch01_*,ch03_2_*``); ``GANREC_STUDENT_NOTEBOOKS=none`` runs none of them.
- ``GANREC_STUDENT_TIMEOUT`` is the per-cell timeout in seconds (default 600).

The fast tests at the end check the copying and cleaning tools on a small notebook
built here, without a kernel.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import os
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
STUDENT = ROOT / "_build" / "student"
ALLOWED = {"NotImplementedError", "NoAnswerYet"}


def _load_tool(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


student_copies = _load_tool("student_copies")
clean_notebook = _load_tool("clean_notebook")


def selected_notebooks() -> list[Path]:
    paths = sorted(NOTEBOOKS.glob("*.ipynb"))
    wanted = os.environ.get("GANREC_STUDENT_NOTEBOOKS", "").strip()
    if wanted:
        if wanted.lower() == "none":
            return []
        globs = [g.strip() for g in wanted.split(",") if g.strip()]
        globs = [
            g if g.endswith(".ipynb") or g.endswith("*") else g + "*" for g in globs
        ]
        paths = [p for p in paths if any(fnmatch.fnmatch(p.name, g) for g in globs)]
    return paths


NOTEBOOK_PARAMS = [pytest.param(p, id=p.stem) for p in selected_notebooks()] or [
    pytest.param(
        None,
        id="no-notebooks",
        marks=pytest.mark.skip(
            reason="no notebooks/*.ipynb yet "
            "(or none selected by GANREC_STUDENT_NOTEBOOKS)"
        ),
    )
]


@pytest.fixture(scope="session")
def student_dir() -> Path:
    """Write the student copies of the selected notebooks once per session."""
    paths = selected_notebooks()
    student_copies.write_copies(paths, STUDENT)
    return STUDENT


@pytest.mark.parametrize("notebook", NOTEBOOK_PARAMS)
def test_student_copy_runs_with_only_not_implemented(notebook: Path, student_dir: Path):
    from nbclient import NotebookClient

    original = nbformat.read(notebook, as_version=4)
    copy = nbformat.read(student_dir / notebook.name, as_version=4)
    assert not any(student_copies.is_solution_cell(c) for c in copy.cells)
    assert all(not c.get("outputs") for c in copy.cells if c.cell_type == "code")

    n_exercises = sum("exercise" in c.metadata.get("tags", []) for c in original.cells)
    n_solutions = sum("solution" in c.metadata.get("tags", []) for c in original.cells)
    assert n_solutions <= n_exercises, (
        f"{notebook.name}: {n_solutions} solution cells but only {n_exercises} "
        "exercise stubs (tag each stub `exercise`)"
    )

    os.environ.setdefault("TQDM_DISABLE", "1")
    client = NotebookClient(
        copy,
        kernel_name="python3",
        timeout=int(os.environ.get("GANREC_STUDENT_TIMEOUT", "600")),
        allow_errors=True,
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    client.execute()

    errors = []
    for i, cell in enumerate(copy.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                errors.append((i, out["ename"], out["evalue"], cell.source[:80]))
    unexpected = [e for e in errors if e[1] not in ALLOWED]
    assert not unexpected, (
        f"{notebook.name}: the student copy raised errors other than "
        f"NotImplementedError: "
        + "; ".join(
            f"cell {i} {name}: {value} (in {src!r})"
            for i, name, value, src in unexpected
        )
    )
    if n_solutions:
        assert errors, (
            f"{notebook.name}: has solutions, but its student copy raised nothing "
            "(do the check cells call ganrec_lite.check on the stub?)"
        )


# ------------------------------------------------------------ the tools, without kernel


def exercise_notebook():
    """A notebook in the exercise form of CONTRIBUTING.md."""
    cells = [
        new_markdown_cell("# T\n\nOne line."),
        new_code_cell(
            "x = 2",
            execution_count=1,
            outputs=[nbformat.v4.new_output("stream", text="hi\n")],
            metadata={
                "tags": ["parameters"],
                "collapsed": True,
                "execution": {"iopub.status.busy": "2025"},
            },
        ),
        new_markdown_cell("```{exercise}\n:label: ex-0-1-1\n\nDouble x.\n```"),
        new_code_cell(
            "answer = ...", execution_count=2, metadata={"tags": ["exercise"]}
        ),
        new_markdown_cell("```{solution-start} ex-0-1-1\n:class: dropdown\n```"),
        new_code_cell(
            "answer = 2 * x", execution_count=3, metadata={"tags": ["solution"]}
        ),
        new_markdown_cell("```{solution-end}\n```"),
        new_code_cell(
            "from ganrec_lite import check\n"
            "check.check_close('Exercise 0.1.1', answer, 4)",
            execution_count=4,
            metadata={"tags": ["check"]},
        ),
        new_markdown_cell(":::{solution} ex-0-1-1\nIt is 4.\n:::"),
        new_markdown_cell("## References"),
    ]
    return new_notebook(
        cells=cells,
        metadata={
            "kernelspec": {
                "name": "python3",
                "display_name": "Python 3",
                "language": "python",
            },
            "language_info": {"name": "python", "version": "3.11.7"},
            "widgets": {"state": {}},
        },
    )


def test_student_copy_removes_solutions_and_outputs():
    nb = exercise_notebook()
    copy = student_copies.student_copy(nb)
    sources = [c.source for c in copy.cells]
    assert "answer = 2 * x" not in sources
    assert not any("solution" in s for s in sources)
    assert "answer = ..." in sources
    assert any("check.check_close" in s for s in sources)
    assert len(copy.cells) == len(nb.cells) - 4
    for cell in copy.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
    assert len(nb.cells) == 10, "the original notebook must not change"
    nbformat.validate(copy)


def test_write_copies(tmp_path):
    src = tmp_path / "ch00_1_t.ipynb"
    nbformat.write(exercise_notebook(), src)
    (dest,) = student_copies.write_copies([src], tmp_path / "student")
    assert dest.name == src.name
    assert "answer = 2 * x" not in dest.read_text()


def test_clean_notebook_keeps_outputs_and_tags(tmp_path):
    path = tmp_path / "t.ipynb"
    nbformat.write(exercise_notebook(), path)
    assert clean_notebook.main(["--check", str(path)]) == 1  # noisy metadata
    assert clean_notebook.main([str(path)]) == 0
    assert clean_notebook.main(["--check", str(path)]) == 0  # idempotent
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata == {
        "kernelspec": {
            "name": "python3",
            "display_name": "Python 3",
            "language": "python",
        },
        "language_info": {"name": "python"},
    }
    assert nb.cells[1].metadata == {"tags": ["parameters"]}
    assert nb.cells[1].outputs[0]["text"] == "hi\n"


def test_clean_notebook_reports_out_of_order_counts(tmp_path, capsys):
    nb = exercise_notebook()
    nb.cells[3].execution_count = 7
    path = tmp_path / "t.ipynb"
    nbformat.write(nb, path)
    assert clean_notebook.main([str(path)]) == 1
    assert "execution count 7, expected 2" in capsys.readouterr().err
