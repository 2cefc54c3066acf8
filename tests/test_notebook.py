"""The example notebook runs top to bottom in a real Jupyter kernel, shows rich results, writes nothing to the repo."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "examples" / "quickstart.ipynb"


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if "__pycache__" not in p.parts and ".ipynb_checkpoints" not in p.parts}


@pytest.fixture(scope="module")
def executed(shared_data: Path) -> nbformat.NotebookNode:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    before = files_under(NOTEBOOK.parent)
    # Generous: the notebook indexes a KB slice and loads the evidence models on a possibly busy CPU.
    client = NotebookClient(notebook, timeout=900, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()
    assert files_under(NOTEBOOK.parent) == before, "the notebook must write into a temporary folder only"
    return notebook


def outputs(notebook: nbformat.NotebookNode, source_start: str) -> list:
    cells = [cell for cell in notebook.cells if cell.cell_type == "code" and cell.source.startswith(source_start)]
    assert len(cells) == 1, source_start
    return cells[0].outputs


def test_notebook_runs_without_errors(executed) -> None:
    errors = [f"cell {i}: {out.ename}: {out.evalue}" for i, cell in enumerate(executed.cells)
              if cell.cell_type == "code" for out in cell.outputs if out.output_type == "error"]
    assert errors == []
    assert all(cell.execution_count for cell in executed.cells if cell.cell_type == "code")


def test_notebook_shows_rich_results(executed) -> None:
    link = [out for out in outputs(executed, "from vplink import open_linker") if out.output_type == "execute_result"]
    assert link and "data:image/jpeg;base64," in link[0].data["text/html"] and "Joe Biden" in link[0].data["text/html"]
    graph = [out for out in outputs(executed, "linker.mermaid()") if out.output_type == "execute_result"]
    assert graph and graph[0].data["text/markdown"].startswith("```mermaid")
    run = [out for out in outputs(executed, "run = load_run(RUN)") if out.output_type == "execute_result"]
    assert run and "data:image/png;base64," in run[0].data["text/html"] and "Hits@1" in run[0].data["text/html"]
    comparison = [out for out in outputs(executed, "from vplink.eval.compare import compare")
                  if out.output_type == "execute_result"]
    assert comparison and "deltas against the first" in comparison[0].data["text/html"]
