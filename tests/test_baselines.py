"""The paper's purification baselines (art_idfr.experiments.baselines): ComDefend, NRP, ADP, SOAP — tiny 8x8 data."""
import json
import os

import numpy as np
import pytest
import torch
from art.attacks.evasion import ProjectedGradientDescent
from torch import nn

from art_idfr.experiments.baselines import ADP, NRP, ComDefend, NotFittedError, SOAPModel, soap_classifier
from conftest import make_classifier, synthetic_bars, tiny_cnn

SHAPE = (1, 8, 8)
N = 16


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    # smooth-ish images (a blurred random field) so that the purifiers have structure to learn
    base = rng.random((N, 1, 4, 4)).astype(np.float32)
    x = np.kron(base, np.ones((1, 1, 2, 2), dtype=np.float32))
    y = (x.mean(axis=(1, 2, 3)) > np.median(x.mean(axis=(1, 2, 3)))).astype(np.int64)
    return x, y


def feature_net():
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU())


def build(name, **kwargs):
    common = dict(input_shape=SHAPE, device_type="cpu", batch_size=8, learning_rate=1e-2, seed=0)
    if name == "comdefend":
        return ComDefend(width=0.25, noise_std=2.0, **(common | {"learning_rate": 3e-3}), **kwargs)
    if name == "nrp":
        return NRP(width=4, nb_blocks=1, ssp_steps=1, **common, **kwargs)
    return ADP(**({"width": 8, "depth": 2, "nb_steps": 2, "sigmas": (0.5, 0.25, 0.1)} | common | kwargs))


def fit(defence, x, nb_epochs=3, **kwargs):
    extra = {"feature_network": feature_net(), "feature_layer": "1"} if isinstance(defence, NRP) else {}
    defence.fit(x, nb_epochs=nb_epochs, **extra, **kwargs)
    return defence


PREPROCESSORS = ("comdefend", "nrp", "adp")


@pytest.fixture(scope="module")
def fitted(data):
    return {name: fit(build(name), data[0]) for name in PREPROCESSORS}


@pytest.fixture(scope="module")
def soap(data):
    return _fit_any(_fresh("soap"), data)


def purify(defence, x, seed=None):
    if seed is not None:
        defence.reset_noise(seed)
    return defence(x)[0]


# ---------------------------------------------------------------------- preprocessors
@pytest.mark.parametrize("name", PREPROCESSORS)
def test_output_shape_dtype_range_and_the_training_loss_falls(name, fitted, data):
    defence = fitted[name]
    out = purify(defence, data[0], seed=0 if name == "adp" else None)
    assert out.shape == data[0].shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0 and np.isfinite(out).all()
    losses = [h["loss"] for h in defence.history]
    assert len(losses) == 3 and losses[-1] < losses[0], losses
    assert defence.training_info["fit_seconds"] > 0 and defence.training_info["n_train"] == N


@pytest.mark.parametrize("name", ["comdefend", "nrp"])
def test_deterministic_defences_repeat_themselves(name, fitted, data):
    assert np.array_equal(fitted[name](data[0])[0], fitted[name](data[0])[0])


def test_adp_is_random_and_seedable(fitted, data):
    adp = fitted["adp"]
    adp.reset_noise()  # noise_seed=None: torch's global RNG
    first, second = adp(data[0])[0], adp(data[0])[0]
    assert not np.array_equal(first, second)  # two draws differ
    assert np.array_equal(purify(adp, data[0], seed=7), purify(adp, data[0], seed=7))  # same seed, same draw
    a = ADP(SHAPE, noise_seed=3, device_type="cpu", width=8, depth=2, nb_steps=2)
    b = ADP(SHAPE, noise_seed=3, device_type="cpu", width=8, depth=2, nb_steps=2)
    a._is_fitted = b._is_fitted = True
    assert np.array_equal(a(data[0])[0], b(data[0])[0])
    assert adp.score_sigma == 0.25


