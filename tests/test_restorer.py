"""FeatureRestorer, the penultimate-layer hook, IDFRTrainer and checkpoints."""
import copy
import os
import numpy as np
import pytest
import torch
import torchvision
from art.attacks.evasion import (
    AutoAttack,
    AutoProjectedGradientDescent,
    BasicIterativeMethod,
    FastGradientMethod,
    ProjectedGradientDescent,
    SquareAttack,
)
from torch import nn

from art_idfr import (
    FeatureRestorer,
    IDFRDenoiser,
    IDFRTrainer,
    RestorerMLP,
    attach_feature_restorer,
    defend,
    find_embedding_layer,
)
from art_idfr.defended import RestoredModel
from conftest import make_classifier, tiny_cnn


@pytest.fixture(scope="module")
def fitted_pair(trained_target, mnist_small):
    """An ID and an FR fitted for 1-2 epochs on 500 digits (enough to exercise the code, not to be good)."""
    x, y = mnist_small[0][:500], mnist_small[1][:500]
    fgsm = FastGradientMethod(trained_target, eps=0.2)
    den = IDFRDenoiser(input_shape=(1, 28, 28), width=0.125, nb_epochs=1, device_type="cpu")
    den.fit(x, y, classifier=trained_target, attacks=[fgsm])
    fr = FeatureRestorer(nb_epochs=2, batch_size=128, device_type="cpu")
    fr.fit(x, y, classifier=trained_target, denoiser=den, attacks=[fgsm])
    return den, fr


def acc(clf, x, y):
    return float((clf.predict(x).argmax(1) == y).mean())


def test_find_embedding_layer_defaults_to_last_linear():
    point = find_embedding_layer(tiny_cnn(hidden=32))
    assert point.mode == "input" and point.name == "9" and point.module.in_features == 32
    resnet = torchvision.models.resnet18(num_classes=10)
    assert find_embedding_layer(resnet).name == "fc" and find_embedding_layer(resnet).module.in_features == 512
    vgg = torchvision.models.vgg11(num_classes=10)
    assert find_embedding_layer(vgg).name == "classifier.6"
    named = find_embedding_layer(tiny_cnn(), layer="8")
    assert named.mode == "output" and isinstance(named.module, nn.ReLU)
    with pytest.raises(ValueError, match="no module named"):
        find_embedding_layer(tiny_cnn(), layer="nope")
    with pytest.raises(ValueError, match="no nn.Linear"):
        find_embedding_layer(nn.Sequential(nn.Conv2d(1, 2, 3)))


def test_table7_widths_scale_with_embedding():
    net = RestorerMLP(512, skips=False, batch_norm=False, residual=False)
    dims = [(m.in_features, m.out_features) for m in net.modules() if isinstance(m, nn.Linear)]
    assert dims == [(512, 256), (256, 128), (128, 32), (32, 128), (128, 256), (256, 512)]
    assert [m.out_features for m in RestorerMLP(64).modules() if isinstance(m, nn.Linear)] == [32, 16, 8, 16, 32, 64]


def test_fit_records_history_and_embedding(fitted_pair):
    _, fr = fitted_pair
    assert fr.is_fitted and fr.embedding_dim == 32 and len(fr.history) == 2
    assert all(np.isfinite(h["loss"]) for h in fr.history)


def test_attach_keeps_everything_and_leaves_input_unchanged(trained_target, fitted_pair, mnist_small):
    den, fr = fitted_pair
    id_only = defend(trained_target, denoiser=den)
    x = mnist_small[2][:50]
    before = id_only.predict(x)
    idfr = attach_feature_restorer(id_only, fr)
    # same defences, clip values, preprocessing, loss, device
    assert idfr.preprocessing_defences == id_only.preprocessing_defences
    assert idfr.clip_values.tolist() == id_only.clip_values.tolist() and idfr.device == id_only.device
    assert idfr.nb_classes == 10 and idfr.input_shape == (1, 28, 28) and isinstance(idfr.model, RestoredModel)
    # input classifier unchanged, no hook left behind
    np.testing.assert_array_equal(id_only.predict(x), before)
    assert not fr.network is None and not find_embedding_layer(trained_target.model).module._forward_pre_hooks
    # the FR is really in the path: equal to head(FR(f_enc(ID(x))))
    h = []
    point = find_embedding_layer(trained_target.model)
    with torch.no_grad(), point.intercept(lambda e: h.append(e)):
        trained_target.model(torch.as_tensor(den(x)[0]))
    expected = point.module(fr.restore(h[-1])).detach().numpy()
    np.testing.assert_allclose(idfr.predict(x), expected, atol=1e-5)


