"""
ComDefend (Jia, Wei, Cao, Foroosh, "ComDefend: An Efficient Image Compression Model to Defend Adversarial Examples",
CVPR 2019) as an ART ``PreprocessorPyTorch``; own implementation from the paper (the official code has no licence).

ComCNN compresses the image to a ``code_channels``-channel map of logits; a sigmoid and a threshold at 0.5 turn it
into a binary code; RecCNN reconstructs the image from the code. Training sees clean images only: Gaussian noise of
std ``noise_std`` is added to the logits before the sigmoid, so the code must saturate to 0/1 to carry information,
and the loss is ``MSE(Rec(sigmoid(Com(x) + noise)), x) + code_weight * mean(sigmoid(...)^2)`` (reconstruction +
code sparsity).

================================ ============================================ ==========================================
setting                          paper (and its code)                         ours (CPU preset = defaults)
================================ ============================================ ==========================================
ComCNN / RecCNN                  9 conv3x3 each, 16-32-64-128-256-128-64-32,  the same layout, channels × ``width``
                                 ELU, no pooling, ~0.8M params each           (default 0.25, i.e. 4-8-16-32-64-...)
code                             12 channels, sigmoid, binarised at 0.5       ``code_channels=12``, the same
training noise on the code       N(0, 20²) before the sigmoid                 ``noise_std=20``
loss                             MSE + 1e-4·mean(code²)                       the same (``code_weight=1e-4``)
optimiser                        Adam, lr 1e-2, betas (0.5, 0.999), 10 epochs Adam, lr 3e-3, betas (0.5, 0.999),
                                                                              ``nb_epochs=20``. Validation (Fashion-
                                                                              MNIST, 4,000 images): lr 1e-3 × 5 epochs
                                                                              43.9% clean, × 20 71.3%; 3e-3 × 20
                                                                              84.2%; 1e-2 × 20 collapses (10.1%).
                                                                              CIFAR-10 (``cifar10_cpu``): batch 32,
                                                                              1e-3, ``lr_schedule="cosine"``: 57.8%
                                                                              clean on validation, the preset 41.8%
test time                        official code also adds the noise at test    deterministic: no noise at test time
                                 time (the paper does not)                    (the paper's description)
================================ ============================================ ==========================================
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from art_idfr.experiments.baselines._common import BaselinePreprocessor, check_non_negative, check_positive
from art_idfr.experiments.baselines.training import check_lr_schedule, randn, train_epochs

#: the paper's hidden channels of ComCNN (RecCNN mirrors them: 32-64-128-256-128-64-32-16)
PAPER_CHANNELS = (16, 32, 64, 128, 256, 128, 64, 32)


def _conv_stack(channels: Sequence[int], last_activation: Optional[nn.Module]) -> nn.Sequential:
    """conv3x3 layers ``channels[i] -> channels[i+1]``, ELU between them, ``last_activation`` after the last."""
    layers = []
    for i, (c_in, c_out) in enumerate(zip(channels[:-1], channels[1:])):
        layers.append(nn.Conv2d(c_in, c_out, kernel_size=3, padding=1))
        if i < len(channels) - 2:
            layers.append(nn.ELU())
    if last_activation is not None:
        layers.append(last_activation)
    return nn.Sequential(*layers)


class _BinariseStraightThrough(torch.autograd.Function):
    """``1[p > 0.5]`` forward, identity backward (BPDA on the threshold, Athalye et al. 2018)."""

    @staticmethod
    def forward(ctx, p: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return (p > 0.5).to(p.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return grad


def binarise_straight_through(p: torch.Tensor) -> torch.Tensor:
    """Threshold a code in [0, 1] at 0.5; the gradient passes through unchanged (straight-through)."""
    return _BinariseStraightThrough.apply(p)


class ComDefendNetwork(nn.Module):
    """ComCNN (image -> code logits) and RecCNN (code -> image in [0, 1], sigmoid out)."""

    def __init__(self, nb_channels: int, code_channels: int = 12, width: float = 1.0) -> None:
        super().__init__()
        hidden = [max(1, int(round(c * width))) for c in PAPER_CHANNELS]
        self.com = _conv_stack([nb_channels, *hidden, code_channels], None)
        self.rec = _conv_stack([code_channels, *hidden[::-1], nb_channels], nn.Sigmoid())

    def code_logits(self, x: torch.Tensor) -> torch.Tensor:
        """ComCNN of a unit-range batch (centred at 0)."""
        return self.com(x - 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Test-time ComDefend: binarised code (straight-through gradient), then RecCNN."""
        return self.rec(binarise_straight_through(torch.sigmoid(self.code_logits(x))))