def test_adp_score_steps_see_the_unclipped_noisy_image():
    """The score network was trained on unclipped noisy images: only the purified output is clipped."""
    adp = ADP(SHAPE, noise_seed=0, device_type="cpu", width=8, depth=2, nb_steps=1, step_size=1.0)
    seen = []
    adp.network.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].detach().clone()))
    adp._is_fitted = True
    out = adp(np.zeros((4, *SHAPE), dtype=np.float32))[0]
    assert seen and seen[0].min() < -0.1  # black pixels plus N(0, 0.25^2) noise, not clipped at 0
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_the_cpu_preset_epochs_of_each_baseline_are_its_own_default():
    from art_idfr.experiments.evaluation.config import EvalConfig
    from art_idfr.experiments.evaluation.pipeline.baselines import _settings

    data = _synthetic_run_data()
    target = tiny_cnn(channels=1, size=12, nb_classes=3, hidden=8)
    cfg = EvalConfig.preset("tiny", defences=("none", *BASELINE_KEYS)).resolved(1)
    epochs = {k: _settings(k, cfg, data, target)["nb_epochs"] for k in ("comdefend", "nrp", "adp")}
    assert epochs == {"comdefend": ComDefend(SHAPE).nb_epochs, "nrp": NRP(SHAPE).nb_epochs, "adp": 20}
    cfg = EvalConfig.preset("tiny", defences=("none", *BASELINE_KEYS), baselines_epochs=3).resolved(1)
    assert {_settings(k, cfg, data, target)["nb_epochs"] for k in ("comdefend", "nrp", "adp")} == {3}


def test_comdefend_code_is_binary_at_test_time(fitted, data):
    net = fitted["comdefend"].network
    x = torch.from_numpy(data[0])
    code = (torch.sigmoid(net.code_logits(x)) > 0.5).float()
    assert torch.equal(net(x), net.rec(code))


@pytest.mark.parametrize("name", PREPROCESSORS)
def test_save_load_round_trip(name, fitted, data, tmp_path):
    defence = fitted[name]
    path = str(tmp_path / f"{name}.pt")
    defence.save(path)
    loaded = type(defence).load(path, device_type="cpu")
    assert loaded.get_config() == defence.get_config() and loaded.is_fitted
    assert loaded.history == defence.history
    seed = 5 if name == "adp" else None
    assert np.array_equal(purify(loaded, data[0], seed), purify(defence, data[0], seed))
    other = ADP if name != "adp" else NRP
    with pytest.raises(ValueError, match="checkpoint"):
        other.load(path)


