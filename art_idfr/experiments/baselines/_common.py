"""
What the purification baselines share: the ART ``PreprocessorPyTorch`` skeleton (:class:`BaselinePreprocessor`:
parameters, input checks, the batched differentiable forward in the unit range, persistence) and the error raised
when a defence is used before it was fitted.

Every baseline takes NCHW batches (``input_shape`` is (C, H, W)) with values inside ``clip_values``; internally the
networks see images rescaled to [0, 1] and their outputs are mapped back to ``clip_values`` and clipped.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
from art.defences.preprocessor.preprocessor import PreprocessorPyTorch
from torch import nn

from art_idfr import checkpoint
from art_idfr._utils import check_device_type, check_image_batch, seeded

logger = logging.getLogger(__name__)


class NotFittedError(ValueError):
    """A baseline defence was used (forward / predict) before ``fit`` or ``load``."""


def check_positive(**values: float) -> None:
    """Raise ``ValueError`` naming the first argument that is not > 0."""
    for name, value in values.items():
        if isinstance(value, bool) or not value > 0:
            raise ValueError(f"{name} must be positive, got {value!r}.")


def check_non_negative(**values: float) -> None:
    """Raise ``ValueError`` naming the first argument that is < 0."""
    for name, value in values.items():
        if isinstance(value, bool) or not value >= 0:
            raise ValueError(f"{name} must be non-negative, got {value!r}.")


def check_clean_batch(x: np.ndarray | torch.Tensor, input_shape: Tuple[int, int, int],
                      clip_values: Optional[Tuple[float, float]], name: str) -> None:
    """:func:`art_idfr._utils.check_image_batch` for NCHW data (shape, channels, NaN/inf, range)."""
    check_image_batch(x, input_shape, True, clip_values, name=name)


class BaselinePreprocessor(PreprocessorPyTorch):
    """
    The skeleton of a baseline purifier: subclasses set :attr:`KIND` (the checkpoint kind), extend :attr:`params`,
    and implement :meth:`_make_network`, :meth:`_purify` (unit-range NCHW batch on the device -> purified batch) and
    :meth:`fit`. :meth:`forward` checks the input, runs :meth:`_purify` ``batch_size`` images at a time on the
    defence's device and returns on the input's device; it is differentiable wherever :meth:`_purify` is.
    """

    KIND = "baseline"
    #: the constructor arguments stored in checkpoints (subclasses append theirs)
    params = ["input_shape", "clip_values", "learning_rate", "nb_epochs", "batch_size", "verbose", "seed"]

    def __init__(self, input_shape: Tuple[int, int, int], clip_values: Tuple[float, float], learning_rate: float,
                 nb_epochs: int, batch_size: int, device_type: str, apply_fit: bool, apply_predict: bool,
                 verbose: bool, seed: Optional[int]) -> None:
        super().__init__(device_type=device_type, is_fitted=False, apply_fit=apply_fit, apply_predict=apply_predict)
        self.input_shape = tuple(int(s) for s in input_shape)
        if clip_values is None:
            raise ValueError("clip_values must be given as (min, max): the baselines work on bounded images.")
        self.clip_values = (float(clip_values[0]), float(clip_values[1]))
        self.learning_rate = float(learning_rate)
        self.nb_epochs = int(nb_epochs)
        self.batch_size = int(batch_size)
        self.device_type = device_type
        self.verbose = bool(verbose)
        self.seed = seed

    def _setup(self) -> None:
        """Check every parameter, then build a fresh (unfitted) network: the end of each subclass's ``__init__``."""
        self._check_params()
        with seeded(self.seed if self.seed is not None else 0):
            self.network = self._make_network()
        self.network.to(self._device).eval()
        self.history: List[Dict[str, float]] = []
        self.training_info: Dict[str, Any] = {}
        self._is_fitted = False

    # ------------------------------------------------------------------ to implement
    def _make_network(self) -> nn.Module:  # pragma: no cover - abstract
        raise NotImplementedError

    def _purify(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """Purify a unit-range NCHW batch on the defence's device."""
        raise NotImplementedError

    # ------------------------------------------------------------------ properties
    @property
    def nb_channels(self) -> int:
        """Number of image channels (``input_shape[0]``)."""
        return self.input_shape[0]

    def get_config(self) -> Dict[str, Any]:
        """Constructor arguments (JSON-serialisable), as stored in checkpoints."""
        return {name: getattr(self, name) for name in self.params} | {
            "device_type": self.device_type, "apply_fit": self.apply_fit, "apply_predict": self.apply_predict}

    def mark_fitted(self, history: List[Dict[str, float]], info: Dict[str, Any]) -> None:
        """Called by the training functions when they finish."""
        self.history = list(history)
        self.training_info = dict(info)
        self._is_fitted = True

    # ------------------------------------------------------------------ forward
    def check_input(self, x: np.ndarray | torch.Tensor, name: Optional[str] = None) -> None:
        """Raise ``ValueError`` for a batch that is not NCHW of ``input_shape``, holds NaN/inf or leaves
        ``clip_values``."""
        check_clean_batch(x, self.input_shape, self.clip_values, name or f"{type(self).__name__} input")

    def require_fitted(self) -> None:
        """Raise :class:`NotFittedError` (a ``ValueError``) if the defence has not been fitted or loaded."""
        if not self.is_fitted:
            raise NotFittedError(f"{type(self).__name__} is not fitted: call fit(x) or {type(self).__name__}.load(path)"
                                 " before using it.")

    def to_unit(self, x: torch.Tensor) -> torch.Tensor:
        """``clip_values`` range -> [0, 1]."""
        lo, hi = self.clip_values
        return (x - lo) / (hi - lo)

    def from_unit(self, x: torch.Tensor) -> torch.Tensor:
        """[0, 1] -> ``clip_values`` range, clipped."""
        lo, hi = self.clip_values
        return (x * (hi - lo) + lo).clamp(lo, hi)

    def forward(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """
        Purify a batch (float32 out, on the input's device), ``batch_size`` images at a time.

        :param x: NCHW images with values inside ``clip_values``.
        :param y: Labels, passed through unchanged.
        :raises ValueError: wrong shape or channels, NaN/inf, values outside ``clip_values``, or not fitted.
        """
        self.check_input(x)
        self.require_fitted()
        self.network.eval()
        if x.shape[0] == 0:
            return x.to(dtype=torch.float32), y
        outputs = []
        for start in range(0, x.shape[0], self.batch_size):
            xb = x[start: start + self.batch_size].to(self._device, torch.float32)
            outputs.append(self.from_unit(self._purify(self.to_unit(xb))).to(x.device))
        return torch.cat(outputs, dim=0), y

    def estimate_gradient(self, x: np.ndarray, grad: np.ndarray) -> np.ndarray:
        """
        Vector-Jacobian product ``grad · d forward(x) / dx`` through :meth:`estimate_forward` (ART calls it for
        NumPy-side defences; with PyTorch defences only, ART differentiates :meth:`forward` itself). As ART's base
        class: ``grad`` of ``x``'s shape, or with an extra class axis 1 (class gradients); float32 throughout.
        """
        x = np.asarray(x)
        grad = np.asarray(grad, dtype=np.float32)
        if grad.shape != x.shape:
            return np.stack([self.estimate_gradient(x, grad[:, i]) for i in range(grad.shape[1])], axis=1)
        x_t = torch.tensor(x.astype(np.float32), device=self._device, requires_grad=True)
        self.estimate_forward(x_t).backward(torch.as_tensor(grad, device=self._device))
        return x_t.grad.detach().cpu().numpy().astype(x.dtype, copy=False)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str) -> None:
        """Write config + weights + training record to one file (:func:`art_idfr.checkpoint.save`)."""
        if not self.is_fitted:
            logger.warning("saving an unfitted %s", type(self).__name__)
        checkpoint.save(path, kind=self.KIND, config=self.get_config(), state_dict=self.network.state_dict(),
                        extra={"is_fitted": self.is_fitted, "history": self.history, "training": self.training_info})

    @classmethod
    def load(cls, path: str, device_type: Optional[str] = None):
        """
        Load a defence written by :meth:`save` (``torch.load(weights_only=True)``: never runs code from the file).

        :param device_type: Override the stored ``device_type`` (``"gpu"`` or ``"cpu"``).
        :raises ValueError: not a checkpoint of this defence, or weights that do not fit the stored config.
        """
        config, state_dict, extra = checkpoint.load_component(path, cls.KIND, device_type)
        try:
            defence = cls(**config)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{path}: stored {cls.__name__} config is invalid: {err}") from err
        checkpoint.load_state_dict(defence.network, state_dict, path)
        defence.network.to(defence._device).eval()
        defence._is_fitted = bool(extra.get("is_fitted", True))
        defence.history = list(extra.get("history", []))
        defence.training_info = dict(extra.get("training") or {})
        return defence

    # ------------------------------------------------------------------ checks
    def _check_params(self) -> None:
        if len(self.input_shape) != 3 or any(s <= 0 for s in self.input_shape):
            raise ValueError(f"input_shape must be (C, H, W) with positive sizes; got {self.input_shape}.")
        if not self.clip_values[0] < self.clip_values[1]:
            raise ValueError(f"clip_values must be (min, max) with min < max, got {self.clip_values}.")
        check_positive(learning_rate=self.learning_rate, batch_size=self.batch_size)
        check_non_negative(nb_epochs=self.nb_epochs)
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise ValueError(f"seed must be an int or None, got {self.seed!r}.")
        check_device_type(self.device_type)
