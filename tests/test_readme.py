"""The README's API block runs as written (tiny generated data; the epochs and sizes it names are shrunk)."""
import os
import re

import numpy as np
import torch

from conftest import make_classifier, tiny_cnn

README = os.path.join(os.path.dirname(__file__), os.pardir, "README.md")


def api_block() -> str:
    """The first ```python block under '## API'."""
    with open(README, encoding="utf-8") as f:
        text = f.read()
    return re.search(r"## API\s+```python\n(.*?)```", text, re.S).group(1)


def shrunk(code: str) -> str:
    """The block with every epoch count at 1 and BIM at 2 steps, so that it runs in seconds on CPU."""
    code = re.sub(r"nb_epochs=\d+", "nb_epochs=1", code)
    return re.sub(r"max_iter=20\b", "max_iter=2", code)


def test_readme_api_block_runs_and_returns_a_defended_module(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the block's resume file
    code = shrunk(api_block())
    assert "AdaptiveDenoiserTrainer.from_recipe(" in code and "as_module(defended)" in code  # this test's block
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    x = rng.random((48, 3, 32, 32), dtype=np.float32)
    y = rng.integers(0, 10, 48)
    target = make_classifier(tiny_cnn(channels=3, size=32), input_shape=(3, 32, 32))
    scope = {"target": target, "x_train": x[:32], "y_train": y[:32], "x_val": x[32:], "y_val": y[32:]}
    exec(compile(code, "README.md#api", "exec"), scope)
    defended, module = scope["defended"], scope["module"]
    info = scope["denoiser"].training_info  # the adaptive fit ran on the README's ID, with the named recipe
    assert info["algorithm"] == "adaptive" and info["recipe"] == "trades_joint"
    assert scope["restorer"].training_info.get("adaptive")  # and trained the FR alongside (train_restorer=True)
    assert "checkpoint=" in code and not os.listdir(tmp_path)  # its resume file was deleted once the fit ended
    with torch.no_grad():
        out = module(torch.from_numpy(x[32:])).numpy()
    np.testing.assert_allclose(out, defended.predict(x[32:]), rtol=1e-4, atol=1e-5)


def readme_text() -> str:
    with open(README, encoding="utf-8") as f:
        return f.read()


def test_readme_is_short_and_keeps_the_test_command_and_the_map():
    text = readme_text()
    lines = text.splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines; the rest belongs in docs/guides/"
    assert "python -m pytest -q" in text  # CI (.ci/run) runs exactly this command
    assert "art-idfr demo" in text
    assert any(line.startswith("## Where each piece lives") for line in lines[:80])  # the map, near the top
    assert "## API" in text and "## Results in short" in text


def test_readme_links_point_to_existing_files():
    root = os.path.dirname(README)
    for target in re.findall(r"\]\(([^)\s]+)\)", readme_text()):
        if target.startswith(("http://", "https://", "#")):
            continue
        path = target.split("#", 1)[0]
        assert os.path.exists(os.path.join(root, path)), f"README.md links to a missing file: {target}"


def test_readme_headline_numbers_come_from_the_generated_tables():
    """Every number in the README's results table is a cell of docs/results.md (the committed runs' tables)."""
    root = os.path.dirname(README)
    with open(os.path.join(root, "docs", "results.md"), encoding="utf-8") as f:
        cells = {float(v) for v in re.findall(r"\|\s*(\d+(?:\.\d+)?)\s*(?=\|)", f.read())}
    section = readme_text().split("## Results in short", 1)[1]
    rows = [line for line in section.splitlines() if line.startswith("| [")]
    assert len(rows) >= 4
    for row in rows:
        for cell in row.strip("|").split("|")[1:]:  # the first cell names the run
            for number in re.findall(r"\d+(?:\.\d+)?(?!/)", re.sub(r"\d+/255", "", cell)):
                assert float(number) in cells, f"{number} in README row {row[:60]!r} is not in docs/results.md"