@pytest.mark.parametrize("name", PREPROCESSORS)
def test_bad_input_raises_clear_errors(name, fitted, data):
    defence = fitted[name]
    x = data[0]
    with pytest.raises(ValueError, match="per-sample shape"):
        defence(np.zeros((2, 3, 8, 8), np.float32))  # wrong channels
    with pytest.raises(ValueError, match="4-D"):
        defence(x[0])
    with pytest.raises(ValueError, match="channels-last"):
        defence(x.transpose(0, 2, 3, 1))
    nan = x.copy()
    nan[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        defence(nan)
    with pytest.raises(ValueError, match="outside clip_values"):
        defence(x * 255)
    with pytest.raises(NotFittedError, match="not fitted"):
        build(name)(x)
    with pytest.raises(ValueError, match="NaN"):
        build(name).fit(nan, feature_network=feature_net()) if name == "nrp" else build(name).fit(nan)


def test_bad_parameters_raise():
    with pytest.raises(ValueError, match="width"):
        ComDefend(SHAPE, width=0, device_type="cpu")
    with pytest.raises(ValueError, match="clip_values"):
        NRP(SHAPE, clip_values=(1, 0), device_type="cpu")
    with pytest.raises(ValueError, match="sigmas"):
        ADP(SHAPE, sigmas=(), device_type="cpu")
    with pytest.raises(ValueError, match="device_type"):
        ADP(SHAPE, device_type="tpu")
    with pytest.raises(ValueError, match="feature_network"):
        NRP(SHAPE, device_type="cpu").fit(np.zeros((2, *SHAPE), np.float32))
    with pytest.raises(ValueError, match="feature_layer"):
        NRP(SHAPE, device_type="cpu").fit(np.zeros((2, *SHAPE), np.float32), feature_network=feature_net(),
                                          feature_layer="nope")
    with pytest.raises(ValueError, match="unexpected"):
        ComDefend(SHAPE, device_type="cpu").fit(np.zeros((2, *SHAPE), np.float32), attacks=[])


@pytest.mark.parametrize("name", PREPROCESSORS)
def test_white_box_gradient_and_pgd_through_an_art_classifier(name, fitted, data):
    torch.manual_seed(0)
    defence = fitted[name]
    clf = make_classifier(tiny_cnn(channels=1, size=8, nb_classes=2, hidden=8), input_shape=SHAPE, nb_classes=2,
                          preprocessing_defences=[defence])
    x, y = data[0][:4], np.eye(2, dtype=np.float32)[data[1][:4]]
    grad = clf.loss_gradient(x, y)
    assert grad.shape == x.shape and np.isfinite(grad).all() and np.abs(grad).sum() > 0
    # ART's NumPy entry point (BPDA for ComDefend: straight-through binarisation)
    est = defence.estimate_gradient(x, np.ones_like(x))
    assert est.shape == x.shape and np.isfinite(est).all() and np.abs(est).sum() > 0
    x_adv = ProjectedGradientDescent(clf, eps=0.1, eps_step=0.05, max_iter=2, verbose=False).generate(x, y)
    assert x_adv.shape == x.shape and np.abs(x_adv - x).max() <= 0.1 + 1e-6
    assert clf.predict(x_adv).shape == (4, 2)


def test_comdefend_gradient_is_straight_through_not_zero(fitted, data):
    defence = fitted["comdefend"]
    x = torch.from_numpy(data[0][:2]).requires_grad_(True)
    defence.forward(x)[0].sum().backward()
    assert x.grad.abs().sum() > 0  # a plain threshold would give exactly 0


# ---------------------------------------------------------------------- SOAP
def test_soap_fit_predict_and_determinism(soap, data):
    losses = [h["loss"] for h in soap.history]
    assert losses[-1] < losses[0], losses
    assert {"ce", "rotation"} <= set(soap.history[0])
    clf = soap_classifier(soap, device_type="cpu")
    p1, p2 = clf.predict(data[0]), clf.predict(data[0])
    assert p1.shape == (N, 2) and p1.dtype == np.float32 and np.array_equal(p1, p2)


def test_soap_purification_lowers_the_rotation_loss_within_the_ball(soap, data):
    x = torch.from_numpy(data[0])
    soap.eval()
    x_pur = soap.purify(x)
    assert (x_pur - x).abs().max() <= 0.1 + 1e-6 and x_pur.min() >= 0 and x_pur.max() <= 1
    with torch.no_grad():
        assert soap.rotation_loss(x_pur) < soap.rotation_loss(x)


def test_soap_bpda_gradient_is_finite_and_non_zero(soap, data):
    clf = soap_classifier(soap, device_type="cpu")
    x, y = data[0][:4], np.eye(2, dtype=np.float32)[data[1][:4]]
    grad = clf.loss_gradient(x, y)
    assert grad.shape == x.shape and np.isfinite(grad).all() and np.abs(grad).sum() > 0
    x_adv = ProjectedGradientDescent(clf, eps=0.1, eps_step=0.05, max_iter=2, verbose=False).generate(x, y)
    assert np.abs(x_adv - x).max() <= 0.1 + 1e-6
    soap.bpda = False
    try:
        assert np.abs(clf.loss_gradient(x, y)).sum() == 0  # without BPDA the purification masks the gradient
    finally:
        soap.bpda = True


def test_soap_save_load_round_trip(soap, data, tmp_path):
    path = str(tmp_path / "soap.pt")
    soap.save(path)
    loaded = SOAPModel.load(path, tiny_cnn(channels=1, size=8, nb_classes=2, hidden=8))
    assert loaded.get_config() == soap.get_config() and loaded.is_fitted
    soap.eval()
    x = torch.from_numpy(data[0])
    with torch.no_grad():
        assert torch.equal(loaded(x), soap(x))
    with pytest.raises(ValueError, match="weights do not match"):
        SOAPModel.load(path, tiny_cnn(channels=1, size=8, nb_classes=2, hidden=16))
    with pytest.raises(ValueError, match="checkpoint"):
        ComDefend.load(path)


def test_soap_bad_input_raises(soap, data):
    soap.eval()
    nan = torch.from_numpy(data[0]).clone()
    nan[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        soap(nan)
    with pytest.raises(ValueError, match="per-sample shape"):
        soap(torch.zeros(2, 3, 8, 8))
    with pytest.raises(ValueError, match="outside clip_values"):
        soap(torch.full((2, *SHAPE), 2.0))
    with pytest.raises(ValueError, match="square"):
        SOAPModel(tiny_cnn(channels=1, size=8, nb_classes=2), (1, 8, 12))
    with pytest.raises(ValueError, match="lr_schedule must be one of constant, cosine"):
        SOAPModel(tiny_cnn(channels=1, size=8, nb_classes=2), SHAPE, lr_schedule="step")
    fresh = SOAPModel(tiny_cnn(channels=1, size=8, nb_classes=2, hidden=8), SHAPE).eval()
    with pytest.raises(NotFittedError, match="not fitted"):
        fresh(torch.from_numpy(data[0]))
    with pytest.raises(ValueError, match="labels"):
        fresh.fit(data[0], data[1][:3])


# ---------------------------------------------------------------------- wired into the evaluation suite (opt-in keys)
BASELINE_KEYS = ("comdefend", "nrp", "adp", "soap")


def _synthetic_run_data(n_train=120, n_test=24, size=12, seed=0):
    """Three classes of 12x12 grey images (a bright horizontal / vertical / diagonal bar on noise)."""
    return synthetic_bars(n_train, n_test, 12, seed, size)


def test_baseline_keys_are_opt_in():
    from art_idfr.experiments.evaluation.config import BASELINE_DEFENCES, DEFENCES, PRESETS, EvalConfig

    assert set(BASELINE_DEFENCES) == set(BASELINE_KEYS) and not set(BASELINE_KEYS) & set(DEFENCES)
    for name in PRESETS:
        cfg = EvalConfig.preset(name)
        assert not set(BASELINE_KEYS) & set(cfg.defences) and not set(BASELINE_KEYS) & set(cfg.autoattack_defences)
    cfg = EvalConfig.preset("tiny", defences="none,ComDefend,NRP,adp,SOAP-RP", baselines_epochs=2)
    assert cfg.defences == ("none", *BASELINE_KEYS) and cfg.baselines.nb_epochs == 2
    with pytest.raises(ValueError, match="baselines_soap_steps"):
        EvalConfig.preset("tiny", baselines_soap_steps=0)


def test_a_tiny_evaluation_with_the_four_baselines_runs(tmp_path):
    from art_idfr.experiments.evaluation import EvalConfig, evaluate
    from art_idfr.experiments.evaluation.pipeline import train_baselines
    from art_idfr.experiments.models import make_model, train_model

    torch.set_num_threads(1)
    data = _synthetic_run_data()
    cfg = EvalConfig.preset(
        "tiny", device="cpu", width=0.25, target_epochs=1, defences=("none", *BASELINE_KEYS),
        threat_models=("gray-box", "white-box"), attacks=("fgsm", "bim"), eps=(0.1,), attack_iter=2, eval_n=12,
        whitebox_n=4, query_n=4, eot_samples=2, baselines_epochs=1, baselines_fit_n=30, baselines_soap_epochs=1,
        baselines_soap_steps=2, batch_size=32,
    ).resolved(1)
    target = make_model("small_cnn", 3, (1, 12, 12), width=0.25, seed=0)
    train_model(target, data.x_train, data.y_train, epochs=2, batch_size=32, device="cpu", seed=0, verbose=False)
    folder = str(tmp_path / "baselines")
    fitted = train_baselines(cfg, data, target, folder, verbose=False)
    assert set(fitted) == set(BASELINE_KEYS)
    for key, (defence, meta) in fitted.items():
        assert meta["fit_seconds"] > 0 and meta["inference_passes"] and not meta.get("reused")
        assert os.path.isfile(os.path.join(folder, key, f"{key}.pt"))
    assert fitted["nrp"][1]["fit_n"] == 30 and fitted["soap"][1]["fit_n"] == len(data.y_train)
    meta_path = os.path.join(folder, "adp", "meta.json")  # a cache written with older wording of the cost
    with open(meta_path) as f:
        stale = json.load(f) | {"inference_passes": "stale wording"}
    with open(meta_path, "w") as f:
        json.dump(stale, f)
    again = train_baselines(cfg, data, target, folder, verbose=False)  # cached in the run folder, reused
    assert all(again[k][1]["reused"] for k in BASELINE_KEYS)
    assert again["adp"][1]["inference_passes"] == again["adp"][0].inference_passes != "stale wording"
    x = data.x_test[:4]
    assert np.array_equal(again["comdefend"][0](x)[0], fitted["comdefend"][0](x)[0])
    from art_idfr.experiments.cli_commands import _weights  # the digest a run's metadata names each fit by

    digests = {k: _weights(d) for k, (d, _) in again.items()}
    assert digests == {k: _weights(d) for k, (d, _) in fitted.items()}  # the reused fit is the fitted one
    assert len(set(digests.values())) == len(BASELINE_KEYS) and all(len(v) == 16 for v in digests.values())

    result = evaluate(cfg, data, target, baselines={k: d for k, (d, _) in again.items()}, verbose=False,
                      command="pytest baselines")
    wb = {r["defence_key"]: r for r in result.records if r["threat_model"] == "white-box" and r["attack"] == "bim"}
    assert set(wb) == {"none", *BASELINE_KEYS}
    assert "straight-through" in wb["comdefend"]["gradient"] and "BPDA" in wb["soap"]["gradient"]
    assert "EOT over 2" in wb["adp"]["gradient"] and wb["adp"]["defence"] == "ADP (EOT 2)"
    defences = {d["key"]: d for d in result.metadata["defences"]}
    assert defences["adp"]["randomised"] and "passes" in defences["soap"]["description"]
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in result.records)
    table = result.markdown()
    assert "| ComDefend |" in table and "| SOAP-RP |" in table  # no † : that marks ART's estimate_gradient only
    with pytest.raises(ValueError, match="needs its fitted baseline"):
        evaluate(cfg, data, target, verbose=False)


def test_the_baselines_knobs_at_their_defaults_leave_earlier_evaluation_checkpoints_valid():
    """An evaluation checkpoint written before the baselines existed keeps its fingerprint (they were opt-in)."""
    from art_idfr.experiments.evaluation.config import EvalConfig
    from art_idfr.experiments.evaluation.resume import _without_newer_defaults

    cfg = EvalConfig.preset("cpu", dataset="fashion_mnist_idx").resolved(1).to_dict()
    assert "baselines" in cfg and "baselines" not in _without_newer_defaults(cfg)
    changed = EvalConfig.preset("cpu", dataset="fashion_mnist_idx", baselines_epochs=7).resolved(1).to_dict()
    assert _without_newer_defaults(changed)["baselines"] == {"nb_epochs": 7}


def test_soap_started_from_the_target_fine_tunes_a_copy_and_keys_its_cache_by_the_target(tmp_path):
    """baselines_soap_init='target': SOAP's joint training starts from a copy of the trained target (same weights,
    the target's own tensors untouched by the fit), the cache key holds the target's digest (another target refits),
    the cached fit reloads with the same predictions; at the default the key has no "init" (old caches stay valid);
    an unknown value is refused."""
    from art_idfr.experiments.evaluation.config import EvalConfig
    from art_idfr.experiments.evaluation.pipeline import train_baselines
    from art_idfr.experiments.evaluation.pipeline.baselines import _build, _settings
    from art_idfr.experiments.models import make_model, train_model

    torch.set_num_threads(1)
    data = _synthetic_run_data()
    target = make_model("small_cnn", 3, (1, 12, 12), width=0.25, seed=0)
    train_model(target, data.x_train, data.y_train, epochs=1, batch_size=32, device="cpu", seed=0, verbose=False)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    cfg = EvalConfig.preset("tiny", device="cpu", width=0.25, defences=("none", "soap"), baselines_soap_epochs=1,
                            baselines_soap_steps=2, baselines_soap_init="target", batch_size=32).resolved(1)
    s = _settings("soap", cfg, data, target)
    assert set(s["init"]) == {"target"}
    start = _build("soap", s, cfg, data, False, target)
    assert start.model is not target
    assert all(torch.equal(a, b) for a, b in zip(start.model.state_dict().values(), before.values()))
    folder = str(tmp_path / "baselines")
    soap, meta = train_baselines(cfg, data, target, folder, verbose=False)["soap"]
    assert all(torch.equal(v, before[k]) for k, v in target.state_dict().items())  # the target is not trained
    assert not all(torch.equal(a, b) for a, b in zip(soap.model.state_dict().values(), before.values()))
    again, meta2 = train_baselines(cfg, data, target, folder, verbose=False)["soap"]
    x = torch.as_tensor(data.x_test[:6])
    assert meta2["reused"] and torch.equal(again.eval()(x), soap.eval()(x))
    other = make_model("small_cnn", 3, (1, 12, 12), width=0.25, seed=1)
    assert _settings("soap", cfg, data, other)["init"] != s["init"]
    assert not train_baselines(cfg, data, other, folder, verbose=False)["soap"][1].get("reused")
    scratch = EvalConfig.preset("tiny", defences=("none", "soap")).resolved(1)
    assert "init" not in _settings("soap", scratch, data, target)
    with pytest.raises(ValueError, match="baselines_soap_init"):
        EvalConfig.preset("tiny", baselines_soap_init="pretrained")


def test_a_cached_soap_fit_is_reused_with_other_purification_settings(tmp_path):
    """SOAP's purification radius and steps act at test time: another radius reuses the cached fit with the new
    settings set on it (and in its metadata); another number of epochs fits again."""
    from art_idfr.experiments.evaluation.config import EvalConfig
    from art_idfr.experiments.evaluation.pipeline import train_baselines

    torch.set_num_threads(1)
    data = _synthetic_run_data()
    target = tiny_cnn(channels=1, size=12, nb_classes=3, hidden=8)
    folder = str(tmp_path / "baselines")

    def soap_of(**kw):
        cfg = EvalConfig.preset("tiny", device="cpu", width=0.25, defences=("none", "soap"), batch_size=32,
                                baselines_soap_epochs=kw.pop("epochs", 1), **kw).resolved(1)
        return train_baselines(cfg, data, target, folder, verbose=False)["soap"]

    first, meta = soap_of(baselines_soap_eps=0.1, baselines_soap_steps=2)
    second, meta2 = soap_of(baselines_soap_eps=0.05, baselines_soap_steps=3)
    assert not meta.get("reused") and meta2["reused"]
    assert (second.purify_eps, second.purify_steps) == (0.05, 3) and (first.purify_eps, first.purify_steps) == (0.1, 2)
    assert (meta2["settings"]["purify_eps"], meta2["settings"]["purify_steps"]) == (0.05, 3)
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))
    assert not soap_of(baselines_soap_eps=0.05, baselines_soap_steps=3, epochs=2)[1].get("reused")
    cosine, meta3 = soap_of(baselines_soap_eps=0.05, baselines_soap_steps=3, baselines_soap_lr_schedule="cosine")
    assert not meta3.get("reused") and cosine.lr_schedule == "cosine" and meta3["training"]["lr_schedule"] == "cosine"
    assert "lr_schedule" not in meta2["settings"]  # the default leaves the cache key of earlier fits as it was


