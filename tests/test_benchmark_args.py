"""The committed benchmark scripts' flag lists parse into valid configurations (a typo fails here, not hours into a run)."""
import dataclasses
import json
import os
import sys

import pytest

from art_idfr.experiments.cli import _config, build_parser

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")


def _benchmark_module(name: str):
    """A script of benchmarks/, imported as a module."""
    sys.path.insert(0, BENCHMARKS)
    try:
        return __import__(name)
    finally:
        sys.path.remove(BENCHMARKS)


def _demo_args(module: str):
    mod = _benchmark_module(module)
    if module == "cifar10_paper":
        return [*mod.COMMON, "--model", "resnet18_cifar", "--surrogate-model", "vgg16_bn_cifar"]
    return mod.ARGS


@pytest.mark.parametrize("module", ["fashion_mnist_cpu", "cifar10_cpu"])
def test_cpu_benchmarks_are_the_papers_comparison_with_its_baselines(module):
    """The *_cpu benchmarks: the paper's defences and attacks plus ComDefend / NRP / ADP / SOAP (issue 42); the
    adaptive rows and AutoAttack live in the *_adaptive / *_inner benchmarks."""
    cfg = _config(build_parser().parse_args(["demo", *_demo_args(module), "--out", "unused"]))
    assert cfg.attacks == ("fgsm", "cw", "bim") and "idfr_adaptive" not in cfg.defences
    assert cfg.defences[-4:] == ("comdefend", "nrp", "adp", "soap")
    assert cfg.baselines.nb_epochs is None  # each baseline's own CPU preset


@pytest.mark.parametrize("module", ["fashion_mnist_adaptive", "cifar10_adaptive", "cifar10_paper"])
def test_benchmark_flags_build_a_config(module):
    args = build_parser().parse_args(["demo", *_demo_args(module), "--out", "unused"])
    cfg = _config(args)
    assert "idfr_adaptive" in cfg.defences and "autoattack" in cfg.attacks
    # the adaptive recipe of the fourth tuning session (benchmarks/NOTES.md) reaches the trainer's keywords
    kw = cfg.adaptive.kwargs()
    assert (kw["trades_beta"], kw["identity_weight"], kw["fixed_weight"]) == (6.0, 0.0, 0.0)
    # ... and fashion_mnist_adaptive's later one (fifth session): every training image at batch 16,
    # twice since the eleventh session
    assert kw["batch_size"] == {"fashion_mnist_adaptive": 16, "cifar10_paper": 64}.get(module, 32)
    if module == "fashion_mnist_adaptive":
        assert (kw["nb_epochs"], cfg.adaptive_fit_n) == (2, 60000)
        # ... with the FR trained jointly (sixth session)
        assert kw["train_restorer"] is True
    if module == "cifar10_paper":  # the GPU recipe: the FR trained jointly, lr 3e-4 with an eps warm-up
        assert (kw["train_restorer"], kw["learning_rate"], kw["eps_warmup"]) == (True, 3e-4, 0.3)


def test_paper_adaptive_focus_keeps_the_adaptive_comparison():
    """cifar10_paper --adaptive-focus: the five defences of the adaptive goal and the opt-in idfr_inner (issue 41),
    AutoAttack through all six at 8/255 and 16/255."""
    mod = _benchmark_module("cifar10_paper")
    args = [*mod.COMMON, *mod.FOCUS, "--model", "resnet18_cifar", "--surrogate-model", "vgg16_bn_cifar"]
    cfg = _config(build_parser().parse_args(["demo", *args, "--out", "unused"]))
    assert cfg.defences == ("none", "id", "idfr", "idfr_adaptive", "idfr_inner", "fast_at")
    assert cfg.autoattack_defences == cfg.defences and "autoattack" in cfg.attacks
    assert (cfg.inner.kind, cfg.inner.rank) == ("lora", 4)
    assert cfg.eps == (8 / 255, 16 / 255) and cfg.autoattack_restarts == 1


def test_paper_baselines_mode_is_the_papers_table_1_comparison():
    """cifar10_paper --baselines (issue 42): IDFR beside ComDefend, NRP, ADP and SOAP, the paper's attacks only."""
    plan = _benchmark_module("cifar10_paper").plan
    (name, demo_args, extra), = plan(["--baselines", "--device", "cuda"])
    assert name == "cifar10_paper_baselines_resnet18_cifar" and extra == ["--device", "cuda"]
    cfg = _config(build_parser().parse_args(["demo", *demo_args, "--out", "unused"]))
    assert cfg.defences == ("none", "id", "idfr", "fast_at", "comdefend", "nrp", "adp", "soap")
    assert cfg.attacks == ("fgsm", "cw", "bim") and (cfg.baselines.fit_n, cfg.baselines.soap_epochs) == (8000, 6)
    with pytest.raises(SystemExit):
        plan(["--baselines", "--adaptive-focus"])


