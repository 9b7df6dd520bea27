"""The documentation site builds with `mkdocs build --strict`."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_mkdocs_build_strict(tmp_path):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    mkdocs = os.path.join(os.path.dirname(sys.executable), "mkdocs")
    result = subprocess.run(
        [mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    api_pages = sorted(os.listdir(os.path.join(ROOT, "docs", "api")))
    assert api_pages
    for page in api_pages:
        html = tmp_path / "site" / "api" / page[: -len(".md")] / "index.html"
        assert html.exists(), html
        # mkdocstrings rendered the module's docstrings, not an empty page.
        assert "doc-heading" in html.read_text(), html