def test_soap_lr_schedule_choices_match_the_training_loop():
    from art_idfr.experiments.baselines.training import LR_SCHEDULES
    from art_idfr.experiments.evaluation.config import EvalConfig
    from art_idfr.experiments.evaluation.knobs import SOAP_LR_SCHEDULES

    assert SOAP_LR_SCHEDULES == LR_SCHEDULES
    with pytest.raises(ValueError, match="baselines_soap_lr_schedule"):
        EvalConfig.preset("tiny", baselines_soap_lr_schedule="step")


def test_adp_unet_score_network_fits_saves_and_loads(data, tmp_path):
    adp = fit(build("adp", architecture="unet", depth=2), data[0], nb_epochs=2)
    assert type(adp.network).__name__ == "UNetScoreNetwork"
    assert adp.history[-1]["loss"] < adp.history[0]["loss"]  # DSM learns something on the blurred field
    path = str(tmp_path / "adp_unet.pt")
    adp.save(path)
    loaded = ADP.load(path, device_type="cpu")
    assert loaded.architecture == "unet" and type(loaded.network).__name__ == "UNetScoreNetwork"
    assert np.array_equal(purify(loaded, data[0], 3), purify(adp, data[0], 3))
    with pytest.raises(ValueError, match="architecture must be one of"):
        ADP(SHAPE, architecture="refinenet", device_type="cpu")