def test_paper_script_arguments_plan_its_runs():
    """cifar10_paper.py's own flags (--only, --full, --adaptive-focus) choose the runs; every other argument (as
    device_paper.sh passes them) reaches each art-idfr demo, and each run's flags build a valid config (CPU only:
    nothing runs)."""
    plan = _benchmark_module("cifar10_paper").plan
    runs = plan(["--adaptive-focus", "--data-root", "cifar10-jpeg.tar.gz", "--threads", "8"])
    assert [r[0] for r in runs] == ["cifar10_paper_adaptive_resnet18_cifar"]
    name, demo_args, extra = runs[0]
    assert extra == ["--data-root", "cifar10-jpeg.tar.gz", "--threads", "8"]
    args = build_parser().parse_args(["demo", *demo_args, *extra, "--out", "unused"])
    cfg = _config(args)
    assert args.threads == 8 and cfg.data_root == "cifar10-jpeg.tar.gz" and cfg.target.model == "resnet18_cifar"
    assert "idfr_inner" in cfg.defences and cfg.surrogate.model == "vgg16_bn_cifar"
    assert [r[0] for r in plan(["--full"])] == ["cifar10_paper_resnet18_cifar", "cifar10_paper_vgg16_bn_cifar"]
    only = plan(["--only", "vgg16_bn_cifar", "--idfr-eps", "4/255,8/255,16/255"])
    assert [r[0] for r in only] == ["cifar10_paper_vgg16_bn_cifar"] and only[0][2] == ["--idfr-eps", "4/255,8/255,16/255"]
    cfg = _config(build_parser().parse_args(["demo", *only[0][1], *only[0][2], "--out", "unused"]))
    assert "idfr_inner" not in cfg.defences and cfg.idfr_eps == (4 / 255, 8 / 255, 16 / 255)  # later flags win
    with pytest.raises(SystemExit):
        plan(["--only", "resnet50"])


#: cifar10_inner also takes the recipe of the CIFAR-10 validation screens of the inner restorers (NOTES)
_SCREENED = {"adversarial_weight": 0.0, "eps_warmup": 0.3, "batch_size": 16, "nb_epochs": 3, "keep_start": False,
             "learning_rate": 4e-3}


def test_cifar10_inner_is_the_screened_inner_row_beside_none_and_fast_at():
    """cifar10_inner (issue 41): cifar10_adaptive's flags, unchanged, then the rank-4 deltas alone (the validation
    curve's configuration and recipe, bf16 + channels-last), AutoAttack through none / inner / Fast AT."""
    mod, ref = _benchmark_module("cifar10_inner"), _benchmark_module("cifar10_adaptive")
    assert mod.ARGS[:len(ref.ARGS)] == ref.ARGS
    cfg, base_cfg = (_config(build_parser().parse_args(["demo", *m.ARGS, "--out", "unused"])) for m in (mod, ref))
    assert cfg.defences == cfg.autoattack_defences == ("none", "idfr_inner", "fast_at") and "autoattack" in cfg.attacks
    assert (cfg.inner.kind, cfg.inner.rank, cfg.inner.layers, cfg.inner.alone) == ("lora", 4, None, True)
    assert (cfg.adaptive.autocast, cfg.adaptive.channels_last, cfg.adaptive_fit_n) == ("bf16", True, 12000)
    assert all(getattr(cfg.adaptive, k) == v for k, v in _SCREENED.items())
    changed = {k for k, v in cfg.to_dict().items() if base_cfg.to_dict()[k] != v}
    assert changed == {"defences", "autoattack_defences", "adaptive", "adaptive_fit_n", "inner"}


