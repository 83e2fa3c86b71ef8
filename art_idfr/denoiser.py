"""
The IDFR input denoiser (ID): the U-Net of Table 6 or its lighter variant (:mod:`art_idfr.unet`) shipped as an ART ``PreprocessorPyTorch``:
parameters, the differentiable forward pass, and persistence. Its training algorithms live in :mod:`art_idfr.training`
(Algorithm 1: :mod:`art_idfr.training.algorithm1`); :meth:`IDFRDenoiser.fit` delegates there.

| Paper: "Adversarial Defense via Input Denoising and Feature Restoring" (IDFR), Sec. 3.2, Table 6, Algorithm 1.
"""
from __future__ import annotations

import logging
import warnings
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from art.defences.preprocessor.preprocessor import PreprocessorPyTorch
from torch import nn

from art_idfr import checkpoint
from art_idfr._names import AUGMENTATIONS, ID_ARCHITECTURES, ID_LOSSES, RESIDUAL_HEADS
from art_idfr._utils import check_device_type, check_image_batch
from art_idfr.training import algorithm1
from art_idfr.training.common import gaussian_enhance, warn_unused_kwargs
from art_idfr.unet import TABLE6_CHANNELS, UNetDenoiser, make_unet  # noqa: F401  (re-exported)

if TYPE_CHECKING:  # pragma: no cover
    from art.attacks.attack import EvasionAttack
    from art.estimators.classification import PyTorchClassifier

logger = logging.getLogger(__name__)

#: parameters that shape the network: changing one through :meth:`IDFRDenoiser.set_params` rebuilds it (unfitted)
STRUCTURAL_PARAMS = ("input_shape", "channels_first", "width", "residual_head", "architecture")

# kept for backward compatibility of ``from art_idfr.denoiser import LOSSES, RESIDUAL_HEADS``
LOSSES = ID_LOSSES


