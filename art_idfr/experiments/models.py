"""
Target models for the IDFR experiments, and a small, resumable training loop.

Every model built by :func:`make_model`

* takes images in ``[0, 1]`` pixel space and starts with a :class:`Normalize` module (mean / standard deviation
  live in the model, so ART attacks and preprocessing defences work on raw pixels), and
* ends with an :class:`torch.nn.Linear` classifier head whose *input* is the penultimate embedding. The feature
  restorer of the core library hooks "the input of the last ``nn.Linear``"; :func:`classifier_head` returns it.

Models are plain :class:`torch.nn.Module` subclasses (never a top-level :class:`torch.nn.Sequential`: ART's
``PyTorchClassifier`` would then call the children one by one and forward hooks on the whole model would not run).

ResNet-50 and Inception-v3 (torchvision's) start from a weights file of your own with ``make_model(...,
weights=path)`` (:func:`load_weights`: ``torch.load(weights_only=True)``, nothing downloaded).

Example::

    from art_idfr.experiments.models import make_model, train_model, accuracy

    model = make_model("small_cnn", num_classes=10, input_shape=(1, 28, 28), seed=0)
    history = train_model(model, x_train, y_train, epochs=5, checkpoint_dir="runs/mnist_cnn")
    print(accuracy(model, x_test, y_test))
"""
from __future__ import annotations

import glob
import logging
import math
import os
import re
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from art_idfr._names import MODEL_NAMES  # noqa: F401  (re-exported)
from art_idfr.experiments.choices import OPTIMIZERS
from art_idfr._utils import device_of, random_crop_flip

logger = logging.getLogger(__name__)

__all__ = [
    "MODEL_NAMES",
    "Normalize",
    "ImageClassifier",
    "SmallCNN",
    "make_model",
    "classifier_head",
    "train_model",
    "accuracy",
    "predict_logits",
    "torch_device",
    "latest_checkpoint",
    "recalibrate_batchnorm",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "load_weights",
    "weights_normalization",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_VGG16_CFG: Tuple[Union[int, str], ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"
)  # fmt: skip


# ----------------------------------------------------------------------------------------------------------------------
# building blocks
# ----------------------------------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------------------------------
# factory
# ----------------------------------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------------------------------
# weights files
# ----------------------------------------------------------------------------------------------------------------------


def load_weights(model: ImageClassifier, path: str) -> ImageClassifier:
    """
    Load a weights file into ``model`` (in place; also returned) with ``torch.load(path, map_location="cpu",
    weights_only=True)``: loading never runs code from the file, and nothing is downloaded.

    Accepted contents: a ``state_dict`` of the backbone, such as torchvision's (``conv1.weight`` ... ``fc.bias``;
    loaded into ``model.backbone``, ``model.normalize`` keeps its mean and std), or of the whole model
    (``normalize.*`` and ``backbone.*``: the ``model.pt`` of ``art-idfr train-target``); either may be wrapped as
    ``{"state_dict": ...}`` or ``{"model": ...}`` and carry DataParallel's ``module.`` prefix. Inception-v3's
    auxiliary classifier (``AuxLogits.*``, a training-time head) is dropped: the zoo's Inception-v3 has none.

    :param model: A model of :func:`make_model`.
    :param path: The file.
    :return: ``model``.
    :raises FileNotFoundError: no such file.
    :raises ValueError: not a state dict readable with ``weights_only=True``, or entries missing, unexpected or shaped
                        unlike the architecture's (listed; with a hint when the number of classes differs).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weights file {path!r} not found.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle errors, refused globals, truncated files, ...
        raise ValueError(
            f"{path}: cannot be read as a PyTorch state_dict with torch.load(weights_only=True) "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); save weights with "
            "torch.save(model.state_dict(), path)."
        ) from err
    state = _state_dict_of(state, path)
    whole = any(k.startswith("backbone.") for k in state)
    module = model if whole else model.backbone
    arch = getattr(model, "arch", "") or type(module).__name__
    if arch == "inception_v3":
        aux = "backbone.AuxLogits." if whole else "AuxLogits."
        state = {k: v for k, v in state.items() if not k.startswith(aux)}
    _check_state_dict(module, state, path, arch)
    module.load_state_dict(state, strict=True)
    return model


def _state_dict_of(obj: Any, path: str) -> Dict[str, torch.Tensor]:
    """The ``{name: tensor}`` dict in a loaded file (unwrapping ``state_dict`` / ``model``; ``module.`` removed)."""
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not obj or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    ):
        raise ValueError(f"{path}: not a state_dict (a dict of parameter names to tensors) but a "
                         f"{type(obj).__name__}; save weights with torch.save(model.state_dict(), path).")
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return dict(obj)


def _check_state_dict(module: nn.Module, state: Dict[str, torch.Tensor], path: str, arch: str) -> None:
    """``ValueError`` listing what does not fit, before ``load_state_dict`` (whose message is one long line)."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k} {tuple(state[k].shape)} in the file, {tuple(expected[k].shape)} in the model"
              for k in expected if k in state and state[k].shape != expected[k].shape]
    if not (missing or unexpected or shapes):
        return

    def few(keys: List[str]) -> str:
        return ", ".join(keys[:4]) + (f", ... ({len(keys)} in all)" if len(keys) > 4 else "")

    found = [f"{what}: {few(keys)}" for what, keys in (("missing", missing), ("unexpected", unexpected),
                                                        ("other shapes", shapes)) if keys]
    head = classifier_head(module)
    head_key = next(f"{n}.weight" for n, m in module.named_modules() if m is head)
    hint = ""
    if head_key in state and state[head_key].ndim == 2 and state[head_key].shape[0] != head.out_features:
        hint = (f" The file's classifier has {state[head_key].shape[0]} classes, the model {head.out_features} (the "
                "dataset's class folders): ImageNet weights need all 1000 class folders (sorted WordNet IDs, "
                "torchvision's class order).")
    raise ValueError(f"{path}: the weights do not fit {arch}: {'; '.join(found)}.{hint}")


