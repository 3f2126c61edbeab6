"""Sphinx configuration for the fastgex documentation.

Build (the nox ``docs`` session runs exactly this)::

    .venv/bin/sphinx-build -W --keep-going -n -b html docs docs/_build/html

The build is nitpicky (``-n``) and turns warnings into errors (``-W``). It needs
no network: intersphinx is deliberately not used, and references to types that
live outside fastgex are silenced with ``nitpick_ignore_regex`` below.
"""

from __future__ import annotations

import sys
from datetime import date
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _dist_version
from pathlib import Path

# Let autodoc import fastgex from the source tree without installing it.
_SRC = Path(__file__).resolve().parent.parent / "src"
sys.path.insert(0, str(_SRC))

# -- Project information -----------------------------------------------------

project = "fastgex"
author = "fastgex developers"
copyright = f"{date.today().year}, {author}"

try:  # the installed distribution, when there is one
    release = _dist_version("fastgex")
except PackageNotFoundError:  # building from a plain checkout
    release = "0.1.0"
version = ".".join(release.split(".")[:2])

# -- General configuration ---------------------------------------------------

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "numpydoc",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "figures"]
templates_path: list[str] = []

# Nitpicky mode: every cross-reference must resolve (the build passes -n).
nitpicky = True

# No intersphinx (the docs build has no network access), so references to
# types defined outside fastgex cannot resolve; they are ignored here instead.
# Built-in types (str, int, float, None, ...) and ``typing`` names are already
# exempt in Sphinx. Private fastgex names (a leading underscore) have no page.
nitpick_ignore_regex = [
    (r"py:.*", r"(pyarrow|pa)(\..*)?"),
    (r"py:.*", r"(numpy|np)(\..*)?"),
    (r"py:.*", r"(pandas|pd)(\..*)?"),
    (r"py:.*", r"(polars|pl)(\..*)?"),
    (r"py:.*", r"duckdb(\..*)?"),
    (r"py:.*", r"numba(\..*)?"),
    (r"py:.*", r"scipy(\..*)?"),
    (r"py:.*", r"matplotlib(\..*)?"),
    (r"py:.*", r"math(\..*)?"),
    (r"py:.*", r"os\.PathLike"),
    (r"py:.*", r"pathlib(\..*)?"),
    (r"py:.*", r"datetime(\..*)?"),
    (r"py:.*", r"zoneinfo(\..*)?"),
    (r"py:.*", r"collections\.abc\..*"),
    (r"py:.*", r"typing_extensions\..*"),
    (r"py:.*", r"enum\..*"),
    (r"py:.*", r"(Path|PathLike|Mapping|Sequence|Iterable|Callable)"),
    (r"py:.*", r"(optional|default|array-like|array_like|path-like|file-like)"),
    (r"py:.*", r"fastgex(\.\w+)*\._\w+.*"),
]

# -- MyST --------------------------------------------------------------------

myst_enable_extensions = ["dollarmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

# -- autodoc / numpydoc --------------------------------------------------------

# Types are documented once, in the numpydoc "Parameters" / "Returns"
# sections; repeating the annotations in every signature adds noise (and
# references that cannot resolve without intersphinx).
autodoc_typehints = "none"
autodoc_preserve_defaults = True
autodoc_member_order = "bysource"
autodoc_default_options = {"show-inheritance": False}

numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

# -- HTML output ---------------------------------------------------------------

html_theme = "furo"
html_title = f"fastgex {release}"
html_static_path: list[str] = []


# -- Figures ---------------------------------------------------------------------
# Drawn by docs/make_figures.py with fastgex.plot at every build (into docs/figures,
# not committed), so the pictures always show what the code computes.


def _make_figures(app) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import make_figures

    make_figures.main()


def setup(app):
    app.connect("builder-inited", _make_figures)
    return {"parallel_read_safe": True}