class IDFRDenoiser(PreprocessorPyTorch):
    """
    IDFR input denoiser (ID) as an ART preprocessing defence.

    ``x* = clip(x + UNet(x), clip_values)`` (Sec. 3.2, Table 6). The forward pass is differentiable, so ART's
    ``loss_gradient`` on a ``PyTorchClassifier(..., preprocessing_defences=[IDFRDenoiser(...)])`` is the exact
    gradient through the defence: every ART gradient attack run on that classifier is the adaptive white-box attack.

    Training lives apart, in :mod:`art_idfr.training`: :meth:`fit` runs Algorithm 1
    (:func:`art_idfr.training.algorithm1.fit_denoiser`); the adaptive mode (not in the paper) is
    :class:`art_idfr.training.AdaptiveDenoiserTrainer`.

    | Paper: IDFR, Sec. 3.2 and Algorithm 1.

    :param input_shape: Shape of one sample, (C, H, W) when ``channels_first`` else (H, W, C).
    :param clip_values: (min, max) of valid pixel values; inputs outside raise ``ValueError``, outputs are clipped.
    :param channels_first: Layout of the data given to the defence.
    :param width: Multiplier of the Table 6 channel counts (1.0 = paper).
    :param residual_head: ``"linear"`` (default, signed residual) or ``"bn_relu"`` (the paper's code).
    :param architecture: The network (:data:`art_idfr._names.ID_ARCHITECTURES`): ``"table6"`` (default, the
        paper's U-Net, :class:`art_idfr.unet.UNetDenoiser`), or a lighter one for large inputs (not in the paper):
        ``"light"``, the same U-Net at half resolution on a space-to-depth copy of the image, ≈ 0.26× the MACs at
        the same ``width`` (:class:`art_idfr.unet.LightUNetDenoiser`), or ``"slim"``, Table 6 with a slim decoder,
        0.42× (:class:`art_idfr.unet.SlimUNetDenoiser`); see benchmarks/NOTES.md for their accuracy. Stored in checkpoints; older ones without it are Table 6. Last in the signature, so positional calls written
        before it existed keep their meaning.
    :param loss: ``"ce"`` (Eq. 3, cross-entropy through the frozen target), ``"feature"`` (L1 distance of the
        target's penultimate embeddings of ``ID(x')`` and ``x``, as in the authors' code/HGD) or ``"both"``.
    :param gaussian_sigma: σ of the last Gaussian round; round k of K adds N(0, (σ·k/K)²) noise.
    :param gaussian_rounds: Number K of Gaussian-enhanced copies per clean image (Jeong & Shin 2020). The clean
        image itself is always part of the training set.
    :param clean_weight: Weight of the loss of the clean (un-noised) training images relative to AEs and Gaussian
        copies (1 = Algorithm 1's plain union). Larger values trade robustness for clean accuracy.
    :param identity_weight: λ of an extra term λ·mean|ID(x) − x| on the clean training images, which keeps the ID
        close to the identity where there is nothing to remove (0 = off, the paper).
    :param learning_rate: Adam learning rate (paper: 0.01; authors' code: 1e-3, the default).
    :param nb_epochs: Default number of training epochs for :meth:`fit` (paper: 100).
    :param regenerate_every: Regenerate the adversarial examples every this many epochs (0 = once, Algorithm 1).
    :param augment: Augmentation of every training batch (AEs, clean images and Gaussian copies alike; the label
        is kept): ``"none"`` (Algorithm 1), ``"crop"`` (random crop from a zero-padded copy, pad = 1/8 of the
        side) or ``"crop_flip"`` (+ random horizontal flips, for natural images such as CIFAR-10; not for digits).
        The AEs are crafted once, so without it the ID sees the same fixed perturbations every epoch and overfits
        them; augmenting costs nothing per epoch (not in the paper; see benchmarks/NOTES.md).
    :param batch_size: Batch size used by the forward pass (the U-Net runs batch by batch) and by :meth:`fit`.
    :param device_type: ``"gpu"`` (CUDA when available, else CPU) or ``"cpu"``.
    :param apply_fit: Apply the defence when the classifier is trained (default ``False``).
    :param apply_predict: Apply the defence at prediction time (default ``True``).
    :param verbose: Show progress bars.
    :param seed: Seed for weight initialisation and training randomness.
    """

    params = [
        "input_shape",
        "clip_values",
        "channels_first",
        "width",
        "residual_head",
        "architecture",
        "loss",
        "gaussian_sigma",
        "gaussian_rounds",
        "clean_weight",
        "identity_weight",
        "learning_rate",
        "nb_epochs",
        "regenerate_every",
        "augment",
        "batch_size",
        "verbose",
        "seed",
    ]

    def __init__(
        self,
        input_shape: Tuple[int, int, int],
        clip_values: Tuple[float, float] = (0.0, 1.0),
        channels_first: bool = True,
        width: float = 1.0,
        residual_head: str = "linear",
        loss: str = "ce",
        gaussian_sigma: float = 0.05,
        gaussian_rounds: int = 1,
        clean_weight: float = 1.0,
        identity_weight: float = 0.0,
        learning_rate: float = 1e-3,
        nb_epochs: int = 20,
        regenerate_every: int = 0,
        augment: str = "none",
        batch_size: int = 128,
        device_type: str = "gpu",
        apply_fit: bool = False,
        apply_predict: bool = True,
        verbose: bool = False,
        seed: Optional[int] = 0,
        architecture: str = "table6",
    ) -> None:
        super().__init__(device_type=device_type, is_fitted=False, apply_fit=apply_fit, apply_predict=apply_predict)
        self.input_shape = tuple(int(s) for s in input_shape)
        self.clip_values = (float(clip_values[0]), float(clip_values[1])) if clip_values is not None else None
        self.channels_first = bool(channels_first)
        self.width = float(width)
        self.residual_head = residual_head
        self.architecture = architecture
        self.loss = loss
        self.gaussian_sigma = float(gaussian_sigma)
        self.gaussian_rounds = int(gaussian_rounds)
        self.clean_weight = float(clean_weight)
        self.identity_weight = float(identity_weight)
        self.learning_rate = float(learning_rate)
        self.nb_epochs = int(nb_epochs)
        self.regenerate_every = int(regenerate_every)
        self.augment = augment
        self.batch_size = int(batch_size)
        self.device_type = device_type
        self.verbose = bool(verbose)
        self.seed = seed
        self._check_params()

        if seed is not None:
            torch.manual_seed(seed)
        self._build_network()
        self._warned_unfitted = False

    # ------------------------------------------------------------------ properties
    @property
    def nb_channels(self) -> int:
        """Number of image channels, from ``input_shape`` and ``channels_first``."""
        return self.input_shape[0] if self.channels_first else self.input_shape[-1]

    @property
    def device(self) -> torch.device:
        """Device of the U-Net."""
        return self._device

    @property
    def training_info(self) -> Dict[str, Any]:
        """How the ID was trained (``{"algorithm": "algorithm1", ...}``; stored in checkpoints); ``{}`` if unfitted."""
        return dict(self._training_info)

    def get_config(self) -> Dict:
        """Constructor arguments (JSON-serialisable), as stored in checkpoints."""
        return {name: getattr(self, name) for name in self.params} | {
            "device_type": self.device_type,
            "apply_fit": self.apply_fit,
            "apply_predict": self.apply_predict,
        }

    def set_params(self, **kwargs) -> None:
        """ART's ``set_params``; a structural parameter (:data:`STRUCTURAL_PARAMS`) rebuilds an unfitted network."""
        old = {name: getattr(self, name) for name in STRUCTURAL_PARAMS}
        super().set_params(**kwargs)
        self.input_shape = tuple(int(s) for s in self.input_shape)
        if any(getattr(self, name) != value for name, value in old.items()):
            if self.is_fitted:
                warnings.warn(f"IDFRDenoiser.set_params changed {sorted(k for k in kwargs if k in old)}: the network "
                              "is rebuilt and must be fitted again.", UserWarning, stacklevel=2)
            self._build_network()

    def _build_network(self) -> None:
        """A fresh (identity-initialised, unfitted) U-Net for the current structural parameters."""
        if self.seed is not None:
            torch.manual_seed(self.seed)
        self.network = make_unet(self.architecture, self.nb_channels, width=self.width,
                                 residual_head=self.residual_head)
        self.network.to(self._device).eval()
        self.history: List[Dict[str, float]] = []
        self._training_info: Dict[str, Any] = {}
        self._is_fitted = False
        self._fused_stamp = None

    def mark_fitted(self, training_info: Dict[str, Any]) -> None:
        """Called by the training algorithms when they finish: the ID is fitted, and how is recorded."""
        self._is_fitted = True
        self._training_info = dict(training_info)

    # ------------------------------------------------------------------ forward
    def check_input(self, x: torch.Tensor | np.ndarray) -> None:
        """Raise ``ValueError`` on a batch of the wrong layout/shape, with NaN/inf, or outside ``clip_values``."""
        check_image_batch(x, self.input_shape, self.channels_first, self.clip_values, name="IDFRDenoiser input")

    def _inference_network(self) -> nn.Module:
        """The BN-folded channels-last copy of the network, rebuilt whenever the weights have changed."""
        # identity and in-place version counter of every parameter and buffer (state_dict() would give fresh
        # detached views each call, whose id() never repeats): unchanged weights -> the cached copy is reused
        stamp = tuple((t.data_ptr(), t._version) for t in (*self.network.parameters(), *self.network.buffers()))
        if getattr(self, "_fused_stamp", None) != stamp:
            self._fused, self._fused_stamp = self.network.fused(), stamp
        return self._fused

    def denoise_nchw(self, x: torch.Tensor, fused: bool = True, batch_size: Optional[int] = None,
                     network: Optional[nn.Module] = None) -> torch.Tensor:
        """
        ``x* = clip(x + UNet(x))`` for an NCHW batch on the ID's device, batch by batch (ART hands the whole dataset
        to preprocessors); in training mode, or with ``fused=False``, through the network itself, else through its
        BN-folded copy (the same function, faster; rebuilt whenever the weights change). ``batch_size`` overrides
        the chunk size (a training step passes its whole batch, so BatchNorm sees one batch). ``network`` replaces
        the U-Net in training mode (distributed training passes its ``DistributedDataParallel`` wrapper).
        """
        use_fused = fused and not self.network.training
        net = self._inference_network() if use_fused else (self.network if network is None else network)
        outputs = []
        chunk = self.batch_size if batch_size is None else max(1, int(batch_size))
        for start in range(0, x.shape[0], chunk):
            xb = x[start : start + chunk]
            if use_fused:
                xb = xb.contiguous(memory_format=torch.channels_last)
            x_star = xb + net(xb)  # x* = x + r(x)  (Sec. 3.2, residual output)
            if self.clip_values is not None:
                x_star = x_star.clamp(self.clip_values[0], self.clip_values[1])
            outputs.append(x_star)
        if not outputs:
            return x
        keep = x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
        return torch.cat(outputs, dim=0).contiguous(memory_format=torch.channels_last if keep else
                                                    torch.contiguous_format)  # a channels-last batch stays one

    def forward(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """
        Denoise a batch. Differentiable; runs on the defence's device and returns on the input's device.

        :param x: Images in the layout given by ``channels_first`` and values inside ``clip_values``.
        :param y: Labels, passed through unchanged.
        :return: ``(x*, y)``.
        """
        self.check_input(x)
        self._warn_if_unfitted()
        return self.denoise(x, check=False), y

    def _warn_if_unfitted(self) -> None:
        if not self.is_fitted and not getattr(self, "_warned_unfitted", False):
            self._warned_unfitted = True
            warnings.warn("IDFRDenoiser is not fitted: it applies an untrained network (close to the identity, no "
                          "defence). Call fit(...) or IDFRDenoiser.load(...) first.", UserWarning, stacklevel=3)

    def denoise(self, x: torch.Tensor, check: bool = True) -> torch.Tensor:
        """
        ``x*`` for a torch batch in the defence's layout (eval mode, differentiable); ``check=False``: no checks.

        Memory: ``batch_size`` images at a time go through the U-Net (ART hands a preprocessor the whole array of a
        ``predict`` call at once, e.g. thousands of 224x224 images), and a batch on another device than the ID's is
        moved chunk by chunk, so the ID's device holds one chunk and its activations (plus, under autograd, what the
        backward pass needs). Under ``torch.no_grad`` (ART's ``predict``) nothing is kept between chunks.
        """
        if check:
            self.check_input(x)
        self.network.eval()
        if x.shape[0] == 0:
            return x.to(dtype=torch.float32)
        outputs = []
        for start in range(0, x.shape[0], self.batch_size):
            xb = x[start : start + self.batch_size].to(self._device, dtype=torch.float32)
            if not self.channels_first:
                xb = xb.permute(0, 3, 1, 2)
            x_star = self.denoise_nchw(xb)
            if not self.channels_first:
                x_star = x_star.permute(0, 2, 3, 1)
            outputs.append(x_star.to(x.device))
        return outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=0)

    def __call__(self, x: np.ndarray, y: Optional[np.ndarray] = None) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """NumPy in, NumPy out (ART's ``Preprocessor`` interface), under ``torch.no_grad``, ``batch_size`` images at
        a time: only one chunk is ever on the ID's device."""
        self.check_input(x)
        self._warn_if_unfitted()
        x = np.asarray(x, dtype=np.float32)
        out = np.empty_like(x)
        with torch.no_grad():
            for start in range(0, len(x), self.batch_size):
                xb = torch.as_tensor(x[start : start + self.batch_size], device=self._device)
                out[start : start + self.batch_size] = self.denoise(xb, check=False).cpu().numpy()
        return out, y

    # ------------------------------------------------------------------ training (delegates)
    def gaussian_enhance(self, x: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """The Gaussian-enhanced copies x_e of Algorithm 1 (σ_k = σ·k/K for k = 1..K, clipped)."""
        return gaussian_enhance(x, self.gaussian_sigma, self.gaussian_rounds, self.clip_values, generator)

    def fit(
        self,
        x: np.ndarray,
        y: Optional[np.ndarray] = None,
        classifier: Optional["PyTorchClassifier"] = None,
        attacks: Optional[Sequence["EvasionAttack"]] = None,
        nb_epochs: Optional[int] = None,
        batch_size: Optional[int] = None,
        x_adv: Optional[np.ndarray] = None,
        y_adv: Optional[np.ndarray] = None,
        validation_data: Optional[Tuple[np.ndarray, np.ndarray]] = None,
        **kwargs,
    ) -> None:
        """
        Train the ID by Algorithm 1 (:func:`art_idfr.training.algorithm1.fit_denoiser`).

        1. Craft adversarial examples ``x' = A(x)`` with every ART ``EvasionAttack`` in ``attacks`` (built on the
           undefended target; Algorithm 1 lines 1-4), or take precomputed ``x_adv``.
        2. Join them with the clean images and their Gaussian-enhanced copies ``x_e`` (redrawn every epoch).
        3. Minimise Eq. 3, the cross-entropy of the frozen target on ``ID(·)`` (or the feature loss), with Adam.

        :param x: Clean training images, layout per ``channels_first``, values inside ``clip_values``.
        :param y: Labels (indices or one-hot).
        :param classifier: The target, an ART ``PyTorchClassifier``; it is frozen during training. If it already
            carries this denoiser as a preprocessing defence, the denoiser is bypassed when computing the loss.
        :param attacks: ART evasion attacks used to craft training AEs (e.g. FGSM and BIM on the target). Attacks
            built on other, independently trained models add AE sources (not in the paper; see benchmarks/NOTES.md).
        :param nb_epochs: Epochs (default: the constructor's ``nb_epochs``).
        :param batch_size: Batch size (default: the constructor's ``batch_size``).
        :param x_adv: Precomputed adversarial examples (optional, added to those crafted by ``attacks``).
        :param y_adv: Labels of ``x_adv`` (default: ``y`` tiled to the length of ``x_adv``).
        :param validation_data: Optional ``(x_val, y_val)`` (never the test split). Each epoch logs the clean
            accuracy through ``ID`` and the target (``val_acc``) and, when ``attacks`` are given, the accuracy on
            their AEs of ``x_val`` (``val_adv_acc``); the epoch with the best mean of the two (``val_score``) is kept.
            A third element, a list of arrays of precomputed AEs of ``x_val``, is used as well.
        """
        warn_unused_kwargs(kwargs, "IDFRDenoiser.fit")
        algorithm1.fit_denoiser(self, x, y, classifier, attacks, nb_epochs, batch_size, x_adv, y_adv, validation_data)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str) -> None:
        """
        Write config + weights + how it was trained + format version to one file (read with ``weights_only``).
        Distributed (torchrun): only rank 0 writes, then all ranks meet at a barrier, so call it on every rank.
        """
        if not self.is_fitted:
            logger.warning("saving an unfitted IDFRDenoiser")
        checkpoint.save(path, kind="IDFRDenoiser", config=self.get_config(), state_dict=self.network.state_dict(),
                        extra={"is_fitted": self.is_fitted, "history": self.history, "training": self._training_info})

    @classmethod
    def load(cls, path: str, device_type: Optional[str] = None) -> "IDFRDenoiser":
        """
        Load a denoiser written by :meth:`save`. Never executes code from the file.

        :param path: Checkpoint path.
        :param device_type: Override the stored ``device_type`` (``"gpu"`` or ``"cpu"``).
        """
        config, state_dict, extra = checkpoint.load_component(path, "IDFRDenoiser", device_type)
        den = checkpoint.construct(cls, config, path, extra)
        checkpoint.load_state_dict(den.network, state_dict, path, extra)
        den.network.to(den._device).eval()
        den._is_fitted = bool(extra.get("is_fitted", True))
        den.history = list(extra.get("history", []))
        den._training_info = dict(extra.get("training") or ({"algorithm": "algorithm1"} if den._is_fitted else {}))
        return den

    # ------------------------------------------------------------------ checks
    def _check_params(self) -> None:
        if len(self.input_shape) != 3 or any(s <= 0 for s in self.input_shape):
            raise ValueError(f"input_shape must be 3 positive ints, (C, H, W) or (H, W, C); got {self.input_shape}.")
        if self.clip_values is not None and not self.clip_values[0] < self.clip_values[1]:
            raise ValueError(f"clip_values must be (min, max) with min < max, got {self.clip_values}.")
        if self.width <= 0:
            raise ValueError(f"width must be positive, got {self.width}.")
        for name, value, valid in (("residual_head", self.residual_head, RESIDUAL_HEADS),
                                   ("architecture", self.architecture, ID_ARCHITECTURES),
                                   ("loss", self.loss, ID_LOSSES), ("augment", self.augment, AUGMENTATIONS)):
            if value not in valid:
                raise ValueError(f"{name} must be one of {valid}, got {value!r}.")
        if self.clean_weight <= 0 or self.identity_weight < 0:
            raise ValueError("clean_weight must be positive and identity_weight non-negative.")
        if self.gaussian_sigma < 0 or self.gaussian_rounds < 0:
            raise ValueError("gaussian_sigma and gaussian_rounds must be non-negative.")
        if self.learning_rate <= 0 or self.nb_epochs < 0 or self.batch_size <= 0 or self.regenerate_every < 0:
            raise ValueError("learning_rate and batch_size must be positive, nb_epochs and regenerate_every >= 0.")
        check_device_type(self.device_type)
