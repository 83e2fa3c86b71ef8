"""IDFRDenoiser: shapes, layout, differentiability, ART integration, fitting, errors."""
import numpy as np
import pytest
import torch
from art.attacks.evasion import (
    AutoAttack,
    AutoProjectedGradientDescent,
    BasicIterativeMethod,
    FastGradientMethod,
    ProjectedGradientDescent,
    SquareAttack,
)

from art_idfr import IDFRDenoiser, UNetDenoiser, defend
from art_idfr.training.algorithm1 import Algorithm1
from conftest import make_classifier, tiny_cnn


def randomise_head(den: IDFRDenoiser, scale: float = 0.05) -> IDFRDenoiser:
    """The linear head starts at zero (identity map); give it weights so tests see a non-trivial network."""
    torch.manual_seed(1)
    with torch.no_grad():
        den.network.l9.weight.normal_(0, scale)
    den._is_fitted = True
    return den


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (3, 17, 23), (1, 5, 5), (3, 64, 48)])
def test_output_shape_and_range(shape):
    den = randomise_head(IDFRDenoiser(input_shape=shape, width=0.25, device_type="cpu"))
    x = np.random.default_rng(0).random((3, *shape), dtype=np.float32)
    x_star, _ = den(x)
    assert x_star.shape == x.shape and x_star.dtype == np.float32
    assert x_star.min() >= 0.0 and x_star.max() <= 1.0
    assert not np.allclose(x_star, x)  # the network does something


@pytest.mark.filterwarnings("ignore:IDFRDenoiser is not fitted")
def test_untrained_linear_head_is_identity():
    den = IDFRDenoiser(input_shape=(3, 32, 32), width=0.25, device_type="cpu")
    x = np.random.default_rng(0).random((4, 3, 32, 32), dtype=np.float32)
    np.testing.assert_allclose(den(x)[0], x, atol=1e-6)


def test_paper_head_and_width_one_matches_table6():
    net = UNetDenoiser(channels=3, width=1.0, residual_head="bn_relu")
    assert [net.l1[0].in_channels, net.l1[0].out_channels, net.l6[0].in_channels, net.l8[0].in_channels,
            net.l9[0].out_channels] == [3, 32, 192, 96, 3]
    # ~230 MMAC per 32x32 image (the compute ceiling quoted in the speed benchmark)
    assert 225e6 < net.macs_per_image(32, 32) < 235e6


@pytest.mark.filterwarnings("ignore:IDFRDenoiser is not fitted")
def test_channels_last_matches_channels_first():
    den_cf = randomise_head(IDFRDenoiser(input_shape=(3, 16, 16), width=0.25, device_type="cpu"))
    den_cl = IDFRDenoiser(input_shape=(16, 16, 3), channels_first=False, width=0.25, device_type="cpu")
    den_cl.network.load_state_dict(den_cf.network.state_dict())
    x = np.random.default_rng(0).random((2, 3, 16, 16), dtype=np.float32)
    out_cf = den_cf(x)[0]
    out_cl = den_cl(x.transpose(0, 2, 3, 1))[0]
    np.testing.assert_allclose(out_cl.transpose(0, 3, 1, 2), out_cf, atol=1e-5)


def test_internal_batching_gives_same_result():
    den = randomise_head(IDFRDenoiser(input_shape=(1, 28, 28), width=0.25, device_type="cpu", batch_size=3))
    x = np.random.default_rng(0).random((10, 1, 28, 28), dtype=np.float32)
    whole = randomise_head(IDFRDenoiser(input_shape=(1, 28, 28), width=0.25, device_type="cpu", batch_size=64))
    whole.network.load_state_dict(den.network.state_dict())
    np.testing.assert_allclose(den(x)[0], whole(x)[0], atol=1e-5)


def test_gradient_matches_finite_differences():
    """The network's Jacobian passes torch's gradcheck (double precision, interior pixels, no clipping)."""
    den = randomise_head(IDFRDenoiser(input_shape=(1, 6, 6), width=0.125, device_type="cpu"), scale=0.3)
    net = den.network.double().eval()
    x = (0.3 + 0.4 * torch.rand(2, 1, 6, 6, dtype=torch.float64)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: t + net(t), (x,), eps=1e-6, atol=1e-5)


