"""What the installed packages hold: code and its data files, never run results."""

from __future__ import annotations

from tests.test_imports import REPO, _package_dirs


def test_no_results_inside_an_installed_package() -> None:
    # Results (metrics, reports, scorer weights) live in the top-level results/ and benchmarks/results/,
    # which no package folder holds, so a built wheel carries none of them.
    inside = [str(path.relative_to(REPO)) for folder in _package_dirs().values()
              for path in folder.rglob("results") if path.is_dir()]
    assert inside == []
    assert (REPO / "results" / "README.md").is_file()
