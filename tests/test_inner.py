"""Restorers inside the frozen target (art_idfr.inner): identity start, hooks only in the defended pass, ART and
plain-module composition, persistence, and clear errors for bad input."""
import numpy as np
import pytest
import torch
from art.attacks.evasion import ProjectedGradientDescent
from torch import nn

from art_idfr import InnerRestorer, as_module, attach_inner_restorer, defend
from art_idfr.inner import default_layers
from conftest import make_classifier, tiny_cnn


def _resnet():
    from art_idfr.experiments.models import CifarResNet

    torch.manual_seed(0)
    return CifarResNet(3, 10, width=0.125).eval()


def _perturb(inner: InnerRestorer, scale: float = 0.05) -> None:
    """Move every part away from its identity start (as training would)."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in inner.network.parameters():
            p.normal_(0, scale)


@pytest.mark.parametrize("kind", ["lora", "adapter"])
def test_identity_at_start_and_the_bare_model_unchanged_after(kind):
    model = _resnet()
    clf = make_classifier(model, input_shape=(3, 16, 16))
    inner = InnerRestorer((3, 16, 16), kind=kind, rank=2, device_type="cpu").build(model)
    x = np.random.default_rng(0).random((4, 3, 16, 16), dtype=np.float32)
    bare = clf.predict(x)
    defended = defend(clf, inner=inner)
    np.testing.assert_array_equal(defended.predict(x), bare)  # zero-initialised: exactly the undefended model
    _perturb(inner)
    assert np.abs(defended.predict(x) - bare).max() > 1e-3  # the parts act ...
    np.testing.assert_array_equal(clf.predict(x), bare)  # ... only inside the defended forward pass
    assert not any(m._forward_hooks for m in model.modules())


def test_build_leaves_every_submodule_in_its_own_mode():
    """The shape probe runs in eval mode; afterwards a model with frozen (eval-mode) BatchNorms comes back as it was."""
    model = _resnet().train()
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in norms:
        m.eval()
    InnerRestorer((3, 16, 16), rank=2, device_type="cpu").build(model)
    assert model.training and norms and not any(m.training for m in norms)


def test_default_places_per_architecture():
    model = _resnet()
    lora = default_layers(model, "lora")
    assert lora[0] == "conv1" and lora[-1] == "fc" and "layer2.0.downsample.0" in lora
    assert default_layers(model, "adapter") == [f"layer{i}.{j}" for i in range(1, 5) for j in range(2)]
    assert default_layers(tiny_cnn(), "adapter") == ["2", "5"]  # VGG-style: after every max-pool
    with pytest.raises(ValueError, match="no default place"):
        default_layers(nn.Sequential(nn.Flatten(), nn.ReLU()), "adapter")


def test_full_rank_delta_expresses_any_weight_change():
    """At full rank B·A can be any matrix: set it to a chosen ΔW and the layer computes (W + ΔW)·x exactly."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.Flatten(), nn.Linear(3 * 4 * 4, 5))
    inner = InnerRestorer((2, 4, 4), rank=100, device_type="cpu").build(model)
    part = inner.network["0"]
    assert part.a.out_channels == 3  # capped at the full rank min(out, in·k·k)
    delta = torch.randn(3, 2, 3, 3)
    with torch.no_grad():  # B·A = ΔW: A = ΔW (3 output channels), B = I
        part.a.weight.copy_(delta)
        part.b.weight.copy_(torch.eye(3).reshape(3, 3, 1, 1))
    x = torch.rand(2, 2, 4, 4)
    changed = nn.Conv2d(2, 3, 3, padding=1)
    with torch.no_grad():
        changed.weight.copy_(model[0].weight + delta)
        changed.bias.copy_(model[0].bias)
    with inner.intercept(model):
        got = model[0](x)
    torch.testing.assert_close(got, changed(x), rtol=1e-5, atol=1e-5)