def test_art_loss_gradient_through_defence_is_exact(trained_target, mnist_small):
    """ART's loss_gradient on the defended classifier equals a finite-difference directional derivative."""
    den = randomise_head(IDFRDenoiser(input_shape=(1, 28, 28), width=0.25, device_type="cpu"), scale=0.2)
    defended = defend(trained_target, denoiser=den)
    x = mnist_small[2][:4] * 0.8 + 0.1  # away from the clip bounds
    y = np.eye(10, dtype=np.float32)[mnist_small[3][:4]]
    grad = defended.loss_gradient(x, y).astype(np.float64)
    undefended = trained_target.loss_gradient(x, y)
    assert np.abs(grad).sum() > 0 and not np.allclose(grad, undefended)  # gradient goes through the ID

    # ART's gradient is the exact autograd gradient of loss(model(clip(x + r(x)))) ...
    xt = torch.as_tensor(x, dtype=torch.float32).requires_grad_(True)
    logits = trained_target.model(den.forward(xt)[0])
    torch.nn.CrossEntropyLoss()(logits, torch.as_tensor(mnist_small[3][:4])).backward()
    np.testing.assert_allclose(grad, xt.grad.numpy(), rtol=1e-4, atol=1e-7)

    # ... and agrees with a central finite difference along a random direction (float32, piecewise-linear net)
    direction = np.random.default_rng(0).standard_normal(x.shape).astype(np.float32)
    direction /= np.abs(direction).max()
    h = 1e-3
    loss_fn = torch.nn.CrossEntropyLoss()  # the classifier's loss: mean reduction

    def loss(z):
        logits = torch.as_tensor(defended.predict(z.astype(np.float32), batch_size=8), dtype=torch.float64)
        return loss_fn(logits, torch.as_tensor(mnist_small[3][:4])).item()

    numeric = (loss(x + h * direction) - loss(x - h * direction)) / (2 * h)
    analytic = float((grad * direction).sum())
    assert analytic == pytest.approx(numeric, rel=0.1)


@pytest.mark.parametrize(
    "make_attack",
    [
        lambda c: FastGradientMethod(c, eps=0.2),
        lambda c: BasicIterativeMethod(c, eps=0.2, eps_step=0.05, max_iter=3, verbose=False),
        lambda c: ProjectedGradientDescent(c, eps=0.2, eps_step=0.05, max_iter=3, verbose=False),
        lambda c: SquareAttack(c, norm=np.inf, eps=0.2, max_iter=5, nb_restarts=1, verbose=False),
        lambda c: AutoAttack(c, norm=np.inf, eps=0.2, eps_step=0.05, attacks=[
            AutoProjectedGradientDescent(c, norm=np.inf, eps=0.2, eps_step=0.05, max_iter=3, nb_random_init=1,
                                         verbose=False),
            SquareAttack(c, norm=np.inf, eps=0.2, max_iter=5, nb_restarts=1, verbose=False)]),
    ],
    ids=["FGSM", "BIM", "PGD", "Square", "AutoAttack"],
)
def test_art_attacks_run_on_defended_classifier(trained_target, mnist_small, make_attack):
    den = randomise_head(IDFRDenoiser(input_shape=(1, 28, 28), width=0.25, device_type="cpu"))
    defended = defend(trained_target, denoiser=den)
    x, y = mnist_small[2][:16], mnist_small[3][:16]
    x_adv = make_attack(defended).generate(x=x, y=np.eye(10, dtype=np.float32)[y])
    assert x_adv.shape == x.shape and np.isfinite(x_adv).all()
    assert np.abs(x_adv - x).max() <= 0.2 + 1e-5
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    # the attack really ran through the defended classifier: it perturbed, and did not raise accuracy
    def accuracy(x_in):
        return float((defended.predict(x_in).argmax(1) == y).mean())

    assert np.abs(x_adv - x).max() > 0.1 and accuracy(x_adv) <= accuracy(x)
    if not isinstance(make_attack(defended), SquareAttack):  # gradient attacks go through the ID's gradient
        assert accuracy(x_adv) < accuracy(x)


