"""The documentation site builds without warnings (``mkdocs build --strict``) when mkdocs is installed."""

import importlib.util
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("mkdocs", "material", "mkdocstrings_handlers.python")),
    reason="mkdocs-material and mkdocstrings[python] are not installed (pip install -e '.[docs]')",
)
def test_site_builds_strict(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    for name in ("mlejax.fit", "mlejax.FitResult", "mlejax.plots.contour", "confint_table"):
        assert name in api, name
    for page in ("getting-started", "plots", "cli", "precision", "accuracy", "inference", "solver"):
        assert (tmp_path / "site" / page / "index.html").exists(), page


def test_nav_lists_every_page():
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert page.name in nav, f"docs/{page.name} is not in the mkdocs.yml nav"