def test_fashion_mnist_inner_is_the_inner_row_on_the_adaptive_recipe():
    """fashion_mnist_inner (issue 41): fashion_mnist_adaptive's flags, unchanged, then deltas alone at the validation
    split's per-layer ranks (9.9% of the small CNN's parameters), bf16 + channels-last, the best trained epoch
    kept, AutoAttack through none / inner / Fast AT; of the adaptive recipe only the validation screen's schedule
    changes (four passes in one schedule, no warm restart, Adam 4e-3)."""
    mod, ref = _benchmark_module("fashion_mnist_inner"), _benchmark_module("fashion_mnist_adaptive")
    assert mod.ARGS[:len(ref.ARGS)] == ref.ARGS
    cfg, base_cfg = (_config(build_parser().parse_args(["demo", *m.ARGS, "--out", "unused"])) for m in (mod, ref))
    assert cfg.defences == cfg.autoattack_defences == ("none", "idfr_inner", "fast_at") and "autoattack" in cfg.attacks
    assert (cfg.inner.kind, cfg.inner.rank, cfg.inner.layers, cfg.inner.alone) == ("lora", 4, None, True)
    assert dict(cfg.inner.ranks) == {"backbone.features.0.0": 9, "backbone.features.1.0": 16,
                                     "backbone.features.2.0": 16, "backbone.fc": 8}
    changed = {k for k, v in cfg.to_dict().items() if base_cfg.to_dict()[k] != v}
    assert changed == {"defences", "autoattack_defences", "adaptive", "adaptive_restarts", "inner"}
    assert (cfg.adaptive_restarts, base_cfg.adaptive_restarts) == ((), (1,))
    assert (cfg.adaptive.nb_epochs, cfg.adaptive.learning_rate) == (4, 4e-3)
    assert dataclasses.replace(cfg.adaptive, autocast=None, channels_last=False, keep_start=True,
                               nb_epochs=base_cfg.adaptive.nb_epochs,
                               learning_rate=base_cfg.adaptive.learning_rate) == base_cfg.adaptive


def test_adaptive_benchmark_trains_the_same_models_as_fashion_mnist_cpu():
    """fashion_mnist_adaptive reuses fashion_mnist_cpu's cached models: every training flag but the adaptive recipe
    must be shared."""
    cpu, adaptive = (_config(build_parser().parse_args(["demo", *_demo_args(m), "--out", "unused"]))
                     for m in ("fashion_mnist_cpu", "fashion_mnist_adaptive"))
    for sub in ("target", "surrogate", "id", "fr", "fast_at", "train"):
        assert getattr(cpu, sub) == getattr(adaptive, sub), sub
    assert (cpu.fit_n, cpu.idfr_eps) == (adaptive.fit_n, adaptive.idfr_eps)
    assert "idfr_adaptive" not in cpu.defences and "idfr_adaptive" in adaptive.defences
    assert {"comdefend", "nrp", "adp", "soap"} <= set(cpu.defences)


def test_second_evaluator_images_flag_rejects_typos():
    import argparse

    choice = _benchmark_module("adaptive_torchattacks").image_choice
    assert choice("first1000") == "first1000" and choice("whitebox") == "whitebox"
    for bad in ("firs", "first0", "first", "first-5", "all"):
        with pytest.raises(argparse.ArgumentTypeError, match="firstN"):
            choice(bad)


