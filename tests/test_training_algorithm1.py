"""Algorithm 1 (art_idfr.training.algorithm1): fitting the ID improves gray-box accuracy, validation, options."""
import numpy as np
import pytest
import torch
from art.attacks.evasion import FastGradientMethod

from art_idfr import IDFRDenoiser, defend
from art_idfr.training.algorithm1 import Algorithm1
from conftest import make_classifier


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
