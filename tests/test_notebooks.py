"""The notebooks in ``notebooks/``: each runs top to bottom against ``captures/`` in a fresh
Jupyter kernel, is stored without outputs (so no stored output can disagree with the code),
and uses only pktkit's public API.

The public API a notebook may use: the names in ``pktkit.__all__`` and the report layer's
documented modules ``pktkit.report`` and ``pktkit.plot`` (the names in their ``__all__``).
Attributes of returned objects (``Analysis.packets`` ...) are not checked.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import nbclient
import nbformat
import pytest

import pktkit
import pktkit.plot
import pktkit.report

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
EXPECTED = {
    "01-vxlan-overhead-and-mtu.ipynb",
    "02-nat-flows-docker-bridge.ipynb",
    "03-cross-node-latency-clock-offset.ipynb",
    "04-pods-services-nat-latency.ipynb",
}
KERNEL = "python3"
CELL_TIMEOUT_S = 120

# module -> the names a notebook may take from it: what each public module declares public
PUBLIC = {
    "pktkit": frozenset(pktkit.__all__) | {"report", "plot"},
    "pktkit.report": frozenset(pktkit.report.__all__),
    "pktkit.plot": frozenset(pktkit.plot.__all__),
}


def code_cells(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def python_source(cell_source: str) -> str:
    """A code cell as plain Python: IPython magics and shell lines (``%``, ``!``) blanked."""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line
                     for line in cell_source.splitlines())


def private_uses(source: str) -> list[str]:
    """Every use of pktkit in ``source`` outside :data:`PUBLIC`, as ``module.name`` strings.

    Covers ``import pktkit[.x] [as y]``, ``from pktkit[.x] import a [as b]`` and attribute
    access on the names those bind (``pktkit.x``, ``report.x``). Names are tracked across the
    cells of a notebook by calling this on their concatenation."""
    bound: dict[str, str] = {}  # local name -> pktkit module it refers to
    bad: list[str] = []

    def check(module: str, name: str) -> None:
        if module not in PUBLIC or name not in PUBLIC[module]:
            bad.append(f"{module}.{name}")

    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "pktkit" or alias.name.startswith("pktkit."):
                    parent, _, child = alias.name.rpartition(".")
                    if child != "pktkit":
                        check(parent, child)
                    # "import pktkit.report" binds "pktkit"; "... as r" binds the module
                    bound[alias.asname or "pktkit"] = alias.name if alias.asname else "pktkit"
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and (
                node.module == "pktkit" or node.module.startswith("pktkit.")):
            for alias in node.names:
                check(node.module, alias.name)
                target = f"{node.module}.{alias.name}"
                if target in PUBLIC:  # a module: its attributes are checked too
                    bound[alias.asname or alias.name] = target

    def module_of(node: ast.expr) -> str | None:
        """The public pktkit module an expression names (``report``, ``pktkit.plot``)."""
        if isinstance(node, ast.Name):
            return bound.get(node.id)
        if isinstance(node, ast.Attribute):
            parent = module_of(node.value)
            if parent is not None and f"{parent}.{node.attr}" in PUBLIC:
                return f"{parent}.{node.attr}"
        return None

    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            module = module_of(node.value)
            if module is not None:
                check(module, node.attr)
    return bad


def test_the_notebooks_are_there() -> None:
    assert {path.name for path in NOTEBOOKS} >= EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_stored_without_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    stored = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
              and (cell.get("outputs") or cell.get("execution_count") is not None)]
    assert not stored, (f"{path.name}: cells {stored} have stored outputs; clear them (the "
                        "test runs the notebook fresh, stored outputs could disagree)")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_uses_only_the_public_api(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    source = "\n".join(python_source(cell.source) for cell in code_cells(nb))
    assert not private_uses(source), f"{path.name} uses non-public pktkit names"


@pytest.mark.parametrize("source, bad", [
    ("import pktkit\npktkit.read_packets('x')\npktkit.report.overhead(t)", []),
    ("from pktkit import plot as p, report\np.latency_cdf(h)\nreport.summary(t)", []),
    ("import pktkit.report as r\nr.flows(t)", []),
    ("import pktkit.plot\npktkit.plot.throughput(t)\npktkit.plot._nice_bin_ns(1)",
     ["pktkit.plot._nice_bin_ns"]),
    ("import pktkit\npktkit.correlate.correlate(t)", ["pktkit.correlate"]),
    ("from pktkit.analysis import resolve_inputs", ["pktkit.analysis.resolve_inputs"]),
    ("import pktkit.table", ["pktkit.table"]),
    ("from pktkit import report\nreport._typed(t)", ["pktkit.report._typed"]),
    ("from pktkit.plot import _canvas", ["pktkit.plot._canvas"]),
])
def test_public_api_check(source: str, bad: list[str]) -> None:
    assert private_uses(source) == bad


@pytest.fixture(scope="session")
def kernel_name() -> str:
    """The venv's own python3 kernel: the environment's kernelspec wins over a user-wide one
    (which may run another Python without pktkit); installed into the venv when missing."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    mp = pytest.MonkeyPatch()
    mp.setenv("JUPYTER_PREFER_ENV_PATH", "1")
    try:
        KernelSpecManager().get_kernel_spec(KERNEL)
    except NoSuchKernel:
        subprocess.run([sys.executable, "-m", "ipykernel", "install", "--sys-prefix"],
                       check=True, capture_output=True)
    yield KERNEL
    mp.undo()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_runs_top_to_bottom(path: Path, kernel_name: str,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MPLBACKEND", "agg")  # the kernel inherits it: no GUI
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=CELL_TIMEOUT_S, kernel_name=kernel_name,
        resources={"metadata": {"path": str(NOTEBOOKS_DIR)}})
    client.execute()  # raises CellExecutionError (with the cell and traceback) on any error
    errors = [output for cell in code_cells(nb) for output in cell.outputs
              if output.output_type == "error"]
    assert not errors
