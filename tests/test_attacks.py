"""Tests of art_idfr.experiments.attacks: the eps-bounded C&W L-inf PGD attack, the one-pass Square and the
make_attack factory."""
import random

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from art.attacks.evasion import (
    AutoAttack,
    BasicIterativeMethod,
    CarliniLInfMethod,
    FastGradientMethod,
    ProjectedGradientDescent,
    SquareAttack,
)
from art.defences.preprocessor import SpatialSmoothing, SpatialSmoothingPyTorch
from art.defences.preprocessor.preprocessor import PreprocessorPyTorch
from art.estimators.classification import PyTorchClassifier

from art_idfr.experiments.attacks import (ATTACK_NAMES, CarliniWagnerLInfPGD, OnePassSquareAttack, cw_margin_loss,
                                         make_attack)
from art_idfr.experiments.models import classifier_head, make_model, train_model

TOL = 1e-6


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _data(n, seed):
    """Ten classes of 1x28x28 images: a bright 7x7 square at a class-specific position on a noisy background."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 10
    x = rng.uniform(0.0, 0.4, size=(n, 1, 28, 28)).astype(np.float32)
    for i, label in enumerate(y):
        r, c = divmod(int(label), 5)
        x[i, 0, 4 + 10 * r : 11 + 10 * r, 1 + 5 * c : 8 + 5 * c] += 0.5
    return np.clip(x, 0, 1), y.astype(np.int64)


@pytest.fixture(scope="module")
def trained():
    x, y = _data(400, seed=0)
    model = make_model("small_cnn", num_classes=10, input_shape=(1, 28, 28), width=0.25, seed=0)
    train_model(model, x, y, epochs=3, batch_size=50, lr=0.05, device="cpu", augment=False, verbose=False)
    x_test, y_test = _data(60, seed=1)
    return model, x_test, y_test


def _classifier(model, **kwargs):
    return PyTorchClassifier(
        model,
        loss=torch.nn.CrossEntropyLoss(),
        input_shape=(1, 28, 28),
        nb_classes=10,
        clip_values=(0.0, 1.0),
        device_type="cpu",
        **kwargs,
    )


def _acc(clf, x, y):
    return float((clf.predict(x).argmax(1) == y).mean())


def _check_bounds(x_adv, x, eps, lo=0.0, hi=1.0):
    assert x_adv.dtype == np.float32 and x_adv.shape == x.shape
    assert np.abs(x_adv - x).max() <= eps + TOL
    assert x_adv.min() >= lo - TOL and x_adv.max() <= hi + TOL


def test_cw_margin_loss():
    logits = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 5.0]])
    labels = torch.tensor([0, 1])
    np.testing.assert_allclose(cw_margin_loss(logits, labels).numpy(), [2.0, 0.0])
    np.testing.assert_allclose(cw_margin_loss(logits, labels, confidence=10).numpy(), [2.0, -3.0])
    np.testing.assert_allclose(cw_margin_loss(logits, labels, targeted=True).numpy(), [0.0, 3.0])


@pytest.mark.parametrize("eps", [0.05, 0.15])
def test_cw_respects_eps_and_lowers_accuracy(trained, eps):
    model, x, y = trained
    clf = _classifier(model)
    clean = _acc(clf, x, y)
    assert clean >= 0.9
    attack = CarliniWagnerLInfPGD(clf, eps=eps, eps_step=0.03, max_iter=20, batch_size=16, verbose=False)
    x_adv = attack.generate(x, y)
    _check_bounds(x_adv, x, eps)
    # within eps up to one float32 rounding step of x + eps, as ART's own FGSM/BIM/PGD: stepping such values back
    # below the budget made CW weaker through JPEG's 255-level truncation on Fashion-MNIST (NOTES)
    assert np.abs(x_adv.astype(np.float64) - x.astype(np.float64)).max() <= eps + 1e-7
    adv = _acc(clf, x_adv, y)
    assert adv < clean
    if eps == 0.15:
        assert adv <= clean - 0.5
    assert not model.training


def test_cw_step_is_capped_at_eps(trained):
    model, x, y = trained
    attack = CarliniWagnerLInfPGD(_classifier(model), eps=0.01, eps_step=0.03, verbose=False)
    assert attack.step_size == 0.01
    x_adv = attack.generate(x[:10], y[:10])
    _check_bounds(x_adv, x[:10], 0.01)


def test_cw_label_formats_and_default_labels(trained):
    model, x, y = trained
    clf = _classifier(model)
    attack = CarliniWagnerLInfPGD(clf, eps=0.1, max_iter=5, verbose=False)
    a = attack.generate(x[:20], y[:20])
    b = attack.generate(x[:20], np.eye(10, dtype=np.float32)[y[:20]])
    np.testing.assert_array_equal(a, b)
    pred = clf.predict(x[:20]).argmax(1)
    np.testing.assert_array_equal(attack.generate(x[:20]), attack.generate(x[:20], pred))


def test_cw_targeted(trained):
    model, x, y = trained
    clf = _classifier(model)
    target = (y + 1) % 10
    attack = CarliniWagnerLInfPGD(clf, eps=0.3, max_iter=20, targeted=True, verbose=False)
    x_adv = attack.generate(x, target)
    _check_bounds(x_adv, x, 0.3)
    assert (clf.predict(x_adv).argmax(1) == target).mean() >= 0.5
    with pytest.raises(ValueError, match="Target labels"):
        attack.generate(x)


def test_cw_random_init_is_seeded(trained):
    model, x, y = trained
    clf = _classifier(model)
    kwargs = dict(eps=0.1, max_iter=3, random_init=True, verbose=False)
    a = CarliniWagnerLInfPGD(clf, seed=1, **kwargs).generate(x[:10], y[:10])
    b = CarliniWagnerLInfPGD(clf, seed=1, **kwargs).generate(x[:10], y[:10])
    c = CarliniWagnerLInfPGD(clf, seed=2, **kwargs).generate(x[:10], y[:10])
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    _check_bounds(a, x[:10], 0.1)


def test_cw_respects_narrow_clip_values(trained):
    model, x, y = trained
    clf = PyTorchClassifier(
        model, loss=torch.nn.CrossEntropyLoss(), input_shape=(1, 28, 28), nb_classes=10, clip_values=(0.0, 0.5)
    )
    x_in = np.clip(x[:10], 0.0, 0.5)
    x_adv = CarliniWagnerLInfPGD(clf, eps=0.2, verbose=False).generate(x_in, y[:10])
    _check_bounds(x_adv, x_in, 0.2, lo=0.0, hi=0.5)


class MeanBlur(PreprocessorPyTorch):
    """A differentiable 3x3 mean filter as a minimal ART PyTorch preprocessing defence."""

    def __init__(self):
        super().__init__(device_type="cpu", is_fitted=True, apply_fit=False, apply_predict=True)

    def forward(self, x, y=None):
        return F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1), y


def _spatial_smoothing_pytorch():
    pytest.importorskip("kornia", reason="ART's SpatialSmoothingPyTorch needs kornia")
    return SpatialSmoothingPyTorch(window_size=3, channels_first=True, clip_values=(0.0, 1.0))


@pytest.mark.parametrize(
    "make_defence", [_spatial_smoothing_pytorch, MeanBlur], ids=["SpatialSmoothingPyTorch", "MeanBlur"]
)
def test_cw_through_pytorch_preprocessing_defence_and_hooks(trained, make_defence):
    model, x, y = trained
    defended = _classifier(model, preprocessing_defences=[make_defence()])
    assert defended.all_framework_preprocessing
    attack = CarliniWagnerLInfPGD(defended, eps=0.15, max_iter=20, verbose=False)

    # the attack's logits are those of the defended classifier (i.e. they include the smoothing) ...
    x_t = torch.as_tensor(x[:8])
    with torch.no_grad():
        np.testing.assert_allclose(attack._logits(x_t).numpy(), defended.predict(x[:8]), atol=1e-5)
        undefended = model(x_t).numpy()
    assert not np.allclose(undefended, defended.predict(x[:8]), atol=1e-3)
    x_var = x_t.clone().requires_grad_(True)
    (grad_defended,) = torch.autograd.grad(attack._logits(x_var)[:, 0].sum(), x_var)
    x_var = x_t.clone().requires_grad_(True)
    (grad_plain,) = torch.autograd.grad(model(x_var)[:, 0].sum(), x_var)
    assert grad_defended.abs().sum() > 0 and not torch.allclose(grad_defended, grad_plain)

    # ... the gradients flow through it, and forward hooks on the model run
    calls = []
    handle = classifier_head(model).register_forward_pre_hook(lambda m, inp: calls.append(inp[0].shape[0]) and None)
    try:
        x_adv = attack.generate(x, y)
    finally:
        handle.remove()
    assert sum(calls) >= 20 * len(x)
    _check_bounds(x_adv, x, 0.15)
    assert _acc(defended, x_adv, y) <= _acc(defended, x, y) - 0.4


def test_cw_through_numpy_preprocessing_defence_bpda(trained):
    model, x, y = trained
    defended = _classifier(model, preprocessing_defences=[SpatialSmoothing(window_size=3, clip_values=(0.0, 1.0))])
    assert not defended.all_framework_preprocessing
    x_adv = CarliniWagnerLInfPGD(defended, eps=0.15, max_iter=20, verbose=False).generate(x, y)
    _check_bounds(x_adv, x, 0.15)
    assert _acc(defended, x_adv, y) <= _acc(defended, x, y) - 0.4


def test_cw_numpy_fallback_matches_torch_path(trained):
    model, x, y = trained
    clf = _classifier(model)
    torch_attack = CarliniWagnerLInfPGD(clf, eps=0.1, max_iter=5, verbose=False)
    numpy_attack = CarliniWagnerLInfPGD(clf, eps=0.1, max_iter=5, verbose=False)
    numpy_attack._is_pytorch = lambda: False  # force the predict / class_gradient code path
    a = torch_attack.generate(x[:20], y[:20])
    b = numpy_attack.generate(x[:20], y[:20])
    _check_bounds(b, x[:20], 0.1)
    assert np.mean(np.abs(a - b) < 1e-4) > 0.99


def test_cw_parameter_errors(trained):
    model, x, y = trained
    clf = _classifier(model)
    for bad in (dict(eps=0), dict(eps=-0.1), dict(eps_step=0), dict(max_iter=-1), dict(max_iter=2.5),
                dict(confidence=-1), dict(batch_size=0), dict(targeted="yes"), dict(random_init=1)):  # fmt: skip
        with pytest.raises(ValueError):
            CarliniWagnerLInfPGD(clf, verbose=False, **bad)
    attack = CarliniWagnerLInfPGD(clf, verbose=False)
    with pytest.raises(ValueError, match="integer labels"):
        attack.generate(x[:4], y[:3])
    with pytest.raises(ValueError, match=r"Labels must be integers in \[0, 9\]"):
        attack.generate(x[:2], np.array([0, 12]))
    with pytest.raises(ValueError, match="cannot be set"):
        attack.set_params(foo=1)


# ----------------------------------------------------------------------------------------------------------------------
# make_attack
# ----------------------------------------------------------------------------------------------------------------------


def test_make_attack_builds_the_right_classes(trained):
    model, _, _ = trained
    clf = _classifier(model)
    eps = 8 / 255
    expected = {
        "fgsm": FastGradientMethod,
        "bim": BasicIterativeMethod,
        "pgd": ProjectedGradientDescent,
        "cw": CarliniWagnerLInfPGD,
        "cw-art": CarliniLInfMethod,
        "autoattack": AutoAttack,
        "square": SquareAttack,
    }
    assert set(expected) == set(ATTACK_NAMES)
    for name, cls in expected.items():
        attack = make_attack(name, clf, eps)
        assert type(attack) is cls, name
        if name != "cw-art":
            assert attack.eps == pytest.approx(eps), name
    bim = make_attack("bim", clf, eps)
    assert bim.max_iter == 20 and bim.eps_step == pytest.approx(0.03)
    assert make_attack("bim", clf, 0.01).eps_step == pytest.approx(0.01)  # capped at eps
    assert make_attack("pgd", clf, eps).num_random_init == 1
    assert make_attack("cw", clf, eps, max_iter=7).max_iter == 7
    assert make_attack("cw-art", clf, eps).max_iter == 20
    assert make_attack("square", clf, eps).norm == np.inf
    assert type(make_attack("square", clf, eps, one_pass=True)) is OnePassSquareAttack
    assert make_attack("autoattack", clf, eps).norm == np.inf
    assert make_attack("bim", clf, eps, targeted=True).targeted


@pytest.mark.parametrize("name", ["fgsm", "bim", "pgd", "cw", "square"])
def test_make_attack_generates_within_eps(trained, name):
    model, x, y = trained
    clf = _classifier(model)
    kwargs = {"max_iter": 50} if name == "square" else {}
    attack = make_attack(name, clf, 0.1, seed=0, **kwargs)
    x_adv = attack.generate(x[:20], y[:20])
    _check_bounds(x_adv, x[:20], 0.1)
    assert _acc(clf, x_adv, y[:20]) < _acc(clf, x[:20], y[:20])


def _counting_predict(clf):
    """Make ``clf.predict`` count the images it is given; returns the one-element list holding the count."""
    count, predict = [0], clf.predict

    def counted(x, *args, **kwargs):
        count[0] += len(x)
        return predict(x, *args, **kwargs)

    clf.predict = counted
    return count


@pytest.mark.parametrize("eps, restarts", [(0.1, 2), (0.25, 1)])
def test_one_pass_square_gives_arts_aes_with_a_third_of_the_passes(trained, eps, restarts):
    model, x, y = trained
    runs = {}
    for cls in (SquareAttack, OnePassSquareAttack):
        clf = _classifier(model)
        count = _counting_predict(clf)
        np.random.seed(5)
        x_adv = cls(clf, norm=np.inf, eps=eps, max_iter=60, nb_restarts=restarts, verbose=False).generate(x, y)
        runs[cls] = x_adv, count[0]
    (art_adv, art_images), (ours, our_images) = runs[SquareAttack], runs[OnePassSquareAttack]
    _check_bounds(ours, x, eps)
    np.testing.assert_array_equal(ours, art_adv)  # the same draws, the same accepted squares
    assert _acc(_classifier(model), ours, y) < _acc(_classifier(model), x, y)  # the attack did something
    assert our_images < art_images / 2


def test_one_pass_square_falls_back_to_art_outside_its_case(trained):
    model, x, y = trained
    clf = _classifier(model)
    count = _counting_predict(clf)
    attack = OnePassSquareAttack(clf, norm=2, eps=1.0, max_iter=5, nb_restarts=1, verbose=False)
    np.random.seed(0), random.seed(0)  # ART's L2 search draws from both
    ours = attack.generate(x[:10], y[:10])
    np.random.seed(0), random.seed(0)
    theirs = SquareAttack(clf, norm=2, eps=1.0, max_iter=5, nb_restarts=1, verbose=False).generate(x[:10], y[:10])
    np.testing.assert_array_equal(ours, theirs)
    custom = OnePassSquareAttack(clf, norm=np.inf, eps=0.1, max_iter=5, loss=lambda xb, yb: np.zeros(len(xb)),
                                 verbose=False)
    before = count[0]
    custom.generate(x[:10], y[:10])  # a custom loss: ART's loop, which predicts all images at every iteration
    assert count[0] - before == 10 + 5 * 10


def test_autoattack_with_the_one_pass_square_member_gives_the_same_aes(trained):
    """AutoAttack's Square member as OnePassSquareAttack (``one_pass=True``): the same AEs as ART's member, with
    images left for Square to attack (the test would be empty otherwise)."""
    pytest.importorskip("multiprocess", reason="ART's AutoAttack.generate imports `multiprocess`")
    model, x, y = trained
    runs = {}
    for one_pass in (False, True):
        clf = _classifier(model)
        attack = make_attack("autoattack", clf, 0.04, max_iter=40, nb_random_init=1, one_pass=one_pass, seed=2)
        assert type(attack.attacks[-1]) is (OnePassSquareAttack if one_pass else SquareAttack)
        square = attack.attacks[-1]
        calls = []
        generate = square.generate
        square.generate = lambda x, y=None, **kw: calls.append(len(x)) or generate(x, y, **kw)
        runs[one_pass] = attack.generate(x[:30], y[:30]), calls
    (theirs, their_calls), (ours, our_calls) = runs[False], runs[True]
    assert their_calls and their_calls == our_calls and their_calls[0] > 0  # Square had images to attack
    np.testing.assert_array_equal(ours, theirs)


def test_make_attack_seed_makes_random_attacks_reproducible(trained):
    model, x, y = trained
    clf = _classifier(model)
    state = np.random.get_state()
    a = make_attack("pgd", clf, 0.1, seed=3, max_iter=2).generate(x[:10], y[:10])
    b = make_attack("pgd", clf, 0.1, seed=3, max_iter=2).generate(x[:10], y[:10])
    np.testing.assert_array_equal(a, b)
    assert np.array_equal(np.random.get_state()[1], state[1])  # global numpy RNG restored


def test_autoattack_runs_with_a_custom_attack_list(trained):
    pytest.importorskip("multiprocess", reason="ART's AutoAttack.generate imports `multiprocess`")
    model, x, y = trained
    clf = _classifier(model)
    fgsm = FastGradientMethod(clf, eps=0.1)
    attack = make_attack("autoattack", clf, 0.1, attacks=[fgsm])
    x_adv = attack.generate(x[:10], y[:10])
    _check_bounds(x_adv, x[:10], 0.1)


def test_make_attack_errors(trained):
    model, _, _ = trained
    clf = _classifier(model)
    with pytest.raises(ValueError, match="Valid names: fgsm, bim, pgd, cw, cw-art, autoattack, square"):
        make_attack("deepfool", clf, 0.1)
    for eps in (0, -0.1, 1.5, True, "0.1"):
        with pytest.raises(ValueError, match=r"\(0, 1\]"):
            make_attack("pgd", clf, eps)
    with pytest.raises(ValueError, match="eps_step"):
        make_attack("bim", clf, 0.1, eps_step=0)
    with pytest.raises(ValueError, match="max_iter"):
        make_attack("bim", clf, 0.1, max_iter=0)
    with pytest.raises(ValueError, match="batch_size"):
        make_attack("bim", clf, 0.1, batch_size=0)
