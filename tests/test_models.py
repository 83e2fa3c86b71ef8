"""Tests of art_idfr.experiments.models: architectures, Normalize, training, determinism and checkpoint resume."""
import os

import numpy as np
import pytest
import torch
from torch import nn

from art_idfr.experiments.models import (
    MODEL_NAMES,
    Normalize,
    accuracy,
    classifier_head,
    latest_checkpoint,
    make_model,
    predict_logits,
    recalibrate_batchnorm,
    train_model,
)
from art_idfr.experiments.models.training import _augment


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _separable(n=96, shape=(1, 28, 28), seed=0):
    """Two classes: bright upper half vs bright lower half, plus noise."""
    rng = np.random.default_rng(seed)
    c, h, w = shape
    x = rng.uniform(0.0, 0.3, size=(n, c, h, w)).astype(np.float32)
    y = (np.arange(n) % 2).astype(np.int64)
    x[y == 0, :, : h // 2] += 0.6
    x[y == 1, :, h // 2 :] += 0.6
    return np.clip(x, 0, 1), y


@pytest.mark.parametrize("name", ["small_cnn", "resnet18_cifar", "vgg16_bn_cifar"])
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_small_models_shapes_and_head(name, shape):
    model = make_model(name, num_classes=7, input_shape=shape, width=0.125, seed=0)
    assert not model.training
    assert isinstance(next(iter(model.children())), Normalize)
    assert isinstance(list(model.modules())[-1], nn.Linear)
    head = classifier_head(model)
    assert head is list(model.modules())[-1] and head.out_features == 7
    seen = {}

    def hook(module, inputs):
        seen["emb"] = inputs[0].shape

    handle = head.register_forward_pre_hook(hook)
    out = model(torch.rand(3, *shape))
    handle.remove()
    assert out.shape == (3, 7)
    assert seen["emb"] == (3, head.in_features)


def test_imagenet_models_build():
    r50 = make_model("resnet50", num_classes=5, input_shape=(3, 64, 64), seed=0)
    assert r50(torch.rand(2, 3, 64, 64)).shape == (2, 5)
    assert isinstance(list(r50.modules())[-1], nn.Linear) and classifier_head(r50).in_features == 2048
    inc = make_model("inception_v3", num_classes=5, input_shape=(3, 75, 75), seed=0)
    out = inc(torch.rand(2, 3, 75, 75))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 5)  # no auxiliary logits tuple
    assert classifier_head(inc).in_features == 2048


def test_weights_file_of_torchvision_models(tmp_path):
    """--weights: a torchvision state_dict goes into the backbone (loaded with weights_only, nothing downloaded); the
    Normalize layer is what torchvision's weights expect, ImageNet mean/std for ResNet-50 and, for Inception-v3,
    (x - 0.5) / 0.5 = torchvision's transform_input=True after ImageNet standardisation; AuxLogits are dropped."""
    import torchvision

    from art_idfr.experiments.models import IMAGENET_MEAN, IMAGENET_STD

    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    torch.manual_seed(0)
    tv = torchvision.models.resnet50(num_classes=3).eval()
    torch.save(tv.state_dict(), tmp_path / "r50.pth")
    model = make_model("resnet50", num_classes=3, input_shape=(3, 64, 64), weights=str(tmp_path / "r50.pth"))
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(x), tv((x - mean) / std), atol=1e-5)
    # the same weights as a whole-model state dict (train-target's model.pt), wrapped, with DataParallel's prefix
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, tmp_path / "whole.pt")
    again = make_model("resnet50", num_classes=3, input_shape=(3, 64, 64), weights=str(tmp_path / "whole.pt"))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))

    tv_inc = torchvision.models.inception_v3(weights=None, num_classes=3, aux_logits=True, transform_input=True,
                                             init_weights=True).eval()
    assert any(k.startswith("AuxLogits.") for k in tv_inc.state_dict())
    torch.save(tv_inc.state_dict(), tmp_path / "inc.pth")
    inc = make_model("inception_v3", num_classes=3, input_shape=(3, 75, 75), weights=str(tmp_path / "inc.pth"))
    assert inc.backbone.AuxLogits is None and torch.allclose(inc.normalize.mean, torch.full((1, 3, 1, 1), 0.5))
    x = torch.rand(2, 3, 75, 75)
    with torch.no_grad():
        ours, theirs = inc(x), tv_inc((x - mean) / std)
    assert torch.allclose(ours, theirs, rtol=1e-4, atol=1e-4 * float(theirs.abs().max()))


