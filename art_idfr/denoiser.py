"""
The IDFR input denoiser (ID): a U-Net (paper Table 6) shipped as an ART ``PreprocessorPyTorch``, trained by
Algorithm 1 (adversarial examples from ART attacks + Gaussian-enhanced clean copies, Eq. 3 loss through the frozen
target).

| Paper: "Adversarial Defense via Input Denoising and Feature Restoring" (IDFR), Sec. 3.2, Table 6, Algorithm 1.
"""
from __future__ import annotations

import copy
import logging
import math
import warnings
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from art.defences.preprocessor.preprocessor import PreprocessorPyTorch
from torch import nn
from tqdm.auto import tqdm

from art_idfr import checkpoint
from art_idfr._utils import (
    AUGMENTATIONS,
    batches,
    check_image_batch,
    check_pytorch_classifier,
    craft,
    frozen,
    random_crop_flip,
    target_logits,
    to_one_hot_indices,
    warn_unused_kwargs,
)

if TYPE_CHECKING:  # pragma: no cover
    from art.attacks.attack import EvasionAttack
    from art.estimators.classification import PyTorchClassifier

logger = logging.getLogger(__name__)

#: Table 6 channel counts, before the width multiplier: L1..L5 (encoder), L6, L7, L8 (decoder)
TABLE6_CHANNELS = (32, 32, 64, 64, 128, 192, 64, 96)
RESIDUAL_HEADS = ("linear", "bn_relu")
LOSSES = ("ce", "feature", "both")


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
    """

    def __init__(self, channels: int, width: float = 1.0, residual_head: str = "linear") -> None:
        super().__init__()
        c1, c2, c3, c4, c5, c6, c7, c8 = (max(4, int(round(c * width))) for c in TABLE6_CHANNELS)
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
        total, sizes = 0, {}
        h, w = height, width
        for name in ("l1", "l2", "l3", "l4", "l5", "l6", "l7", "l8", "l9"):
            block = getattr(self, name)
            conv = block[0] if isinstance(block, nn.Sequential) else block
            if name == "l6":
                h, w = sizes["l3"]
            elif name == "l8":
                h, w = sizes["l2"]
            s = conv.stride[0]
            h, w = (h - 1) // s + 1, (w - 1) // s + 1
            sizes[name] = (h, w)
            total += h * w * conv.in_channels * conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]
        return total


class IDFRDenoiser(PreprocessorPyTorch):
    """
    IDFR input denoiser (ID) as an ART preprocessing defence.

    ``x* = clip(x + UNet(x), clip_values)`` (Sec. 3.2, Table 6). The forward pass is differentiable, so ART's
    ``loss_gradient`` on a ``PyTorchClassifier(..., preprocessing_defences=[IDFRDenoiser(...)])`` is the exact
    gradient through the defence: every ART gradient attack run on that classifier is the adaptive white-box attack.

    | Paper: IDFR, Sec. 3.2 and Algorithm 1.

    :param input_shape: Shape of one sample, (C, H, W) when ``channels_first`` else (H, W, C).
    :param clip_values: (min, max) of valid pixel values; inputs outside raise ``ValueError``, outputs are clipped.
    :param channels_first: Layout of the data given to the defence.
    :param width: Multiplier of the Table 6 channel counts (1.0 = paper).
    :param residual_head: ``"linear"`` (default, signed residual) or ``"bn_relu"`` (the paper's code).
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
    ) -> None:
        super().__init__(device_type=device_type, is_fitted=False, apply_fit=apply_fit, apply_predict=apply_predict)
        self.input_shape = tuple(int(s) for s in input_shape)
        self.clip_values = (float(clip_values[0]), float(clip_values[1])) if clip_values is not None else None
        self.channels_first = bool(channels_first)
        self.width = float(width)
        self.residual_head = residual_head
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
        self.network = UNetDenoiser(self.nb_channels, width=self.width, residual_head=self.residual_head)
        self.network.to(self._device).eval()
        self.history: List[Dict[str, float]] = []
        self._warned_unfitted = False

    # ------------------------------------------------------------------ properties
    @property
    def nb_channels(self) -> int:
        """Number of image channels, from ``input_shape`` and ``channels_first``."""
        return self.input_shape[0] if self.channels_first else self.input_shape[-1]

    @property
    def _chw_shape(self) -> Tuple[int, int, int]:
        c, h, w = self.input_shape if self.channels_first else (self.input_shape[2], *self.input_shape[:2])
        return c, h, w

    def get_config(self) -> Dict:
        """Constructor arguments (JSON-serialisable), as stored in checkpoints."""
        return {name: getattr(self, name) for name in self.params} | {
            "device_type": self.device_type,
            "apply_fit": self.apply_fit,
            "apply_predict": self.apply_predict,
        }

    # ------------------------------------------------------------------ forward
    def _check_input(self, x: torch.Tensor | np.ndarray) -> None:
        check_image_batch(x, self.input_shape, self.channels_first, self.clip_values, name="IDFRDenoiser input")

    def _inference_network(self) -> nn.Module:
        """The BN-folded channels-last copy of the network, rebuilt whenever the weights have changed."""
        # identity and in-place version counter of every parameter and buffer (state_dict() would give fresh
        # detached views each call, whose id() never repeats): unchanged weights -> the cached copy is reused
        stamp = tuple((t.data_ptr(), t._version) for t in (*self.network.parameters(), *self.network.buffers()))
        if getattr(self, "_fused_stamp", None) != stamp:
            self._fused, self._fused_stamp = self.network.fused(), stamp
        return self._fused

    def _denoise_nchw(self, x: torch.Tensor) -> torch.Tensor:
        """Network pass batch by batch (ART hands the whole dataset to preprocessors), clipped residual output."""
        net = self.network if self.network.training else self._inference_network()
        outputs = []
        for start in range(0, x.shape[0], self.batch_size):
            xb = x[start : start + self.batch_size]
            if not self.network.training:
                xb = xb.contiguous(memory_format=torch.channels_last)
            x_star = xb + net(xb)  # x* = x + r(x)  (Sec. 3.2, residual output)
            if self.clip_values is not None:
                x_star = x_star.clamp(self.clip_values[0], self.clip_values[1])
            outputs.append(x_star)
        return torch.cat(outputs, dim=0).contiguous() if outputs else x

    def forward(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """
        Denoise a batch. Differentiable; runs on the defence's device and returns on the input's device.

        :param x: Images in the layout given by ``channels_first`` and values inside ``clip_values``.
        :param y: Labels, passed through unchanged.
        :return: ``(x*, y)``.
        """
        self._check_input(x)
        if not self.is_fitted and not getattr(self, "_warned_unfitted", False):
            self._warned_unfitted = True
            warnings.warn("IDFRDenoiser is not fitted: it applies an untrained network (close to the identity, no "
                          "defence). Call fit(...) or IDFRDenoiser.load(...) first.", UserWarning, stacklevel=2)
        return self._apply(x), y

    def _apply(self, x: torch.Tensor) -> torch.Tensor:
        """The denoising pass of :meth:`forward` without its checks (for internal callers that checked already)."""
        device_in = x.device
        x = x.to(self._device, dtype=torch.float32)
        if not self.channels_first:
            x = x.permute(0, 3, 1, 2)
        self.network.eval()
        x_star = self._denoise_nchw(x)
        if not self.channels_first:
            x_star = x_star.permute(0, 2, 3, 1)
        return x_star.to(device_in)

    def __call__(self, x: np.ndarray, y: Optional[np.ndarray] = None) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """NumPy in, NumPy out (ART's ``Preprocessor`` interface), under ``torch.no_grad``."""
        self._check_input(x)
        with torch.no_grad():
            x_star, _ = self.forward(torch.as_tensor(np.asarray(x, dtype=np.float32), device=self._device))
        return x_star.cpu().numpy(), y

    # ------------------------------------------------------------------ training (Algorithm 1)
    def gaussian_enhance(self, x: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """
        Multi-round Gaussian enhancement (Sec. 3.2, after Jeong & Shin 2020): K noisy copies of each clean image,
        round k with σ_k = σ·k/K, clipped to ``clip_values``.
        """
        copies = []
        for k in range(1, self.gaussian_rounds + 1):
            sigma = self.gaussian_sigma * k / self.gaussian_rounds
            noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device="cpu").to(x.device)
            x_e = x + sigma * noise
            copies.append(x_e.clamp(*self.clip_values) if self.clip_values is not None else x_e)
        return torch.cat(copies) if copies else x[:0]

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
        Train the ID by Algorithm 1.

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
        if classifier is None:
            raise ValueError("IDFRDenoiser.fit needs the target: fit(x, y, classifier=..., attacks=[...]).")
        if y is None:
            raise ValueError("IDFRDenoiser.fit needs labels y.")
        check_pytorch_classifier(classifier)
        self._check_input(x)
        nb_epochs = self.nb_epochs if nb_epochs is None else int(nb_epochs)
        batch_size = self.batch_size if batch_size is None else int(batch_size)
        attacks = list(attacks or [])
        y_idx = to_one_hot_indices(y, classifier.nb_classes)
        if len(y_idx) != len(x):
            raise ValueError(f"x has {len(x)} samples but y has {len(y_idx)}.")

        generator = torch.Generator().manual_seed(self.seed if self.seed is not None else 0)
        x_clean = torch.as_tensor(np.asarray(x, dtype=np.float32))
        y_clean = torch.as_tensor(y_idx)
        n = len(x_clean)
        adv_x, adv_y, adv_ref = self._craft(x, y_idx, attacks, x_adv, y_adv, classifier.nb_classes)

        optimizer = torch.optim.Adam(self.network.parameters(), lr=self.learning_rate)
        steps_per_epoch = math.ceil((n * (1 + self.gaussian_rounds) + len(adv_x)) / batch_size)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=self.learning_rate, total_steps=max(1, nb_epochs * steps_per_epoch), pct_start=0.15
        )
        val_sets = self._validation_sets(validation_data, attacks, classifier.nb_classes)
        best_state, best_score = None, -1.0
        with frozen(classifier.model):
            for epoch in range(nb_epochs):
                if self.regenerate_every and epoch > 0 and epoch % self.regenerate_every == 0 and attacks:
                    adv_x, adv_y, adv_ref = self._craft(x, y_idx, attacks, x_adv, y_adv, classifier.nb_classes)
                # Algorithm 1 line 6: the union of {x'} and the (Gaussian-enhanced) clean set, reshuffled each epoch
                train_x = torch.cat([adv_x, x_clean, self.gaussian_enhance(x_clean, generator)])
                train_y = torch.cat([adv_y, y_clean, y_clean.repeat(self.gaussian_rounds)])
                train_ref = torch.cat([adv_ref, torch.arange(n).repeat(1 + self.gaussian_rounds)])
                is_clean = torch.zeros(len(train_x), dtype=torch.bool)
                is_clean[len(adv_x) : len(adv_x) + n] = True
                stats = self._train_epoch(classifier, x_clean, train_x, train_y, train_ref, is_clean, optimizer,
                                          scheduler, batch_size, generator, epoch)
                if val_sets:
                    stats.update(self._validation_scores(classifier, val_sets))
                    if stats["val_score"] > best_score:
                        best_score = stats["val_score"]
                        best_state = {k: v.detach().clone() for k, v in self.network.state_dict().items()}
                self.history.append(stats)
                logger.info("ID epoch %d: %s", epoch + 1, stats)
        if best_state is not None:
            self.network.load_state_dict(best_state)
        self.network.eval()
        self._is_fitted = True

    def _validation_sets(self, validation_data, attacks, nb_classes) -> List[Tuple[np.ndarray, np.ndarray]]:
        """The clean validation images, then their AEs from each training attack (crafted once, on the target)."""
        if validation_data is None:
            return []
        x_val = np.asarray(validation_data[0], dtype=np.float32)
        self._check_input(x_val)
        y_val = to_one_hot_indices(validation_data[1], nb_classes)
        sets = [(x_val, y_val)]
        for adv in validation_data[2] if len(validation_data) > 2 else []:  # precomputed validation AEs
            self._check_input(adv)
            sets.append((np.asarray(adv, dtype=np.float32), y_val))
        onehot = np.eye(nb_classes, dtype=np.float32)[y_val]
        sets += [(adv, y_val) for adv in craft(attacks, x_val, onehot, "crafting ID validation AEs", self.verbose)]
        return sets

    def _validation_scores(self, classifier, val_sets) -> Dict[str, float]:
        """
        Best-epoch criterion: the mean of clean validation accuracy and accuracy on the validation AEs, so that
        neither an ID that barely changes anything (clean only) nor one that rewrites clean images wins.
        """
        clean = self._accuracy(classifier, *val_sets[0])
        stats = {"val_acc": clean, "val_score": clean}
        if len(val_sets) > 1:
            adv = float(np.mean([self._accuracy(classifier, xv, yv) for xv, yv in val_sets[1:]]))
            stats.update(val_adv_acc=adv, val_score=(clean + adv) / 2)
        return stats

    def _craft(self, x, y_idx, attacks, x_adv, y_adv, nb_classes):
        """Algorithm 1 lines 1-4: ``x' = A(x)`` for every attack A; returns AEs, labels, index of the clean image."""
        xs, ys, refs = [], [], []
        n = len(y_idx)
        onehot = np.eye(nb_classes, dtype=np.float32)[y_idx]
        for adv in craft(attacks, x, onehot, "crafting ID training AEs", self.verbose):  # Alg. 1 lines 2-3
            xs.append(torch.as_tensor(adv, dtype=torch.float32))
            ys.append(torch.as_tensor(y_idx))
            refs.append(torch.arange(n))
        if x_adv is not None:
            self._check_input(x_adv)
            ref = np.arange(len(x_adv)) % n
            ya = y_idx[ref] if y_adv is None else to_one_hot_indices(y_adv, nb_classes)
            xs.append(torch.as_tensor(np.asarray(x_adv, dtype=np.float32)))
            ys.append(torch.as_tensor(ya))
            refs.append(torch.as_tensor(ref))
        if not xs:
            return torch.zeros((0, *x.shape[1:])), torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.int64)
        return torch.cat(xs), torch.cat(ys), torch.cat(refs)

    def _train_epoch(self, classifier, x_clean, train_x, train_y, train_ref, is_clean, optimizer, scheduler, batch_size,
                     gen, epoch):
        self.network.train()
        device = classifier.device
        total, loss_sum, correct = 0, 0.0, 0
        progress = tqdm(
            batches(len(train_x), batch_size, shuffle=True, generator=gen),
            total=math.ceil(len(train_x) / batch_size),
            desc=f"ID epoch {epoch + 1}",
            disable=not self.verbose,
            leave=False,
        )
        for idx in progress:
            xb = train_x[idx]
            yb = train_y[idx].to(device)
            x_ref = x_clean[train_ref[idx]] if self.loss != "ce" else None
            if not self.channels_first:
                xb = xb.permute(0, 3, 1, 2)
                x_ref = x_ref.permute(0, 3, 1, 2) if x_ref is not None else None
            if self.augment != "none":
                xb, x_ref = self._augment_batch(xb, x_ref, gen)
            xb = xb.to(self._device)
            x_star = self._denoise_nchw(xb)
            x_in = x_star if self.channels_first else x_star.permute(0, 2, 3, 1)
            if x_ref is not None:
                x_ref = (x_ref if self.channels_first else x_ref.permute(0, 2, 3, 1)).to(device)
            per_sample, logits = self._loss(classifier, x_in.to(device), x_ref, yb)
            clean_b = is_clean[idx].to(device)
            weights = torch.where(clean_b, self.clean_weight, 1.0)
            loss = (weights * per_sample).sum() / weights.sum()
            if self.identity_weight > 0 and bool(clean_b.any()):
                # keep ID(x) ≈ x on clean inputs: λ·mean|x* − x| over the clean images of the batch
                loss = loss + self.identity_weight * (x_star - xb)[clean_b.to(x_star.device)].abs().mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += len(idx)
            loss_sum += loss.item() * len(idx)
            correct += (logits.argmax(1) == yb).sum().item()
            progress.set_postfix(loss=f"{loss_sum / total:.4f}", acc=f"{correct / total:.3f}")
        self.network.eval()
        return {"epoch": epoch + 1, "loss": loss_sum / max(total, 1), "train_acc": correct / max(total, 1)}

    def _augment_batch(self, xb: torch.Tensor, x_ref: Optional[torch.Tensor], gen: torch.Generator):
        """The same random crop (and flip) for each training input and its clean reference (NCHW, on the CPU)."""
        c = xb.shape[1]
        pad = max(1, round(min(xb.shape[2:]) / 8))
        both = xb if x_ref is None else torch.cat([xb, x_ref], dim=1)
        both = random_crop_flip(both, gen, pad=pad, flip=self.augment == "crop_flip")
        return (both, None) if x_ref is None else (both[:, :c], both[:, c:])

    def _loss(self, classifier, x_in, x_ref, yb):
        """
        Per-sample loss: Eq. 3 cross-entropy through the frozen target, and/or the feature-guided L1 loss of the
        authors' code.
        """
        from art_idfr.restorer import embedding_of  # local import: restorer imports this module

        if self.loss == "ce":
            logits = target_logits(classifier, x_in, skip=(IDFRDenoiser,))
            return F.cross_entropy(logits, yb, reduction="none"), logits  # Eq. 3
        h_star, logits = embedding_of(classifier, x_in, skip=(IDFRDenoiser,))
        with torch.no_grad():
            h_ref, _ = embedding_of(classifier, x_ref, skip=(IDFRDenoiser,))
        # || f_enc(ID(x')) - f_enc(x) ||_1  (HGD-style, authors' code), mean over features
        loss = (h_star - h_ref).abs().flatten(1).mean(1)
        if self.loss == "both":
            loss = loss + F.cross_entropy(logits, yb, reduction="none")
        return loss, logits

    def _accuracy(self, classifier, x_val, y_val) -> float:
        y_val = to_one_hot_indices(y_val, classifier.nb_classes)
        correct = 0
        with torch.no_grad():
            for idx in batches(len(x_val), self.batch_size):
                xb = torch.as_tensor(np.asarray(x_val[idx.numpy()], dtype=np.float32), device=self._device)
                x_star = self._apply(xb)
                logits = target_logits(classifier, x_star.to(classifier.device), skip=(IDFRDenoiser,))
                correct += (logits.argmax(1).cpu().numpy() == y_val[idx.numpy()]).sum()
        return float(correct) / max(len(x_val), 1)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str) -> None:
        """Write config + weights + format version to one file (loaded with ``weights_only=True``)."""
        if not self.is_fitted:
            logger.warning("saving an unfitted IDFRDenoiser")
        checkpoint.save(path, kind="IDFRDenoiser", config=self.get_config(), state_dict=self.network.state_dict(),
                        extra={"is_fitted": self.is_fitted, "history": self.history})

    @classmethod
    def load(cls, path: str, device_type: Optional[str] = None) -> "IDFRDenoiser":
        """
        Load a denoiser written by :meth:`save`. Never executes code from the file.

        :param path: Checkpoint path.
        :param device_type: Override the stored ``device_type`` (``"gpu"`` or ``"cpu"``).
        """
        if device_type is not None and device_type not in ("gpu", "cpu"):
            raise ValueError(f"device_type must be 'gpu' or 'cpu', got {device_type!r}.")
        config, state_dict, extra = checkpoint.load(path, kind="IDFRDenoiser")
        if device_type is not None:
            config["device_type"] = device_type
        try:
            den = cls(**config)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{path}: stored IDFRDenoiser config is invalid: {err}") from err
        checkpoint.load_state_dict(den.network, state_dict, path)
        den.network.to(den._device).eval()
        den._is_fitted = bool(extra.get("is_fitted", True))
        den.history = list(extra.get("history", []))
        return den

    # ------------------------------------------------------------------ checks
    def _check_params(self) -> None:
        if len(self.input_shape) != 3 or any(s <= 0 for s in self.input_shape):
            raise ValueError(f"input_shape must be 3 positive ints, (C, H, W) or (H, W, C); got {self.input_shape}.")
        if self.clip_values is not None and not self.clip_values[0] < self.clip_values[1]:
            raise ValueError(f"clip_values must be (min, max) with min < max, got {self.clip_values}.")
        if self.width <= 0:
            raise ValueError(f"width must be positive, got {self.width}.")
        if self.residual_head not in RESIDUAL_HEADS:
            raise ValueError(f"residual_head must be one of {RESIDUAL_HEADS}, got {self.residual_head!r}.")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}.")
        if self.augment not in AUGMENTATIONS:
            raise ValueError(f"augment must be one of {AUGMENTATIONS}, got {self.augment!r}.")
        if self.clean_weight <= 0 or self.identity_weight < 0:
            raise ValueError("clean_weight must be positive and identity_weight non-negative.")
        if self.gaussian_sigma < 0 or self.gaussian_rounds < 0:
            raise ValueError("gaussian_sigma and gaussian_rounds must be non-negative.")
        if self.learning_rate <= 0 or self.nb_epochs < 0 or self.batch_size <= 0 or self.regenerate_every < 0:
            raise ValueError("learning_rate and batch_size must be positive, nb_epochs and regenerate_every >= 0.")
        if self.device_type not in ("gpu", "cpu"):
            raise ValueError(f"device_type must be 'gpu' or 'cpu', got {self.device_type!r}.")