def test_identity_fr_changes_nothing(trained_target, mnist_small):
    fr = FeatureRestorer(embedding_dim=32, device_type="cpu")
    fr._is_fitted = True  # residual FR with zero-initialised output layer is the identity
    x = mnist_small[2][:20]
    np.testing.assert_allclose(attach_feature_restorer(trained_target, fr).predict(x), trained_target.predict(x),
                               atol=1e-6)


def test_named_layer_hook(trained_target, mnist_small):
    x, y = mnist_small[0][:200], mnist_small[1][:200]
    fr = FeatureRestorer(layer="8", nb_epochs=1, device_type="cpu")  # output of the ReLU before the head
    fr.fit(x, y, classifier=trained_target)
    assert fr.embedding_dim == 32
    out = attach_feature_restorer(trained_target, fr).predict(mnist_small[2][:10])
    assert out.shape == (10, 10) and np.isfinite(out).all()


@pytest.mark.parametrize(
    "make_attack",
    [lambda c: FastGradientMethod(c, eps=0.2),
     lambda c: BasicIterativeMethod(c, eps=0.2, eps_step=0.05, max_iter=3, verbose=False),
     lambda c: ProjectedGradientDescent(c, eps=0.2, eps_step=0.05, max_iter=3, verbose=False),
     lambda c: SquareAttack(c, norm=np.inf, eps=0.2, max_iter=5, nb_restarts=1, verbose=False),
     lambda c: AutoAttack(c, norm=np.inf, eps=0.2, eps_step=0.05, attacks=[
         AutoProjectedGradientDescent(c, norm=np.inf, eps=0.2, eps_step=0.05, max_iter=3, nb_random_init=1,
                                      verbose=False),
         SquareAttack(c, norm=np.inf, eps=0.2, max_iter=5, nb_restarts=1, verbose=False)])],
    ids=["FGSM", "BIM", "PGD", "Square", "AutoAttack"],
)
@pytest.mark.parametrize("chain", ["ID+FR", "FR only"])
def test_art_attacks_run_through_id_and_fr(trained_target, fitted_pair, mnist_small, make_attack, chain):
    den, fr = fitted_pair
    # defend() for ID+FR; attach_feature_restorer on the bare target for the FR alone
    clf = defend(trained_target, den, fr) if chain == "ID+FR" else attach_feature_restorer(trained_target, fr)
    x, y = mnist_small[2][:16], mnist_small[3][:16]
    x_adv = make_attack(clf).generate(x=x, y=np.eye(10, dtype=np.float32)[y])
    assert np.abs(x_adv - x).max() <= 0.2 + 1e-5 and np.isfinite(x_adv).all()
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    # the attack really ran through the defended classifier: it perturbed, and did not raise accuracy
    assert np.abs(x_adv - x).max() > 0.1
    assert acc(clf, x_adv, y) <= acc(clf, x, y)
    if not isinstance(make_attack(clf), SquareAttack):  # gradient attacks, white-box through the defence
        assert acc(clf, x_adv, y) < acc(clf, x, y)


@pytest.mark.parametrize("chain", ["ID", "ID+FR", "FR only"])
def test_arts_default_autoattack_ensemble(trained_target, fitted_pair, mnist_small, chain):
    """ART's AutoAttack with its default ensemble (APGD-CE, APGD-DLR, DeepFool, Square), white-box through IDFR."""
    den, fr = fitted_pair
    clf = {"ID": lambda: defend(trained_target, den), "ID+FR": lambda: defend(trained_target, den, fr),
           "FR only": lambda: attach_feature_restorer(trained_target, fr)}[chain]()
    x, y = mnist_small[2][:8], mnist_small[3][:8]
    x_adv = AutoAttack(clf, norm=np.inf, eps=0.3, eps_step=0.1, batch_size=8).generate(
        x=x, y=np.eye(10, dtype=np.float32)[y])
    assert np.abs(x_adv - x).max() <= 0.3 + 1e-5 and x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    assert acc(clf, x, y) >= 0.5 and acc(clf, x_adv, y) <= 0.25