# ----------------------------------------------------------------------------------------------------------------------
# training
# ----------------------------------------------------------------------------------------------------------------------


def torch_device(device: Union[str, torch.device] = "auto") -> torch.device:
    """
    The :class:`torch.device` a user's device string names: ``"auto"`` -> CUDA if available else CPU; other strings /
    devices are passed to :class:`torch.device` (CUDA only if available).

    :param device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or a :class:`torch.device`.
    :return: The device.
    """
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"Invalid device {device!r}; use 'auto', 'cpu' or 'cuda[:N]'.") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was requested but CUDA is not available; use device='cpu' or 'auto'.")
    return dev


#: Former name of :func:`torch_device` (kept for callers not yet switched).


def _run_device(model: nn.Module, device: Union[str, torch.device]) -> torch.device:
    """``"auto"``: the model's own device (:func:`art_idfr._utils.device_of`); else :func:`torch_device`."""
    return device_of(model) if isinstance(device, str) and device == "auto" else torch_device(device)


def _as_tensors(x, y=None) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    xt = torch.as_tensor(np.asarray(x, dtype=np.float32)) if not isinstance(x, torch.Tensor) else x.float()
    if xt.ndim != 4:
        raise ValueError(f"`x` must have shape (N, C, H, W), got {tuple(xt.shape)}.")
    if y is None:
        return xt, None
    y_np = y.cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    if y_np.ndim == 2:  # one-hot
        y_np = y_np.argmax(axis=1)
    if y_np.ndim != 1 or len(y_np) != len(xt):
        raise ValueError(f"`y` must be {len(xt)} integer labels (or one-hot rows), got shape {y_np.shape}.")
    return xt, torch.as_tensor(y_np.astype(np.int64))


@torch.no_grad()
def predict_logits(
    model: nn.Module, x, batch_size: int = 256, device: Union[str, torch.device] = "auto"
) -> np.ndarray:
    """
    Logits of ``model`` on ``x`` (eval mode, batched).

    :param model: The network.
    :param x: Images ``(N, C, H, W)`` in ``[0, 1]``.
    :param batch_size: Batch size.
    :param device: Device to run on (``"auto"``: the model's device, that of its first parameter or buffer, CPU
                   if it has none).
    :return: ``float32`` logits ``(N, num_classes)``.
    """
    xt, _ = _as_tensors(x)
    dev = _run_device(model, device)
    was_training = model.training
    model.to(dev).eval()
    out = [model(xt[i : i + batch_size].to(dev)).float().cpu() for i in range(0, len(xt), batch_size)]
    model.train(was_training)
    return torch.cat(out).numpy() if out else np.zeros((0, 0), dtype=np.float32)


