"""Execute the notebooks in notebooks/ against the configured Trino and render them to HTML with their figures.

The notebooks are stored without outputs; each run executes them from the top in a fresh
kernel (the `python3` kernel of this environment, cwd notebooks/), so a report always shows
the lake as it is now. Figures are embedded in the HTML as PNG data, so a report folder can be
copied or served as it is.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbconvert import HTMLExporter

from scenelake.settings import PROJECT_ROOT

NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"


@dataclass(frozen=True)
class Rendered:
    notebook: Path
    html: Path
    figures: int


def notebooks(root: Path = NOTEBOOKS_DIR) -> list[Path]:
    return sorted(root.glob("*.ipynb"))


def execute(path: Path, timeout: int = 600) -> nbformat.NotebookNode:
    """Run every cell of the notebook in a new kernel; a failing cell raises nbclient's CellExecutionError."""
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    return notebook


def figures(notebook: nbformat.NotebookNode) -> int:
    """How many PNG figures the executed notebook's outputs hold."""
    return sum("image/png" in output.get("data", {}) for cell in notebook.cells if cell.cell_type == "code"
               for output in cell.get("outputs", []))


def render(out_dir: Path, paths: list[Path] | None = None, timeout: int = 600) -> list[Rendered]:
    """Execute each notebook and write <name>.html (figures embedded) and an index.html into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    exporter = HTMLExporter()
    done = []
    for path in paths if paths is not None else notebooks():
        notebook = execute(path, timeout)
        body, _ = exporter.from_notebook_node(notebook)
        target = out_dir / f"{path.stem}.html"
        target.write_text(body)
        done.append(Rendered(path, target, figures(notebook)))
    links = "\n".join(f'<li><a href="{html.escape(r.html.name)}">{html.escape(r.notebook.stem)}</a> '
                      f"({r.figures} figures)</li>" for r in done)
    (out_dir / "index.html").write_text(f"<!doctype html>\n<title>scenelake report</title>\n<h1>scenelake report</h1>"
                                        f"\n<ul>\n{links}\n</ul>\n")
    return done