def test_baseline_constructor_arguments_reach_the_fit_and_its_cache_key():
    from art_idfr.experiments.evaluation.config import EvalConfig
    from art_idfr.experiments.evaluation.pipeline.baselines import _build, _settings

    data = _synthetic_run_data()
    target = tiny_cnn(channels=1, size=12, nb_classes=3, hidden=8)
    cfg = EvalConfig.preset("tiny", defences=("none", "adp", "comdefend"),
                            baselines_adp="architecture=unet, depth=2,noise_std=0.1",
                            baselines_comdefend="width=0.5,batch_size=32").resolved(1)
    s = _settings("adp", cfg, data, target)
    assert s["constructor_args"] == {"architecture": "unet", "depth": 2, "noise_std": 0.1}
    adp = _build("adp", s, cfg, data, verbose=False)
    assert (adp.architecture, adp.depth, adp.noise_std) == ("unet", 2, 0.1)
    comdefend = _build("comdefend", _settings("comdefend", cfg, data, target), cfg, data, False)
    assert (comdefend.width, comdefend.batch_size) == (0.5, 32)  # the run's batch size, unless given
    plain = EvalConfig.preset("tiny", defences=("none", "adp")).resolved(1)
    assert "constructor_args" not in _settings("adp", plain, data, target)  # old caches stay valid
    for bad, match in [("noise_std", "key=value"), ("seed=3", "the run sets"), ("widht=3", "no setting 'widht'"),
                       ("architecture=refinenet", "architecture must be one of")]:
        with pytest.raises(ValueError, match=match):
            EvalConfig.preset("tiny", baselines_adp=bad)


