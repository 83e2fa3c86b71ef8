"""Gradient-masking checks (experiments/evaluation/masking.py): they fail on a masked defence, pass on an honest one,
and a defence that fails has its white-box/query numbers marked as failed in the reports."""
from types import SimpleNamespace

import numpy as np
import pytest
from art.attacks.evasion import ProjectedGradientDescent
from torch import nn

from art_idfr.experiments.evaluation.config import EvalConfig
from art_idfr.experiments.evaluation.defences import GRADIENT_EXACT, DefendedClassifier
from art_idfr.experiments.evaluation.masking import (
    check_eps,
    failed_defences,
    gradient_masking_checks,
    sign_test_p,
)
from art_idfr.experiments.evaluation.reports import FAILED_MARK, markdown_tables
from art_idfr.experiments.evaluation.result import EvaluationResult
from conftest import make_classifier


class ZeroGradient(nn.Module):
    """Passes x through unchanged with a zero input gradient: the textbook gradient-masking defence."""

    def forward(self, x):
        return x.detach() + 0 * x


def _suite(classifiers, x, y, eps, cfg):
    """A stand-in for an Evaluation whose white-box table ran PGD at ``eps`` on every classifier."""
    per_sample = {}
    for key, clf in classifiers.items():
        atk = ProjectedGradientDescent(clf, eps=eps, eps_step=eps / 4, max_iter=10, verbose=False)
        x_adv = atk.generate(x, y=np.eye(10, dtype=np.float32)[y])
        per_sample[("white-box", key, "pgd", eps)] = clf.predict(x_adv).argmax(1) == y
    defended = {k: DefendedClassifier(k, k, c, GRADIENT_EXACT, "") for k, c in classifiers.items()}
    return SimpleNamespace(cfg=cfg, defended=defended, x_eval=x, y_eval=y, onehot=np.eye(10, dtype=np.float32)[y],
                           wb_idx=np.arange(len(y)), per_sample=per_sample,
                           measure_cell=lambda dc, cell, images, compute: compute())


@pytest.fixture(scope="module")
def masked_and_honest(trained_target, mnist_small):
    _, _, x_test, y_test = mnist_small
    x, y = x_test[:60], y_test[:60]
    masked = make_classifier(nn.Sequential(ZeroGradient(), trained_target.model))
    cfg = EvalConfig.preset("tiny", eps=(0.3,), attack_iter=10, sanity_square_iter=300, sanity_eps=0.5,
                            attack_batch_size=64, defences=("none", "id")).resolved(1)
    suite = _suite({"none": trained_target, "id": masked}, x, y, 0.3, cfg)
    return suite, gradient_masking_checks(suite)


def test_masked_defence_fails_and_honest_target_passes(masked_and_honest):
    suite, (checks, warnings) = masked_and_honest
    square = checks["gradient_free_not_stronger"]["per_defence"]
    assert square["id"]["status"] == "FAIL" and square["id"]["square_accuracy"] < square["id"]["gradient_accuracy"]
    assert square["none"]["status"] == "PASS"
    assert checks["large_eps_to_zero"]["per_defence"]["id"]["status"] == "FAIL"  # zero gradients: PGD cannot win
    assert checks["large_eps_to_zero"]["per_defence"]["none"]["status"] == "PASS"
    assert checks["more_steps_not_better"]["per_defence"]["none"]["status"] == "PASS"
    assert "id" in failed_defences(checks) and "none" not in failed_defences(checks)
    assert any("FAILED on id" in w for w in warnings)


def test_failed_defence_is_marked_in_the_white_box_table_only(masked_and_honest):
    suite, (checks, _) = masked_and_honest
    recs = []
    for tm in ("black-box", "white-box"):
        for key in ("none", "id"):
            for attack, eps, acc in (("clean", 0.0, 0.9), ("pgd", 0.3, 0.5)):
                recs.append({"threat_model": tm, "defence_key": key, "defence": key, "attack": attack, "eps": eps,
                             "accuracy": acc, "n": 60, "source": "s", "gradient": "exact"})
    sanity = {"checks": checks, "warnings": [], "failed_defences": failed_defences(checks), "passed": False}
    text = markdown_tables(EvaluationResult(recs, {"defences": [{"key": "none"}, {"key": "id"}]}, sanity, suite.cfg,
                                            {}))
    black, white = text.split("### Threat model: white-box")
    assert FAILED_MARK not in black
    assert f"| id {FAILED_MARK} |" in white and f"| none {FAILED_MARK}" not in white
    assert "not evidence of robustness" in white