def test_weights_file_errors(tmp_path):
    import torchvision

    shape = dict(num_classes=3, input_shape=(3, 64, 64))
    with pytest.raises(FileNotFoundError, match="weights file .*nope.pth' not found"):
        make_model("resnet50", weights=str(tmp_path / "nope.pth"), **shape)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"cannot be read as a PyTorch state_dict with torch.load\(weights_only"):
        make_model("resnet50", weights=str(tmp_path / "junk.pth"), **shape)
    torch.save({"epoch": 3, "lr": 0.1}, tmp_path / "settings.pth")
    with pytest.raises(ValueError, match="not a state_dict"):
        make_model("resnet50", weights=str(tmp_path / "settings.pth"), **shape)
    torch.save(torchvision.models.resnet18(num_classes=3).state_dict(), tmp_path / "r18.pth")
    with pytest.raises(ValueError, match=r"do not fit resnet50: missing: .*layer1.0.conv3.weight.*other shapes"):
        make_model("resnet50", weights=str(tmp_path / "r18.pth"), **shape)
    torch.save(torchvision.models.resnet50(num_classes=1000).state_dict(), tmp_path / "imagenet.pth")
    with pytest.raises(ValueError, match=r"fc.weight \(1000, 2048\) in the file, \(3, 2048\) in the model.*"
                                         "1000 classes, the model 3.*all 1000 class folders"):
        make_model("resnet50", weights=str(tmp_path / "imagenet.pth"), **shape)
    with pytest.raises(ValueError, match="either pretrained=True .* or weights"):
        make_model("resnet50", num_classes=1000, pretrained=True, weights=str(tmp_path / "imagenet.pth"))


def test_make_model_is_seeded_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a = make_model("small_cnn", input_shape=(1, 28, 28), width=0.25, seed=5)
    assert torch.equal(torch.rand(1), expected_next)
    b = make_model("small_cnn", input_shape=(1, 28, 28), width=0.25, seed=5)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


def test_normalize():
    norm = Normalize(mean=(0.5, 0.25, 0.0), std=(0.5, 0.25, 2.0), channels=3)
    x = torch.ones(1, 3, 2, 2)
    np.testing.assert_allclose(norm(x)[0, :, 0, 0].numpy(), [1.0, 3.0, 0.5])
    assert torch.equal(Normalize(channels=1)(x[:, :1]), x[:, :1])
    assert torch.allclose(Normalize(mean=[0.5], std=[0.5], channels=3)(x), torch.ones_like(x))
    model = make_model("small_cnn", input_shape=(3, 32, 32), width=0.125, mean=(0.4, 0.5, 0.6), std=(0.2, 0.2, 0.2))
    assert torch.allclose(model.normalize.mean.flatten(), torch.tensor([0.4, 0.5, 0.6]))
    with pytest.raises(ValueError, match="2 values but the input has 3 channels"):
        Normalize(mean=(0.1, 0.2), channels=3)
    with pytest.raises(ValueError, match="positive"):
        Normalize(std=(1.0, 0.0, 1.0), channels=3)


def test_make_model_errors():
    with pytest.raises(ValueError, match="Valid names: small_cnn, resnet18_cifar"):
        make_model("resnet1000")
    with pytest.raises(ValueError, match="input_shape"):
        make_model("small_cnn", input_shape=(28, 28))
    with pytest.raises(ValueError, match="width"):
        make_model("small_cnn", width=0)
    with pytest.raises(ValueError, match="num_classes"):
        make_model("small_cnn", num_classes=1)
    with pytest.raises(ValueError, match="75x75"):
        make_model("inception_v3", input_shape=(3, 32, 32))
    with pytest.raises(ValueError, match="pretrained"):
        make_model("small_cnn", pretrained=True)
    assert set(MODEL_NAMES) == {"small_cnn", "resnet18_cifar", "vgg16_bn_cifar", "resnet50", "inception_v3"}


