"""
Sphinx configuration of the art-idfr documentation site.

Build (offline, warnings are errors; the command CI's ``tests/test_docs.py`` runs too)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

The API pages are generated from the docstrings (``sphinx.ext.autodoc``), the guides are Markdown (MyST) so that
they read on GitHub as well. Links from a guide to a repository file outside ``docs/`` (``../../benchmarks/NOTES.md``)
work on GitHub as written; in the HTML build they become download links to a copy of that file (see
``_RepositoryLinks`` below). No intersphinx, nothing is fetched; the pages load no script from elsewhere except
MathJax, which Sphinx adds to a page only when a docstring writes ``:math:``.
"""
from __future__ import annotations

import os
import re
import sys

from docutils import nodes
from docutils.parsers.rst import Directive
from docutils.statemachine import StringList
from sphinx import addnodes
from sphinx.transforms import SphinxTransform
from sphinx.util.docutils import SphinxDirective

DOCS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(DOCS)
sys.path.insert(0, ROOT)  # document the checkout, installed or not

import art_idfr  # noqa: E402

project = "art-idfr"
author = "art-idfr contributors"
copyright = "art-idfr contributors"
release = version = art_idfr.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

# MyST: GitHub-style anchors for headings (README and guides link to `page.md#a-heading`)
myst_heading_anchors = 4
myst_enable_extensions = ["colon_fence"]

# autodoc: members in source order, signatures with their type hints as written
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
autodoc_default_options = {"members": True, "show-inheritance": True}
autosummary_generate = False  # no stub pages: docs/api/*.rst hold the autodoc directives; nothing is written into docs/

html_theme = "alabaster"
html_title = f"art-idfr {release}"
html_theme_options = {"description": "IDFR, an adversarial defence plug-in for ART", "fixed_sidebar": True}
html_static_path: list = []


class _RepositoryLinks(SphinxTransform):
    """A Markdown link to a repository file outside ``docs/`` (``[notes](../../benchmarks/NOTES.md#a-section)``)
    reads on GitHub as written; MyST would take a ``.md`` target for a missing page. Such links become download
    links (a copy of the file under ``_downloads/``), like MyST's own links to other existing files; a link to a
    page of the site, or to a file that does not exist, is left to MyST (which warns about the latter)."""

    default_priority = 5  # before the environment collectors see the download references

    def apply(self, **kwargs) -> None:
        for node in list(self.document.findall(addnodes.pending_xref)):
            if node.get("reftype") != "myst" or node.get("refdomain") != "doc":
                continue
            if node["reftarget"] in self.env.found_docs:
                continue
            base = os.path.normpath(os.path.join(str(self.env.srcdir), node["reftarget"]))  # MyST's docname: no suffix
            path = next((base + s for s in (".md", ".rst") if os.path.isfile(base + s)), None)
            if path is None or path.startswith(os.path.join(str(self.env.srcdir), "")):
                continue
            rel = os.path.relpath(path, os.path.dirname(str(self.env.doc2path(self.env.docname))))
            new = addnodes.download_reference(refdomain=None, reftarget=rel, refdoc=self.env.docname,
                                              reftype="myst", refexplicit=True)
            new += node.children
            node.replace_self(new)


_LITERAL = re.compile(r"(``.*?``|`[^`]*`)")  # inline literals and roles: left as written


def _escape_bars(app, what, name, obj, options, lines) -> None:
    """``autodoc-process-docstring``: our docstrings write absolute values as ``|δ|∞`` or ``mean|ID(x) − x|`` in
    plain text and define no substitutions, so an inline ``|`` is escaped before docutils reads it as the start of a
    substitution reference (``Inline substitution_reference start-string without end-string``). Left alone: line
    blocks and table rows (a line starting with ``|``), literal blocks (after ``::``) and directives' bodies, doctest
    lines, inline literals and roles."""
    literal_indent = None  # indentation of the paragraph that opened a literal block
    for i, line in enumerate(lines):
        stripped = line.lstrip()
        indent = len(line) - len(stripped)
        if literal_indent is not None:
            if not stripped or indent > literal_indent:
                continue
            literal_indent = None
        if stripped.startswith(("|", ">>>", "+")) or "|" not in line:
            pass
        else:
            lines[i] = "".join(part if k % 2 else part.replace("|", "\\|")
                               for k, part in enumerate(_LITERAL.split(line)))
        if stripped.endswith("::") or stripped.startswith(".. "):  # a literal block or a directive's body
            literal_indent = indent


class _Exports(SphinxDirective):
    """``.. art-idfr-exports::``: every public name in ``art_idfr.__all__``, an autosummary table and then each one's
    ``autoclass``/``autofunction``/``autodata`` entry, so that the API page follows the package's exports without a
    hand-kept list. Used after ``.. currentmodule:: art_idfr``."""

    def run(self):
        import inspect

        names = [name for name in art_idfr.__all__ if not name.startswith("_")]
        lines = [".. autosummary::", "   :nosignatures:", ""] + [f"   {name}" for name in names] + [""]
        for name in names:
            obj = getattr(art_idfr, name)
            kind = "class" if inspect.isclass(obj) else "function" if callable(obj) else "data"
            lines += [f".. auto{kind}:: {name}", ""]
        lines = StringList(lines, source="art_idfr.__all__")
        container = nodes.container()
        self.state.nested_parse(lines, self.content_offset, container)
        return container.children


class _CliHelp(Directive):
    """``.. art-idfr-help::``: the ``--help`` of ``art-idfr`` and of each subcommand, as literal blocks (100
    columns), built from :func:`art_idfr.experiments.cli.build_parser` (which imports neither torch nor ART)."""

    def run(self):
        import argparse

        from art_idfr.experiments.cli import build_parser

        columns = os.environ.get("COLUMNS")
        os.environ["COLUMNS"] = "100"  # argparse reads the width from the environment
        try:
            parser = build_parser()
            out = [nodes.literal_block(text=parser.format_help(), language="text")]
            sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
            for name, sub_parser in sub.choices.items():
                section = nodes.section(ids=[f"art-idfr-{name}"], names=[f"art-idfr {name}"])
                section += nodes.title(text=f"art-idfr {name}")
                section += nodes.literal_block(text=sub_parser.format_help(), language="text")
                out.append(section)
        finally:
            if columns is None:
                os.environ.pop("COLUMNS", None)
            else:
                os.environ["COLUMNS"] = columns
        return out


def setup(app):
    app.add_transform(_RepositoryLinks)
    app.add_directive("art-idfr-help", _CliHelp)
    app.add_directive("art-idfr-exports", _Exports)
    app.connect("autodoc-process-docstring", _escape_bars)
    return {"parallel_read_safe": True}
