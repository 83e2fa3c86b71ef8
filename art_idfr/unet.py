"""
The ID networks: the paper's Table 6 U-Net (:class:`UNetDenoiser`), two lighter variants for large inputs
(:class:`LightUNetDenoiser`, :class:`SlimUNetDenoiser`, not in the paper), all outputting a residual
``x* = x + r(x)``; :func:`make_unet` builds one by name and :func:`conv_macs` counts the multiply-accumulates of any
network.

| Paper: "Adversarial Defense via Input Denoising and Feature Restoring" (IDFR), Sec. 3.2, Table 6.
"""
from __future__ import annotations

import copy
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import nn

from art_idfr._names import ID_ARCHITECTURES

#: Table 6 channel counts, before the width multiplier: L1..L5 (encoder), L6, L7, L8 (decoder)
TABLE6_CHANNELS = (32, 32, 64, 64, 128, 192, 64, 96)
#: the slim decoder (``architecture="slim"``, not in the paper): Table 6's encoder, L6 192→64, L7 64→64, L8 96→32
SLIM_CHANNELS = (32, 32, 64, 64, 128, 64, 64, 32)


def _conv_bn_relu(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    """Every Table 6 layer: conv 3x3 + BN + ReLU."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class UNetDenoiser(nn.Module):
    """
    The ID network of Table 6. Input ``x`` (N, C, H, W) in pixel space, output the residual ``r(x)`` so that the
    denoised image is ``x* = x + r(x)`` (clipping is done by :class:`IDFRDenoiser`).

    L1 C→32, L2 32→32, L3 32→64 (stride 2), L4 64→64, L5 64→128 (stride 2), L6 concat(L3, up(L5)) 192→192,
    L7 192→64, L8 concat(L2, up(L7)) 96→96, L9 96→C. Up-sampling is bilinear to the skip's exact size, so any
    H×W (28, 32, 224, odd sizes) works.

    :param channels: Number of image channels C (1 or 3, any positive value works).
    :param width: Multiplier of the Table 6 channel counts (1.0 = paper).
    :param residual_head: ``"linear"`` (default): L9 is a plain conv, the residual can be negative or positive.
        ``"bn_relu"``: the paper's/released code's conv+BN+ReLU, whose residual can only brighten pixels.
    :param counts: Output channels of L1..L8 before the width multiplier (default: Table 6's; :data:`SLIM_CHANNELS`
        gives the slim decoder).
    """

    def __init__(self, channels: int, width: float = 1.0, residual_head: str = "linear",
                 counts: Tuple[int, ...] = TABLE6_CHANNELS) -> None:
        super().__init__()
        if len(counts) != 8:
            raise ValueError(f"counts must give the output channels of L1..L8 (8 ints), got {counts!r}.")
        c1, c2, c3, c4, c5, c6, c7, c8 = (max(4, int(round(c * width))) for c in counts)
        self.l1 = _conv_bn_relu(channels, c1)
        self.l2 = _conv_bn_relu(c1, c2)
        self.l3 = _conv_bn_relu(c2, c3, stride=2)
        self.l4 = _conv_bn_relu(c3, c4)
        self.l5 = _conv_bn_relu(c4, c5, stride=2)
        self.l6 = _conv_bn_relu(c3 + c5, c6)  # Table 6: 64 + 128 = 192 inputs
        self.l7 = _conv_bn_relu(c6, c7)
        self.l8 = _conv_bn_relu(c2 + c7, c8)  # Table 6: 32 + 64 = 96 inputs
        if residual_head == "bn_relu":
            self.l9 = _conv_bn_relu(c8, channels)
        else:
            self.l9 = nn.Conv2d(c8, channels, kernel_size=3, padding=1)
            nn.init.zeros_(self.l9.weight)  # start as the identity map: x* = x
            nn.init.zeros_(self.l9.bias)

    @staticmethod
    def _up(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h2 = self.l2(self.l1(x))
        h3 = self.l3(h2)
        h5 = self.l5(self.l4(h3))
        h7 = self.l7(self.l6(torch.cat([h3, self._up(h5, h3)], dim=1)))
        h8 = self.l8(torch.cat([h2, self._up(h7, h2)], dim=1))
        return self.l9(h8)

    def fused(self) -> "UNetDenoiser":
        """
        An inference copy with every BatchNorm folded into its convolution (eval-mode BN is affine, so outputs and
        gradients are the same) and weights in channels-last memory format: ~1.5x faster on CPU.
        """
        from torch.nn.utils.fusion import fuse_conv_bn_eval

        net = copy.deepcopy(self).eval()
        for name in ("l1", "l2", "l3", "l4", "l5", "l6", "l7", "l8", "l9"):
            block = getattr(net, name)
            if isinstance(block, nn.Sequential):
                setattr(net, name, nn.Sequential(fuse_conv_bn_eval(block[0], block[1]), block[2]))
        for p in net.parameters():
            p.requires_grad_(False)
        return net.to(memory_format=torch.channels_last)

    def macs_per_image(self, height: int, width: int) -> int:
        """Multiply-accumulates of the convolutions for one H×W image (BN/ReLU/upsampling not counted)."""
        return conv_macs(self, (self.l1[0].in_channels, height, width))


class LightUNetDenoiser(nn.Module):
    """
    A lighter ID network for large inputs (not in the paper): the Table 6 U-Net run at half resolution on a lossless
    space-to-depth copy of the image, as FFDNet does (Zhang et al. 2018). Each 2×2 pixel block becomes one position
    with 4·C channels (``pixel_unshuffle``), :class:`UNetDenoiser` with 4·C input and output channels predicts the
    residual of all four pixels there, and ``pixel_shuffle`` puts it back: no pixel is dropped, every layer runs on
    a quarter of the positions, so a forward costs ≈ 0.26× the Table 6 MACs at the same ``width`` and any H×W (an
    odd side is padded by one replicated row/column, then cropped). The zero-initialised linear head makes an
    untrained network the identity map, as for Table 6.

    :param channels: Number of image channels C.
    :param width: Multiplier of the Table 6 channel counts of the inner U-Net.
    :param residual_head: As :class:`UNetDenoiser`.
    """

    FACTOR = 2

    def __init__(self, channels: int, width: float = 1.0, residual_head: str = "linear") -> None:
        super().__init__()
        self.channels = int(channels)
        self.body = UNetDenoiser(self.channels * self.FACTOR**2, width=width, residual_head=residual_head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        pad_h, pad_w = (-height) % self.FACTOR, (-width) % self.FACTOR
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        r = F.pixel_shuffle(self.body(F.pixel_unshuffle(x, self.FACTOR)), self.FACTOR)
        return r[..., :height, :width]

    def fused(self) -> "LightUNetDenoiser":
        """An inference copy with the inner U-Net BN-folded and channels-last (:meth:`UNetDenoiser.fused`)."""
        net = copy.deepcopy(self).eval()
        net.body = net.body.fused()
        return net

    def macs_per_image(self, height: int, width: int) -> int:
        """Multiply-accumulates of the convolutions for one H×W image (BN/ReLU/reshapes not counted)."""
        return conv_macs(self, (self.channels, height, width))


class SlimUNetDenoiser(UNetDenoiser):
    """
    The Table 6 U-Net with a slim decoder (not in the paper): the same encoder, skips and full-resolution layers,
    but L6 192→64 (Table 6: 192→192), L7 64→64 and L8 96→32 (96→96) channels before the width multiplier
    (:data:`SLIM_CHANNELS`). L6 and L8 carry 74% of Table 6's MACs; slimmed, the network costs 0.42× at any H×W.
    """

    def __init__(self, channels: int, width: float = 1.0, residual_head: str = "linear") -> None:
        super().__init__(channels, width=width, residual_head=residual_head, counts=SLIM_CHANNELS)


#: the class of each name of :data:`art_idfr._names.ID_ARCHITECTURES` (the same names, in the same order)
ARCHITECTURES = {"table6": UNetDenoiser, "light": LightUNetDenoiser, "slim": SlimUNetDenoiser}


def make_unet(architecture: str, channels: int, width: float = 1.0, residual_head: str = "linear") -> nn.Module:
    """
    The ID network named ``architecture`` (:data:`art_idfr._names.ID_ARCHITECTURES`): ``"table6"`` =
    :class:`UNetDenoiser` (the paper), ``"light"`` = :class:`LightUNetDenoiser`, ``"slim"`` = :class:`SlimUNetDenoiser`.
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {ID_ARCHITECTURES}, got {architecture!r}.")
    return ARCHITECTURES[architecture](channels, width=width, residual_head=residual_head)


def conv_macs(net: nn.Module, input_shape: Tuple[int, int, int]) -> int:
    """
    Multiply-accumulates of every ``Conv2d`` and ``Linear`` layer of ``net`` for one input of shape (C, H, W)
    (grouped/depthwise convolutions counted as such; normalisation, activations, pooling and resampling not
    counted). Runs one forward pass of a copy on the ``meta`` device: no compute, no memory, the weights untouched.
    """
    total = [0]

    def count(module: nn.Module, inputs, output: torch.Tensor) -> None:
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
            total[0] += output.shape[1] * output.shape[2] * output.shape[3] * k
        else:
            total[0] += output.numel() // output.shape[-1] * module.in_features * module.out_features

    ghost = copy.deepcopy(net).to("meta").eval()
    for module in ghost.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            module.register_forward_hook(count)
    with torch.no_grad():
        ghost(torch.zeros((1, *input_shape), device="meta"))
    return int(total[0])