@pytest.mark.parametrize("schedule, steps_taken", [("constant", 1.0), ("cosine", 0.5)])
def test_training_loop_learning_rate_schedules(schedule, steps_taken):
    """Adam on a loss of constant gradient moves each step by about the learning rate: over T steps a constant rate
    moves T·lr, cosine annealing to 0 about half of that; an unknown schedule is a clear error."""
    from art_idfr.experiments.baselines.training import train_epochs

    w = nn.Parameter(torch.zeros(()))
    net = nn.Module()
    net.w = w
    history, info = train_epochs(net, [w], [np.zeros((40, 1), np.float32)], lambda xb, gen: (w * 1.0, {}),
                                 nb_epochs=4, batch_size=4, learning_rate=0.01, device=torch.device("cpu"), seed=0,
                                 verbose=False, desc="t", lr_schedule=schedule)
    assert info["lr_schedule"] == schedule and len(history) == 4
    assert float(-w) == pytest.approx(40 * 0.01 * steps_taken, rel=0.05)
    with pytest.raises(ValueError, match="lr_schedule must be one of constant, cosine"):
        train_epochs(net, [w], [np.zeros((4, 1), np.float32)], lambda xb, gen: (w * 1.0, {}), nb_epochs=1,
                     batch_size=4, learning_rate=0.01, device=torch.device("cpu"), seed=0, verbose=False, desc="t",
                     lr_schedule="step")