def accuracy(model: nn.Module, x, y, batch_size: int = 256, device: Union[str, torch.device] = "auto") -> float:
    """
    Top-1 accuracy of ``model`` on ``(x, y)``.

    :param model: The network.
    :param x: Images ``(N, C, H, W)`` in ``[0, 1]``.
    :param y: Integer labels ``(N,)`` or one-hot ``(N, K)``.
    :param batch_size: Batch size.
    :param device: Device (see :func:`predict_logits`).
    :return: Accuracy in ``[0, 1]``.
    """
    _, yt = _as_tensors(x, y)
    if len(yt) == 0:
        raise ValueError("Cannot compute the accuracy of an empty set.")
    logits = predict_logits(model, x, batch_size=batch_size, device=device)
    return float((logits.argmax(axis=1) == yt.numpy()).mean())


@torch.no_grad()
def recalibrate_batchnorm(
    model: nn.Module,
    x,
    batch_size: int = 256,
    device: Union[str, torch.device] = "auto",
    max_samples: Optional[int] = 4096,
    seed: int = 0,
) -> nn.Module:
    """
    Recompute the running mean / variance of every batch-norm layer as exact averages over (a subset of) ``x``.

    The exponential running averages kept during training lag behind the weights; after short trainings (a few
    dozen steps) they can be far off, and eval-mode accuracy collapses (e.g. 10% instead of 58% after 16 steps on
    MNIST-5k). One forward pass in train mode, averaging the batch statistics weighted by batch size, fixes this.
    The model is left in eval mode.

    :param model: The network (changed in place).
    :param x: Images ``(N, C, H, W)`` in ``[0, 1]`` (no augmentation is applied).
    :param batch_size: Batch size of the forward pass.
    :param device: Device (see :func:`predict_logits`).
    :param max_samples: Use at most this many samples (a seeded random subset); ``None`` uses all.
    :param seed: Seed of the subset.
    :return: ``model``.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return model.eval()
    xt, _ = _as_tensors(x)
    if max_samples is not None and len(xt) > max_samples:
        idx = torch.randperm(len(xt), generator=torch.Generator().manual_seed(int(seed) + 7919))[:max_samples]
        xt = xt[idx.sort().values]
    dev = _run_device(model, device)
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
    model.to(dev).train()
    try:
        for i in range(0, len(xt), batch_size):
            batch = xt[i : i + batch_size]
            for m in bns:  # sample-weighted running average: the mean is exact, the variance the mean batch variance
                m.momentum = len(batch) / (i + len(batch))
            model(batch.to(dev))
    finally:
        for m, momentum in zip(bns, momenta):
            m.momentum = momentum
        model.eval()
    return model


def _augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """
    Random crop with zero padding of 1/8 of the side (4 px for 32x32) plus random horizontal flips for colour
    images; 28x28 (MNIST-like digits and clothes) gets 2 px crops and no flips.
    """
    n, c, h, w = x.shape
    if (h, w) == (28, 28):
        return random_crop_flip(x, generator, pad=2, flip=False)
    return random_crop_flip(x, generator, pad=max(1, round(min(h, w) / 8)), flip=c == 3)


def latest_checkpoint(checkpoint_dir: str) -> Optional[str]:
    """
    Path of the newest ``epoch_NNNN.pt`` file in ``checkpoint_dir`` (``None`` if there is none).

    :param checkpoint_dir: Directory written by :func:`train_model`.
    :return: The path or ``None``.
    """
    files = _checkpoint_files(checkpoint_dir)
    return files[-1][1] if files else None


def _checkpoint_files(checkpoint_dir: str) -> List[Tuple[int, str]]:
    found = []
    for path in glob.glob(os.path.join(checkpoint_dir, "epoch_*.pt")):
        m = re.fullmatch(r"epoch_(\d+)\.pt", os.path.basename(path))
        if m:
            found.append((int(m.group(1)), path))
    return sorted(found)


_RESUME_KEYS = (
    "epochs", "batch_size", "lr", "optimizer", "schedule", "seed", "augment", "n_train", "weight_decay",
    "recalibrate_bn",
)  # fmt: skip


def train_model(
    model: nn.Module,
    x,
    y,
    *,
    epochs: int,
    batch_size: int = 128,
    lr: Optional[float] = None,
    optimizer: str = "sgd",
    weight_decay: Optional[float] = None,
    augment: bool = True,
    schedule: str = "onecycle",
    device: Union[str, torch.device] = "auto",
    seed: int = 0,
    checkpoint_dir: Optional[str] = None,
    resume: bool = True,
    keep_last: int = 1,
    recalibrate_bn: bool = True,
    x_val=None,
    y_val=None,
    verbose: bool = True,
    amp: Optional[bool] = None,
) -> Dict[str, List[float]]:
    """
    Train ``model`` in place with cross-entropy, optionally checkpointing after every epoch and resuming.

    The run is deterministic on CPU for a fixed ``seed``: shuffling, augmentation and dropout of epoch ``e`` draw from
    generators seeded with ``(seed, e)``, so an interrupted and resumed run gives the same weights as an
    uninterrupted one. The global RNG state is left untouched.

    :param model: The network (trained in place, moved to ``device`` and left in eval mode).
    :param x: Training images ``(N, C, H, W)`` in ``[0, 1]``.
    :param y: Integer labels ``(N,)`` (or one-hot).
    :param epochs: Total number of epochs (including those already done in a resumed checkpoint).
    :param batch_size: Mini-batch size (the last, smaller batch is kept).
    :param lr: (Peak) learning rate; default 0.05 for SGD, 1e-3 for Adam.
    :param optimizer: ``"sgd"`` (momentum 0.9, Nesterov) or ``"adam"``.
    :param weight_decay: L2 weight decay; default 5e-4 for SGD, 0 for Adam.
    :param augment: Random crop with zero padding of 1/8 of the side (+ horizontal flips for colour images); 28x28
                    gets 2 px crops only.
    :param schedule: ``"onecycle"``, ``"cosine"`` (both stepped per batch) or ``"none"``.
    :param device: ``"auto"``, ``"cpu"``, ``"cuda"`` or a :class:`torch.device`.
    :param seed: Seed of shuffling / augmentation / dropout.
    :param checkpoint_dir: If given, ``epoch_NNNN.pt`` (model, optimizer, scheduler, epoch, history, config) is
                           written there after every epoch; older files beyond ``keep_last`` are deleted.
    :param resume: Continue from the newest checkpoint in ``checkpoint_dir`` (if any). Its configuration must match.
    :param keep_last: Number of checkpoint files to keep (>= 1).
    :param recalibrate_bn: After every epoch, recompute batch-norm statistics on up to 4096 (non-augmented)
                           training images with :func:`recalibrate_batchnorm`, so eval-mode accuracy is right even
                           after very short trainings.
    :param x_val: Optional validation images; validation accuracy is recorded after every epoch.
    :param y_val: Optional validation labels.
    :param verbose: Show a progress bar per epoch and log a line per epoch.
    :param amp: Mixed precision (bfloat16 autocast) for the training steps; ``None`` = on for CUDA, off on CPU.
                Weights, batch-norm statistics, validation and everything after training stay float32.
    :return: History dict with lists ``epoch``, ``loss``, ``train_acc``, ``val_acc`` (NaN without validation data),
             ``lr`` (at the end of the epoch) and ``seconds``.
    """
    from art_idfr.progress import progress_bar

    optimizer, schedule, lr, weight_decay = _check_training_args(epochs, batch_size, optimizer, schedule, lr,
                                                                 weight_decay, keep_last)
    xt, yt = _as_tensors(x, y)
    if len(xt) == 0:
        raise ValueError("Cannot train on an empty set.")
    if (x_val is None) != (y_val is None):
        raise ValueError("Pass both `x_val` and `y_val`, or neither.")
    dev = torch_device(device)
    model.to(dev)

    steps_per_epoch = math.ceil(len(xt) / batch_size)
    opt, sched = _optimiser_and_schedule(model, optimizer, lr, weight_decay, schedule, epochs, steps_per_epoch)
    config = _training_config(epochs, batch_size, lr, optimizer, schedule, seed, augment, len(xt), weight_decay,
                              recalibrate_bn)
    history: Dict[str, List[float]] = {k: [] for k in ("epoch", "loss", "train_acc", "val_acc", "lr", "seconds")}
    start_epoch = 0
    if checkpoint_dir is not None:
        os.makedirs(checkpoint_dir, exist_ok=True)
        if resume:
            history, start_epoch = _resume_training(checkpoint_dir, config, model, opt, sched, dev, verbose,
                                                    history)

    use_amp = dev.type == "cuda" if amp is None else bool(amp)
    for epoch in range(start_epoch, epochs):
        t0 = time.perf_counter()
        total_loss, correct = _train_epoch(model, xt, yt, opt, sched, epoch=epoch, epochs=epochs,
                                           batch_size=batch_size, steps_per_epoch=steps_per_epoch, seed=seed,
                                           augment=augment, recalibrate_bn=recalibrate_bn, dev=dev,
                                           use_amp=use_amp, verbose=verbose, progress_bar=progress_bar)
        model.eval()
        val_acc = float("nan")
        if x_val is not None:
            val_acc = accuracy(model, x_val, y_val, batch_size=max(batch_size, 256), device=dev)
        _record_epoch(history, epoch, epochs, total_loss / len(xt), correct / len(xt), val_acc,
                      float(opt.param_groups[0]["lr"]), time.perf_counter() - t0, x_val is not None, verbose,
                      progress_bar)
        if checkpoint_dir is not None:
            _save_training_checkpoint(checkpoint_dir, epoch + 1, model, opt, sched, history, config, keep_last)

    model.eval()
    return history


def _check_training_args(epochs, batch_size, optimizer, schedule, lr, weight_decay, keep_last):
    """Check :func:`train_model`'s settings; return ``(optimizer, schedule, lr, weight_decay)`` with defaults."""
    if not isinstance(epochs, (int, np.integer)) or isinstance(epochs, bool) or epochs < 1:
        raise ValueError(f"`epochs` must be a positive int, got {epochs!r}.")
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive int, got {batch_size!r}.")
    optimizer = str(optimizer).lower()
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"Unknown optimizer {optimizer!r}; use 'sgd' or 'adam'.")
    schedule = str(schedule).lower()
    if schedule not in ("onecycle", "cosine", "none"):
        raise ValueError(f"Unknown schedule {schedule!r}; use 'onecycle', 'cosine' or 'none'.")
    if lr is None:
        lr = 0.05 if optimizer == "sgd" else 1e-3
    if not lr > 0:
        raise ValueError(f"`lr` must be positive, got {lr!r}.")
    if weight_decay is None:
        weight_decay = 5e-4 if optimizer == "sgd" else 0.0
    if keep_last < 1:
        raise ValueError(f"`keep_last` must be >= 1, got {keep_last!r}.")
    return optimizer, schedule, lr, weight_decay