def test_fit_improves_gray_box_accuracy(trained_target, mnist_small):
    """Algorithm 1 on 1k digits: FGSM gray-box accuracy rises far above the undefended one, clean stays close."""
    x_train, y_train, x_test, y_test = mnist_small
    fgsm = FastGradientMethod(trained_target, eps=0.25)
    x_adv = fgsm.generate(x_test)
    acc = lambda clf, x: float((clf.predict(x).argmax(1) == y_test).mean())  # noqa: E731
    before_clean, before_adv = acc(trained_target, x_test), acc(trained_target, x_adv)

    den = IDFRDenoiser(input_shape=(1, 28, 28), width=0.25, nb_epochs=3, learning_rate=3e-3, batch_size=64,
                       gaussian_sigma=0.1, device_type="cpu")
    den.fit(x_train, y_train, classifier=trained_target, attacks=[fgsm])
    assert den.is_fitted and len(den.history) == 3
    defended = defend(trained_target, denoiser=den)
    after_clean, after_adv = acc(defended, x_test), acc(defended, x_adv)
    assert after_adv > before_adv + 0.3, (before_adv, after_adv)
    assert after_clean > before_clean - 0.08, (before_clean, after_clean)
    # the target itself was left untouched (frozen, same mode)
    assert acc(trained_target, x_test) == before_clean


def test_feature_loss_and_validation_selection(trained_target, mnist_small):
    x_train, y_train, x_test, y_test = mnist_small
    den = IDFRDenoiser(input_shape=(1, 28, 28), width=0.125, nb_epochs=2, batch_size=128, loss="both",
                       device_type="cpu")
    den.fit(x_train[:256], y_train[:256], classifier=trained_target, attacks=[FastGradientMethod(trained_target,
            eps=0.2)], validation_data=(x_test[:64], y_test[:64]))
    assert all("val_acc" in h for h in den.history)
    assert np.isfinite([h["loss"] for h in den.history]).all()


def test_best_epoch_uses_clean_and_adversarial_validation(trained_target, mnist_small):
    """The kept epoch maximises mean(clean, adversarial) validation accuracy, not clean accuracy alone."""
    x_train, y_train, x_test, y_test = mnist_small
    fgsm = FastGradientMethod(trained_target, eps=0.3)
    x_val, y_val = x_test[:200], y_test[:200]
    den = IDFRDenoiser(input_shape=(1, 28, 28), width=0.125, nb_epochs=3, learning_rate=3e-3, batch_size=64,
                       device_type="cpu", seed=0)
    den.fit(x_train[:512], y_train[:512], classifier=trained_target, attacks=[fgsm], validation_data=(x_val, y_val))
    hist = den.history
    assert all({"val_acc", "val_adv_acc", "val_score"} <= set(h) for h in hist)
    assert all(h["val_score"] == pytest.approx((h["val_acc"] + h["val_adv_acc"]) / 2) for h in hist)
    best = max(hist, key=lambda h: h["val_score"])
    defended = defend(trained_target, denoiser=den)
    x_val_adv = fgsm.generate(x_val, y=np.eye(10, dtype=np.float32)[y_val])  # fit crafts with the true labels
    acc = lambda x: float((defended.predict(x).argmax(1) == y_val).mean())  # noqa: E731
    assert acc(x_val) == pytest.approx(best["val_acc"])
    assert acc(x_val_adv) == pytest.approx(best["val_adv_acc"])
    # precomputed validation AEs (third element) count the same way
    den2 = IDFRDenoiser(input_shape=(1, 28, 28), width=0.125, nb_epochs=1, device_type="cpu", seed=0)
    den2.fit(x_train[:128], y_train[:128], classifier=trained_target, x_adv=fgsm.generate(x_train[:128]),
             validation_data=(x_val, y_val, [x_val_adv]))
    assert "val_adv_acc" in den2.history[0]


def test_identity_weight_keeps_clean_images_closer(trained_target, mnist_small):
    """The identity term λ·mean|ID(x) − x| on clean training images keeps the fitted ID nearer the identity."""
    x_train, y_train, x_test, _ = mnist_small
    fgsm = FastGradientMethod(trained_target, eps=0.3)
    x_adv = fgsm.generate(x_train[:384])
    change = {}
    for weight in (0.0, 500.0):
        den = IDFRDenoiser(input_shape=(1, 28, 28), width=0.125, nb_epochs=2, learning_rate=3e-3, batch_size=64,
                           identity_weight=weight, device_type="cpu", seed=0)
        den.fit(x_train[:384], y_train[:384], classifier=trained_target, x_adv=x_adv)
        change[weight] = float(np.abs(den(x_test[:200])[0] - x_test[:200]).mean())
    assert change[500.0] < 0.5 * change[0.0], change


