"""
NRP, the Neural Representation Purifier (Naseer, Khan, Hayat, Khan, Porikli, "A Self-supervised Approach for
Adversarial Robustness", CVPR 2020) as an ART ``PreprocessorPyTorch``; own implementation from the paper.

Training needs no labels. Self-supervised perturbation (SSP): for each clean batch, ``x'`` is found within an L∞ ball
of radius ``ssp_eps`` by signed-gradient ascent (random start) on the feature distance
``mean((F(x') - F(x))^2)`` of a frozen feature network ``F`` at some intermediate layer. The purifier ``P`` is then
trained to map ``x'`` back: ``pixel_weight * mean((P(x') - x)^2) + feature_weight * mean((F(P(x')) - F(x))^2)``.
The paper's third term, an adversarial (GAN) loss from a discriminator, is left out at CPU scale.

The feature network is any ``nn.Module`` the caller passes to :meth:`NRP.fit` (the paper: ImageNet VGG-16 at
relu3_3; our benchmark: a model of our own zoo), optionally with the name of the module whose output is ``F``.

================================ ============================================ ==========================================
setting                          paper                                        ours (CPU preset = defaults)
================================ ============================================ ==========================================
purifier                         RRDB generator (16.5M params) or a residual  residual CNN: conv, ``nb_blocks=2``
                                 variant (1.7M)                               residual blocks of ``width=16`` channels,
                                                                              conv; output ``x + r(x)`` (identity at
                                                                              init), clipped
feature network F                VGG-16 (ImageNet) at relu3_3                 the caller's module, ``feature_layer``
SSP radius / steps               16/255, iterative                            ``ssp_eps=16/255``, ``ssp_steps=2``,
                                                                              step 2.5·eps/steps, random start
purifier loss                    feature + pixel + adversarial (GAN)          feature + pixel (no discriminator)
optimiser                        Adam                                         Adam, lr 1e-3, ``nb_epochs=5``
================================ ============================================ ==========================================
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np
import torch
from torch import nn

from art_idfr._utils import device_of, digest, frozen
from art_idfr.experiments.baselines._common import BaselinePreprocessor, check_non_negative, check_positive
from art_idfr.experiments.baselines.training import rand, train_epochs


class _ResidualBlock(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(width, width, 3, padding=1))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.body(h)


class PurifierNetwork(nn.Module):
    """``x + tail(blocks(head(x)))``: a small residual purifier; the zero-initialised tail makes it the identity at
    initialisation."""

    def __init__(self, nb_channels: int, width: int = 16, nb_blocks: int = 2) -> None:
        super().__init__()
        self.head = nn.Sequential(nn.Conv2d(nb_channels, width, 3, padding=1), nn.ReLU())
        self.blocks = nn.Sequential(*[_ResidualBlock(width) for _ in range(nb_blocks)])
        self.tail = nn.Conv2d(width, nb_channels, 3, padding=1)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x + self.tail(self.blocks(self.head(x)))).clamp(0.0, 1.0)


def feature_function(network: nn.Module, layer: Optional[str] = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """
    ``x -> F(x)``: the output of ``network`` (``layer=None``) or of its submodule named ``layer`` (as in
    ``network.named_modules()``), captured by a forward hook; inputs go to the network's device, features come back
    on the input's device.
    """
    if not isinstance(network, nn.Module):
        raise ValueError(f"feature_network must be a torch nn.Module, got {type(network).__name__}.")
    modules = dict(network.named_modules())
    if layer is not None and (layer == "" or layer not in modules):
        raise ValueError(f"feature_layer {layer!r} is not a module of the feature network; valid names: "
                         f"{[name for name in modules if name][:30]}")

    def features(x: torch.Tensor) -> torch.Tensor:
        dev = device_of(network)
        if layer is None:
            out = network(x.to(dev))
        else:
            captured = []
            handle = modules[layer].register_forward_hook(lambda m, args, output: captured.append(output))
            try:
                network(x.to(dev))
            finally:
                handle.remove()
            out = captured[-1]
        if isinstance(out, (list, tuple)):
            out = out[-1]
        return out.to(x.device)

    return features


def ssp_perturb(features: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, eps: float, steps: int,
                generator: torch.Generator) -> torch.Tensor:
    """
    NRP's self-supervised perturbation: ``x'`` in the L∞ ball of radius ``eps`` around the unit-range batch ``x``
    maximising ``mean((F(x') - F(x))^2)``, by ``steps`` signed-gradient steps of 2.5·eps/steps from a random start.
    """
    with torch.no_grad():
        target = features(x)
    x_adv = (x + eps * (2 * rand(x.shape, generator, x.device) - 1)).clamp(0.0, 1.0)
    step_size = 2.5 * eps / max(steps, 1)
    for _ in range(steps):
        x_adv = x_adv.detach().requires_grad_(True)
        distance = ((features(x_adv) - target) ** 2).mean()
        (grad,) = torch.autograd.grad(distance, x_adv)
        x_adv = x_adv.detach() + step_size * grad.sign()
        x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0.0, 1.0)
    return x_adv.detach()


class NRP(BaselinePreprocessor):
    """
    NRP (Naseer et al., CVPR 2020): a purifier network trained by self-supervised perturbations of a feature network.

    Deterministic; the forward pass is fully differentiable, so ART's ``loss_gradient`` through
    ``PyTorchClassifier(..., preprocessing_defences=[NRP(...)])`` is the exact white-box gradient. The paper's
    adversarial (discriminator) loss is left out at CPU scale; see the module docstring for the paper's settings
    beside ours.

    :param input_shape: (C, H, W) of one sample (NCHW data only).
    :param clip_values: (min, max) of valid pixel values.
    :param width: Channels of the purifier's residual blocks (paper: 64).
    :param nb_blocks: Number of residual blocks (paper: 23 RRDBs).
    :param ssp_eps: L∞ radius of the self-supervised perturbation, in [0, 1] units (paper: 16/255).
    :param ssp_steps: Signed-gradient steps of the perturbation.
    :param pixel_weight: Weight of the pixel MSE.
    :param feature_weight: Weight of the feature MSE.
    :param learning_rate: Adam learning rate.
    :param nb_epochs: Default epochs of :meth:`fit`.
    :param batch_size: Batch size of the forward pass and of :meth:`fit`.
    :param device_type: ``"gpu"`` (CUDA when available) or ``"cpu"``.
    :param apply_fit: Apply when the classifier is trained (default ``False``).
    :param apply_predict: Apply at prediction time (default ``True``).
    :param verbose: Progress bar in :meth:`fit`.
    :param seed: Seed of the weight initialisation and of the training randomness.
    """

    KIND = "NRP"
    params = BaselinePreprocessor.params + ["width", "nb_blocks", "ssp_eps", "ssp_steps", "pixel_weight",
                                            "feature_weight"]

    def __init__(self, input_shape: Tuple[int, int, int], clip_values: Tuple[float, float] = (0.0, 1.0),
                 width: int = 16, nb_blocks: int = 2, ssp_eps: float = 16 / 255, ssp_steps: int = 2,
                 pixel_weight: float = 1.0, feature_weight: float = 1.0, learning_rate: float = 1e-3,
                 nb_epochs: int = 5, batch_size: int = 128, device_type: str = "gpu", apply_fit: bool = False,
                 apply_predict: bool = True, verbose: bool = False, seed: Optional[int] = 0) -> None:
        super().__init__(input_shape, clip_values, learning_rate, nb_epochs, batch_size, device_type, apply_fit,
                         apply_predict, verbose, seed)
        self.width = int(width)
        self.nb_blocks = int(nb_blocks)
        self.ssp_eps = float(ssp_eps)
        self.ssp_steps = int(ssp_steps)
        self.pixel_weight = float(pixel_weight)
        self.feature_weight = float(feature_weight)
        self._setup()

    @property
    def inference_passes(self) -> str:
        """The network passes of one purification."""
        return "1 purifier pass per image"

    def _make_network(self) -> nn.Module:
        return PurifierNetwork(self.nb_channels, self.width, self.nb_blocks)

    def _purify(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)

    def fit(self, x: np.ndarray, y: Optional[np.ndarray] = None, feature_network: Optional[nn.Module] = None,
            feature_layer: Optional[str] = None, nb_epochs: Optional[int] = None, batch_size: Optional[int] = None,
            **kwargs: Any) -> None:
        """
        Train the purifier on clean images (labels are not used).

        :param x: Clean NCHW images inside ``clip_values``.
        :param y: Ignored (ART's signature).
        :param feature_network: The frozen network ``F`` (required); it takes images in ``clip_values`` units.
        :param feature_layer: Name of the module of ``feature_network`` whose output is ``F`` (``None``: its output).
        """
        fit_nrp(self, x, feature_network, feature_layer, nb_epochs, batch_size, **kwargs)

    def _check_params(self) -> None:
        super()._check_params()
        check_positive(width=self.width, ssp_eps=self.ssp_eps)
        check_non_negative(nb_blocks=self.nb_blocks, ssp_steps=self.ssp_steps, pixel_weight=self.pixel_weight,
                           feature_weight=self.feature_weight)
        if self.pixel_weight + self.feature_weight <= 0:
            raise ValueError("pixel_weight and feature_weight cannot both be 0.")


def nrp_loss(purifier: nn.Module, features: Callable, x: torch.Tensor, x_adv: torch.Tensor, pixel_weight: float,
             feature_weight: float) -> Tuple[torch.Tensor, Dict[str, float]]:
    """The purifier's loss on one unit-range batch: pixel MSE + feature MSE of ``P(x')`` against clean ``x``."""
    purified = purifier(x_adv)
    pixel = ((purified - x) ** 2).mean()
    with torch.no_grad():
        target = features(x)
    feature = ((features(purified) - target) ** 2).mean()
    loss = pixel_weight * pixel + feature_weight * feature
    return loss, {"pixel": float(pixel.detach()), "feature": float(feature.detach())}


def fit_nrp(defence: NRP, x: np.ndarray, feature_network: Optional[nn.Module], feature_layer: Optional[str] = None,
            nb_epochs: Optional[int] = None, batch_size: Optional[int] = None, checkpoint: Optional[str] = None,
            **kwargs: Any) -> None:
    """Train an :class:`NRP` purifier with SSP perturbations of ``feature_network`` (frozen); marks it fitted.
    ``checkpoint``: a resume file path (:func:`~art_idfr.experiments.baselines.training.train_epochs`)."""
    if kwargs:
        raise ValueError(f"NRP.fit got unexpected arguments {sorted(kwargs)}.")
    if feature_network is None:
        raise ValueError("NRP.fit needs feature_network=<nn.Module>: the network whose features SSP distorts.")
    defence.check_input(x, "NRP training data")
    raw_features = feature_function(feature_network, feature_layer)

    def features(u: torch.Tensor) -> torch.Tensor:  # unit range -> the feature network's clip_values units
        return raw_features(defence.from_unit(u))

    net = defence.network

    def step(xb: torch.Tensor, generator: torch.Generator):
        xu = defence.to_unit(xb)
        x_adv = ssp_perturb(features, xu, defence.ssp_eps, defence.ssp_steps, generator)
        return nrp_loss(net, features, xu, x_adv, defence.pixel_weight, defence.feature_weight)

    with frozen(feature_network):
        history, info = train_epochs(
            net, net.parameters(), [x], step, nb_epochs=defence.nb_epochs if nb_epochs is None else int(nb_epochs),
            batch_size=batch_size or defence.batch_size, learning_rate=defence.learning_rate, device=defence.device,
            seed=defence.seed, verbose=defence.verbose, desc="NRP", checkpoint=checkpoint,
            fingerprint=defence.get_config() | {"feature_network": digest(feature_network),
                                                "feature_layer": feature_layer})
    info.update(feature_network=type(feature_network).__name__, feature_layer=feature_layer)
    defence.mark_fitted(history, info)