def test_goals_judge_the_second_evaluator_on_the_largest_shared_sample(tmp_path, capsys):
    import json

    goals = _benchmark_module("goals")
    s = {"adaptive_nb_epochs": 2, "adaptive_batch_size": 16, "adaptive_trades_beta": 6.0,
         "adaptive_train_restorer": True}
    fast = {"model": "small_cnn", "fast_at_eps": 0.0627}
    result = {"metadata": {"models": {"idfr_adaptive": {"settings": s}, "fast_at": {"settings": fast}}}}
    fit = {"epochs": 2, "batch_size": 16, "trades_beta": 6.0, "fr_joint": True, "weights": "w"}

    def row(defence, n, acc, **extra):
        return {"defence": defence, "n": n, "images": f"test 0-{n - 1}", "torchattacks": "3.5.1", "command": "c",
                "torchattacks APGD-CE+DLR 8/255": acc, "torchattacks APGD-CE+DLR 16/255": acc - 10, **extra}

    theirs = {**fast, "weights": "f"}
    rows = [row("adaptive ID+FR", 200, 78.5, adaptive_fit=fit), row("Fast AT", 200, 82.0, fast_at=theirs),
            row("adaptive ID+FR", 1000, 83.0, adaptive_fit=fit), row("Fast AT", 1000, 81.0, fast_at=theirs),
            row("adaptive ID+FR", 5000, 99.0, adaptive_fit=fit)]  # only ours at n = 5000: not a comparison
    (tmp_path / "torchattacks.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    goals.second_evaluator(str(tmp_path / "results.json"), result)
    out = capsys.readouterr().out
    assert "n = 1000" in out and "| 83.0 | Fast AT 81.0 | yes |" in out and "99.0" not in out


def test_goals_check_adp_with_the_second_evaluator_only_for_this_runs_fit(tmp_path, capsys):
    import json

    goals = _benchmark_module("goals")
    fit = {"defence": "adp", "nb_epochs": 20, "fit_n": 4000}
    result = {"metadata": {"models": {"baselines": {"adp": {"settings": fit}}}}}
    acc = {("black-box", "adp", "bim", 8): 78.0}
    rows = [{"defence": "ADP (EOT 10, one draw per prediction)", "n": 200, "command": "ours",
             "torchattacks APGD-CE+DLR (EOT 10) 8/255": 64.5, "adp": {**fit, "weights": "w"}},
            {"defence": "ADP (EOT 20, one draw per prediction)", "n": 200, "command": "another fit",
             "torchattacks APGD-CE+DLR (EOT 20) 8/255": 1.0, "adp": {**fit, "nb_epochs": 5}}]
    (tmp_path / "torchattacks.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    goals._adp_second_evaluator(str(tmp_path / "results.json"), result, acc)
    out = capsys.readouterr().out
    assert "| `ours` | 200 | 8/255 | 78.0 | 64.5 | 13.5 | yes |" in out and "another fit" not in out
    # a run whose metadata names its ADP's weights: a row of the same settings but other weights is another fit
    result["metadata"]["models"]["baselines"]["adp"]["weights"] = "other"
    goals._adp_second_evaluator(str(tmp_path / "results.json"), result, acc)
    assert capsys.readouterr().out == ""
    result["metadata"]["models"]["baselines"]["adp"]["weights"] = "w"
    goals._adp_second_evaluator(str(tmp_path / "results.json"), result, acc)
    assert "| `ours` | 200 |" in capsys.readouterr().out


def test_adaptive_benchmark_runs_the_library_recipe():
    """fashion_mnist_adaptive's flags are ADAPTIVE_RECIPES["trades_joint"] (defined once; a drift fails here)."""
    from art_idfr.training.adaptive import ADAPTIVE_RECIPES

    cfg = _config(build_parser().parse_args(["demo", *_demo_args("fashion_mnist_adaptive"), "--out", "unused"]))
    kw = cfg.adaptive.kwargs()
    for key, value in ADAPTIVE_RECIPES["trades_joint"].items():
        assert kw[key] == pytest.approx(value), key


def test_unfrozen_bound_attack_stays_in_the_ball_and_its_losses_match_their_formulas():
    """benchmarks/unfrozen_bound.py (the frozen-target diagnostic): PGD stays in the ε-ball and [0, 1] and raises the
    CE; the trainer's terms and MART's are what their docstrings say."""
    import types

    import torch
    import torch.nn.functional as F

    ub = _benchmark_module("unfrozen_bound")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3)).eval()
    x, y = torch.rand(8, 3, 2, 2), torch.randint(0, 3, (8,))
    x_adv = ub.pgd(model, x, y, 0.1, steps=5, step=0.05, generator=torch.Generator().manual_seed(0))
    assert float((x_adv - x).abs().max()) <= 0.1 + 1e-6 and 0 <= float(x_adv.min()) and float(x_adv.max()) <= 1
    assert F.cross_entropy(model(x_adv), y) > F.cross_entropy(model(x), y)
    adv, clean, p0 = torch.randn(8, 3), torch.randn(8, 3), F.softmax(torch.randn(8, 3), dim=1)
    a = types.SimpleNamespace(adversarial_weight=0.5, trades_beta=2.0)
    kl = (p0 * (p0.log() - F.log_softmax(adv, dim=1))).sum(1)
    assert torch.allclose(ub.trades(adv, clean, y, p0, a), 0.5 * F.cross_entropy(adv, y) + 2.0 * kl.mean())
    confident = F.one_hot(y, 3).float() * 50  # the clean prediction sure of the label: MART's KL weight ≈ 0
    p_adv = F.softmax(adv, dim=1)
    worst_other = p_adv.masked_fill(F.one_hot(y, 3).bool(), 0).max(1).values
    boosted = F.cross_entropy(adv, y) - torch.log(1.0001 - worst_other).mean()
    assert torch.allclose(ub.mart(adv, confident, y, p0, a), 0.5 * boosted, atol=1e-5)
    assert ub.mart(adv, -confident, y, p0, a) > ub.mart(adv, confident, y, p0, a)  # misclassified: the KL counts


