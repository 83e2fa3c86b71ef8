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


def test_large_batch_at_224_runs_in_chunks_with_the_same_output():
    """ART hands a preprocessor the whole array of a predict call: at 224x224 the ID runs it batch_size images at a
    time (NumPy __call__, forward with and without autograd, ART's predict), with the output of one pass."""
    shape = (3, 224, 224)
    den = randomise_head(IDFRDenoiser(input_shape=shape, width=0.125, device_type="cpu", batch_size=2))
    one_pass = randomise_head(IDFRDenoiser(input_shape=shape, width=0.125, device_type="cpu", batch_size=5))
    one_pass.network.load_state_dict(den.network.state_dict())
    x = np.random.default_rng(0).random((5, *shape), dtype=np.float32)
    expected = one_pass(x)[0]
    chunks = []
    den._inference_network().register_forward_pre_hook(lambda m, args: chunks.append(args[0].shape[0]))

    out = den(x)[0]
    assert chunks == [2, 2, 1] and not np.allclose(out, x)
    np.testing.assert_allclose(out, expected, atol=1e-5)
    chunks.clear()
    with torch.no_grad():
        x_star, _ = den.forward(torch.from_numpy(x))
    assert chunks == [2, 2, 1] and x_star.grad_fn is None
    np.testing.assert_allclose(x_star.numpy(), expected, atol=1e-5)
    chunks.clear()
    xt = torch.from_numpy(x[:3]).requires_grad_(True)
    den.forward(xt)[0].sum().backward()  # differentiable across the chunks
    assert chunks == [2, 1] and xt.grad is not None and xt.grad.abs().sum() > 0

    chunks.clear()
    model = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten(), torch.nn.Linear(48, 2))
    clf = make_classifier(model, input_shape=shape, nb_classes=2)
    preds = defend(clf, denoiser=den).predict(x, batch_size=5)
    assert chunks == [2, 2, 1]
    np.testing.assert_allclose(preds, clf.predict(expected), atol=1e-5)


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
     ({"augment": "flip"}, "augment"), ({"architecture": "big"}, r"architecture must be one of \('table6', 'light', 'slim'\)")],
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


def test_structural_set_params_rebuilds_the_network():
    """set_params(width=...) gives a network of that width, unfitted; a training knob keeps the weights."""
    den = randomise_head(IDFRDenoiser(input_shape=(1, 28, 28), width=0.25, device_type="cpu"))
    narrow = sum(p.numel() for p in den.network.parameters())
    weights = den.network.l9.weight.clone()
    den.set_params(nb_epochs=3)
    assert den.is_fitted and torch.equal(den.network.l9.weight, weights)
    with pytest.warns(UserWarning, match="rebuilt and must be fitted again"):
        den.set_params(width=0.5)
    assert not den.is_fitted and sum(p.numel() for p in den.network.parameters()) > narrow
    with pytest.raises(ValueError, match="width must be positive"):
        den.set_params(width=-1.0)


def test_checkpoint_written_before_training_was_recorded_still_loads(tmp_path):
    """A checkpoint of the earlier layout (no "training" entry) loads, as an Algorithm-1 ID."""
    from art_idfr import checkpoint

    den = randomise_head(IDFRDenoiser(input_shape=(1, 28, 28), width=0.25, device_type="cpu"))
    path = str(tmp_path / "old.pt")
    checkpoint.save(path, kind="IDFRDenoiser", config=den.get_config(), state_dict=den.network.state_dict(),
                    extra={"is_fitted": True, "history": [{"epoch": 1, "loss": 0.5}]})
    loaded = IDFRDenoiser.load(path)
    assert loaded.is_fitted and loaded.training_info == {"algorithm": "algorithm1"} and len(loaded.history) == 1
    x = np.random.default_rng(0).random((2, 1, 28, 28), dtype=np.float32)
    np.testing.assert_array_equal(loaded(x)[0], den(x)[0])


@pytest.mark.filterwarnings("ignore:IDFRDenoiser is not fitted")
def test_default_architecture_is_table6_with_unchanged_init():
    """Default: the Table 6 U-Net, with the same initial weights as before the architecture parameter existed."""
    den = IDFRDenoiser(input_shape=(3, 32, 32), width=0.25, device_type="cpu", seed=3)
    torch.manual_seed(3)
    reference = UNetDenoiser(3, width=0.25)
    assert den.architecture == "table6" and den.get_config()["architecture"] == "table6"
    assert type(den.network) is UNetDenoiser
    for (name, a), (_, b) in zip(den.network.state_dict().items(), reference.state_dict().items()):
        assert torch.equal(a, b), name


def test_light_architecture_save_load_round_trip(tmp_path):
    from art_idfr.unet import LightUNetDenoiser

    den = IDFRDenoiser(input_shape=(3, 18, 18), width=0.25, device_type="cpu", architecture="light")
    x = np.random.default_rng(0).random((3, 3, 18, 18), dtype=np.float32)
    with pytest.warns(UserWarning, match="not fitted"):
        np.testing.assert_allclose(den(x)[0], x, atol=1e-6)  # untrained: the identity map, as Table 6
    torch.manual_seed(1)
    with torch.no_grad():
        den.network.body.l9.weight.normal_(0, 0.05)
    den._is_fitted = True
    path = str(tmp_path / "light.pt")
    den.save(path)
    loaded = IDFRDenoiser.load(path)
    assert loaded.architecture == "light" and isinstance(loaded.network, LightUNetDenoiser)
    assert not np.allclose(den(x)[0], x)
    np.testing.assert_array_equal(loaded(x)[0], den(x)[0])
    with pytest.raises(ValueError, match="weights do not match"):  # light weights never fill a Table 6 network
        from art_idfr import checkpoint

        config, state, _ = checkpoint.load_component(path, "IDFRDenoiser", None)
        checkpoint.load_state_dict(IDFRDenoiser(**(config | {"architecture": "table6"})).network, state, path)


def test_checkpoint_without_architecture_loads_as_table6(tmp_path):
    from art_idfr import checkpoint

    den = randomise_head(IDFRDenoiser(input_shape=(1, 12, 12), width=0.25, device_type="cpu"))
    config = {k: v for k, v in den.get_config().items() if k != "architecture"}  # written before it existed
    path = str(tmp_path / "old.pt")
    checkpoint.save(path, kind="IDFRDenoiser", config=config, state_dict=den.network.state_dict(),
                    extra={"is_fitted": True})
    loaded = IDFRDenoiser.load(path)
    x = np.random.default_rng(0).random((2, 1, 12, 12), dtype=np.float32)
    assert loaded.architecture == "table6"
    np.testing.assert_array_equal(loaded(x)[0], den(x)[0])


def test_set_params_architecture_rebuilds_and_checks():
    from art_idfr.unet import LightUNetDenoiser

    den = randomise_head(IDFRDenoiser(input_shape=(3, 16, 16), width=0.25, device_type="cpu"))
    with pytest.warns(UserWarning, match="rebuilt and must be fitted again"):
        den.set_params(architecture="light")
    assert isinstance(den.network, LightUNetDenoiser) and not den.is_fitted
    with pytest.raises(ValueError, match=r"architecture must be one of \('table6', 'light', 'slim'\), got 'huge'"):
        den.set_params(architecture="huge")