class NHWCToNCHW(torch.nn.Module):
    def forward(self, x):
        return x.permute(0, 3, 1, 2)


def test_random_crop_flip_draws_a_crop_and_flip_per_sample():
    from art_idfr._utils import random_crop_flip

    x = torch.rand(1, 2, 6, 7).repeat(64, 1, 1, 1)
    gen = torch.Generator().manual_seed(0)
    assert torch.equal(random_crop_flip(x, gen, pad=0, flip=False), x)
    flipped = random_crop_flip(x, gen, pad=0, flip=True)
    is_flip = [torch.equal(f, x[0].flip(2)) for f in flipped]
    assert all(torch.equal(f, x[0]) or fl for f, fl in zip(flipped, is_flip)) and 10 < sum(is_flip) < 54
    padded = torch.nn.functional.pad(x[0], (2, 2, 2, 2))
    crops = {(dy, dx): padded[:, dy:dy + 6, dx:dx + 7] for dy in range(5) for dx in range(5)}
    out = random_crop_flip(x, gen, pad=2, flip=False)
    offsets = [next(k for k, c in crops.items() if torch.equal(o, c)) for o in out]  # each is one of the 25 crops
    assert len(set(offsets)) > 10


def test_fit_with_augmentation_transforms_input_and_reference_alike(trained_target, mnist_small):
    """augment= crops (and flips) every training batch; the feature loss's clean reference gets the same crop."""
    x_train, y_train, x_test, y_test = mnist_small
    den = IDFRDenoiser(input_shape=(1, 28, 28), width=0.125, augment="crop", device_type="cpu", seed=0)
    x = torch.rand(8, 1, 28, 28)
    a, b = Algorithm1(den, trained_target, [], 8).batch_inputs(x, x.clone())
    assert torch.equal(a, b) and not torch.equal(a, x)
    fgsm = FastGradientMethod(trained_target, eps=0.2)
    x_adv = fgsm.generate(x_train[:256])
    nhwc_target = make_classifier(torch.nn.Sequential(NHWCToNCHW(), trained_target.model), input_shape=(28, 28, 1),
                                  channels_first=False)
    hist = {}
    for augment in ("none", "crop"):
        den = IDFRDenoiser(input_shape=(28, 28, 1), channels_first=False, width=0.125, nb_epochs=2, batch_size=64,
                           loss="both", augment=augment, device_type="cpu", seed=0)
        den.fit(x_train[:256].transpose(0, 2, 3, 1), y_train[:256], classifier=nhwc_target,
                x_adv=x_adv.transpose(0, 2, 3, 1))
        hist[augment] = [h["loss"] for h in den.history]
    assert np.isfinite(hist["crop"]).all() and hist["crop"] != hist["none"]


# ---------------------------------------------------------------------------------------------- bad input
@pytest.fixture
def den28():
    return randomise_head(IDFRDenoiser(input_shape=(1, 28, 28), width=0.125, device_type="cpu"))


def test_rejects_channels_last_for_channels_first():
    den = IDFRDenoiser(input_shape=(3, 32, 32), width=0.125, device_type="cpu")
    with pytest.raises(ValueError, match="channels-last"):
        den(np.random.rand(2, 32, 32, 3).astype(np.float32))


def test_rejects_wrong_channel_count(den28):
    with pytest.raises(ValueError, match="input_shape"):
        den28(np.random.rand(2, 3, 28, 28).astype(np.float32))


def test_rejects_0_255_images(den28):
    with pytest.raises(ValueError, match="255"):
        den28((np.random.rand(2, 1, 28, 28) * 255).astype(np.float32))


