"""The documentation site (docs/) builds offline with warnings as errors, documents the public API, and a broken
reference fails the build.

The full build is the documented command, ``python -m sphinx -W --keep-going -b html docs docs/_build/html``, into a
temporary folder (about 25 s on 2 CPU cores); the failure cases build small probe sites with the site's own conf.py
(a second or two each), so that each one fails for the one reason it plants.
"""
import os
import re
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")


def sphinx_build(src: str, out: str, *options: str) -> subprocess.CompletedProcess:
    """``python -m sphinx -W --keep-going -b html -q [options] src out`` in a fresh process."""
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", "-q", *options, src, out]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


def read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The whole site, built as documented; (output folder, finished process)."""
    out = str(tmp_path_factory.mktemp("docs_html"))
    before = set(_docs_files())
    proc = sphinx_build(DOCS, out)
    assert set(_docs_files()) == before, "the build wrote into docs/ (generated stubs?)"
    return out, proc


def _docs_files():
    for base, dirs, files in os.walk(DOCS):
        dirs[:] = [d for d in dirs if d != "_build"]
        yield from (os.path.join(base, f) for f in files)


def test_site_builds_clean(site):
    out, proc = site
    assert proc.returncode == 0, f"sphinx failed (-W: every warning is an error):\n{proc.stdout}\n{proc.stderr}"
    for page in ("index", "results", "api/library", "api/training", "api/checkpoint", "api/experiments", "api/cli",
                 "guides/getting-started", "guides/threat-models", "guides/adaptive", "guides/distributed",
                 "guides/imagenet", "guides/reproducing", "guides/results", "guides/layout"):
        assert os.path.isfile(os.path.join(out, page + ".html")), page


def test_api_pages_document_every_export(site):
    import art_idfr

    out, _ = site
    library = read(os.path.join(out, "api", "library.html"))
    assert 'id="art_idfr.IDFRDenoiser"' in library and 'id="art_idfr.AdaptiveDenoiserTrainer"' in library
    for name in art_idfr.__all__:
        if name != "__version__":
            assert f'id="art_idfr.{name}"' in library, name
    assert 'id="art_idfr.IDFRDenoiser.fit"' in library  # members, from the docstrings
    training = read(os.path.join(out, "api", "training.html"))
    for module in ("algorithm1", "algorithm2", "adaptive", "distributed", "resume"):
        assert f'id="module-art_idfr.training.{module}"' in training, module
    assert 'id="art_idfr.training.algorithm1.fit_denoiser"' in training
    assert 'id="module-art_idfr.checkpoint"' in read(os.path.join(out, "api", "checkpoint.html"))
    experiments = read(os.path.join(out, "api", "experiments.html"))
    for name in ("evaluation.evaluate", "evaluation.EvalConfig", "evaluation.EvaluationResult", "data.load_dataset",
                 "models.make_model", "models.train_model", "attacks.make_attack"):
        assert f'id="art_idfr.experiments.{name}"' in experiments, name
    cli = read(os.path.join(out, "api", "cli.html"))
    assert 'id="art_idfr.experiments.cli.main"' in cli
    for command in ("train-target", "fit", "evaluate", "demo"):  # every subcommand's --help, generated
        assert f"usage: art-idfr {command}" in cli, command


def test_site_includes_the_generated_tables_and_the_guides(site):
    out, _ = site
    results = read(os.path.join(out, "results.html"))
    assert "cifar10_paper_vgg16_bn_cifar" in results and "white-box" in results and "<table" in results
    assert "accuracy_vs_eps" in results  # the plot, copied into the site
    adaptive = read(os.path.join(out, "guides", "adaptive.html"))
    assert "trades_joint" in adaptive
    # a link to a repository file outside docs/ becomes a download of that file, not a broken page link
    assert re.search(r'href="\.\./_downloads/[0-9a-f]+/NOTES\.md"', adaptive)


# ---------------------------------------------------------------------------------------------------- failure cases


def probe_site(tmp_path, page: str) -> str:
    """A small site beside a fake repository file: the real docs/conf.py, an index and one page; its source folder."""
    (tmp_path / "NOTES.md").write_text("# Notes\n\n## A section\n", encoding="utf-8")
    src = tmp_path / "docs"
    src.mkdir()
    shutil.copy(os.path.join(DOCS, "conf.py"), src / "conf.py")
    (src / "index.md").write_text("# Probe\n\n```{toctree}\npage\n```\n", encoding="utf-8")
    (src / "page.md").write_text(page, encoding="utf-8")
    return str(src)


GOOD_PAGE = """# Page

```{py:class} art_idfr.Probe
A class this page documents.
```

See {py:class}`art_idfr.Probe`, [the index](index.md), [the notes](../NOTES.md#a-section).
"""


def test_probe_site_builds_clean_even_nitpicky(tmp_path):
    proc = sphinx_build(probe_site(tmp_path, GOOD_PAGE), str(tmp_path / "out"), "-n")
    assert proc.returncode == 0, proc.stderr
    assert "WARNING" not in proc.stderr, proc.stderr


def test_a_class_reference_to_a_missing_name_fails_under_nitpicky(tmp_path):
    page = GOOD_PAGE + "\nAnd {py:class}`art_idfr.NoSuchClass`.\n"
    proc = sphinx_build(probe_site(tmp_path, page), str(tmp_path / "out"), "-n")
    assert proc.returncode != 0
    assert "art_idfr.NoSuchClass" in proc.stderr, proc.stderr


@pytest.mark.parametrize("link", ["no-such-page.md", "../NO_SUCH_FILE.md"])
def test_a_broken_link_fails_the_build(tmp_path, link):
    proc = sphinx_build(probe_site(tmp_path, GOOD_PAGE + f"\nAnd [a broken link]({link}).\n"), str(tmp_path / "out"))
    assert proc.returncode != 0
    assert "WARNING" in proc.stderr and link.lstrip("./").split(".")[0] in proc.stderr, proc.stderr


def test_a_docstring_warning_fails_the_build(tmp_path):
    """autodoc warnings count too: a missing name (a re-export dropped while splitting a module, say) fails."""
    page = "# Page\n\n```{eval-rst}\n.. autofunction:: art_idfr.experiments.data.no_such_loader\n```\n"
    proc = sphinx_build(probe_site(tmp_path, page), str(tmp_path / "out"))
    assert proc.returncode != 0
    assert "no_such_loader" in proc.stderr, proc.stderr