def _training_config(epochs, batch_size, lr, optimizer, schedule, seed, augment, n_train, weight_decay,
                     recalibrate_bn) -> Dict[str, Any]:
    """The settings saved with every checkpoint (those of :data:`_RESUME_KEYS` must match to resume)."""
    return {
        "epochs": int(epochs),
        "batch_size": int(batch_size),
        "lr": float(lr),
        "optimizer": optimizer,
        "schedule": schedule,
        "seed": int(seed),
        "augment": bool(augment),
        "n_train": int(n_train),
        "weight_decay": float(weight_decay),
        "recalibrate_bn": bool(recalibrate_bn),
    }


def _optimiser_and_schedule(model: nn.Module, optimizer: str, lr: float, weight_decay: float, schedule: str,
                            epochs: int, steps_per_epoch: int) -> Tuple[torch.optim.Optimizer, Optional[Any]]:
    """The optimiser over the trainable parameters, and its per-batch learning-rate schedule (``None``: constant)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(
            params, lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay
        )
    else:
        opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if schedule == "onecycle":
        sched: Optional[Any] = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=lr, epochs=epochs, steps_per_epoch=steps_per_epoch
        )
    elif schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps_per_epoch)
    else:
        sched = None
    return opt, sched


def _resume_training(checkpoint_dir: str, config: Dict[str, Any], model: nn.Module, opt, sched, dev: torch.device,
                     verbose: bool, history: Dict[str, List[float]]) -> Tuple[Dict[str, List[float]], int]:
    """
    Load the newest readable checkpoint of ``checkpoint_dir`` into ``model``, ``opt`` and ``sched`` (its
    configuration must match ``config``); return its history and epoch, or ``(history, 0)`` if there is none.
    """
    for epoch_done, path in reversed(_checkpoint_files(checkpoint_dir)):
        try:
            state = torch.load(path, map_location=dev, weights_only=True)
        except Exception as err:  # e.g. a file truncated by a crash: try the previous one
            logger.warning("Skipping unreadable checkpoint %s: %s", path, err)
            continue
        saved = state.get("config", {})
        diff = {k: (saved.get(k), config[k]) for k in _RESUME_KEYS if saved.get(k) != config[k]}
        if diff:
            raise ValueError(
                f"Checkpoint {path} was written with a different configuration {diff} "
                "(saved, requested); use another checkpoint_dir or resume=False."
            )
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if sched is not None:
            sched.load_state_dict(state["scheduler"])
        start_epoch = int(state["epoch"])
        if verbose:
            logger.info("Resuming from %s (epoch %d of %d).", path, start_epoch, config["epochs"])
        return {k: list(v) for k, v in state["history"].items()}, start_epoch
    return history, 0


def _train_epoch(model: nn.Module, xt: torch.Tensor, yt: torch.Tensor, opt, sched, *, epoch: int, epochs: int,
                 batch_size: int, steps_per_epoch: int, seed: int, augment: bool, recalibrate_bn: bool,
                 dev: torch.device, use_amp: bool, verbose: bool, progress_bar) -> Tuple[float, int]:
    """
    One epoch of training (shuffling, augmentation and dropout drawn from generators seeded with ``(seed, epoch)``,
    the global RNG state restored afterwards), then the batch-norm recalibration; return the summed loss and the
    number of correct training predictions.
    """
    loss_fn = nn.CrossEntropyLoss()
    cuda_devices = [dev.index or 0] if dev.type == "cuda" else []
    gen = torch.Generator().manual_seed(int(seed) * 100003 + epoch)
    perm = torch.randperm(len(xt), generator=gen)
    model.train()
    total_loss, correct = 0.0, 0
    with torch.random.fork_rng(devices=cuda_devices):
        torch.manual_seed(int(seed) * 100003 + epoch + 7)
        bar = progress_bar(
            range(steps_per_epoch), desc=f"epoch {epoch + 1}/{epochs}", leave=False, disable=not verbose
        )
        for step in bar:
            idx = perm[step * batch_size : (step + 1) * batch_size]
            xb, yb = xt[idx], yt[idx]
            if augment:
                xb = _augment(xb, gen)
            xb, yb = xb.to(dev, non_blocking=True), yb.to(dev, non_blocking=True)
            opt.zero_grad(set_to_none=True)
            with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=use_amp):
                logits = model(xb)
            loss = loss_fn(logits.float(), yb)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            total_loss += float(loss.detach()) * len(yb)
            correct += int((logits.detach().argmax(1) == yb).sum())
            bar.set_postfix(loss=f"{total_loss / ((step * batch_size) + len(yb)):.4f}", refresh=False)
        if recalibrate_bn:
            recalibrate_batchnorm(model, xt, batch_size=max(batch_size, 256), device=dev, seed=int(seed) + epoch)
    return total_loss, correct


def _record_epoch(history: Dict[str, List[float]], epoch: int, epochs: int, loss: float, train_acc: float,
                  val_acc: float, lr: float, seconds: float, validated: bool, verbose: bool, progress_bar) -> None:
    """Append one epoch to ``history``; with ``verbose``, log it (``val_acc`` if ``validated``) and print it above
    the progress bars."""
    history["epoch"].append(epoch + 1)
    history["loss"].append(loss)
    history["train_acc"].append(train_acc)
    history["val_acc"].append(val_acc)
    history["lr"].append(lr)
    history["seconds"].append(seconds)
    if verbose:
        msg = (
            f"epoch {epoch + 1}/{epochs}: loss {history['loss'][-1]:.4f}, "
            f"train acc {history['train_acc'][-1]:.4f}"
            + (f", val acc {val_acc:.4f}" if validated else "")
            + f" ({history['seconds'][-1]:.1f} s)"
        )
        logger.info(msg)
        progress_bar.write(msg)


def _save_training_checkpoint(checkpoint_dir: str, epochs_done: int, model: nn.Module, opt, sched,
                              history: Dict[str, List[float]], config: Dict[str, Any], keep_last: int) -> None:
    """Write ``epoch_NNNN.pt`` atomically and delete the files beyond the newest ``keep_last``."""
    state = {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict() if sched is not None else {},
        "epoch": epochs_done,
        "history": history,
        "config": config,
    }
    path = os.path.join(checkpoint_dir, f"epoch_{epochs_done:04d}.pt")
    tmp = path + ".tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)
    for _, old in _checkpoint_files(checkpoint_dir)[:-keep_last]:
        os.remove(old)