def test_sanity_defences_choose_which_defences_are_checked():
    from art_idfr.experiments.evaluation.cells import NOT_IN_CELLS
    from art_idfr.experiments.evaluation.masking import checked_defences

    keys = ("none", "id", "idfr", "fast_at", "comdefend", "adp", "soap")
    defended = {k: None for k in keys}  # table order
    cfg = EvalConfig.preset("tiny", defences=keys).resolved(1)
    assert checked_defences(SimpleNamespace(cfg=cfg, defended=defended)) == ["none", "id", "idfr", "fast_at"]
    cfg = EvalConfig.preset("tiny", defences=keys, sanity_defences="none,idfr,fast_at,ComDefend,adp").resolved(1)
    assert checked_defences(SimpleNamespace(cfg=cfg, defended=defended)) == ["none", "idfr", "fast_at", "comdefend",
                                                                            "adp"]
    assert checked_defences(SimpleNamespace(cfg=cfg.replace(threat_models=("black-box",)), defended=defended)) == []
    assert "sanity_defences" in NOT_IN_CELLS  # adding a defence to the checks keeps every cached cell
    with pytest.raises(ValueError, match="Unknown defence"):
        EvalConfig.preset("tiny", sanity_defences="none,comdefnd")


def test_sign_test_and_check_eps():
    assert sign_test_p(0, 0) == 1.0 and sign_test_p(10, 0) < 0.01 and sign_test_p(3, 3) > 0.5
    cfg = EvalConfig.preset("tiny", eps=(4 / 255, 8 / 255, 16 / 255, 32 / 255), adaptive_eps=16 / 255).resolved(1)
    assert check_eps(cfg) == pytest.approx(16 / 255)
    assert check_eps(cfg.replace(adaptive_eps=0.2)) == pytest.approx(16 / 255)  # not a table budget: largest <= 16
    assert check_eps(cfg.replace(eps=(0.3,))) == pytest.approx(0.3)


def test_adaptive_config_knobs_reach_the_trainer_and_the_cli():
    import inspect

    from art_idfr.experiments.cli import build_parser
    from art_idfr.training.adaptive import AdaptiveDenoiserTrainer

    cfg = EvalConfig.preset("cpu", adaptive_trades_beta=6.0, adaptive_nb_epochs=3).resolved(3)
    assert cfg.adaptive.eps == pytest.approx(8 / 255) and cfg.adaptive.trades_beta == 6.0
    params = inspect.signature(AdaptiveDenoiserTrainer).parameters
    assert set(cfg.adaptive.kwargs()) <= set(params)  # field names are the constructor's
    args = build_parser().parse_args(["demo", "--adaptive-trades-beta", "2", "--adaptive-attack", "fgsm_rs",
                                      "--fr-lr", "0.01", "--defences", "none,adaptive"])
    assert args.adaptive_trades_beta == 2.0 and args.adaptive_attack == "fgsm_rs" and args.fr_lr == 0.01
    assert args.defences == ("none", "idfr_adaptive")
    with pytest.raises(ValueError, match="autoattack_defences|Unknown defence"):
        EvalConfig.preset("cpu", autoattack_defences=("magic",))


def test_autoattack_members_and_square_budget(trained_target):
    from art_idfr.experiments.attacks import make_attack

    aa = make_attack("autoattack", trained_target, 0.1, max_iter=37, batch_size=16, verbose=False)
    names = [type(a).__name__ for a in aa.attacks]
    assert names == ["AutoProjectedGradientDescent", "AutoProjectedGradientDescent", "DeepFool", "SquareAttack"]
    assert aa.attacks[-1].max_iter == 37 and aa.attacks[-1].nb_restarts == 1
    assert {a.loss_type for a in aa.attacks[:2]} == {"cross_entropy", "difference_logits_ratio"}


def test_the_masking_checks_list_leaves_the_evaluation_checkpoint_valid():
    """The checks run after every threat model and are never checkpointed: choosing which defences they attack keeps
    an evaluation's checkpoint (its fingerprint), and a config field that does change the records does not."""
    from art_idfr.experiments.evaluation.resume import evaluation_fingerprint

    def fingerprint(**kw):
        cfg = EvalConfig.preset("tiny", defences=("none", "id", "adp"), **kw).resolved(1).to_dict()
        return evaluation_fingerprint(cfg, "cpu", {"x": np.zeros(3)}, {}, {"torch": "t"})

    base = fingerprint()
    assert fingerprint(sanity_defences="none,id,adp") == base
    assert fingerprint(attack_iter=7) != base