def test_white_box_gradient_reaches_input_through_fr(trained_target, fitted_pair, mnist_small):
    den, fr = fitted_pair
    idfr = defend(trained_target, den, fr)
    x, y = mnist_small[2][:4], np.eye(10, dtype=np.float32)[mnist_small[3][:4]]
    g = idfr.loss_gradient(x, y)
    assert np.isfinite(g).all() and np.abs(g).sum() > 0
    assert not np.allclose(g, defend(trained_target, den).loss_gradient(x, y))


def test_trainer_builds_fully_defended_classifier(mnist_small):
    torch.manual_seed(0)
    target = make_classifier(tiny_cnn())
    x, y = mnist_small[0][:300], mnist_small[1][:300]
    target.fit(x, y, nb_epochs=1, batch_size=32, verbose=False)
    den = IDFRDenoiser(input_shape=(1, 28, 28), width=0.125, device_type="cpu")
    trainer = IDFRTrainer(target, attacks=[FastGradientMethod(target, eps=0.2)], denoiser=den,
                          restorer=FeatureRestorer(device_type="cpu"))
    assert trainer.get_classifier() is target
    trainer.fit(x, y, nb_epochs_id=1, nb_epochs_fr=1, batch_size=64,
                validation_data=(mnist_small[2][:64], mnist_small[3][:64]))
    # both stages chose their epoch on clean *and* adversarial validation accuracy
    for hist in (den.history, trainer.restorer.history):
        assert {"val_acc", "val_adv_acc", "val_score"} <= set(hist[0]), hist
    defended = trainer.get_classifier()
    assert isinstance(defended.model, RestoredModel) and defended.preprocessing_defences[0] is den
    assert target.preprocessing_defences is None  # the target is untouched
    assert defended.predict(mnist_small[2][:5]).shape == (5, 10)


def test_id_plus_fr_improves_over_id_on_denoised_errors(trained_target, mnist_small):
    """Algorithm 2 must not hurt: on training-distribution data, ID+FR accuracy ≥ ID accuracy - small slack."""
    x, y, x_test, y_test = mnist_small
    fgsm = FastGradientMethod(trained_target, eps=0.3)
    den = IDFRDenoiser(input_shape=(1, 28, 28), width=0.125, nb_epochs=1, device_type="cpu")
    den.fit(x, y, classifier=trained_target, attacks=[fgsm])
    fr = FeatureRestorer(nb_epochs=6, batch_size=128, learning_rate=3e-3, device_type="cpu")
    fr.fit(x, y, classifier=trained_target, denoiser=den, attacks=[fgsm])
    x_adv = fgsm.generate(x_test)
    id_only, idfr = defend(trained_target, den), defend(trained_target, den, fr)
    assert acc(idfr, x_adv, y_test) >= acc(id_only, x_adv, y_test) - 0.02
    assert fr.history[-1]["train_mix_acc"] > fr.history[0]["train_mix_acc"]


# ---------------------------------------------------------------------------------------------- errors
def test_unfitted_fr_raises(trained_target):
    with pytest.raises(ValueError, match="not fitted"):
        attach_feature_restorer(trained_target, FeatureRestorer(device_type="cpu"))
    with pytest.raises(ValueError, match="not fitted"):
        FeatureRestorer(embedding_dim=8, device_type="cpu")(np.zeros((2, 8), np.float32))


def test_embedding_size_mismatch_names_both_sizes(trained_target):
    fr = FeatureRestorer(embedding_dim=64, device_type="cpu")
    fr._is_fitted = True
    with pytest.raises(ValueError, match=r"size 32.*embedding_dim=64"):
        attach_feature_restorer(trained_target, fr)


def test_non_pytorch_classifier_rejected(fitted_pair):
    _, fr = fitted_pair
    with pytest.raises(TypeError, match="PyTorchClassifier"):
        attach_feature_restorer(object(), fr)
    with pytest.raises(TypeError, match="PyTorchClassifier"):
        FeatureRestorer(device_type="cpu").fit(np.zeros((2, 1, 28, 28), np.float32), np.zeros(2), classifier="clf")
    with pytest.raises(TypeError, match="PyTorchClassifier"):
        IDFRTrainer(object(), attacks=[])