def test_grouped_convolution_gets_a_delta_kernel():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1, groups=4), nn.Flatten(), nn.Linear(64, 3))
    inner = InnerRestorer((4, 4, 4), layers=["0"], rank=2, device_type="cpu").build(model)
    _perturb(inner)
    x = torch.rand(2, 4, 4, 4)
    with inner.intercept(model):
        out = model(x)
    assert out.shape == (2, 3) and inner.macs() > 0
    with torch.no_grad(), inner.intercept(model):  # folded (no gradients): the same delta kernel
        torch.testing.assert_close(model(x), out.detach(), rtol=1e-5, atol=1e-6)


def test_inference_folds_each_delta_into_its_layer_and_restores_the_layer():
    """Without gradients each delta runs folded (W + B·A, one call per layer): the same outputs as the hooked pass,
    and after the pass the layers are the target's own again (no instance forward left, weights bit-identical)."""
    model = nn.Sequential(_resnet(), nn.Flatten(), nn.Linear(10, 4)).eval()  # convs and a Linear
    inner = InnerRestorer((3, 32, 32), rank=3, device_type="cpu").build(model)
    _perturb(inner)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(4, 3, 32, 32)
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with inner.intercept(model):
        hooked = model[2](model[1](model[0](x)))  # grad enabled: the hooks
        assert not any("forward" in vars(m) for m in layers)
    with torch.no_grad(), inner.intercept(model):
        folded = model[2](model[1](model[0](x)))
        assert all("forward" in vars(m) for m in layers)
        assert not any(m._forward_hooks for m in layers)
    torch.testing.assert_close(folded, hooked.detach(), rtol=1e-4, atol=1e-5)
    assert not any("forward" in vars(m) for m in layers)
    inner.fold_at_inference = False  # the switch: hooks even without gradients
    with torch.no_grad(), inner.intercept(model):
        assert not any("forward" in vars(m) for m in layers) and all(m._forward_hooks for m in layers)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with torch.no_grad():
        assert not torch.allclose(model[2](model[1](model[0](x))), folded)  # the bare model is the bare model