def test_augment_shapes_and_values():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(8, 3, 32, 32)
    out = _augment(x, gen)
    assert out.shape == x.shape
    # every output pixel is an input pixel of the same image/channel or zero padding
    for i in range(8):
        allowed = set(np.round(x[i].numpy().ravel(), 6)) | {0.0}
        assert set(np.round(out[i].numpy().ravel(), 6)) <= allowed
    x28 = torch.rand(4, 1, 28, 28)
    assert _augment(x28, gen).shape == x28.shape
    # other sizes (ImageNet-style inputs): crops of 1/8 of the side and flips too, values from the same image
    other = torch.rand(6, 3, 40, 48)
    out = _augment(other, gen)
    assert out.shape == other.shape and not torch.equal(out, other)
    for i in range(6):
        assert set(np.round(out[i].numpy().ravel(), 6)) <= set(np.round(other[i].numpy().ravel(), 6)) | {0.0}


def test_train_model_learns_separable_data():
    x, y = _separable()
    model = make_model("small_cnn", num_classes=2, input_shape=(1, 28, 28), width=0.25, seed=0)
    before = accuracy(model, x, y)
    history = train_model(model, x, y, epochs=4, batch_size=32, lr=0.05, device="cpu", verbose=False, x_val=x, y_val=y)
    after = accuracy(model, x, y)
    assert after >= 0.95 and after > before
    assert history["epoch"] == [1, 2, 3, 4] and len(history["loss"]) == 4
    assert history["val_acc"][-1] == pytest.approx(after)
    assert not model.training
    # one-hot labels are accepted by accuracy()
    assert accuracy(model, x, np.eye(2)[y]) == after
    assert predict_logits(model, x[:5]).shape == (5, 2)