def test_attach_keeps_numpy_preprocessing_defences(trained_target, fitted_pair, mnist_small):
    """A classifier carrying an ART NumPy defence (JPEG) can take the FR; the defence still runs first."""
    from art.defences.preprocessor import JpegCompression

    _, fr = fitted_pair
    squeeze = JpegCompression(clip_values=(0.0, 1.0), quality=25, channels_first=True)
    squeezed = make_classifier(trained_target.model, preprocessing_defences=[squeeze])
    out = attach_feature_restorer(squeezed, fr)
    assert out.preprocessing_defences == [squeeze]
    x = mnist_small[2][:20]
    np.testing.assert_allclose(out.predict(x), attach_feature_restorer(trained_target, fr).predict(squeeze(x)[0]),
                               atol=1e-5)


def test_fr_fit_rejects_bad_input(trained_target, mnist_small):
    x, y = mnist_small[0][:64], mnist_small[1][:64]
    fr = FeatureRestorer(nb_epochs=1, device_type="cpu")
    bad_nan = x.copy()
    bad_nan[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="FeatureRestorer.fit x contains NaN or inf"):
        fr.fit(bad_nan, y, classifier=trained_target)
    with pytest.raises(ValueError, match="outside clip_values.*divide by 255"):
        fr.fit(x * 255, y, classifier=trained_target)
    with pytest.raises(ValueError, match="channels-last"):
        fr.fit(x.transpose(0, 2, 3, 1), y, classifier=trained_target)
    with pytest.raises(ValueError, match="x_adv .*outside clip_values"):
        fr.fit(x, y, classifier=trained_target, x_adv=x + 2)
    with pytest.raises(ValueError, match="validation x contains NaN"):
        fr.fit(x, y, classifier=trained_target, validation_data=(bad_nan, y))
    assert not fr.is_fitted


def test_fit_warns_about_unknown_keywords(trained_target, mnist_small):
    x, y = mnist_small[0][:64], mnist_small[1][:64]
    with pytest.warns(UserWarning, match="FeatureRestorer.fit ignores.*'epochs' \\(did you mean 'nb_epochs'\\?\\)"):
        FeatureRestorer(nb_epochs=1, device_type="cpu").fit(x, y, classifier=trained_target, epochs=3)
    den = IDFRDenoiser(input_shape=(1, 28, 28), width=0.125, nb_epochs=1, device_type="cpu")
    with pytest.warns(UserWarning, match="IDFRDenoiser.fit ignores.*'lr'"):
        den.fit(x, y, classifier=trained_target, lr=0.1)


def test_fr_only_classifier_rejects_bad_input(trained_target, fitted_pair, mnist_small):
    _, fr = fitted_pair
    x = mnist_small[2][:4]
    clf = attach_feature_restorer(trained_target, fr)
    with pytest.raises(ValueError, match="FR-defended classifier.*outside clip_values.*divide by 255"):
        clf.predict(x * 255)
    with pytest.raises(ValueError, match="channels-last"):
        clf.predict(x.transpose(0, 2, 3, 1))
    nan = x.copy()
    nan[1, 0, 3, 3] = np.inf
    with pytest.raises(ValueError, match="NaN or inf"):
        clf.loss_gradient(nan, np.eye(10, dtype=np.float32)[:4])
    # with ART's mean/std standardisation the check undoes it: valid pixels pass, 0-255 pixels do not
    normed = make_classifier(trained_target.model, preprocessing=(0.1307, 0.3081))
    out = attach_feature_restorer(normed, fr)
    assert out.predict(x).shape == (4, 10)
    with pytest.raises(ValueError, match="outside clip_values"):
        out.predict(x * 255)


# ---------------------------------------------------------------------------------------------- checkpoints
def test_save_load_gives_identical_outputs(tmp_path, trained_target, fitted_pair, mnist_small):
    den, fr = fitted_pair
    den.save(tmp_path / "id.pt")
    fr.save(tmp_path / "fr.pt")
    den2 = IDFRDenoiser.load(tmp_path / "id.pt", device_type="cpu")
    fr2 = FeatureRestorer.load(tmp_path / "fr.pt", device_type="cpu")
    assert den2.is_fitted and fr2.is_fitted and den2.get_config() == den.get_config()
    x = mnist_small[2][:30]
    np.testing.assert_array_equal(den2(x)[0], den(x)[0])
    np.testing.assert_array_equal(defend(trained_target, den2, fr2).predict(x), defend(trained_target, den, fr).predict(x))


