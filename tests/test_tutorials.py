"""Execute every tutorial notebook (fast mode) and fail on any cell error.

The kernel is the interpreter running the tests (``sys.executable``), through a kernelspec
written to a temporary folder: this does not depend on which ``python3`` kernelspec, if any,
Jupyter would find on the machine, so it works the same in a fresh ``pip install -e .[test]``
virtual environment.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

TUTORIALS = sorted((Path(__file__).resolve().parents[1] / "tutorials").glob("*.ipynb"))
KERNEL_NAME = "bayesbio-tests"


@pytest.fixture(scope="module")
def kernel_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("kernels")
    spec_dir = root / KERNEL_NAME
    spec_dir.mkdir()
    (spec_dir / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "bayesbio tests",
                "language": "python",
            }
        )
    )
    return root


def test_there_are_tutorials():
    assert TUTORIALS, "no notebooks found in tutorials/"


@pytest.mark.parametrize("path", TUTORIALS, ids=[p.name for p in TUTORIALS])
def test_tutorial_runs(path, kernel_dir, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    monkeypatch.setenv("BAYESBIO_FAST", "1")
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(path, as_version=4)
    km = KernelManager(
        kernel_name=KERNEL_NAME, kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernel_dir)])
    )
    client = nbclient.NotebookClient(
        nb, km=km, kernel_name=KERNEL_NAME, timeout=600, allow_errors=False,
        resources={"metadata": {"path": str(path.parent)}},
    )
    try:
        client.execute()  # raises CellExecutionError on the first failing cell
    finally:
        # nbclient leaves a kernel it did not create running: stop it, or every notebook's
        # kernel (1-2 GB each, with its JAX programs) stays alive until the test session ends
        if km.has_kernel:
            km.shutdown_kernel(now=True)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