def test_recalibrate_batchnorm_gives_exact_statistics():
    x, _ = _separable(n=40)
    model = make_model("small_cnn", num_classes=2, input_shape=(1, 28, 28), width=0.25, seed=0)
    bn = model.backbone.features[0][1]
    bn.running_mean.fill_(100.0)
    recalibrate_batchnorm(model, x, batch_size=16)
    with torch.no_grad():
        pre = model.backbone.features[0][0](model.normalize(torch.as_tensor(x)))
    torch.testing.assert_close(bn.running_mean, pre.mean(dim=(0, 2, 3)), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(bn.running_var, pre.var(dim=(0, 2, 3)), rtol=1e-2, atol=1e-4)
    assert bn.momentum == 0.1 and not model.training


def test_train_model_adam_cosine_3ch():
    x, y = _separable(n=64, shape=(3, 32, 32), seed=1)
    model = make_model("small_cnn", num_classes=2, input_shape=(3, 32, 32), width=0.25, seed=0)
    train_model(model, x, y, epochs=3, batch_size=32, optimizer="adam", lr=3e-3, schedule="cosine", verbose=False)
    assert accuracy(model, x, y) >= 0.9


def test_train_model_mixed_precision_learns_and_keeps_float32_weights():
    x, y = _separable(n=64)
    model = make_model("small_cnn", num_classes=2, input_shape=(1, 28, 28), width=0.25, seed=0)
    history = train_model(model, x, y, epochs=4, batch_size=32, lr=0.05, device="cpu", verbose=False, amp=True)
    assert accuracy(model, x, y) >= 0.95 and np.isfinite(history["loss"]).all()
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert predict_logits(model, x[:3]).dtype == np.float32


def test_train_model_is_deterministic():
    x, y = _separable(n=64)
    states = []
    for _ in range(2):
        model = make_model("small_cnn", num_classes=2, input_shape=(1, 28, 28), width=0.25, seed=0)
        train_model(model, x, y, epochs=2, batch_size=32, device="cpu", seed=3, verbose=False)
        states.append(model.state_dict())
    for k in states[0]:
        assert torch.equal(states[0][k], states[1][k]), k


def test_checkpoint_resume_matches_uninterrupted_run(tmp_path):
    x, y = _separable(n=64)
    kwargs = dict(epochs=3, batch_size=32, device="cpu", seed=1, verbose=False)

    full = make_model("small_cnn", num_classes=2, input_shape=(1, 28, 28), width=0.25, seed=0)
    full_history = train_model(full, x, y, checkpoint_dir=str(tmp_path / "a"), **kwargs)
    assert sorted(os.listdir(tmp_path / "a")) == ["epoch_0003.pt"]  # keep_last=1

    # simulate a crash after epoch 2: keep the epoch-2 checkpoint only
    part = make_model("small_cnn", num_classes=2, input_shape=(1, 28, 28), width=0.25, seed=0)
    train_model(part, x, y, checkpoint_dir=str(tmp_path / "b"), keep_last=3, **kwargs)
    os.remove(tmp_path / "b" / "epoch_0003.pt")
    assert latest_checkpoint(str(tmp_path / "b")).endswith("epoch_0002.pt")
    state = torch.load(latest_checkpoint(str(tmp_path / "b")), weights_only=True)
    assert state["epoch"] == 2 and {"model", "optimizer", "scheduler", "history", "config"} <= set(state)

    resumed = make_model("small_cnn", num_classes=2, input_shape=(1, 28, 28), width=0.25, seed=99)
    history = train_model(resumed, x, y, checkpoint_dir=str(tmp_path / "b"), keep_last=3, **kwargs)
    assert history["epoch"] == [1, 2, 3]
    assert history["loss"] == pytest.approx(full_history["loss"])
    for k, v in full.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k

    # everything done already: loads and returns without training
    again = make_model("small_cnn", num_classes=2, input_shape=(1, 28, 28), width=0.25, seed=7)
    h2 = train_model(again, x, y, checkpoint_dir=str(tmp_path / "a"), **kwargs)
    assert h2["seconds"] == full_history["seconds"]
    for k, v in full.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), k

    # a model of another width is refused with a clear error (not torch's size-mismatch dump)
    wider = make_model("small_cnn", num_classes=2, input_shape=(1, 28, 28), width=0.5, seed=7)
    shapes = r"another architecture or width .*is \(8, 1, 3, 3\) there, \(16, 1, 3, 3\) here"
    with pytest.raises(ValueError, match=shapes):
        train_model(wider, x, y, checkpoint_dir=str(tmp_path / "a"), **kwargs)
    # a different configuration is refused
    with pytest.raises(ValueError, match="different configuration"):
        train_model(again, x, y, checkpoint_dir=str(tmp_path / "a"), lr=0.2, **kwargs)
    # ... unless resume=False
    train_model(again, x, y, checkpoint_dir=str(tmp_path / "a"), resume=False, **{**kwargs, "epochs": 1})


def test_train_model_errors():
    x, y = _separable(n=8)
    model = make_model("small_cnn", num_classes=2, input_shape=(1, 28, 28), width=0.125)
    with pytest.raises(ValueError, match="optimizer"):
        train_model(model, x, y, epochs=1, optimizer="rmsprop", verbose=False)
    with pytest.raises(ValueError, match="schedule"):
        train_model(model, x, y, epochs=1, schedule="step", verbose=False)
    with pytest.raises(ValueError, match="epochs"):
        train_model(model, x, y, epochs=0, verbose=False)
    with pytest.raises(ValueError, match="`y` must be"):
        train_model(model, x, y[:3], epochs=1, verbose=False)
    with pytest.raises(ValueError, match="x_val"):
        train_model(model, x, y, epochs=1, x_val=x, verbose=False)
    with pytest.raises(ValueError, match="device"):
        train_model(model, x, y, epochs=1, device="tpu", verbose=False)


def test_torch_device_and_the_run_device_of_predictions():
    from art_idfr.experiments import models
    from art_idfr.experiments.models.predict import _run_device

    assert models.torch_device("cpu") == torch.device("cpu")
    assert models.torch_device(torch.device("cpu")) == torch.device("cpu")
    assert models.torch_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="Invalid device"):
        models.torch_device("tpu")
    model = make_model("small_cnn", num_classes=2, input_shape=(1, 28, 28), width=0.125, seed=0)
    assert _run_device(model, "auto") == torch.device("cpu")  # "auto": where the model's weights are
    x, _ = _separable(n=4)
    np.testing.assert_array_equal(predict_logits(model, x), predict_logits(model, x, device="cpu"))
