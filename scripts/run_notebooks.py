"""Execute notebooks and write executed copies, with what they printed and the figures they drew.

`make notebooks` runs every notebook of notebooks/ and writes the copies to build/notebooks/;
tests/unit/test_notebooks.py runs them through `execute` too. Each notebook runs in this process,
as Jupyter would run it: its code cells in order, in one namespace, on one event loop (top-level
await allowed), in the notebook's own folder. What a cell prints becomes its stream output, each
matplotlib figure it leaves open an image (Agg backend, PNG), and a cell ending in an expression
shows its value. No kernel and no server: nothing but the project's environment, offline.

How much data a notebook uses is its own business: each reads its size from the environment
(`VOICERAG_NB_LIMIT` and the other variables its first cell names).

    python scripts/run_notebooks.py [NOTEBOOK ...] [--out build/notebooks]
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import base64
import contextlib
import inspect
import io
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot is imported: figures are rendered to PNG, never shown

import matplotlib.pyplot as plt
import nbformat

ROOT = Path(__file__).resolve().parents[1]
FIGURE_DPI = 80  # small PNGs: the copies are read in a browser or an editor


@dataclass
class Executed:
    """An executed notebook: its copy with outputs, the namespace its cells left, and the first error."""

    notebook: nbformat.NotebookNode
    namespace: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0

    def printed(self) -> str:
        """Everything the cells printed, in order."""
        return "".join(
            output.get("text", "")
            for cell in self.notebook.cells
            for output in cell.get("outputs", [])
            if output.output_type == "stream" and output.name == "stdout"
        )

    def figures(self) -> list[bytes]:
        """Every figure drawn, as PNG bytes, in order."""
        return [
            base64.b64decode(output.data["image/png"])
            for cell in self.notebook.cells
            for output in cell.get("outputs", [])
            if output.output_type == "display_data" and "image/png" in output.get("data", {})
        ]


async def _run_cell(source: str, namespace: dict[str, Any], filename: str) -> Any:
    """Run a cell's code; return the value of its last line when that line is an expression."""
    tree = ast.parse(source, filename)
    last = tree.body[-1] if tree.body else None
    if isinstance(last, ast.Expr):
        tree.body.pop()
    else:
        last = None
    flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    body = compile(tree, filename, "exec", flags=flags)
    result = eval(body, namespace)
    if inspect.CO_COROUTINE & body.co_flags:  # the cell awaits something: it compiled to a coroutine
        await result
    if last is None:
        return None
    expression = compile(ast.Expression(last.value), filename, "eval", flags=flags)
    value = eval(expression, namespace)
    return await value if inspect.CO_COROUTINE & expression.co_flags else value


def _figure_outputs() -> list[nbformat.NotebookNode]:
    outputs = []
    for number in plt.get_fignums():
        figure = plt.figure(number)
        png = io.BytesIO()
        figure.savefig(png, format="png", dpi=FIGURE_DPI, bbox_inches="tight")
        data = {"image/png": base64.b64encode(png.getvalue()).decode("ascii"), "text/plain": repr(figure)}
        outputs.append(nbformat.v4.new_output("display_data", data=data))
    plt.close("all")
    return outputs


async def _execute_cell(cell: nbformat.NotebookNode, namespace: dict[str, Any], path: Path) -> Exception | None:
    """Run one code cell and set its outputs: what it printed, its figures, its value (or its error)."""
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            value = await _run_cell(cell.source, namespace, str(path))
    except Exception as exc:
        plt.close("all")
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=printed.getvalue())]
        error = {"ename": type(exc).__name__, "evalue": str(exc), "traceback": traceback.format_exception(exc)}
        cell.outputs.append(nbformat.v4.new_output("error", **error))
        return exc
    text = printed.getvalue()
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text)] if text else []
    cell.outputs += _figure_outputs()
    if value is not None:
        result = {"data": {"text/plain": repr(value)}, "execution_count": cell.execution_count}
        cell.outputs.append(nbformat.v4.new_output("execute_result", **result))
    return None


async def execute(path: Path) -> Executed:
    """Run every code cell of the notebook at `path`, in order, stopping at the first error."""
    executed = Executed(nbformat.read(path, as_version=4))
    started = time.perf_counter()
    show = plt.show
    plt.show = lambda *args, **kwargs: None  # the figures are collected after each cell
    try:
        with contextlib.chdir(path.parent):  # as Jupyter: relative paths are the notebook's
            code = [cell for cell in executed.notebook.cells if cell.cell_type == "code"]
            for count, cell in enumerate(code, start=1):
                cell.execution_count = count
                error = await _execute_cell(cell, executed.namespace, path)
                if error is not None:
                    executed.error = f"{path.name}, cell {count}: {type(error).__name__}: {error}"
                    break
    finally:
        plt.show = show
    executed.seconds = time.perf_counter() - started
    return executed


def main() -> int:
    parser = argparse.ArgumentParser(description="Execute notebooks; write executed copies with their figures.")
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every notebook in notebooks/")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "notebooks", help="where the copies go")
    args = parser.parse_args()
    paths = [p.resolve() for p in args.notebooks] or sorted((ROOT / "notebooks").glob("*.ipynb"))
    missing = [p for p in paths if not p.is_file()]
    if missing:
        print(f"error: {missing[0]}: no such notebook", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    failed = False
    for path in paths:
        print(f"{path.name}: running…", file=sys.stderr, flush=True)
        executed = asyncio.run(execute(path))
        copy = args.out / path.name
        nbformat.write(executed.notebook, copy)
        figures = len(executed.figures())
        print(f"{path.name}: {executed.seconds:.0f} s, {figures} figures → {copy}", file=sys.stderr)
        if executed.error:
            print(f"error: {executed.error}", file=sys.stderr)
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
