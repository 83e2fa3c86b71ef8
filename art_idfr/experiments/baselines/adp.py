"""
ADP, adversarial purification with a score-based model (Yoon, Hwang, Lee, "Adversarial Purification with
Score-based Generative Models", ICML 2021) as an ART ``PreprocessorPyTorch``; own implementation from the paper.

A small noise-conditional score network ``s(x, σ) = net([x, log σ]) / σ`` is trained by denoising score matching on
clean images over a ladder of noise levels ``sigmas``: ``x~ = x + σ z``, loss ``mean((σ s(x~, σ) + z)^2) / 2``
(Song & Ermon 2019; σ drawn from the ladder per image). Purification: add Gaussian noise of std ``noise_std``, then
``nb_steps`` deterministic score-ascent steps ``x <- x + step_size · σ_p² · s(x, σ_p)`` at the level ``σ_p``
(``purify_sigma``; default the trained level nearest to ``noise_std``), then clipping to the image range. With
``step_size=1`` one step is Tweedie's denoiser at ``σ_p`` (the default: chosen on validation, see below); smaller
steps relax towards it. The noisy image is not clipped before the steps: the score network was trained on unclipped
noisy images, and clipping biases dark backgrounds (on Fashion-MNIST validation: 63.2% clean with clipping after
every step, 72.5% without, same network).

**Randomised**: every call draws fresh noise, so two calls on the same input differ. ``noise_seed`` seeds the
purification's own generator (reproducible sequences of predictions; :meth:`ADP.reset_noise` restarts it). White-box
evaluation must use EOT (average gradients over several draws); the forward pass is differentiable end to end.

================================ ============================================ ==========================================
setting                          paper                                        ours (CPU preset = defaults)
================================ ============================================ ==========================================
score network                    NCSN-style RefineNet (EBM), DSM over a       conv stack (``width=32``, ``depth=4``,
                                 geometric ladder of noise levels             ELU), σ as an input channel, output / σ;
                                                                              ``sigmas=(1, .5, .25, .1, .05)``;
                                                                              ``architecture="unet"``: multi-scale
purification noise               N(0, 0.25²) (uniform also studied)           ``noise_std=0.25``
score steps                      ≤ 10 deterministic steps, adaptive step      ``nb_steps=1`` full step
                                 size (secant estimate) + stopping rule;      (``step_size=1`` × σ_p²: Tweedie), no
                                 score at the smallest noise level            stopping rule; σ_p nearest to
                                                                              ``noise_std``. Validation (Fashion-MNIST,
                                                                              20 epochs): 5 × 0.2 74.7% clean,
                                                                              2 × 0.5 77.7%, 1 × 1.0 84.3%
training                         —                                            Adam 1e-3, ``nb_epochs=20`` (5: 72.5%
                                                                              clean at 1 × 1.0)
projected variant                projection onto a ball around the input      simplified away: no projection, only
                                                                              clipping to the image range
prediction                       ensemble of 10 purification draws            one draw per call (an evaluator may
                                                                              average draws; EOT for gradients)
================================ ============================================ ==========================================
"""
from __future__ import annotations

import math
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from art_idfr.experiments.baselines._common import BaselinePreprocessor, check_positive
from art_idfr.experiments.baselines.training import randn, train_epochs