def _fresh(name):
    """An unfitted baseline of the module's tiny settings (SOAP around a freshly seeded tiny CNN)."""
    if name != "soap":
        return build(name, **({"lr_schedule": "cosine"} if name == "comdefend" else {}))
    torch.manual_seed(0)
    return SOAPModel(tiny_cnn(channels=1, size=8, nb_classes=2, hidden=8), SHAPE, purify_eps=0.1, purify_steps=3,
                     learning_rate=1e-2, lr_schedule="cosine", batch_size=8, seed=0)


def _fit_any(defence, data, **kwargs):
    """:func:`fit` for a preprocessor; SOAP also takes the labels."""
    if not isinstance(defence, SOAPModel):
        return fit(defence, data[0], **kwargs)
    defence.fit(data[0], data[1], nb_epochs=3, **kwargs)
    return defence


def _weights(defence):
    return (defence if isinstance(defence, nn.Module) else defence.network).state_dict()


def _cut_fit(defence, data, path, monkeypatch, writes=3):
    """Fit ``defence`` with a resume file at ``path``, cut off right after its ``writes``-th write; the steps (in
    the epoch) of the writes."""
    from art_idfr.experiments.baselines import training

    save, steps = training._EpochLoop._save, []

    def save_then_cut(loop):
        save(loop)
        steps.append(loop.step)
        if len(steps) == writes:
            raise KeyboardInterrupt("cut")

    with monkeypatch.context() as m:
        m.setattr(training._EpochLoop, "_save", save_then_cut)
        with pytest.raises(KeyboardInterrupt):
            _fit_any(defence, data, checkpoint=path)
    return steps


