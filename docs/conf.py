"""Sphinx configuration for the trio_agents documentation.

Build with ``nox -s docs`` (warnings are errors), or by hand:
``sphinx-build -W --keep-going -b html docs docs/_build/html``.
"""

from __future__ import annotations

import os

import trio_agents

# -- Project -------------------------------------------------------------------------------

project = "trio_agents"
author = "trio_agents developers"
copyright = "trio_agents developers"
release = trio_agents.__version__
version = ".".join(release.split(".")[:2])

# -- General -------------------------------------------------------------------------------

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.intersphinx",
]

exclude_patterns = ["_build"]
default_role = "py:obj"
# Re-exported names are documented where users import them (``trio_agents.X``); show
# ``Usage`` rather than ``trio_agents._messages.Usage`` in signatures.
python_use_unqualified_type_names = True

# -- autodoc -------------------------------------------------------------------------------
#
# The reference pages use explicit ``autoclass``/``autofunction``/... entries under
# ``.. currentmodule:: trio_agents``, one per public name (tests/test_exports.py checks that
# every name in ``__all__`` has one). The classes keep their real ``__module__`` (the private
# module that defines them): autodoc reads the field docstrings (the string literal under each
# attrs field) from that module's source, and records the private path only as the object's
# canonical name, so there are no duplicate descriptions.

autodoc_default_options = {
    "members": True,
    "member-order": "bysource",
}
autodoc_typehints = "signature"

# -- intersphinx ---------------------------------------------------------------------------
#
# The build machines reach no network but the package index, so the inventories of the
# Python, trio, attrs and cattrs docs cannot be fetched, and a failed fetch is a warning
# (which -W turns into an error). Links into those docs are therefore opt-in: set
# TRIO_AGENTS_DOCS_INTERSPHINX=1 where the network is there (e.g. a docs host).

if os.environ.get("TRIO_AGENTS_DOCS_INTERSPHINX"):
    intersphinx_mapping = {
        "python": ("https://docs.python.org/3", None),
        "trio": ("https://trio.readthedocs.io/en/stable/", None),
        "attrs": ("https://www.attrs.org/en/stable/", None),
        "cattrs": ("https://catt.rs/en/stable/", None),
    }
else:
    intersphinx_mapping = {}

# -- HTML ----------------------------------------------------------------------------------

html_theme = "furo"
html_title = f"trio_agents {release}"