class ScoreNetwork(nn.Module):
    """``s(x, σ) = net(concat(x, log σ)) / σ``: a conv stack with the noise level as an extra constant channel."""

    def __init__(self, nb_channels: int, width: int = 32, depth: int = 4) -> None:
        super().__init__()
        layers = [nn.Conv2d(nb_channels + 1, width, 3, padding=1), nn.ELU()]
        for _ in range(max(depth - 2, 0)):
            layers += [nn.Conv2d(width, width, 3, padding=1), nn.ELU()]
        layers.append(nn.Conv2d(width, nb_channels, 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """Score of a unit-range batch; ``sigma``: one level per image, shape (N,)."""
        level = sigma.view(-1, 1, 1, 1).to(x.dtype)
        cond = torch.log(level).expand(x.shape[0], 1, *x.shape[2:])
        return self.net(torch.cat([x - 0.5, cond], dim=1)) / level


class UNetScoreNetwork(nn.Module):
    """
    A multi-scale score network (the paper's RefineNet is one): ``depth`` resolutions, two conv3x3 + ELU at each, the
    channels doubling at every stride-2 step from ``width``, bilinear up-sampling with skip connections; σ enters as
    an input channel and the output is divided by σ, as in :class:`ScoreNetwork`.
    """

    def __init__(self, nb_channels: int, width: int = 32, depth: int = 3) -> None:
        super().__init__()
        chans = [width * 2 ** i for i in range(depth)]
        self.down = nn.ModuleList()
        c_in = nb_channels + 1
        for i, c in enumerate(chans):
            self.down.append(nn.Sequential(nn.Conv2d(c_in, c, 3, stride=1 if i == 0 else 2, padding=1), nn.ELU(),
                                           nn.Conv2d(c, c, 3, padding=1), nn.ELU()))
            c_in = c
        self.up = nn.ModuleList(nn.Sequential(nn.Conv2d(chans[i] + chans[i + 1], chans[i], 3, padding=1), nn.ELU(),
                                              nn.Conv2d(chans[i], chans[i], 3, padding=1), nn.ELU())
                                for i in reversed(range(depth - 1)))
        self.head = nn.Conv2d(width, nb_channels, 3, padding=1)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """Score of a unit-range batch; ``sigma``: one level per image, shape (N,)."""
        level = sigma.view(-1, 1, 1, 1).to(x.dtype)
        h = torch.cat([x - 0.5, torch.log(level).expand(x.shape[0], 1, *x.shape[2:])], dim=1)
        skips = []
        for block in self.down:
            h = block(h)
            skips.append(h)
        for block, skip in zip(self.up, reversed(skips[:-1])):
            h = F.interpolate(h, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            h = block(torch.cat([skip, h], dim=1))
        return self.head(h) / level


#: score networks by name (``ADP(architecture=...)``): (class, default depth)
SCORE_NETWORKS = {"conv": ScoreNetwork, "unet": UNetScoreNetwork}


class ADP(BaselinePreprocessor):
    """
    ADP (Yoon et al., ICML 2021): Gaussian noise, then a fixed number of deterministic score-ascent steps of a score
    network trained by denoising score matching.

    **Random**: each call draws new purification noise (seed it with ``noise_seed`` / :meth:`reset_noise` for
    reproducible predictions). The forward pass is differentiable (the noise is additive, the score steps are
    unrolled), so ART's ``loss_gradient`` is the exact gradient of one random draw; a white-box attack must average
    it over draws (EOT). See the module docstring for the paper's settings beside ours.

    :param input_shape: (C, H, W) of one sample (NCHW data only).
    :param clip_values: (min, max) of valid pixel values.
    :param width: Channels of the score network.
    :param depth: ``"conv"``: number of conv layers (>= 2); ``"unet"``: number of resolutions (>= 2).
    :param architecture: Score network: ``"conv"`` (a single-resolution conv stack, :class:`ScoreNetwork`; the CPU
        preset) or ``"unet"`` (multi-scale, :class:`UNetScoreNetwork`).
    :param sigmas: Noise levels of denoising score matching, in [0, 1] units.
    :param noise_std: Std of the Gaussian noise added before purification, in [0, 1] units (paper: 0.25).
    :param nb_steps: Score-ascent steps (paper: at most 10, adaptive).
    :param step_size: Step in units of σ_p² (``x += step_size · σ_p² · s(x, σ_p)``).
    :param purify_sigma: Noise level σ_p of the score used by the steps (``None``: the trained level nearest to
        ``noise_std``).
    :param noise_seed: Seed of the purification noise generator (``None``: torch's global RNG).
    :param learning_rate: Adam learning rate.
    :param nb_epochs: Default epochs of :meth:`fit`.
    :param batch_size: Batch size of the forward pass and of :meth:`fit`.
    :param device_type: ``"gpu"`` (CUDA when available) or ``"cpu"``.
    :param apply_fit: Apply when the classifier is trained (default ``False``).
    :param apply_predict: Apply at prediction time (default ``True``).
    :param verbose: Progress bar in :meth:`fit`.
    :param seed: Seed of the weight initialisation and of the training randomness.
    """

    KIND = "ADP"
    params = BaselinePreprocessor.params + ["width", "depth", "architecture", "sigmas", "noise_std", "nb_steps", "step_size",
                                            "purify_sigma", "noise_seed"]

    def __init__(self, input_shape: Tuple[int, int, int], clip_values: Tuple[float, float] = (0.0, 1.0),
                 width: int = 32, depth: int = 4, architecture: str = "conv", sigmas: Sequence[float] = (1.0, 0.5, 0.25, 0.1, 0.05),
                 noise_std: float = 0.25, nb_steps: int = 1, step_size: float = 1.0,
                 purify_sigma: Optional[float] = None, noise_seed: Optional[int] = None, learning_rate: float = 1e-3,
                 nb_epochs: int = 20, batch_size: int = 128, device_type: str = "gpu", apply_fit: bool = False,
                 apply_predict: bool = True, verbose: bool = False, seed: Optional[int] = 0) -> None:
        super().__init__(input_shape, clip_values, learning_rate, nb_epochs, batch_size, device_type, apply_fit,
                         apply_predict, verbose, seed)
        self.width = int(width)
        self.depth = int(depth)
        self.architecture = architecture
        self.sigmas = [float(s) for s in sigmas]
        self.noise_std = float(noise_std)
        self.nb_steps = int(nb_steps)
        self.step_size = float(step_size)
        self.purify_sigma = None if purify_sigma is None else float(purify_sigma)
        self.noise_seed = noise_seed
        self._setup()
        self.reset_noise()

    @property
    def score_sigma(self) -> float:
        """σ_p, the noise level of the score used by the purification steps."""
        if self.purify_sigma is not None:
            return self.purify_sigma
        return min(self.sigmas, key=lambda s: abs(math.log(s) - math.log(self.noise_std)))

    @property
    def inference_passes(self) -> str:
        """The network passes of one purification."""
        return f"{self.nb_steps} score-network pass{'es' * (self.nb_steps != 1)} per image and random draw"

    def reset_noise(self, seed: Optional[int] = None) -> None:
        """Restart the purification noise: from ``seed``, else from ``noise_seed`` (``None``: torch's global RNG)."""
        seed = self.noise_seed if seed is None else seed
        self.generator = None if seed is None else torch.Generator().manual_seed(int(seed))

    def _make_network(self) -> nn.Module:
        return SCORE_NETWORKS[self.architecture](self.nb_channels, self.width, self.depth)

    def _purify(self, x: torch.Tensor) -> torch.Tensor:
        noise = torch.randn(tuple(x.shape), generator=self.generator).to(x.device)
        x_pur = x + self.noise_std * noise  # not clipped: the score network was trained on unclipped noisy images
        sigma = self.score_sigma
        level = torch.full((x.shape[0],), sigma, device=x.device)
        for _ in range(self.nb_steps):
            x_pur = x_pur + self.step_size * sigma ** 2 * self.network(x_pur, level)
        return x_pur.clamp(0.0, 1.0)

    def fit(self, x: np.ndarray, y: Optional[np.ndarray] = None, nb_epochs: Optional[int] = None,
            batch_size: Optional[int] = None, **kwargs: Any) -> None:
        """
        Train the score network by denoising score matching on clean images (labels are not used).

        :param x: Clean NCHW images inside ``clip_values``.
        :param y: Ignored (ART's signature).
        """
        fit_adp(self, x, nb_epochs, batch_size, **kwargs)

    def _check_params(self) -> None:
        super()._check_params()
        check_positive(width=self.width, noise_std=self.noise_std, step_size=self.step_size)
        if self.architecture not in SCORE_NETWORKS:
            raise ValueError(f"architecture must be one of {sorted(SCORE_NETWORKS)}, got {self.architecture!r}.")
        if self.depth < 2:
            raise ValueError(f"depth must be >= 2, got {self.depth}.")
        if self.nb_steps < 0:
            raise ValueError(f"nb_steps must be non-negative, got {self.nb_steps}.")
        if not self.sigmas or any(not s > 0 for s in self.sigmas):
            raise ValueError(f"sigmas must be a non-empty list of positive noise levels, got {self.sigmas}.")
        if self.purify_sigma is not None:
            check_positive(purify_sigma=self.purify_sigma)
        if self.noise_seed is not None and (isinstance(self.noise_seed, bool) or not isinstance(self.noise_seed, int)):
            raise ValueError(f"noise_seed must be an int or None, got {self.noise_seed!r}.")


def dsm_loss(network: ScoreNetwork, x: torch.Tensor, sigma: torch.Tensor, z: torch.Tensor
             ) -> Tuple[torch.Tensor, Dict[str, float]]:
    """Denoising score matching on one unit-range batch: ``mean((σ s(x + σ z, σ) + z)^2) / 2``."""
    level = sigma.view(-1, 1, 1, 1)
    loss = 0.5 * ((level * network(x + level * z, sigma) + z) ** 2).mean()
    return loss, {}


def fit_adp(defence: ADP, x: np.ndarray, nb_epochs: Optional[int] = None, batch_size: Optional[int] = None,
            checkpoint: Optional[str] = None, **kwargs: Any) -> None:
    """Train an :class:`ADP` score network by denoising score matching; marks it fitted. ``checkpoint``: a resume
    file path (:func:`~art_idfr.experiments.baselines.training.train_epochs`)."""
    if kwargs:
        raise ValueError(f"ADP.fit got unexpected arguments {sorted(kwargs)}.")
    defence.check_input(x, "ADP training data")
    net = defence.network
    ladder = torch.tensor(defence.sigmas, dtype=torch.float32)

    def step(xb: torch.Tensor, generator: torch.Generator):
        pick = torch.randint(0, len(ladder), (xb.shape[0],), generator=generator)
        z = randn(xb.shape, generator, xb.device)
        return dsm_loss(net, defence.to_unit(xb), ladder[pick].to(xb.device), z)

    history, info = train_epochs(
        net, net.parameters(), [x], step, nb_epochs=defence.nb_epochs if nb_epochs is None else int(nb_epochs),
        batch_size=batch_size or defence.batch_size, learning_rate=defence.learning_rate, device=defence.device,
        seed=defence.seed, verbose=defence.verbose, desc="ADP", checkpoint=checkpoint,
        fingerprint=defence.get_config())
    defence.mark_fitted(history, info)