def test_unfrozen_bound_builds_the_per_layer_ranks_it_is_given():
    """unfrozen_bound.py --ranks: the named layer gets its own rank (the count of trained parameters changes by
    exactly that layer's delta), the record carries the ranks, and a name that carries no delta is refused."""
    import types

    import pytest
    import torch

    ub = _benchmark_module("unfrozen_bound")
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(4 * 6 * 6, 3)).eval()

    def sizes(ranks):
        a = types.SimpleNamespace(trained="lora", rank=1, ranks=ranks, width=0.25, norm_affine=False,
                                  input_shape=(1, 6, 6), eval_norms=False)
        return ub.trainable(model, a)[1]

    uniform, ranked = sizes(None), sizes({"3": 2})
    assert ranked["trained_parameters"] - uniform["trained_parameters"] == 144 + 3  # one more rank: A row + B column
    assert (ranked["inner"]["rank"], ranked["inner"]["ranks"]) == (1, {"3": 2}) and uniform["inner"]["ranks"] is None
    with pytest.raises(ValueError):
        sizes({"1": 2})  # a ReLU carries no delta


def test_goals_judge_each_setting_by_its_own_adaptive_goals(capsys):
    """The issue's goals differ per setting: CIFAR-10 CPU allows 5 clean points and asks for 8/255 only; paper scale
    asks for absolute numbers; an unknown dataset is refused, not judged by another setting's goals."""
    goals = _benchmark_module("goals")

    def rec(tm, key, attack, eps, acc):
        return {"threat_model": tm, "defence_key": key, "attack": attack, "eps": eps / 255, "accuracy": acc / 100}

    records = [rec("black-box", "none", "clean", 0, 70.0), rec("black-box", "idfr_adaptive", "clean", 0, 66.0),
               rec("black-box", "idfr", "clean", 0, 70.0), rec("black-box", "idfr", "bim", 8, 50.0),
               rec("black-box", "idfr_adaptive", "bim", 8, 40.0),
               rec("white-box", "idfr_adaptive", "autoattack", 8, 31.0),
               rec("white-box", "fast_at", "autoattack", 8, 30.0),
               rec("white-box", "idfr_adaptive", "autoattack", 16, 5.0),
               rec("white-box", "fast_at", "autoattack", 16, 13.0)]

    def judged(dataset, preset):
        goals.adaptive_goals({"records": records, "metadata": {"dataset": dataset, "preset": preset}})
        return capsys.readouterr().out

    cifar = judged("cifar10_jpeg", "cpu")
    assert "`cifar10_cpu` goals" in cifar and "| clean ≥ undefended − 5 | 66.0 | 70.0 − 5 | yes |" in cifar
    assert "| 31.0 | Fast AT 30.0 | yes |" in cifar and "16/255" not in cifar and "black-box" not in cifar
    fmnist = judged("fashion_mnist_idx", "cpu")
    assert "| clean ≥ undefended − 2 | 66.0 | 70.0 − 2 | NO |" in fmnist and "| 5.0 | Fast AT 13.0 | NO |" in fmnist
    assert "| black-box BIM 8/255 ≥ ID+FR − 2 | 40.0 | ID+FR 50.0 | NO |" in fmnist
    paper = judged("cifar10_jpeg", "paper")
    assert "| clean ≥ 80 | 66.0 | 80 | NO |" in paper and "| white-box AutoAttack 8/255 ≥ 43 | 31.0 | 43 | NO |" in paper
    with pytest.raises(ValueError, match="No adaptive goals for dataset 'mnist5k'"):
        judged("mnist5k", "cpu")


