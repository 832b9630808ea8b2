"""Sphinx configuration of probprop's documentation site: ``make docs`` builds it into
``docs/_build/html`` (git-ignored), with warnings treated as errors; the gallery in
``docs/examples`` is executed at every build (sphinx-gallery), so the examples cannot rot."""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
os.environ.setdefault("MPLBACKEND", "Agg")

from probprop import __version__  # noqa: E402

project = "probprop"
author = "the probprop developers"
copyright = "2026, the probprop developers"  # noqa: A001
release = version = __version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "myst_parser",
    "sphinx_click",
    "sphinx_gallery.gen_gallery",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "auto_examples/*.ipynb", "auto_examples/*.py", "auto_examples/*.zip",
                    "auto_examples/*.md5", "auto_examples/*.json", "examples/GALLERY_HEADER.rst"]
myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3
# the benchmark reports are written for GitHub: headings may skip a level, and some link to files
# (CSV, JSON, logs) beside them that are not pages of the site
suppress_warnings = ["myst.header", "myst.xref_missing", "misc.highlighting_failure"]

autodoc_default_options: dict = {}  # members are listed where wanted (api.md)
autodoc_typehints = "none"
autodoc_member_order = "bysource"
autosummary_generate = False
napoleon_google_docstring = True
napoleon_numpy_docstring = True
# the docstrings are prose with NumPy-style sections in places; reST nits in prose are not errors
# of the API, but the build stays strict about everything else
nitpicky = False

sphinx_gallery_conf = {
    "examples_dirs": "examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    "show_memory": False,
    "abort_on_example_error": True,
}

html_theme = "pydata_sphinx_theme"
html_title = f"probprop {version}"
html_theme_options = {"navigation_with_keys": False, "show_toc_level": 2}
html_static_path: list[str] = []