class ComDefend(BaselinePreprocessor):
    """
    ComDefend (Jia et al., CVPR 2019): compress to a binary code with ComCNN, reconstruct with RecCNN.

    Deterministic at test time. **Gradients**: the binarisation has zero gradient almost everywhere, so
    :meth:`forward` uses a straight-through estimator on it (the threshold is the identity in the backward pass,
    BPDA-identity; ComCNN, the sigmoid and RecCNN are differentiated exactly). ART's ``loss_gradient`` of a
    ``PyTorchClassifier(..., preprocessing_defences=[ComDefend(...)])`` is therefore the BPDA white-box gradient,
    and :meth:`estimate_gradient` (ART's NumPy entry point) returns the same. See the module docstring for the
    paper's settings beside ours.

    :param input_shape: (C, H, W) of one sample (NCHW data only).
    :param clip_values: (min, max) of valid pixel values.
    :param code_channels: Channels of the binary code (paper: 12).
    :param width: Multiplier of the paper's ComCNN/RecCNN channels (paper: 1.0; ours 0.25).
    :param noise_std: Std of the Gaussian noise added to the code logits during training (paper's code: 20).
    :param code_weight: Weight of the code-sparsity term ``mean(code^2)`` (paper: 1e-4).
    :param lr_schedule: ``"constant"`` (the paper's) or ``"cosine"`` (annealed to 0 over the fit).
    :param learning_rate: Adam learning rate (paper's code: 1e-2; ours 3e-3).
    :param nb_epochs: Default epochs of :meth:`fit`.
    :param batch_size: Batch size of the forward pass and of :meth:`fit`.
    :param device_type: ``"gpu"`` (CUDA when available) or ``"cpu"``.
    :param apply_fit: Apply when the classifier is trained (default ``False``).
    :param apply_predict: Apply at prediction time (default ``True``).
    :param verbose: Progress bar in :meth:`fit`.
    :param seed: Seed of the weight initialisation and of the training randomness.
    """

    KIND = "ComDefend"
    params = BaselinePreprocessor.params + ["code_channels", "width", "noise_std", "code_weight", "lr_schedule"]

    def __init__(self, input_shape: Tuple[int, int, int], clip_values: Tuple[float, float] = (0.0, 1.0),
                 code_channels: int = 12, width: float = 0.25, noise_std: float = 20.0, code_weight: float = 1e-4,
                 lr_schedule: str = "constant", learning_rate: float = 3e-3, nb_epochs: int = 20,
                 batch_size: int = 128, device_type: str = "gpu", apply_fit: bool = False, apply_predict: bool = True,
                 verbose: bool = False, seed: Optional[int] = 0) -> None:
        super().__init__(input_shape, clip_values, learning_rate, nb_epochs, batch_size, device_type, apply_fit,
                         apply_predict, verbose, seed)
        self.code_channels = int(code_channels)
        self.width = float(width)
        self.noise_std = float(noise_std)
        self.code_weight = float(code_weight)
        self.lr_schedule = str(lr_schedule)
        self._setup()

    @property
    def inference_passes(self) -> str:
        """The network passes of one purification."""
        return "2 network passes per image (ComCNN, then RecCNN on the binary code)"

    def _make_network(self) -> nn.Module:
        return ComDefendNetwork(self.nb_channels, self.code_channels, self.width)

    def _purify(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)

    def estimate_forward(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The forward pass itself: it already carries the straight-through gradient of the binarisation."""
        return self.forward(x, y)[0]

    def fit(self, x: np.ndarray, y: Optional[np.ndarray] = None, nb_epochs: Optional[int] = None,
            batch_size: Optional[int] = None, **kwargs: Any) -> None:
        """
        Train ComCNN + RecCNN on clean images (labels are not used).

        :param x: Clean NCHW images inside ``clip_values``.
        :param y: Ignored (ART's signature).
        """
        fit_comdefend(self, x, nb_epochs, batch_size, **kwargs)

    def _check_params(self) -> None:
        super()._check_params()
        check_positive(code_channels=self.code_channels, width=self.width)
        check_non_negative(noise_std=self.noise_std, code_weight=self.code_weight)
        check_lr_schedule(self.lr_schedule)


def comdefend_loss(network: ComDefendNetwork, x: torch.Tensor, noise: torch.Tensor, noise_std: float,
                   code_weight: float) -> Tuple[torch.Tensor, Dict[str, float]]:
    """The training loss of one unit-range batch: reconstruction MSE + ``code_weight`` · mean(code²)."""
    code = torch.sigmoid(network.code_logits(x) + noise_std * noise)
    mse = ((network.rec(code) - x) ** 2).mean()
    sparsity = (code ** 2).mean()
    return mse + code_weight * sparsity, {"mse": float(mse.detach()), "code": float(sparsity.detach())}


def fit_comdefend(defence: ComDefend, x: np.ndarray, nb_epochs: Optional[int] = None,
                  batch_size: Optional[int] = None, checkpoint: Optional[str] = None, **kwargs: Any) -> None:
    """Train a :class:`ComDefend` on clean images (the paper's unsupervised objective); marks it fitted.
    ``checkpoint``: a resume file path (:func:`~art_idfr.experiments.baselines.training.train_epochs`)."""
    if kwargs:
        raise ValueError(f"ComDefend.fit got unexpected arguments {sorted(kwargs)}.")
    defence.check_input(x, "ComDefend training data")
    net = defence.network
    shape = (defence.code_channels, *defence.input_shape[1:])

    def step(xb: torch.Tensor, generator: torch.Generator):
        noise = randn((xb.shape[0], *shape), generator, xb.device)
        return comdefend_loss(net, defence.to_unit(xb), noise, defence.noise_std, defence.code_weight)

    history, info = train_epochs(
        net, net.parameters(), [x], step, nb_epochs=defence.nb_epochs if nb_epochs is None else int(nb_epochs),
        batch_size=batch_size or defence.batch_size, learning_rate=defence.learning_rate, device=defence.device,
        seed=defence.seed, verbose=defence.verbose, desc="ComDefend", betas=(0.5, 0.999),
        lr_schedule=defence.lr_schedule, checkpoint=checkpoint, fingerprint=defence.get_config())
    defence.mark_fitted(history, info)