def test_goals_judge_idfr_against_each_paper_baseline_and_their_whitebox_rows(capsys):
    """Issue 42: IDFR above each of the paper's baselines per black-box column (counted), and ADP / SOAP white-box BIM
    judged against their black-box BIM (a gap below WHITEBOX_GAP is not consistent with the adaptive evaluations)."""
    goals = _benchmark_module("goals")

    def rec(tm, key, attack, eps, acc):
        return {"threat_model": tm, "defence_key": key, "attack": attack, "eps": eps / 255, "accuracy": acc / 100}

    records = [rec("black-box", k, "clean", 0, a) for k, a in (("idfr", 90.0), ("adp", 85.0), ("soap", 92.0))]
    records += [rec("black-box", k, "bim", e, a) for k, e, a in
                (("idfr", 8, 80.0), ("adp", 8, 70.0), ("soap", 8, 81.0), ("idfr", 16, 60.0), ("adp", 16, 61.0),
                 ("soap", 16, 50.0))]
    records += [rec("white-box", "adp", "bim", 8, 30.0), rec("white-box", "soap", "bim", 8, 75.0)]
    goals.paper_baseline_goals({"records": records})
    out = capsys.readouterr().out
    assert "| clean | 90.0 | 85.0 (below IDFR) | 92.0 (NOT below IDFR) |" in out
    assert "| BIM 16/255 | 60.0 | 61.0 (NOT below IDFR) | 50.0 (below IDFR) |" in out
    assert "| IDFR above in | | 2 of 3 | 1 of 3 |" in out
    assert "| ADP | 8/255 | 70.0 | 30.0 | 40.0 | yes |" in out and "| SOAP | 8/255 | 81.0 | 75.0 | 6.0 | NO |" in out
    assert "16/255 | 61.0" not in out.split("White-box")[1]  # no white-box record at 16/255: no row
    assert "Cost of each baseline" not in out  # no fit metadata: no cost table
    fits = {"adp": {"settings": {"nb_epochs": 20}, "fit_n": 4000, "fit_seconds": 153.4,
                    "inference_passes": "1 score-network pass per image and random draw"}}
    goals.paper_baseline_goals({"records": records, "metadata": {"models": {"baselines": fits}}})
    out = capsys.readouterr().out
    assert "| ADP | 4000 images | 20 | 153 | 1 score-network pass per image and random draw |" in out
    goals.paper_baseline_goals({"records": [r for r in records if r["defence_key"] == "idfr"]})
    assert capsys.readouterr().out == ""  # no baseline in the run: no section


def test_paper_numbers_sit_beside_ours_for_cifar10_runs_only(tmp_path):
    """docs/results.md's "paper | ours" tables (issue 42): Table 1's column chosen by our target, Table 4 for
    white-box, one row per defence our run has (its clean accuracy from the black-box records), nothing for another
    dataset; the quoted rows have all 10 numbers (checked against the paper's text when they were typed)."""
    tables = _benchmark_module("paper_tables")
    assert all(len(r) == 10 for t in (*tables.TABLE1.values(), tables.TABLE4) for r in t.values())
    assert tables.TABLE1["ResNet18"]["ADP"][:2] == [83.6, 75.1] and tables.TABLE4["SOAP"][-1] == 69.2

    def write(dataset, model):
        recs = [{"threat_model": tm, "defence_key": k, "attack": a, "eps": e / 255, "accuracy": acc / 100}
                for tm, k, a, e, acc in (("black-box", "soap", "clean", 0, 61.0), ("black-box", "soap", "bim", 8, 55.0),
                                         ("white-box", "soap", "bim", 8, 3.0), ("black-box", "none", "bim", 8, 17.0))]
        path = tmp_path / f"{dataset}_{model}" / "results.json"
        path.parent.mkdir()
        path.write_text(json.dumps({"metadata": {"dataset": dataset, "model": model}, "records": recs}))
        return tables.paper_beside_ours(str(path))

    out = write("cifar10_jpeg", "resnet18_cifar (width 0.25)")
    black, white = out.split("**white-box**")
    assert "Table 1, ResNet18" in black and "| SOAP | 90.1 / 61.0 | 70.7 / — |" in black
    assert "| BIM 8/255 |" in black and "71.9 / 55.0" in black and "| No Defense | 93.2 / — |" in black
    assert "| SOAP | 90.3 / 61.0 |" in white and "71.4 / 3.0" in white and "No Defense" not in white
    assert "Table 1, VGG16" in write("cifar10", "vgg16_bn_cifar")
    assert write("fashion_mnist_idx", "small_cnn (width 1)") == "" and write("cifar10_jpeg", "small_cnn") == ""


