"""Every tutorial notebook runs, in quick mode, as a user would run it.

Quick mode (`KERAS_TRANSFER_QUICK=1`) uses fewer samples and epochs so each
notebook finishes in a few minutes on 2 CPU cores. Each notebook ends with a
cell that asserts its own headline result, so running it fails when the
result does. The committed notebooks carry no outputs (they are executed
here, and in Colab by users).
"""

import glob
import os
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = sorted(glob.glob(os.path.join(ROOT, "tutorials", "*.ipynb")))


def _ids():
    return [os.path.basename(p) for p in NOTEBOOKS]


def test_there_are_tutorials():
    assert NOTEBOOKS, "tutorials/*.ipynb is empty"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids())
def test_notebook_is_clean_and_colab_ready(path):
    import nbformat

    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    first = "".join(nb.cells[0].source)
    assert "colab.research.google.com" in first, "missing Open in Colab badge"
    sources = "\n".join("".join(c.source) for c in nb.cells)
    assert "pip install" in sources, "missing install cell"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs, f"committed outputs in {path}"
            assert cell.execution_count is None


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids())
def test_notebook_ends_by_asserting_its_headline(path):
    """The last cell checks the notebook's own result, so running it tests it."""
    import ast

    import nbformat

    nb = nbformat.read(path, as_version=4)
    last = nb.cells[-1]
    assert last.cell_type == "code", f"{path} must end with its check cell"
    tree = ast.parse("".join(last.source))
    asserts = [n for n in ast.walk(tree) if isinstance(n, ast.Assert)]
    checks = asserts + [
        n for n in ast.walk(tree)
        if isinstance(n, ast.Attribute) and n.attr.startswith("assert_")
    ]
    assert len(checks) >= 2, f"{path}: the last cell asserts too little"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids())
def test_notebook_runs_in_quick_mode(path, tmp_path):
    import nbclient
    import nbformat

    nb = nbformat.read(path, as_version=4)
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH",)}
    os.environ["KERAS_TRANSFER_QUICK"] = "1"
    os.environ["KERAS_TRANSFER_OUTPUT_DIR"] = str(tmp_path)
    # The kernel starts in tmp_path: put this repository first on its path so
    # it imports this checkout's keras_transfer (CI installs it editable too).
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (ROOT, saved["PYTHONPATH"]) if p
    )
    start = time.perf_counter()
    try:
        client = nbclient.NotebookClient(
            nb,
            timeout=900,
            kernel_name="python3",
            resources={"metadata": {"path": str(tmp_path)}},
        )
        client.execute()
    finally:
        os.environ.pop("KERAS_TRANSFER_QUICK", None)
        os.environ.pop("KERAS_TRANSFER_OUTPUT_DIR", None)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    print(f"{os.path.basename(path)} ran in {time.perf_counter() - start:.0f} s")
    # The last cell asserted the headline result (see the test above); every
    # notebook also leaves an artifact (a plot or an exported model) behind.
    assert any(tmp_path.iterdir()), f"{path} wrote nothing to OUTPUT_DIR"
