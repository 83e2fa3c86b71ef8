"""EvalConfig's shape: nested sub-configs named like the keywords they feed, flat names, presets, generated flags."""
import dataclasses
import inspect

import pytest

from art_idfr.experiments.evaluation.config import (
    SUB_CONFIGS,
    EvalConfig,
    FastATConfig,
    IDConfig,
    flat_fields,
)


def test_sub_configs_use_the_keyword_names_of_what_they_feed():
    from art_idfr import FeatureRestorer, IDFRDenoiser
    from art_idfr.experiments.models import make_model, train_model

    def names(fn):
        return set(inspect.signature(fn).parameters)

    assert {f.name for f in dataclasses.fields(SUB_CONFIGS["id"])} <= names(IDFRDenoiser.__init__)
    assert {f.name for f in dataclasses.fields(SUB_CONFIGS["fr"])} <= names(FeatureRestorer.__init__)
    assert {f.name for f in dataclasses.fields(SUB_CONFIGS["train"])} <= names(train_model)
    assert {"width"} <= names(make_model) and {"epochs"} <= names(train_model)
    # the new knobs default to the library's defaults (results do not change)
    for cls, fn in ((SUB_CONFIGS["id"], IDFRDenoiser.__init__), (SUB_CONFIGS["fr"], FeatureRestorer.__init__)):
        params = inspect.signature(fn).parameters
        for f in dataclasses.fields(cls):
            if f.metadata.get("cache_if_set"):
                assert f.default == params[f.name].default, (cls.__name__, f.name)


def test_overrides_nested_flat_and_merged_with_the_preset():
    a = EvalConfig.preset("paper", id=dict(nb_epochs=2), fr_lr=5e-4)
    assert a.id.nb_epochs == 2 and a.id_epochs == 2 and a.id.width == 1.0 and a.id.learning_rate == 1e-3
    assert a.fr.learning_rate == 5e-4 and a.fr_lr == 5e-4 and a.fr.nb_epochs == 80
    assert EvalConfig.preset("paper", id_epochs=2) == EvalConfig.preset("paper", id={"nb_epochs": 2})
    b = a.replace(id=IDConfig(nb_epochs=5), id_width=0.75)  # an instance replaces the group; flat names on top
    assert (b.id.nb_epochs, b.id.width, b.id.learning_rate) == (5, 0.75, IDConfig().learning_rate)
    assert b.fast_at == FastATConfig(nb_epochs=15) and b.fast_at_epochs == 15
    with pytest.raises(ValueError, match=r"Unknown EvalConfig field"):
        EvalConfig.preset("cpu", id_width_typo=1)
    with pytest.raises(ValueError, match=r"Unknown IDConfig field\(s\) \['epochs'\]"):
        EvalConfig.preset("cpu", id=dict(epochs=1))
    with pytest.raises(AttributeError):
        a.id_epochs = 3  # flat names are read-only
    with pytest.raises(ValueError, match="Unknown id_residual_head"):
        EvalConfig(id_residual_head="mlp")
    with pytest.raises(ValueError, match="Unknown id_architecture 'big'. Valid: table6, light, slim"):
        EvalConfig(id_architecture="big")
    assert EvalConfig.preset("cpu").id.architecture == "table6"
    assert EvalConfig.preset("cpu", id_architecture="light").id.kwargs()["architecture"] == "light"


def test_to_dict_is_nested_and_round_trips():
    cfg = EvalConfig.preset("tiny", idfr_source_model="small_cnn", fr_widths="32,16").resolved(1)
    d = cfg.to_dict()
    assert d["id"]["nb_epochs"] == 1 and d["fr"]["widths"] == [32, 16] and d["target"]["model"] == "small_cnn"
    assert d["idfr_source"]["model"] == ["small_cnn"] and d["fast_at"]["eps"] == pytest.approx(0.3)
    assert EvalConfig(**d) == cfg


def test_every_field_has_a_flag_and_old_spellings_stay():
    from art_idfr.experiments.cli import SECTION_TITLES, _config, build_parser, config_flags

    flags = {f: kw["dest"] for s in SECTION_TITLES for fl, kw in config_flags(s) for f in fl}
    hand_written = {"dataset", "data_root", "download", "seed", "device", "preset_name", "model"}
    assert set(flat_fields()) - hand_written <= set(flags.values())
    for old, dest in {"--id-width": "id_width", "--id-epochs": "id_epochs", "--id-lr": "id_lr", "--id-sigma": "id_sigma",
                      "--fr-epochs": "fr_epochs", "--fr-lr": "fr_lr", "--width": "width", "--fast-at-epochs":
                      "fast_at_epochs", "--fit-n": "fit_n", "--idfr-eps": "idfr_eps", "--target-epochs":
                      "target_epochs", "--surrogate-epochs": "surrogate_epochs", "--batch-size": "batch_size"}.items():
        assert flags[old] == dest
    args = build_parser().parse_args(["demo", "--fr-lr", "0.01", "--id-nb-epochs", "7", "--no-fr-skips",
                                      "--id-residual-head", "bn_relu", "--fast-at-epochs", "2", "--width", "0.75",
                                      "--id-architecture", "light"])
    cfg = _config(args)
    assert cfg.id.architecture == "light"
    assert (cfg.fr.learning_rate, cfg.id.nb_epochs, cfg.fr.skips, cfg.id.residual_head) == (0.01, 7, False, "bn_relu")
    assert (cfg.fast_at.nb_epochs, cfg.target.width) == (2, 0.75)


def test_adaptive_restarts_parse_and_reject_non_positive_epochs():
    assert EvalConfig.preset("tiny", adaptive_restarts="1,2").adaptive_restarts == (1, 2)
    assert EvalConfig.preset("tiny").adaptive_restarts == ()
    for bad in ("0", "1,x", (1.5,)):
        with pytest.raises(ValueError, match="adaptive_restarts"):
            EvalConfig.preset("tiny", adaptive_restarts=bad)


def test_adaptive_curriculum_gives_each_run_its_budget_and_needs_one_per_restart():
    cfg = EvalConfig.preset("tiny", adaptive_restarts="1,1", adaptive_curriculum_eps="2/255,4/255").resolved(3)
    assert cfg.adaptive_curriculum_eps == (2 / 255, 4 / 255)
    assert cfg.adaptive_stage_eps() == (2 / 255, 4 / 255, 8 / 255)  # the last run trains at adaptive_eps
    assert EvalConfig.preset("tiny", adaptive_restarts="1").resolved(1).adaptive_stage_eps() == (16 / 255,) * 2
    assert EvalConfig.preset("tiny").resolved(1).adaptive_stage_eps() == (16 / 255,)
    with pytest.raises(ValueError, match="one per restart"):
        EvalConfig.preset("tiny", adaptive_restarts="1", adaptive_curriculum_eps="2/255,4/255")
    with pytest.raises(ValueError, match="one per restart"):
        EvalConfig.preset("tiny", adaptive_curriculum_eps="2/255")  # no restart to hand the next budget to
    with pytest.raises(ValueError, match="epsilon"):
        EvalConfig.preset("tiny", adaptive_restarts="1", adaptive_curriculum_eps="0")
