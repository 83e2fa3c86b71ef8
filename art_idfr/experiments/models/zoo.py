"""
The model factory of :mod:`art_idfr.experiments.models`: :func:`make_model` checks the arguments, builds the
architecture named (the zoo's small-image networks, or torchvision's ResNet-50 / Inception-v3) behind a
:class:`~art_idfr.experiments.models.Normalize`, optionally under a seed, and loads a weights file of your own;
:func:`weights_normalization` gives the normalisation torchvision's published weights expect.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from art_idfr._names import MODEL_NAMES
from art_idfr.experiments.models.architectures import (
    _VGG16_CFG,
    IMAGENET_MEAN,
    IMAGENET_STD,
    CifarResNet,
    CifarVGG,
    ImageClassifier,
    Normalize,
    SmallCNN,
)
from art_idfr.experiments.models.weights import load_weights


def _check_input_shape(input_shape) -> Tuple[int, int, int]:
    try:
        shape = tuple(int(s) for s in input_shape)
    except TypeError:
        raise ValueError(f"`input_shape` must be (C, H, W), got {input_shape!r}.") from None
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"`input_shape` must be (C, H, W) with positive entries, got {input_shape!r}.")
    return shape  # type: ignore[return-value]


def make_model(
    name: str,
    num_classes: int = 10,
    input_shape: Sequence[int] = (3, 32, 32),
    width: float = 1.0,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    pretrained: bool = False,
    seed: Optional[int] = None,
    weights: Optional[str] = None,
) -> ImageClassifier:
    """
    Build a target model by name.

    =============== ==========================================================================================
    name            architecture
    =============== ==========================================================================================
    small_cnn       :class:`SmallCNN`: 3 conv blocks + FC embedding + linear head; 28x28 / 32x32, 1 or 3 ch.
    resnet18_cifar  :class:`CifarResNet`: torchvision BasicBlock ResNet-18, 3x3 stem, no max-pool
    vgg16_bn_cifar  :class:`CifarVGG`: torchvision VGG-16-BN features, global pool, single linear classifier
    resnet50        torchvision ``resnet50`` (ImageNet-size inputs, usually 224)
    inception_v3    torchvision ``inception_v3`` without auxiliary head (inputs at least 75x75, usually 299)
    =============== ==========================================================================================

    :param name: One of :data:`MODEL_NAMES`.
    :param num_classes: Number of classes.
    :param input_shape: ``(C, H, W)`` of the inputs.
    :param width: Channel multiplier (``small_cnn``, ``resnet18_cifar``, ``vgg16_bn_cifar`` only), e.g. 0.25 for
                  CPU presets.
    :param mean: Per-channel mean for :class:`Normalize` (default 0, or, with ``weights`` / ``pretrained``, the
                 normalisation torchvision's weights of the architecture expect: :func:`weights_normalization`).
    :param std: Per-channel std for :class:`Normalize` (defaults as for ``mean``).
    :param pretrained: Load torchvision ImageNet weights (``resnet50`` / ``inception_v3`` only; needs the weights
                       in the torch hub cache or internet access, and ``num_classes=1000``).
    :param seed: If given, initialise the weights under this seed (without touching the global RNG state).
    :param weights: A weights file of your own, read by :func:`load_weights` (``torch.load(weights_only=True)``:
                    loading never runs code; nothing is downloaded): a torchvision ``state_dict`` of the architecture
                    (``torch.save(torchvision.models.resnet50(...).state_dict(), path)``) or a ``model.pt`` of this
                    zoo. Its classifier must have ``num_classes`` outputs.
    :return: An :class:`ImageClassifier` in eval mode whose last module is the ``nn.Linear`` head.
    :raises ValueError: bad arguments; a weights file that is not a state dict or does not fit the architecture
                        (missing / unexpected / differently shaped entries, listed).
    :raises FileNotFoundError: ``weights`` names no file.
    """
    name, (c, h, w) = _check_model_args(name, num_classes, input_shape, width, pretrained, weights)
    if pretrained or weights is not None:
        default_mean, default_std = weights_normalization(name)
        mean = default_mean if mean is None else mean
        std = default_std if std is None else std

    def build() -> ImageClassifier:
        normalize = Normalize(mean, std, channels=c)
        return ImageClassifier(normalize, _backbone(name, c, h, w, num_classes, width, pretrained), name).eval()

    if seed is None:
        model = build()
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = build()
    if weights is not None:
        load_weights(model, weights)
    return model


def weights_normalization(name: str) -> Tuple[Optional[Tuple[float, ...]], Optional[Tuple[float, ...]]]:
    """
    The ``(mean, std)`` of :class:`Normalize` that torchvision's published weights of architecture ``name`` expect
    (``(None, None)``: 0 and 1, for this zoo's own models, whose files carry their :class:`Normalize`):

    * ``resnet50``: the ImageNet mean and std;
    * ``inception_v3``: 0.5 and 0.5, i.e. ``(x - 0.5) / 0.5``, which is what torchvision's Inception-v3 weights (ported
      from TensorFlow) see: torchvision builds them with ``transform_input=True``, which maps ImageNet-standardised
      inputs to exactly that. Weights trained with plain ImageNet standardisation (``transform_input=False``) need
      ``mean=IMAGENET_MEAN, std=IMAGENET_STD`` instead.
    """
    if name == "resnet50":
        return IMAGENET_MEAN, IMAGENET_STD
    if name == "inception_v3":
        return (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
    return None, None


def _check_model_args(name, num_classes, input_shape, width, pretrained, weights) -> Tuple[str, Tuple[int, int, int]]:
    """Check :func:`make_model`'s arguments; return the lower-case name and ``(C, H, W)``."""
    if not isinstance(name, str) or name.lower() not in MODEL_NAMES:
        raise ValueError(f"Unknown model {name!r}. Valid names: {', '.join(MODEL_NAMES)}.")
    name = name.lower()
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
        raise ValueError(f"`num_classes` must be an int >= 2, got {num_classes!r}.")
    c, h, w = _check_input_shape(input_shape)
    if not isinstance(width, (int, float)) or not width > 0:
        raise ValueError(f"`width` must be a positive number, got {width!r}.")
    if pretrained and weights is not None:
        raise ValueError("Pass either pretrained=True (torchvision's download) or weights=<file>, not both.")
    if pretrained and name not in ("resnet50", "inception_v3"):
        raise ValueError(f"`pretrained=True` is only available for resnet50 and inception_v3, not {name!r}.")
    if pretrained and num_classes != 1000:
        raise ValueError("Pretrained ImageNet weights need num_classes=1000.")
    if width != 1.0 and name in ("resnet50", "inception_v3"):
        raise ValueError(f"`width` is not supported for {name!r}.")
    if name in ("small_cnn", "resnet18_cifar", "vgg16_bn_cifar") and min(h, w) < 8:
        raise ValueError(f"{name} needs inputs of at least 8x8, got {h}x{w}.")
    if name == "inception_v3" and min(h, w) < 75:
        raise ValueError(f"inception_v3 needs inputs of at least 75x75, got {h}x{w}.")
    return name, (c, h, w)


def _backbone(name: str, c: int, h: int, w: int, num_classes: int, width: float, pretrained: bool) -> nn.Module:
    """The network behind :class:`Normalize` for architecture ``name`` (weights drawn from torch's global RNG)."""
    if name == "small_cnn":
        return SmallCNN(c, num_classes, width)
    if name == "resnet18_cifar":
        return CifarResNet(c, num_classes, width)
    if name == "vgg16_bn_cifar":
        return CifarVGG(_VGG16_CFG, c, num_classes, width, input_size=min(h, w))
    if name == "resnet50":
        from torchvision.models import resnet50

        backbone = resnet50(weights="IMAGENET1K_V2" if pretrained else None, num_classes=num_classes)
        if c != 3:
            backbone.conv1 = nn.Conv2d(c, 64, kernel_size=7, stride=2, padding=3, bias=False)
        return backbone
    from torchvision.models import inception_v3

    if pretrained:
        backbone = inception_v3(weights="IMAGENET1K_V1", aux_logits=True, transform_input=False)
        backbone.aux_logits, backbone.AuxLogits = False, None
    else:
        backbone = inception_v3(
            weights=None, num_classes=num_classes, aux_logits=False, transform_input=False, init_weights=True
        )
    if c != 3:
        from torchvision.models.inception import BasicConv2d

        backbone.Conv2d_1a_3x3 = BasicConv2d(c, 32, kernel_size=3, stride=2)
    return backbone
