"""
The networks of the model zoo of :mod:`art_idfr.experiments.models`: :class:`Normalize` (mean / standard deviation
as the first layer, so attacks and defences work on raw pixels), :class:`ImageClassifier` (``Normalize`` ->
backbone), the small-image architectures :class:`SmallCNN`, :class:`CifarVGG` and :class:`CifarResNet`, and
:func:`classifier_head`, the last ``nn.Linear`` whose input is the penultimate embedding the feature restorer hooks.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_VGG16_CFG: Tuple[Union[int, str], ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"
)  # fmt: skip


class Normalize(nn.Module):
    """
    Per-channel standardisation ``(x - mean) / std`` as the first layer of a model.

    :param mean: One value per channel (or a single value for all channels). ``None`` means 0.
    :param std: One value per channel (or a single value). ``None`` means 1. All values must be positive.
    :param channels: Number of input channels (used to broadcast single values and to check lengths).
    """

    def __init__(
        self, mean: Optional[Sequence[float]] = None, std: Optional[Sequence[float]] = None, channels: int = 3
    ):
        super().__init__()
        mean_t = self._as_channels(mean, 0.0, channels, "mean")
        std_t = self._as_channels(std, 1.0, channels, "std")
        if (std_t <= 0).any():
            raise ValueError(f"`std` must be positive, got {std_t.tolist()}.")
        self.register_buffer("mean", mean_t.view(1, channels, 1, 1))
        self.register_buffer("std", std_t.view(1, channels, 1, 1))

    @staticmethod
    def _as_channels(value, default: float, channels: int, what: str) -> torch.Tensor:
        if value is None:
            return torch.full((channels,), default, dtype=torch.float32)
        t = torch.as_tensor(value, dtype=torch.float32).flatten()
        if t.numel() == 1:
            return t.repeat(channels)
        if t.numel() != channels:
            raise ValueError(f"`{what}` has {t.numel()} values but the input has {channels} channels.")
        return t

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # cast to the model's dtype: some ART NumPy defences (FeatureSqueezing) return float64 arrays
        return (x.to(self.mean.dtype) - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


class ImageClassifier(nn.Module):
    """
    ``Normalize`` -> ``backbone`` (whatever it is, ending in an ``nn.Linear``).

    :param normalize: The :class:`Normalize` module.
    :param backbone: A network mapping normalised images to logits whose last module is an ``nn.Linear``.
    :param name: Name of the architecture (informational).
    """

    def __init__(self, normalize: Normalize, backbone: nn.Module, name: str = ""):
        super().__init__()
        self.normalize = normalize
        self.backbone = backbone
        self.arch = name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.normalize(x))


class SmallCNN(nn.Module):
    """
    Three 3x3 conv blocks (conv-BN-ReLU-maxpool), a fully connected embedding and a linear head.

    Works for 28x28 and 32x32 inputs (any size >= 8 in fact) with any number of channels.
    Channel counts are ``32, 64, 128`` times ``width``; the embedding has ``256 * width`` units.

    :param in_channels: Number of input channels.
    :param num_classes: Number of classes.
    :param width: Width multiplier.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: float = 1.0):
        super().__init__()
        c1, c2, c3 = (_scaled(c, width) for c in (32, 64, 128))
        emb = _scaled(256, width)

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            )

        self.features = nn.Sequential(block(in_channels, c1), block(c1, c2), block(c2, c3), nn.AdaptiveAvgPool2d(2))
        self.embedding = nn.Sequential(nn.Flatten(), nn.Linear(c3 * 4, emb), nn.ReLU(inplace=True))
        self.fc = nn.Linear(emb, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.embedding(self.features(x)))


class CifarVGG(nn.Module):
    """
    VGG with batch normalisation for small images: the torchvision VGG feature extractor (``cfg``), global
    average pooling to 1x1 and a single linear classifier on the ``512 * width`` dimensional embedding (the usual
    CIFAR variant). Max-pool layers that would shrink the feature map below 1x1 (e.g. the fifth one on 28x28 inputs)
    are left out.
    """

    def __init__(
        self,
        cfg: Sequence[Union[int, str]] = _VGG16_CFG,
        in_channels: int = 3,
        num_classes: int = 10,
        width: float = 1.0,
        input_size: int = 32,
    ):
        super().__init__()
        layers: List[nn.Module] = []
        channels, size = in_channels, input_size
        for v in cfg:
            if v == "M":
                if size >= 2:
                    layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                    size //= 2
            else:
                out = _scaled(int(v), width)
                layers += [nn.Conv2d(channels, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
                channels = out
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class CifarResNet(nn.Module):
    """
    ResNet-18 for small images built from torchvision's :class:`~torchvision.models.resnet.BasicBlock`: 3x3 stride-1
    stem, no max-pool, four stages of two blocks with ``64, 128, 256, 512`` times ``width`` channels, global average
    pooling and a linear head ``fc``. With ``width=1`` the parameter names match torchvision's ``resnet18``.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 10, width: float = 1.0, layers=(2, 2, 2, 2)):
        super().__init__()
        from torchvision.models.resnet import BasicBlock

        planes = [_scaled(c, width) for c in (64, 128, 256, 512)]
        self.inplanes = planes[0]
        self.conv1 = nn.Conv2d(in_channels, planes[0], kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity()
        self.layer1 = self._make_layer(BasicBlock, planes[0], layers[0], 1)
        self.layer2 = self._make_layer(BasicBlock, planes[1], layers[1], 2)
        self.layer3 = self._make_layer(BasicBlock, planes[2], layers[2], 2)
        self.layer4 = self._make_layer(BasicBlock, planes[3], layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(planes[3], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, block, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [block(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _scaled(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


def classifier_head(model: nn.Module) -> nn.Linear:
    """
    The last :class:`torch.nn.Linear` of ``model`` (in registration order); its input is the penultimate embedding.

    :param model: The network.
    :return: The linear head.
    """
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("The model has no nn.Linear layer.")
    return linears[-1]
