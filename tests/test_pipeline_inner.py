"""
The opt-in ``idfr_inner`` defence (restorers inside the frozen target, not in the paper; issue 41) in the evaluation
suite and the CLI: its knobs (``inner_*``, and the adaptive ``train_denoiser`` / ``autocast`` / ``channels_last``)
leave every existing cache key, fingerprint and preset as they were; the pipeline fits, caches and loads it beside the
ID and FR; a tiny ``art-idfr demo`` evaluates it end to end and reuses its fit; bad values get clear errors.
"""
import dataclasses
import inspect
import json
import os

import numpy as np
import pytest
import torch

from art_idfr import InnerRestorer
from art_idfr.experiments.evaluation import EvalConfig, PreparedData
from conftest import synthetic_bars

SHAPE = (1, 12, 12)
CLASSES = 3


@pytest.fixture(autouse=True)
def _one_thread():
    """Small convolutions on a shared 2-core machine are far faster on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _synthetic(n_train=60, n_test=12) -> PreparedData:
    """Three classes of 12x12 images: a bright bar (horizontal, vertical, diagonal) on noise."""
    return synthetic_bars(n_train, n_test, 12)


def _config(**overrides) -> EvalConfig:
    return EvalConfig.preset("tiny", **{
        "width": 0.25, "fit_n": 30, "id_epochs": 1, "fr_epochs": 1, "idfr_attacks": ("fgsm",), "idfr_eps": (0.1,),
        "adaptive_max_iter": 1, "adaptive_nb_epochs": 1, "adaptive_fit_n": 20, "adaptive_fixed_weight": 0.0,
        "inner_rank": 2, "device": "cpu", **overrides}).resolved(1)


def _state(module) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ----------------------------------------------------------------------------------------------------------- config
def test_knobs_are_the_library_keywords_at_the_library_defaults():
    from art_idfr import InnerRestorer
    from art_idfr.experiments.evaluation.config import SUB_CONFIGS
    from art_idfr.training.adaptive import AdaptiveDenoiserTrainer

    for cls, fn in ((SUB_CONFIGS["inner"], InnerRestorer.__init__),
                    (SUB_CONFIGS["adaptive"], AdaptiveDenoiserTrainer.__init__)):
        params = inspect.signature(fn).parameters
        assert {f.name for f in dataclasses.fields(cls)} - {"alone"} <= set(params), cls.__name__
    params = inspect.signature(InnerRestorer.__init__).parameters
    for f in dataclasses.fields(SUB_CONFIGS["inner"]):
        assert f.name == "alone" or f.default == params[f.name].default, f.name
    assert "alone" not in SUB_CONFIGS["inner"]().kwargs()  # defend()'s parts, not an InnerRestorer keyword
    params = inspect.signature(AdaptiveDenoiserTrainer.__init__).parameters
    for name in ("train_denoiser", "autocast", "channels_last"):  # new: at the trainer's defaults
        assert SUB_CONFIGS["adaptive"].__dataclass_fields__[name].default == params[name].default, name


def test_idfr_inner_is_opt_in_and_its_knobs_change_no_existing_key():
    from art_idfr.experiments.evaluation.config import DEFENCES, INNER_DEFENCES, PRESETS, canonical_defence
    from art_idfr.experiments.evaluation.pipeline.adaptive import _adaptive_settings
    from art_idfr.experiments.evaluation.pipeline.idfr import _knob_settings
    from art_idfr.experiments.evaluation.resume import _without_newer_defaults

    assert INNER_DEFENCES == ("idfr_inner",) and "idfr_inner" not in DEFENCES
    for name in PRESETS:
        cfg = EvalConfig.preset(name)
        assert "idfr_inner" not in cfg.defences and "idfr_inner" not in cfg.autoattack_defences
        d = cfg.to_dict()
        assert d["inner"] == {"kind": "lora", "rank": 4, "ranks": None, "width": 0.25, "layers": None,
                              "norm_affine": False, "alone": False}
        # the resume fingerprint's view: the new knobs at their defaults are left out (earlier checkpoints stay valid)
        view = _without_newer_defaults(d)
        assert "inner" not in view and not {"train_denoiser", "autocast", "channels_last"} & set(view["adaptive"])
        # ... and the adaptive cache key (idfr_adaptive's) does not name them either
        assert not {"adaptive_train_denoiser", "adaptive_autocast", "adaptive_channels_last"} & set(
            _knob_settings(cfg.adaptive))
    for alias in ("idfr_inner", "inner", "ID+FR+inner", "idfr-inner"):
        assert canonical_defence(alias) == "idfr_inner"
    cfg = EvalConfig.preset("tiny", defences="none,inner", inner_kind="ADAPTER", inner_width=0.5,
                            inner_layers="conv1, conv2", adaptive_autocast="bf16", adaptive_channels_last=True)
    assert cfg.defences == ("none", "idfr_inner") and cfg.inner.kind == "adapter"
    assert cfg.inner.kwargs() == {"kind": "adapter", "rank": 4, "ranks": None, "width": 0.5,
                                  "layers": ("conv1", "conv2"), "norm_affine": False}
    ranked = EvalConfig.preset("tiny", defences="none,inner", inner_ranks="conv1=8, fc=2")
    assert ranked.inner.ranks == {"conv1": 8, "fc": 2} and EvalConfig(**ranked.to_dict()) == ranked
    assert _without_newer_defaults(ranked.to_dict())["inner"] == {"ranks": {"conv1": 8, "fc": 2}}
    assert (cfg.adaptive.autocast, cfg.adaptive.channels_last) == ("bf16", True)
    assert EvalConfig(**cfg.to_dict()) == cfg
    assert EvalConfig.preset("tiny", adaptive_autocast="none").adaptive.autocast is None
    view = _without_newer_defaults(cfg.to_dict())
    assert view["inner"] == {"kind": "adapter", "width": 0.5, "layers": ["conv1", "conv2"]}
    assert view["adaptive"]["autocast"] == "bf16"
    assert "inner" not in _adaptive_settings(_config(), _Stub(), None)  # without inner restorers: the old key


class _Stub:
    network = torch.nn.Linear(1, 1)


@pytest.mark.parametrize("overrides, message", [
    ({"inner_kind": "prompt"}, "Unknown inner_kind 'prompt'. Valid: lora, adapter"),
    ({"inner_rank": 0}, "`inner_rank` must be a positive int"),
    ({"inner_rank": 2.5}, "`inner_rank` must be a positive int"),
    ({"inner_width": -1}, "`inner_width` must be a positive number"),
    ({"inner_layers": " , "}, "`inner_layers` names no module"),
    ({"inner_ranks": "conv1:8"}, "`inner_ranks` must be NAME=R pairs"),
    ({"inner_ranks": "conv1=x"}, "`inner_ranks` must be NAME=R with R an int"),
    ({"inner_ranks": {"conv1": 0}}, "`inner_ranks` must map module names to positive ints"),
    ({"adaptive_autocast": "fp16"}, "Unknown adaptive_autocast 'fp16'. Valid: none, bf16"),
    ({"defences": "none,innerr"}, "Unknown defence 'innerr'. Valid defences: none, id, idfr, idfr_adaptive, "
                                  "idfr_inner, feature_squeezing"),
])
def test_bad_values_get_clear_errors(overrides, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        EvalConfig.preset("tiny", **overrides)


@pytest.mark.parametrize("argv, message", [
    (["--inner-kind", "prompt"], "invalid choice: 'prompt'"),
    (["--inner-rank", "0"], "expected a positive integer, got '0'"),
    (["--inner-width", "0"], "expected a positive number, got '0'"),
    (["--adaptive-autocast", "fp16"], "invalid choice: 'fp16'"),
])
def test_bad_flags_get_clear_errors(argv, message, capsys):
    from art_idfr.experiments.cli import main

    with pytest.raises(SystemExit):
        main(["demo", "--preset", "tiny", *argv])
    assert message in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------------- pipeline
def test_fit_inner_adaptive_saves_caches_loads_and_never_touches_the_target(tmp_path):
    from art_idfr.experiments.evaluation import build_defences, fit_idfr, wrap_model
    from art_idfr.experiments.evaluation.pipeline import (
        INNER_FILE,
        fit_inner_adaptive,
        load_adaptive_fit,
        load_inner_adaptive_fit,
    )
    from art_idfr.experiments.evaluation.resume import weights_digest
    from art_idfr.experiments.models import make_model

    data = _synthetic()
    target = make_model("small_cnn", CLASSES, SHAPE, width=0.25, seed=0)
    cfg = _config()
    den, fr, _ = fit_idfr(cfg, data, target, str(tmp_path / "idfr"), verbose=False)
    start = _state(target)
    folder = str(tmp_path / "idfr" / "inner_adaptive")
    den_i, fr_i, inner, meta = fit_inner_adaptive(cfg, data, target, den, fr, folder, verbose=False)
    assert _same(start, _state(target))  # the target's own tensors (BatchNorm statistics included) never change
    assert {"denoiser.pt", INNER_FILE, "adaptive.json"} <= set(os.listdir(folder))
    assert inner.is_fitted and inner.kind == "lora" and inner.rank == 2 and den_i is not den
    size = meta["inner"]
    assert size["parameters"] == inner.num_parameters() > 0 and size["macs"] == inner.macs() > 0
    assert size["target_parameters"] == sum(p.numel() for p in target.parameters())
    assert 0 < size["fraction_of_target"] < 1 and size["layers"] == len(inner.points)
    key = meta["settings"]["inner"]
    assert (key["inner_kind"], key["inner_rank"], key["target"]) == ("lora", 2, weights_digest(target))
    assert meta["training"]["train_inner"] and meta["training"]["train_denoiser"]
    # cached: the same settings reuse the folder (nothing refitted), and the loaders read it back
    mtime = os.path.getmtime(os.path.join(folder, INNER_FILE))
    again = fit_inner_adaptive(cfg, data, target, den, fr, folder, verbose=False)
    assert os.path.getmtime(os.path.join(folder, INNER_FILE)) == mtime
    assert weights_digest(again[2].network) == weights_digest(inner.network)
    loaded = load_inner_adaptive_fit(folder, target, fr, device_type="cpu")
    assert weights_digest(loaded[2].network) == weights_digest(inner.network)
    assert weights_digest(loaded[0].network) == weights_digest(den_i.network)
    assert load_adaptive_fit(folder, fr, device_type="cpu")[2]["inner"] == size  # the plain loader reads it too
    other = make_model("small_cnn", CLASSES, SHAPE, width=0.25, seed=1)
    with pytest.raises(ValueError, match="fitted for another model"):
        load_inner_adaptive_fit(folder, other, fr, device_type="cpu")
    with pytest.raises(FileNotFoundError, match="not an idfr_inner fit"):
        load_inner_adaptive_fit(str(tmp_path / "idfr"), target, fr, device_type="cpu")  # (no inner.pt there)

    # the defence: ID + inner restorers + FR, white-box gradient exact through all of them
    clf = wrap_model(target, SHAPE, CLASSES, "cpu")
    dcs = build_defences(cfg.replace(defences=("none", "idfr_inner")), clf, inner=(den_i, fr_i, inner))
    dc = dcs["idfr_inner"]
    assert dc.label == "ID+FR+inner adaptive (not in paper)" and dc.gradient.startswith("exact")
    assert f"lora, rank 2, {len(inner.points)} places, {inner.num_parameters():,} parameters" in dc.description
    g = dc.classifier.loss_gradient(data.x_test[:4], np.eye(CLASSES, dtype=np.float32)[data.y_test[:4]])
    assert np.isfinite(g).all() and (np.abs(g).reshape(4, -1).max(axis=1) > 0).all()
    with pytest.raises(ValueError, match="needs the restorers fitted inside the target"):
        build_defences(cfg.replace(defences=("idfr_inner",)), clf)

    # the ID kept fixed in front: another cache key (refitted), the ID's weights as given, the inner parts trained
    fixed = fit_inner_adaptive(cfg.replace(adaptive_train_denoiser=False), data, target, den, fr, folder,
                               verbose=False)
    assert weights_digest(fixed[0].network) == weights_digest(den.network)
    assert fixed[3]["settings"]["adaptive_train_denoiser"] is False and fixed[3]["training"]["train_inner"]
    assert fixed[3]["training"]["train_denoiser"] is False
    assert _same(start, _state(target))

    # the inner restorers alone (--inner-alone): no ID, no FR, in the fit, the folder, the loader and the row
    alone_cfg = cfg.replace(inner_alone=True)
    den_a, fr_a, inner_a, meta_a = fit_inner_adaptive(alone_cfg, data, target, den, fr, folder, verbose=False)
    assert den_a is None and fr_a is None and "denoiser.pt" not in os.listdir(folder)  # the earlier fit's ID removed
    assert meta_a["settings"]["start"] is None and meta_a["settings"]["inner"]["inner_alone"] is True
    assert meta_a["training"]["train_inner"] and not meta_a["training"]["through_restorer"]
    loaded = load_inner_adaptive_fit(folder, target, fr, device_type="cpu")
    assert loaded[:2] == (None, None) and weights_digest(loaded[2].network) == weights_digest(inner_a.network)
    assert fit_inner_adaptive(alone_cfg, data, target, den, fr, folder, verbose=False)[3]["fit_seconds"] == \
        meta_a["fit_seconds"]  # cached: read back, not refitted
    row = build_defences(alone_cfg.replace(defences=("idfr_inner",)), clf, inner=loaded[:3])["idfr_inner"]
    assert row.label == "inner adaptive (not in paper)" and "IDFRDenoiser" not in row.description
    assert np.isfinite(row.classifier.loss_gradient(data.x_test[:4], np.eye(CLASSES, dtype=np.float32)[
        data.y_test[:4]])).all()
    assert _same(start, _state(target))


# --------------------------------------------------------------------------------------------------------------- CLI
def test_tiny_demo_with_idfr_inner_end_to_end_cached_and_evaluated_again(tmp_path, capsys):
    from art_idfr.experiments.cli import main
    from art_idfr.experiments.evaluation.resume import weights_digest

    out = str(tmp_path / "demo")
    args = ["demo", "--preset", "tiny", "--quiet", "--threads", "1", "--out", out,
            "--defences", "none,idfr,idfr_adaptive,idfr_inner", "--threat-models", "gray-box,white-box",
            "--attacks", "fgsm,autoattack", "--eps", "0.3", "--autoattack-defences", "idfr_inner",
            "--autoattack-restarts", "1", "--eval-n", "20", "--whitebox-n", "8", "--fit-n", "60",
            "--adaptive-fit-n", "40", "--adaptive-max-iter", "1", "--inner-rank", "2"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "| ID+FR+inner adaptive (not in paper) |" in text and "inner restorers" in text
    doc = json.loads(open(os.path.join(out, "results.json")).read())
    rows = [r for r in doc["records"] if r["defence_key"] == "idfr_inner"]
    assert {(r["threat_model"], r["attack"]) for r in rows} >= {("gray-box", "fgsm"), ("white-box", "fgsm"),
                                                               ("white-box", "autoattack")}
    assert not any(r["attack"] == "autoattack" and r["defence_key"] != "idfr_inner" for r in doc["records"])
    info = doc["metadata"]["models"]["idfr_inner"]
    assert info["inner"]["parameters"] > 0 and 0 < info["inner"]["fraction_of_target"] < 1
    checks = doc["sanity_checks"]["checks"]
    assert "idfr_inner" in checks["defended_gradient"]["per_defence"]
    assert "idfr_inner" in checks["gradient_free_not_stronger"]["per_defence"]
    folder = os.path.join(out, "idfr", "inner_adaptive")
    assert os.path.isfile(os.path.join(folder, "inner.pt")) and os.path.isfile(os.path.join(out, "idfr", "adaptive",
                                                                                             "denoiser.pt"))
    # the target as trained, bit for bit: the fit's cache key holds its digest
    from art_idfr.experiments.evaluation.pipeline import load_model_dir

    target, _ = load_model_dir(os.path.join(out, "target"), device="cpu")
    settings = json.loads(open(os.path.join(folder, "adaptive.json")).read())["settings"]
    assert settings["inner"]["target"] == weights_digest(target)

    # a second call reuses every fit (nothing refitted) and every attack cell, to the same records
    mtimes = {f: os.path.getmtime(os.path.join(folder, f)) for f in ("inner.pt", "denoiser.pt")}
    assert main(args) == 0
    capsys.readouterr()
    assert {f: os.path.getmtime(os.path.join(folder, f)) for f in mtimes} == mtimes
    doc2 = json.loads(open(os.path.join(out, "results.json")).read())
    assert doc2["metadata"].get("reused_cells", {}).get("white-box", 0) > 0
    key = ("threat_model", "defence_key", "attack", "eps", "n", "n_correct")
    assert [[r[k] for k in key] for r in doc2["records"]] == [[r[k] for k in key] for r in doc["records"]]

    # `evaluate` finds it in <idfr folder>/inner_adaptive, and asked for it without one, says how to get one
    out_e = str(tmp_path / "eval")
    ev = ["evaluate", "--preset", "tiny", "--quiet", "--threads", "1", "--target", os.path.join(out, "target"),
          "--idfr", os.path.join(out, "idfr"), "--defences", "none,inner", "--threat-models", "white-box",
          "--attacks", "fgsm", "--eps", "0.3", "--eval-n", "20", "--whitebox-n", "8", "--out", out_e]
    assert main(ev) == 0
    capsys.readouterr()
    doc_e = json.loads(open(os.path.join(out_e, "results.json")).read())
    wb = {r["defence_key"]: r["n_correct"] for r in doc_e["records"] if r["threat_model"] == "white-box"
          and r["attack"] == "fgsm"}
    assert wb == {r["defence_key"]: r["n_correct"] for r in doc["records"] if r["threat_model"] == "white-box"
                  and r["attack"] == "fgsm" and r["defence_key"] in ("none", "idfr_inner")}
    import shutil

    plain = str(tmp_path / "idfr_plain")
    shutil.copytree(os.path.join(out, "idfr"), plain, ignore=shutil.ignore_patterns("inner_adaptive"))
    with pytest.raises(SystemExit):
        main([*ev[:9], plain, *ev[10:]])
    assert "art-idfr fit --inner" in capsys.readouterr().err
    # `fit --inner` writes it (the copied IDFR fit reused): the demo's restorers again, to the same weights
    assert main(["fit", "--preset", "tiny", "--quiet", "--threads", "1", "--target", os.path.join(out, "target"),
                 "--out", plain, "--fit-n", "60", "--adaptive-fit-n", "40", "--adaptive-max-iter", "1",
                 "--inner", "--inner-rank", "2"]) == 0
    assert "inner restorers lora (rank 2)" in capsys.readouterr().out
    a, b = (torch.load(os.path.join(d, "inner_adaptive", "inner.pt"), weights_only=True)["state_dict"]
            for d in (os.path.join(out, "idfr"), plain))
    assert _same(a, b)


def test_tiny_demo_with_the_inner_restorers_alone_fits_no_id(tmp_path, capsys):
    """`--inner-alone`: the demo fits no Algorithm-1 ID / FR for idfr_inner alone, and the row is the inner parts'."""
    from art_idfr.experiments.cli import main

    out = str(tmp_path / "demo")
    args = ["demo", "--preset", "tiny", "--threads", "1", "--out", out, "--defences", "none,idfr_inner",
            "--threat-models", "white-box", "--attacks", "fgsm", "--eps", "0.3", "--eval-n", "20", "--whitebox-n", "8",
            "--adaptive-fit-n", "40", "--adaptive-max-iter", "1", "--inner-rank", "2", "--inner-alone",
            "--inner-ranks", "backbone.fc=1"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "fitting IDFR" not in text
    assert "inner alone (not in the paper): inner restorers lora (rank 2, backbone.fc 1)" in text
    assert "| inner adaptive (not in paper) |" in text
    assert "loss gradient through inner adaptive (not in paper): finite=True" in text  # the row's own label
    folder = os.path.join(out, "idfr", "inner_adaptive")
    assert sorted(f for f in os.listdir(folder) if f.endswith(".pt")) == ["inner.pt"]
    sizes = {row["name"]: row for row in InnerRestorer.load(os.path.join(folder, "inner.pt")).layer_sizes()}
    assert sizes["backbone.fc"]["rank"] == 1 and {row["rank"] for row in sizes.values()} == {1, 2}
    doc = json.loads(open(os.path.join(out, "results.json")).read())
    assert {r["defence_key"] for r in doc["records"]} == {"none", "idfr_inner"}


def test_fit_summary_names_the_epoch_kept():
    """With --no-adaptive-keep-start the start (epoch 0) is scored but never kept: the summary line must not name it
    (the first cifar10_inner run printed 'best epoch 0' while epoch 3's weights were kept)."""
    from art_idfr.experiments.cli_commands import _best_epoch

    history = [{"epoch": 0, "val_acc": 0.738, "val_score": 0.369, "val_adv_acc": 0.0},
               {"epoch": 1, "val_acc": 0.516, "val_score": 0.324, "val_adv_acc": 0.132},
               {"epoch": 2, "val_acc": 0.538, "val_score": 0.359, "val_adv_acc": 0.18}]
    assert "best epoch 2: val clean 53.80%, val PGD-20 18.00%" in _best_epoch(
        {"history": history, "training": {"keep_start": False}})
    assert "best epoch 0" in _best_epoch({"history": history, "training": {"keep_start": True}})
    assert "best epoch 0" in _best_epoch({"history": history})  # older records: the start competed
