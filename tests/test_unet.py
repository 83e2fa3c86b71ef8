"""The ID networks: Table 6 U-Net and the light variant (MACs, identity start, inference copy, shapes, names)."""
import pytest
import torch
from torch import nn

from art_idfr._names import ID_ARCHITECTURES
from art_idfr.unet import ARCHITECTURES, LightUNetDenoiser, SlimUNetDenoiser, UNetDenoiser, conv_macs, make_unet


def randomised(net: nn.Module) -> nn.Module:
    """Non-zero head and non-trivial BatchNorm statistics, so that the network is not the identity."""
    torch.manual_seed(1)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
        head = net.body.l9 if isinstance(net, LightUNetDenoiser) else net.l9
        head.weight.normal_(0, 0.05)
    return net.eval()


def test_names_and_classes_agree():
    assert tuple(ARCHITECTURES) == ID_ARCHITECTURES
    assert type(make_unet("table6", 3)) is UNetDenoiser and isinstance(make_unet("light", 3), LightUNetDenoiser)
    assert isinstance(make_unet("slim", 3), SlimUNetDenoiser)
    with pytest.raises(ValueError, match=r"architecture must be one of \('table6', 'light', 'slim'\), got 'big'"):
        make_unet("big", 3)


def test_table6_macs_match_the_layer_by_layer_count():
    """conv_macs on Table 6 at width 1, 32x32: the sum of the nine 3x3 convolutions (L3, L5 at stride 2)."""
    layers = [(32, 3, 32), (32, 32, 32), (16, 32, 64), (16, 64, 64), (8, 64, 128), (16, 192, 192), (16, 192, 64),
              (32, 96, 96), (32, 96, 3)]  # (output side, in, out)
    expected = sum(side * side * c_in * c_out * 9 for side, c_in, c_out in layers)
    assert UNetDenoiser(3).macs_per_image(32, 32) == expected == 230_031_360
    assert conv_macs(nn.Linear(10, 4), (2, 3, 10)) == 2 * 3 * 10 * 4  # Linear layers count too (any leading dims)


@pytest.mark.parametrize("width", [1.0, 0.5])
@pytest.mark.parametrize("size", [32, 224])
def test_light_and_slim_have_at_most_half_the_table6_macs(size, width):
    table6 = UNetDenoiser(3, width=width).macs_per_image(size, size)
    light = LightUNetDenoiser(3, width=width).macs_per_image(size, size)
    slim = SlimUNetDenoiser(3, width=width).macs_per_image(size, size)
    assert light <= 0.5 * table6 and slim <= 0.5 * table6
    assert light < 0.3 * table6  # the design: a quarter of the positions (+ the wider first/last layer)


def test_slim_keeps_the_encoder_and_slims_the_decoder():
    net = SlimUNetDenoiser(3)
    assert [net.l1[0].out_channels, net.l5[0].out_channels, net.l6[0].in_channels, net.l6[0].out_channels,
            net.l8[0].in_channels, net.l8[0].out_channels, net.l9.in_channels] == [32, 128, 192, 64, 96, 32, 32]
    with pytest.raises(ValueError, match="8 ints"):
        UNetDenoiser(3, counts=(32, 32))


@pytest.mark.parametrize("architecture", ["light", "slim"])
@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 28, 28), (3, 17, 23), (1, 1, 1), (3, 5, 4)])
def test_untrained_light_is_the_identity_and_keeps_any_shape(shape, architecture):
    net = make_unet(architecture, shape[0], width=0.25).eval()
    x = torch.rand(2, *shape)
    assert torch.equal(net(x), torch.zeros_like(x))  # zero-initialised linear head: x* = x + 0
    y = randomised(net)(x)
    assert y.shape == x.shape and y.abs().max() > 0


@pytest.mark.parametrize("architecture", ID_ARCHITECTURES)
def test_inference_copy_matches_the_network(architecture):
    net = randomised(make_unet(architecture, 3, width=0.25))
    x = torch.rand(3, 3, 20, 18, requires_grad=True)
    fused = net.fused()
    torch.testing.assert_close(fused(x.contiguous(memory_format=torch.channels_last)), net(x), atol=1e-5, rtol=1e-4)
    assert not any(p.requires_grad for p in fused.parameters()) and any(p.requires_grad for p in net.parameters())
    g_net, = torch.autograd.grad(net(x).sum(), x)
    g_fused, = torch.autograd.grad(fused(x).sum(), x)
    torch.testing.assert_close(g_fused, g_net, atol=1e-5, rtol=1e-4)


def test_light_residual_head_bn_relu_builds():
    net = LightUNetDenoiser(1, width=0.25, residual_head="bn_relu").eval()
    assert net.body.l9[0].out_channels == 4 and net(torch.rand(1, 1, 8, 8)).shape == (1, 1, 8, 8)