def test_rejects_nan_and_inf(den28):
    x = np.random.rand(2, 1, 28, 28).astype(np.float32)
    x[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        den28(x)
    x[0, 0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or inf"):
        den28(x)


def test_rejects_non_4d(den28):
    with pytest.raises(ValueError, match="4-D"):
        den28(np.random.rand(1, 28, 28).astype(np.float32))


def test_bad_input_also_raises_inside_art_classifier(trained_target, den28):
    defended = defend(trained_target, denoiser=den28)
    with pytest.raises(ValueError, match="clip_values"):
        defended.predict((np.random.rand(2, 1, 28, 28) * 255).astype(np.float32))


@pytest.mark.parametrize(
    "kwargs, match",
    [({"input_shape": (28, 28)}, "input_shape"), ({"loss": "mse"}, "loss"), ({"residual_head": "x"}, "residual"),
     ({"clip_values": (1.0, 0.0)}, "clip_values"), ({"device_type": "tpu"}, "device_type"), ({"width": 0}, "width"),
     ({"clean_weight": 0}, "clean_weight"), ({"identity_weight": -1}, "identity_weight"),
     ({"augment": "flip"}, "augment")],
)
def test_rejects_bad_params(kwargs, match):
    args = {"input_shape": (1, 28, 28), "device_type": "cpu"} | kwargs
    with pytest.raises(ValueError, match=match):
        IDFRDenoiser(**args)


def test_fit_rejects_non_pytorch_classifier(mnist_small):
    den = IDFRDenoiser(input_shape=(1, 28, 28), width=0.125, device_type="cpu")
    with pytest.raises(TypeError, match="PyTorchClassifier"):
        den.fit(mnist_small[0][:8], mnist_small[1][:8], classifier=object())


def test_fit_rejects_label_mismatch(trained_target, mnist_small):
    den = IDFRDenoiser(input_shape=(1, 28, 28), width=0.125, device_type="cpu")
    with pytest.raises(ValueError, match="samples"):
        den.fit(mnist_small[0][:8], mnist_small[1][:7], classifier=trained_target)


def test_defend_rejects_unfitted_denoiser(trained_target):
    with pytest.raises(ValueError, match="not fitted"):
        defend(trained_target, denoiser=IDFRDenoiser(input_shape=(1, 28, 28), device_type="cpu"))


def test_unfitted_denoiser_warns_once_when_used():
    den = IDFRDenoiser(input_shape=(1, 8, 8), width=0.125, device_type="cpu")
    x = np.random.default_rng(0).random((2, 1, 8, 8), dtype=np.float32)
    with pytest.warns(UserWarning, match="not fitted"):
        den(x)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        den(x)  # once per instance
        randomise_head(IDFRDenoiser(input_shape=(1, 8, 8), width=0.125, device_type="cpu"))(x)  # fitted: silent


def test_inference_copy_is_cached_until_the_weights_change():
    den = randomise_head(IDFRDenoiser(input_shape=(1, 8, 8), width=0.125, device_type="cpu"))
    first = den._inference_network()
    assert den._inference_network() is first  # unchanged weights: reused
    with torch.no_grad():
        den.network.l9.weight.add_(0.01)  # in-place change (as an optimizer step makes)
    second = den._inference_network()
    assert second is not first and den._inference_network() is second
    den.network.load_state_dict({k: v.clone() for k, v in den.network.state_dict().items()})
    assert den._inference_network() is not second


def test_device_type_gpu_falls_back_to_cpu_without_cuda():
    den = IDFRDenoiser(input_shape=(1, 8, 8), width=0.125, device_type="gpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert den.device.type == expected and next(den.network.parameters()).device.type == expected


def test_colour_classifier_end_to_end():
    """3x32x32 target with ART mean/std preprocessing: the ID sees raw pixels, standardisation comes after."""
    torch.manual_seed(0)
    model = tiny_cnn(channels=3, size=32)
    clf = make_classifier(model, input_shape=(3, 32, 32), preprocessing=((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)))
    den = randomise_head(IDFRDenoiser(input_shape=(3, 32, 32), width=0.125, device_type="cpu"))
    defended = defend(clf, denoiser=den)
    x = np.random.default_rng(0).random((4, 3, 32, 32), dtype=np.float32)
    manual = clf.predict(den(x)[0])
    np.testing.assert_allclose(defended.predict(x), manual, atol=1e-5)