def test_corrupt_foreign_and_mismatched_checkpoints(tmp_path, fitted_pair):
    den, fr = fitted_pair
    good = tmp_path / "id.pt"
    den.save(good)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    with pytest.raises(ValueError, match="not a readable"):
        IDFRDenoiser.load(corrupt)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(ValueError, match="not an art-idfr checkpoint"):
        IDFRDenoiser.load(foreign)
    with pytest.raises(ValueError, match="'IDFRDenoiser' checkpoint, not a 'FeatureRestorer'"):
        FeatureRestorer.load(good)
    payload = torch.load(good, weights_only=True)
    payload["config"]["width"] = 0.5  # weights no longer fit the architecture
    mismatched = tmp_path / "mismatch.pt"
    torch.save(payload, mismatched)
    with pytest.raises(ValueError, match="do not match"):
        IDFRDenoiser.load(mismatched)
    with pytest.raises(FileNotFoundError):
        IDFRDenoiser.load(tmp_path / "missing.pt")
    fr.save(tmp_path / "fr.pt")
    for cls, path in ((IDFRDenoiser, good), (FeatureRestorer, tmp_path / "fr.pt")):
        with pytest.raises(ValueError, match="device_type must be 'gpu' or 'cpu', got 'tpu'"):
            cls.load(path, device_type="tpu")
    with pytest.raises(ValueError, match="holds a 'IDFRDenoiser' checkpoint, not a 'FeatureRestorer' one"):
        FeatureRestorer.load(good)  # an ID checkpoint is not an FR one


class _Evil:
    def __reduce__(self):
        return (exec, ("open('PWNED', 'w').write('x')",))


def test_loading_never_executes_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    evil = tmp_path / "evil.pt"
    torch.save({"format": "art-idfr", "version": 1, "kind": "IDFRDenoiser", "config": _Evil(), "state_dict": {}},
               evil)
    with pytest.raises(ValueError, match="not a readable"):
        IDFRDenoiser.load(evil)
    assert not (tmp_path / "PWNED").exists()


def test_structural_set_params_rebuilds_the_network(fitted_pair):
    _, fr = fitted_pair
    fr = copy.deepcopy(fr)
    fr.set_params(nb_epochs=3)
    assert fr.is_fitted
    fr.set_params(widths=(8, 8, 8))
    assert not fr.is_fitted and fr.network.l1[0].out_features == 8
    with pytest.raises(ValueError, match="no parameter"):
        fr.set_params(hidden=3)


def test_trainer_resumes_a_cut_fit_without_crafting_again(mnist_small, tmp_path, monkeypatch):
    """``IDFRTrainer.fit(checkpoint=...)``: cut off after crafting (here during the FR), the same call crafts nothing
    and ends with the weights of an uncut fit (random-start PGD: the random state after crafting is restored); the
    file is deleted when the fit finishes; another fit's file is refused."""
    import art_idfr.training.trainer as trainer_mod
    from art.attacks.evasion import ProjectedGradientDescent

    from art_idfr._utils import seeded

    torch.manual_seed(0)
    target = make_classifier(tiny_cnn())
    x, y = mnist_small[0][:96], mnist_small[1][:96]
    target.fit(x, y, nb_epochs=1, batch_size=32, verbose=False)

    def run(path=None, images=x):
        with seeded(0):
            den = IDFRDenoiser(input_shape=(1, 28, 28), width=0.125, device_type="cpu")
            pgd = ProjectedGradientDescent(target, eps=0.2, eps_step=0.1, max_iter=2, num_random_init=1, verbose=False)
            trainer = IDFRTrainer(target, attacks=[pgd], denoiser=den, restorer=FeatureRestorer(device_type="cpu"))
            trainer.fit(images, y, nb_epochs_id=1, nb_epochs_fr=1, batch_size=32, checkpoint=path,
                        validation_data=(mnist_small[2][:32], mnist_small[3][:32]))
            trainer.next_draws = (np.random.random(), float(torch.rand(())))  # the global random state after it
        return trainer

    real_craft, real_fr, calls = trainer_mod.craft, trainer_mod.fit_restorer, []
    monkeypatch.setattr(trainer_mod, "craft", lambda *a, **kw: calls.append(a[3]) or real_craft(*a, **kw))
    uncut = run()
    path = str(tmp_path / "aes.pt")

    def cut(*a, **kw):
        raise KeyboardInterrupt("the session ends")

    monkeypatch.setattr(trainer_mod, "fit_restorer", cut)
    with pytest.raises(KeyboardInterrupt):
        run(path)
    assert os.path.isfile(path)
    monkeypatch.setattr(trainer_mod, "fit_restorer", real_fr)
    calls.clear()
    resumed = run(path)
    assert calls == [] and not os.path.exists(path) and resumed.next_draws == uncut.next_draws
    for a, b in [(uncut.denoiser, resumed.denoiser), (uncut.restorer, resumed.restorer)]:
        assert all(torch.equal(p, q) for p, q in zip(a.network.state_dict().values(), b.network.state_dict().values()))
    monkeypatch.setattr(trainer_mod, "fit_restorer", cut)
    with pytest.raises(KeyboardInterrupt):
        run(path)
    with pytest.raises(ValueError, match="belongs to another run"):
        run(path, images=x[::-1].copy())