def test_norm_affine_acts_as_a_change_of_each_batchnorms_weight_and_bias(tmp_path):
    """``norm_affine``: a delta (δγ, δβ) on a BatchNorm gives exactly the target with γ + δγ and β + δβ (running
    statistics frozen), while the target's own tensors stay as they were; it survives save/load."""
    import copy

    model = _resnet()
    inner = InnerRestorer((3, 16, 16), rank=2, norm_affine=True, device_type="cpu").build(model)
    norms = [n for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and all(n in inner.layers for n in norms) and "conv1" in inner.layers
    x = torch.rand(3, 3, 16, 16)
    with torch.no_grad(), inner.intercept(model):
        torch.testing.assert_close(model(x), _resnet()(x))  # identity at the start
    torch.manual_seed(2)
    part = inner.network["layer1__0__bn1"]
    with torch.no_grad():
        part.scale.normal_(0, 0.3)
        part.shift.normal_(0, 0.3)
    edited = copy.deepcopy(model)
    with torch.no_grad():
        edited.layer1[0].bn1.weight.add_(part.scale)
        edited.layer1[0].bn1.bias.add_(part.shift)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        with inner.intercept(model):
            out = model(x)
        torch.testing.assert_close(out, edited(x), rtol=1e-5, atol=1e-5)
        assert not torch.allclose(out, _resnet()(x))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert inner.macs() > InnerRestorer((3, 16, 16), rank=2, device_type="cpu").build(model).macs()
    inner.save(str(tmp_path / "inner.pt"))
    back = InnerRestorer.load(str(tmp_path / "inner.pt"))
    assert back.norm_affine and back.points == inner.points
    with torch.no_grad(), back.intercept(model):
        torch.testing.assert_close(model(x), out)
    with pytest.raises(ValueError, match="no BatchNorm"):
        InnerRestorer((1, 8, 8), norm_affine=True, device_type="cpu").build(tiny_cnn(channels=1, size=8))


def test_works_inside_art_and_as_a_plain_module_with_gradients():
    model = _resnet()
    clf = make_classifier(model, input_shape=(3, 16, 16))
    inner = InnerRestorer((3, 16, 16), rank=2, device_type="cpu").build(model)
    _perturb(inner, 0.02)
    defended = defend(clf, inner=inner)
    x = np.random.default_rng(0).random((4, 3, 16, 16), dtype=np.float32)
    y = defended.predict(x).argmax(1)
    adv = ProjectedGradientDescent(defended, eps=8 / 255, eps_step=2 / 255, max_iter=2, verbose=False).generate(x)
    assert np.abs(adv - x).max() <= 8 / 255 + 1e-6 and np.abs(adv - x).max() > 0
    module = as_module(defended)
    names = {n for n, _ in module.named_parameters()}
    assert any("inner_network" in n for n in names)  # .to()/parameters() reach the parts
    xt = torch.tensor(x, requires_grad=True)
    loss = nn.functional.cross_entropy(module(xt), torch.as_tensor(y))
    loss.backward()
    assert xt.grad.abs().sum() > 0
    assert all(p.grad is not None for p in inner.network.parameters())  # trainable through the frozen target


def test_composes_with_the_feature_restorer_hook():
    """The FR still hooks the target's own last Linear, not a Linear inside a low-rank delta."""
    from art_idfr import FeatureRestorer

    torch.manual_seed(0)
    model = tiny_cnn(channels=1, size=8, hidden=16).eval()
    clf = make_classifier(model, input_shape=(1, 8, 8))
    inner = InnerRestorer((1, 8, 8), rank=2, device_type="cpu").build(model)
    fr = FeatureRestorer(device_type="cpu")
    fr.build(16)
    fr.mark_fitted({"algorithm": "test"})
    defended = defend(clf, restorer=fr, inner=inner)
    out = defended.predict(np.zeros((2, 1, 8, 8), dtype=np.float32))
    assert out.shape == (2, 10)


def test_save_load_round_trip_and_model_checks(tmp_path):
    model = _resnet()
    inner = InnerRestorer((3, 16, 16), kind="adapter", width=0.5, device_type="cpu").build(model)
    _perturb(inner)
    inner.mark_fitted({"algorithm": "test"})
    path = str(tmp_path / "inner.pt")
    inner.save(path)
    back = InnerRestorer.load(path)
    assert back.is_fitted and back.points == inner.points and back.training_info == {"algorithm": "test"}
    clf = make_classifier(model, input_shape=(3, 16, 16))
    x = np.random.default_rng(0).random((2, 3, 16, 16), dtype=np.float32)
    np.testing.assert_array_equal(defend(clf, inner=back).predict(x), defend(clf, inner=inner).predict(x))
    other = _resnet()
    with torch.no_grad():
        other.fc.bias.add_(1.0)  # same architecture, other weights
    with pytest.raises(ValueError, match="fitted for another model"):
        attach_inner_restorer(make_classifier(other, input_shape=(3, 16, 16)), back)
    from art_idfr.experiments.models import CifarResNet

    wider = CifarResNet(3, 10, width=0.25)
    with pytest.raises(ValueError, match="built for another model"):
        InnerRestorer((3, 16, 16), rank=2, device_type="cpu").build(_resnet()).check_model(wider)


def test_per_layer_ranks_override_the_rank_and_survive_save_load(tmp_path):
    """``ranks`` spends a budget per layer: the named layers get their rank (capped at full rank), the rest ``rank``;
    the sizes follow, and a reload rebuilds the same parts."""
    model = _resnet()
    uniform = InnerRestorer((3, 16, 16), rank=2, device_type="cpu").build(model)
    inner = InnerRestorer((3, 16, 16), rank=2, ranks={"layer1.0.conv1": 5, "conv1": 100, "fc": 1},
                          device_type="cpu").build(model)
    net = inner.network
    assert net["layer1__0__conv1"].a.out_channels == 5 and net["layer1__0__conv2"].a.out_channels == 2
    assert net["conv1"].a.out_channels == min(model.conv1.out_channels, 3 * 9)  # capped at the layer's full rank
    assert net["fc"].a.out_features == 1
    c = model.layer1[0].conv1
    grown = (5 - 2) * (c.in_channels * 9 + c.out_channels)
    shrunk = (2 - 1) * (model.fc.in_features + model.fc.out_features)
    capped = (net["conv1"].a.out_channels - 2) * (3 * 9 + model.conv1.out_channels)
    assert inner.num_parameters() - uniform.num_parameters() == grown - shrunk + capped
    sizes = {row["name"]: row for row in inner.layer_sizes()}
    assert sum(row["parameters"] for row in sizes.values()) == inner.num_parameters()
    assert (sizes["layer1.0.conv1"]["rank"], sizes["layer1.0.conv2"]["rank"], sizes["fc"]["rank"]) == (5, 2, 1)
    _perturb(inner)
    path = str(tmp_path / "ranks.pt")
    inner.save(path)
    back = InnerRestorer.load(path)
    assert back.ranks == inner.ranks and back.num_parameters() == inner.num_parameters()
    clf = make_classifier(model, input_shape=(3, 16, 16))
    x = np.random.default_rng(0).random((2, 3, 16, 16), dtype=np.float32)
    np.testing.assert_array_equal(defend(clf, inner=back).predict(x), defend(clf, inner=inner).predict(x))


def test_per_layer_ranks_bad_input():
    model = _resnet()
    with pytest.raises(ValueError, match="carry no low-rank delta"):
        InnerRestorer((3, 16, 16), ranks={"layer9.conv": 4}, device_type="cpu").build(model)
    with pytest.raises(ValueError, match="carry no low-rank delta"):  # a BatchNorm gets an affine delta, no rank
        InnerRestorer((3, 16, 16), ranks={"bn1": 4}, norm_affine=True, device_type="cpu").build(model)
    with pytest.raises(ValueError, match="positive ints"):
        InnerRestorer((3, 16, 16), ranks={"conv1": 0})
    with pytest.raises(ValueError, match="map module names"):
        InnerRestorer((3, 16, 16), ranks=[("conv1", 4)])
    with pytest.raises(ValueError, match="has none"):
        InnerRestorer((3, 16, 16), kind="adapter", ranks={"conv1": 4})


def test_bad_input_gets_clear_errors(tmp_path):
    model = _resnet()
    with pytest.raises(ValueError, match="no module named"):
        InnerRestorer((3, 16, 16), layers=["layer9"], device_type="cpu").build(model)
    with pytest.raises(ValueError, match="nn.Conv2d or nn.Linear"):
        InnerRestorer((3, 16, 16), layers=["layer1"], device_type="cpu").build(model)
    with pytest.raises(ValueError, match="kind must be"):
        InnerRestorer((3, 16, 16), kind="prompt")
    with pytest.raises(ValueError, match="rank must be"):
        InnerRestorer((3, 16, 16), rank=0)
    with pytest.raises(ValueError, match="not built"):
        attach_inner_restorer(make_classifier(model, input_shape=(3, 16, 16)),
                              InnerRestorer((3, 16, 16), device_type="cpu"))
    with pytest.raises(ValueError, match="not run by the model"):
        InnerRestorer((3, 16, 16), layers=["maxpool"], kind="adapter", device_type="cpu").build(_Branchy())
    bogus = tmp_path / "x.pt"
    torch.save({"format": "something else"}, bogus)
    with pytest.raises(ValueError, match="not an art-idfr checkpoint"):
        InnerRestorer.load(str(bogus))


class _Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.used, self.maxpool, self.fc = nn.Conv2d(3, 2, 1), nn.MaxPool2d(2), nn.Linear(2 * 16 * 16, 2)

    def forward(self, x):
        return self.fc(self.used(x).flatten(1))