def test_goals_judge_the_inner_row_by_the_same_goals_and_its_size(capsys):
    """Issue 41: the idfr_inner row gets its setting's adaptive goals (no ID+FR row: the black-box goal says not
    measured) and the size goal (added parameters <= 10% of the target's), with its own masking checks."""
    goals = _benchmark_module("goals")

    def rec(tm, key, attack, eps, acc):
        return {"threat_model": tm, "defence_key": key, "attack": attack, "eps": eps / 255, "accuracy": acc / 100}

    records = [rec("black-box", "none", "clean", 0, 91.0), rec("black-box", "idfr_inner", "clean", 0, 89.5),
               rec("black-box", "idfr_inner", "bim", 8, 85.0), rec("white-box", "idfr_inner", "autoattack", 8, 80.0),
               rec("white-box", "fast_at", "autoattack", 8, 79.0)]
    meta = {"dataset": "fashion_mnist_idx", "preset": "cpu", "models": {"idfr_inner": {"inner": {
        "fraction_of_target": 0.052, "parameters": 36436, "target_parameters": 701466}}}}
    goals.adaptive_goals({"records": records, "metadata": meta,
                          "sanity_checks": {"failed_defences": {"idfr_inner": ["white-box <= black-box"]}}})
    out = capsys.readouterr().out
    assert "Restorers inside the target (issue 41)" in out and "Adaptive ID+FR" not in out
    assert "| clean ≥ undefended − 2 | 89.5 | 91.0 − 2 | yes |" in out and "| 80.0 | Fast AT 79.0 | yes |" in out
    assert "| black-box BIM 8/255 ≥ ID+FR − 2 | 85.0 | – | not measured (no ID+FR row) |" in out
    assert "| added parameters ≤ 10% of the target's | 5.2% (36,436) | 701,466 | yes |" in out
    assert "| gradient-masking checks passed | FAILED: white-box <= black-box | — | NO |" in out


def test_screen_adaptive_refuses_inner_flags_it_would_ignore(capsys):
    """screen_adaptive.py fits the adaptive ID+FR only: an --inner-* flag is an error naming the script that screens
    the restorers inside the target, not a silently ignored setting (a 45-minute screen once ran without it)."""
    screen = _benchmark_module("screen_adaptive")
    with pytest.raises(SystemExit):
        screen.main(["fashion_mnist_inner", "--name", "r16", "--inner-rank", "16"])
    assert "tune_adaptive.py" in capsys.readouterr().err