@pytest.mark.parametrize("name", PREPROCESSORS + ("soap",))
def test_a_cut_baseline_fit_resumes_where_it_stopped(name, data, tmp_path, monkeypatch):
    """A fit cut off inside its second epoch (right after a resume-file write) and started again with the same
    arguments ends with the uncut fit's weights and history, bit for bit (ComDefend and SOAP with the cosine schedule,
    whose state is saved too); the resume file is gone at the end."""
    from art_idfr.experiments.baselines import training

    monkeypatch.setattr(training, "CHECKPOINT_EVERY", 1)  # 2 batches per epoch: writes at steps 1, 2 (epoch end), 3
    path = str(tmp_path / "fit.resume.pt")
    uncut = _fit_any(_fresh(name), data)
    assert _cut_fit(_fresh(name), data, path, monkeypatch) == [1, 0, 1] and os.path.isfile(path)  # epoch 2, step 1
    resumed = _fit_any(_fresh(name), data, checkpoint=path)
    assert not os.path.exists(path)
    assert resumed.history == uncut.history and len(uncut.history) == 3
    for key, value in _weights(uncut).items():
        assert torch.equal(_weights(resumed)[key], value), key


def test_a_baseline_resume_file_of_another_fit_is_refused(data, tmp_path, monkeypatch):
    """The resume file of a fit with other settings (here the learning rate) is not silently continued."""
    path = str(tmp_path / "fit.resume.pt")
    _cut_fit(build("adp"), data, path, monkeypatch, writes=1)
    with pytest.raises(ValueError, match="belongs to another run.*learning_rate"):
        _fit_any(build("adp", learning_rate=5e-3), data, checkpoint=path)


def test_a_diverged_baseline_fit_ends_with_its_best_epochs_weights(capsys):
    """A fit whose last epoch's loss jumps far above its best (ComDefend at Adam 3e-3 once ended at one output for
    every image) keeps the best epoch's weights and says so; a fit that did not diverge keeps its last weights."""
    from art_idfr.experiments.baselines.training import train_epochs

    x = torch.from_numpy(np.random.default_rng(0).random((8, 4)).astype(np.float32))
    net = nn.Linear(4, 4)
    calls = [0]

    def step(xb, generator, break_from=None):
        calls[0] += 1
        if break_from is not None and calls[0] > break_from:  # "diverge": the weights thrown far off
            with torch.no_grad():
                net.weight.add_(100.0)
        return ((net(xb) - xb) ** 2).mean(), {}

    def mse():
        with torch.no_grad():
            return float(((net(x) - x) ** 2).mean())

    kw = dict(nb_epochs=4, batch_size=4, learning_rate=1e-2, device=torch.device("cpu"), seed=0, verbose=False,
              desc="toy")  # 2 batches per epoch
    history, info = train_epochs(net, net.parameters(), [x.numpy()], step, **kw)
    assert "restored_epoch" not in info and history[-1]["loss"] < history[0]["loss"] and mse() < 10
    net.reset_parameters()
    calls[0] = 0
    history, info = train_epochs(net, net.parameters(), [x.numpy()], lambda xb, g: step(xb, g, break_from=4),
                                 **kw)  # epochs 3 and 4 throw the weights off
    assert history[-1]["loss"] > 1000 and info["restored_epoch"] in (1, 2)
    assert mse() < 10  # the best epoch's weights, not the diverged ones
    assert "toy: the fit diverged" in capsys.readouterr().out