def test_trainer_resumes_the_id_epochs_where_a_cut_fit_stopped(mnist_small, tmp_path, monkeypatch):
    """A fit cut off during the ID's third epoch repeats neither the crafting nor the two epochs done, and ends with
    the uncut fit's weights and history; a cut during the FR then repeats no ID epoch; both files go at the end."""
    import art_idfr.training.trainer as trainer_mod
    from art.attacks.evasion import FastGradientMethod

    from art_idfr._utils import seeded
    from art_idfr.training.algorithm1 import Algorithm1
    from art_idfr.training.trainer import id_checkpoint

    torch.manual_seed(0)
    target = make_classifier(tiny_cnn())
    x, y = mnist_small[0][:64], mnist_small[1][:64]
    target.fit(x, y, nb_epochs=1, batch_size=32, verbose=False)

    def run(path=None):
        with seeded(0):
            den = IDFRDenoiser(input_shape=(1, 28, 28), width=0.125, device_type="cpu")
            trainer = IDFRTrainer(target, attacks=[FastGradientMethod(target, eps=0.2)], denoiser=den,
                                  restorer=FeatureRestorer(device_type="cpu"))
            trainer.fit(x, y, nb_epochs_id=3, nb_epochs_fr=1, batch_size=32, checkpoint=path,
                        validation_data=(mnist_small[2][:32], mnist_small[3][:32]))
        return trainer

    real_epoch, epochs, cut_at = Algorithm1.train_epoch, [], [0]

    def counted(self, *a, **kw):
        epochs.append(a[-1])
        if len(epochs) == cut_at[0]:
            raise KeyboardInterrupt("the session ends")
        return real_epoch(self, *a, **kw)

    def cut(*a, **kw):
        raise KeyboardInterrupt("the session ends")

    monkeypatch.setattr(Algorithm1, "train_epoch", counted)
    uncut = run()
    path = str(tmp_path / "aes.pt")
    epochs.clear()
    cut_at[0] = 3  # during the third ID epoch
    with pytest.raises(KeyboardInterrupt):
        run(path)
    assert os.path.isfile(path) and os.path.isfile(id_checkpoint(path))
    epochs.clear()
    cut_at[0] = 0
    resumed = run(path)
    assert epochs == [2]  # only the third epoch ran again
    assert not os.path.exists(path) and not os.path.exists(id_checkpoint(path))
    assert [h["epoch"] for h in resumed.denoiser.history] == [1, 2, 3]
    assert resumed.denoiser.history == uncut.denoiser.history
    for a, b in [(uncut.denoiser, resumed.denoiser), (uncut.restorer, resumed.restorer)]:
        assert all(torch.equal(p, q) for p, q in zip(a.network.state_dict().values(), b.network.state_dict().values()))
    real_fr = trainer_mod.fit_restorer
    monkeypatch.setattr(trainer_mod, "fit_restorer", cut)
    with pytest.raises(KeyboardInterrupt):
        run(path)
    monkeypatch.setattr(trainer_mod, "fit_restorer", real_fr)
    epochs.clear()
    again = run(path)
    assert epochs == []  # the ID's epochs were all done: none repeated
    assert all(torch.equal(p, q) for p, q in zip(uncut.restorer.network.state_dict().values(),
                                                  again.restorer.network.state_dict().values()))