def test_second_evaluator_attacks_adp_through_its_random_purification_with_eot():
    """The ADP row of adaptive_torchattacks: the purifier before the target as one module, APGD with EOT runs through
    it (gradients reach the input through the random draw) and yields an accuracy in [0, 100]."""
    import torch
    from torch import nn

    from art_idfr.experiments.baselines import ADP

    mod = _benchmark_module("adaptive_torchattacks")
    torch.manual_seed(0)
    adp = ADP((1, 8, 8), width=4, depth=2, noise_std=0.1, noise_seed=0, device_type="cpu")
    adp._is_fitted = True
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3)).eval()
    module = mod.PurifiedModel(adp, model)
    x = torch.rand(6, 1, 8, 8, requires_grad=True)
    module(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    y = model(x.detach()).argmax(1)
    acc = mod.apgd_accuracy(module, x.detach(), y, 8 / 255, eot_iter=2)
    assert 0.0 <= acc <= 100.0
    assert mod.apgd_accuracy(module, x.detach(), y, 1.0, eot_iter=2) < 100.0  # eps 1: the attack does succeed
    row = mod.measure(module, x.detach(), y, eot_iter=2, eps=(8,))  # --eps 8: one budget only
    assert set(row) == {"clean", "torchattacks APGD-CE+DLR (EOT 2) 8/255"}


def test_run_times_sums_the_fits_and_the_stored_cell_seconds(tmp_path, capsys):
    """benchmarks/run_times.py: every recorded fit (a model's epochs, the IDFR fit, a baseline) and the seconds each
    cell file keeps, summed per (threat model, defence), largest first; a cell without a time counts as untimed; a
    folder with neither is a clear error."""
    import json

    import numpy as np

    from art_idfr.experiments.evaluation.cells import FOLDER, CellCache

    cache = CellCache(str(tmp_path / FOLDER), {"run": 1})
    for i, (summary, seconds) in enumerate([("white-box: ADP (EOT 4), bim 8/255", 30.0),
                                            ("white-box: ADP (EOT 4), cw 8/255", 12.5),
                                            ("query: none, square 8/255", 2.0), ("masking: none, pgd 0.5", None)]):
        cache.put({"i": i}, np.ones(3, bool), summary, seconds=seconds)
    for rel, doc in [("target/model.json", {"history": {"seconds": [10.0, 20.0]}, "train_seconds": 1.0}),
                     ("fast_at/model.json", {"train_seconds": 5.0}), ("idfr/idfr.json", {"fit_seconds": 60.0}),
                     ("baselines/soap/meta.json", {"fit_seconds": 100.0}), ("baselines/adp/meta.json", {})]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(json.dumps(doc))
    mod = _benchmark_module("run_times")
    assert mod.main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    fits, cells = out.split("### Evaluation cells")
    assert fits.splitlines()[4:9] == ["| baseline: soap | 100 | 51.3% |", "| IDFR (Algorithm 1 + 2) | 60 | 30.8% |",
                                      "| model: target | 30 | 15.4% |", "| model: fast_at | 5 | 2.6% |",
                                      "| **total** | **195** | |"]
    rows = cells.strip().splitlines()
    assert rows[0].startswith("Every cell in the folder")  # no results.json names the run's cells
    assert rows[4] == "| white-box | ADP (EOT 4) | 42 | 95.5% | 2 (2) |" and rows[5].startswith("| query | none | 2 |")
    assert rows[-3] == "| **total** | | **44** | | 4 (3) |" and rows[-1] == "fits 195 s + timed cells 44 s = 240 s"
    assert mod.main([str(tmp_path), "--by", "defence"]) == 0 and "| all | none | 2 |" in capsys.readouterr().out
    # a run's report names its cells: another configuration's cells in the folder (here the 30 s ADP one) drop out
    used = [cache.key({"i": i}) for i in (1, 2, 3)]
    (tmp_path / "results.partial.json").write_text(json.dumps({"metadata": {"cell_keys": used}}))
    assert mod.main([str(tmp_path)]) == 0
    rows = capsys.readouterr().out.split("### Evaluation cells")[1].strip().splitlines()
    assert rows[0].startswith("The 3 cells that results.partial.json names")
    assert rows[4] == "| white-box | ADP (EOT 4) | 12 | 86.2% | 1 (1) |" and rows[-1].endswith("= 210 s")
    with pytest.raises(SystemExit):
        mod.main([str(tmp_path / "nowhere")])
    # an IDFR record from before fit_seconds_covers timed the extra AE sources' training too: the label says so
    (tmp_path / "idfr/idfr.json").write_text(json.dumps({"fit_seconds": 60.0, "idfr_source": {"model": "vgg"}}))
    assert "| IDFR (Algorithm 1 + 2), with the AE sources' training if trained then (counted twice) | 60 |" in (
        "\n".join(f"| {k} | {v:,.0f} |" for k, v in mod.fit_seconds(str(tmp_path)).items()))
    (tmp_path / "idfr/idfr.json").write_text(json.dumps({"fit_seconds": 60.0, "idfr_source": {"model": "vgg"},
                                                         "fit_seconds_covers": "crafting, ID, FR"}))
    assert mod.fit_seconds(str(tmp_path))["IDFR (Algorithm 1 + 2)"] == 60.0


def test_goals_report_a_baseline_at_chance_as_a_failed_fit_not_as_beaten():
    """A baseline whose fit collapsed (clean accuracy at chance) must not count as one IDFR is above."""
    goals = _benchmark_module("goals")

    def rec(defence, acc, attack="clean"):
        return {"threat_model": "black-box", "defence_key": defence, "attack": attack, "accuracy": acc}

    result = {"metadata": {"dataset_description": "fashion_mnist_idx: 1000 test images, 10 classes"},
              "records": [rec("comdefend", 0.10), rec("nrp", 0.874), rec("adp", 0.115), rec("soap", 0.10, "bim")]}
    assert goals.collapsed_baselines(result, ["comdefend", "nrp", "adp", "soap"]) == {"comdefend": 10.0,
                                                                                       "adp": 11.5}
    result["metadata"]["dataset_description"] = "two: 2 classes"
    assert goals.collapsed_baselines(result, ["comdefend", "nrp", "adp"]) == {"comdefend": 10.0, "adp": 11.5}
    assert goals.collapsed_baselines(result, ["nrp"]) == {}


def test_goals_cost_table_says_when_a_baseline_kept_an_earlier_epoch(capsys):
    """A diverged fit rescued by the guard (its best epoch's weights) is named in the cost table, with its epoch."""
    from art_idfr.experiments.cli_commands import _restored_epoch

    goals = _benchmark_module("goals")
    fitted = {"training": {"fit_seconds": 325.0, "restored_epoch": 12}}
    assert _restored_epoch(fitted) == {"restored_epoch": 12}
    assert _restored_epoch({"training": {"fit_seconds": 40.0}}) == {} == _restored_epoch({})
    common = {"settings": {"nb_epochs": 20}, "fit_n": 4000, "fit_seconds": 325.0, "inference_passes": "2 passes"}
    goals._baseline_costs({"comdefend": common | _restored_epoch(fitted), "nrp": dict(common)})
    rows = {line.split("|")[1].strip(): line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")}
    assert "| 20 (diverged; epoch 12's weights kept) | 325 |" in rows["ComDefend"]
    assert "| 20 | 325 |" in rows["NRP"]
