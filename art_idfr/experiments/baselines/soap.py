"""
SOAP, online adversarial purification based on self-supervision (Shi, Holtz, Mishne, "Online Adversarial
Purification based on Self-Supervision", ICLR 2021), own implementation from the paper: SOAP-RP, the rotation-
prediction variant.

SOAP retrains the classifier: :class:`SOAPModel` wraps a classifier network (any ``nn.Module`` mapping images to
logits) and adds a rotation head on its penultimate embedding (the input of its last ``nn.Linear``, or the output of
``feature_layer``); :func:`fit_soap` trains both jointly, ``CE(f(x), y) + aux_weight · CE(rot(R_k x), k)`` over the 4
rotations ``k·90°``. At test time (eval mode) the input is purified by ``purify_steps`` signed-gradient *descent*
steps on the rotation loss within an L∞ ball of radius ``purify_eps`` around it, then classified.
:func:`soap_classifier` wraps the model in an ART ``PyTorchClassifier`` (an estimator, not a preprocessing defence).

**Gradients** (``bpda``): the purification is an inner optimisation whose signed steps have no useful gradient. With
``bpda=True`` (default) the forward returns ``model(x + (x_pur - x).detach())``: the same predictions, and ART's
``loss_gradient`` is the BPDA white-box gradient (purification = identity in the backward pass, the classifier's
gradient taken at the purified point). With ``bpda=False`` the purified input is a constant for autograd: the
input gradient is zero (obfuscated; only to show the masking). Deterministic.

================================ ============================================ ==========================================
setting                          paper                                        ours (CPU preset = defaults)
================================ ============================================ ==========================================
auxiliary task                   rotation (RP), reconstruction (DR) or label  rotation prediction (RP), 4 angles, a
                                 consistency (LC); heads on the penultimate   linear head on the penultimate embedding
                                 features
training                         classifier retrained jointly with the head   the same, ``aux_weight=1``, Adam lr 1e-3;
                                 from a fresh network                         from a fresh network or (a run's
                                                                              ``baselines_soap_init="target"``) a
                                                                              copy of the trained target
purification                     PGD on the auxiliary loss, radius and steps  one radius ``purify_eps=8/255`` (clip
                                 tuned per dataset/attack (several radii)     range units), ``purify_steps=5``, step
                                                                              2.5·eps/steps, no random start
================================ ============================================ ==========================================
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from art_idfr import checkpoint
from art_idfr._utils import class_indices, eval_mode, seeded
from art_idfr.embedding import find_embedding_layer
from art_idfr.experiments.baselines._common import (NotFittedError, check_clean_batch, check_non_negative,
                                                    check_positive)
from art_idfr.experiments.baselines.training import check_lr_schedule, train_epochs

KIND = "SOAP"
NB_ROTATIONS = 4


def rotations(x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """The 4 rotated copies (0°, 90°, 180°, 270°) of an NCHW batch, stacked, and their rotation labels."""
    rotated = torch.cat([torch.rot90(x, k, dims=(2, 3)) for k in range(NB_ROTATIONS)], dim=0)
    labels = torch.arange(NB_ROTATIONS, device=x.device).repeat_interleave(x.shape[0])
    return rotated, labels


class SOAPModel(nn.Module):
    """
    A classifier with SOAP-RP's rotation head and test-time purification (see the module docstring).

    :param model: The classifier network (images in ``clip_values`` -> logits); it is retrained by :meth:`fit`.
    :param input_shape: (C, H, W) of one sample; H must equal W (rotations).
    :param clip_values: (min, max) of valid pixel values.
    :param feature_layer: Where the rotation head reads: ``None`` = the input of the last ``nn.Linear`` of
        ``model``, else the name of the module whose output is the embedding.
    :param purify_eps: L∞ radius of the purification, in units of the clip range (paper: tuned per dataset).
    :param purify_steps: Signed-gradient steps of the purification (0: no purification).
    :param aux_weight: Weight of the rotation loss in joint training.
    :param bpda: Straight-through gradient through the purification (see the module docstring).
    :param learning_rate: Adam learning rate of :meth:`fit`.
    :param lr_schedule: ``"constant"`` (the paper's) or ``"cosine"`` (annealed to 0 over the fit).
    :param nb_epochs: Default epochs of :meth:`fit`.
    :param batch_size: Batch size of :meth:`fit`.
    :param verbose: Progress bar in :meth:`fit`.
    :param seed: Seed of the rotation head's initialisation and of the training shuffles.
    """

    params = ["input_shape", "clip_values", "feature_layer", "purify_eps", "purify_steps", "aux_weight", "bpda",
              "learning_rate", "lr_schedule", "nb_epochs", "batch_size", "verbose", "seed"]

    def __init__(self, model: nn.Module, input_shape: Tuple[int, int, int], clip_values: Tuple[float, float] = (0, 1),
                 feature_layer: Optional[str] = None, purify_eps: float = 8 / 255, purify_steps: int = 5,
                 aux_weight: float = 1.0, bpda: bool = True, learning_rate: float = 1e-3,
                 lr_schedule: str = "constant", nb_epochs: int = 5, batch_size: int = 128, verbose: bool = False,
                 seed: Optional[int] = 0) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise ValueError(f"model must be a torch nn.Module, got {type(model).__name__}.")
        self.model = model
        self.input_shape = tuple(int(s) for s in input_shape)
        self.clip_values = (float(clip_values[0]), float(clip_values[1]))
        self.feature_layer, self.purify_eps, self.purify_steps = feature_layer, float(purify_eps), int(purify_steps)
        self.aux_weight, self.bpda = float(aux_weight), bool(bpda)
        self.learning_rate, self.lr_schedule = float(learning_rate), str(lr_schedule)
        self.nb_epochs, self.batch_size = int(nb_epochs), int(batch_size)
        self.verbose, self.seed = bool(verbose), seed
        self._check_params()
        self._point = find_embedding_layer(model, feature_layer)
        dim, self.nb_classes = self._probe()
        with seeded(seed if seed is not None else 0):
            self.rotation_head = nn.Linear(dim, NB_ROTATIONS)
        self.history: List[Dict[str, float]] = []
        self.training_info: Dict[str, Any] = {}
        self.is_fitted = False

    def _probe(self) -> Tuple[int, int]:
        """Embedding size and number of classes, from one forward pass of a blank image (eval mode, no grad)."""
        with eval_mode(self.model), torch.no_grad():
            dev = next(iter(self.model.parameters())).device
            logits, h = self.logits_and_embedding(torch.full((1, *self.input_shape), self.clip_values[0], device=dev))
        return h.shape[1], logits.shape[1]

    @property
    def inference_passes(self) -> str:
        """The network passes of one prediction."""
        return (f"{self.purify_steps} forward + backward passes of the classifier on the 4 rotated copies "
                f"(purification), then 1 classifier pass per image")

    # ------------------------------------------------------------------ pieces
    def logits_and_embedding(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(model(x), h)`` with ``h`` the flattened embedding the rotation head reads."""
        captured: List[torch.Tensor] = []
        with self._point.intercept(lambda h: captured.append(h)):
            logits = self.model(x)
        if not captured:
            raise RuntimeError(f"{self._point} was not executed by the model's forward pass.")
        return logits, captured[-1]

    def rotation_loss(self, x: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """Cross-entropy of the rotation head over the 4 rotated copies of ``x`` (SOAP-RP's auxiliary loss)."""
        rotated, labels = rotations(x)
        _, h = self.logits_and_embedding(rotated)
        return F.cross_entropy(self.rotation_head(h), labels, reduction=reduction)

    def purify(self, x: torch.Tensor) -> torch.Tensor:
        """SOAP purification of a batch: PGD *descent* on the rotation loss in the ``purify_eps`` ball (detached)."""
        lo, hi = self.clip_values
        eps = self.purify_eps * (hi - lo)
        step = 2.5 * eps / max(self.purify_steps, 1)
        x0 = x.detach()
        x_pur = x0.clone()
        with torch.enable_grad():  # ART predicts under no_grad; the inner optimisation needs input gradients
            for _ in range(self.purify_steps):
                x_pur.requires_grad_(True)
                (grad,) = torch.autograd.grad(self.rotation_loss(x_pur, reduction="sum"), x_pur)
                x_pur = x_pur.detach() - step * grad.sign()
                x_pur = torch.min(torch.max(x_pur, x0 - eps), x0 + eps).clamp(lo, hi)
        return x_pur.detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Training mode: the plain classifier. Eval mode: purify, then classify (straight-through if ``bpda``)."""
        if self.training:
            return self.model(x)
        check_clean_batch(x, self.input_shape, self.clip_values, "SOAP input")
        if not self.is_fitted:
            raise NotFittedError("SOAPModel is not fitted: call fit(x, y) or SOAPModel.load(path, model) first.")
        x_pur = self.purify(x)
        # bpda: straight-through; else a constant for autograd (``0 * x`` keeps x in the graph: the gradient is 0)
        return self.model(x + (x_pur - x).detach() if self.bpda else x_pur + 0.0 * x)

    # ------------------------------------------------------------------ training
    def fit(self, x: np.ndarray, y: np.ndarray, nb_epochs: Optional[int] = None, batch_size: Optional[int] = None,
            **kwargs: Any) -> None:
        """Joint training of the classifier and the rotation head (:func:`fit_soap`)."""
        fit_soap(self, x, y, nb_epochs, batch_size, **kwargs)

    def mark_fitted(self, history: List[Dict[str, float]], info: Dict[str, Any]) -> None:
        """Called by :func:`fit_soap` (or after training by other means)."""
        self.history, self.training_info, self.is_fitted = list(history), dict(info), True

    # ------------------------------------------------------------------ persistence
    def get_config(self) -> Dict[str, Any]:
        """Constructor arguments other than ``model`` (JSON-serialisable), as stored in checkpoints."""
        return {name: getattr(self, name) for name in self.params}

    def save(self, path: str) -> None:
        """Write config + all weights (classifier and head) to one file (:func:`art_idfr.checkpoint.save`)."""
        checkpoint.save(path, kind=KIND, config=self.get_config(), state_dict=self.state_dict(),
                        extra={"is_fitted": self.is_fitted, "history": self.history, "training": self.training_info,
                               "model_class": type(self.model).__name__})

    @classmethod
    def load(cls, path: str, model: nn.Module) -> "SOAPModel":
        """
        Load a :class:`SOAPModel` written by :meth:`save` into ``model``, a freshly built network of the same
        architecture (the file holds weights only; loading never runs code from it).
        """
        config, state_dict, extra = checkpoint.load_component(path, KIND)
        try:
            soap = cls(model, **config)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{path}: stored SOAP config is invalid for this model: {err}") from err
        checkpoint.load_state_dict(soap, state_dict, path)
        soap.is_fitted = bool(extra.get("is_fitted", True))
        soap.history, soap.training_info = list(extra.get("history", [])), dict(extra.get("training") or {})
        return soap.eval()

    def _check_params(self) -> None:
        if len(self.input_shape) != 3 or any(s <= 0 for s in self.input_shape):
            raise ValueError(f"input_shape must be (C, H, W) with positive sizes; got {self.input_shape}.")
        if self.input_shape[1] != self.input_shape[2]:
            raise ValueError(f"SOAP-RP rotates images by 90°: they must be square, got {self.input_shape[1:]}.")
        if not self.clip_values[0] < self.clip_values[1]:
            raise ValueError(f"clip_values must be (min, max) with min < max, got {self.clip_values}.")
        check_positive(purify_eps=self.purify_eps, learning_rate=self.learning_rate, batch_size=self.batch_size)
        check_non_negative(purify_steps=self.purify_steps, aux_weight=self.aux_weight, nb_epochs=self.nb_epochs)
        check_lr_schedule(self.lr_schedule)


def soap_loss(soap: SOAPModel, x: torch.Tensor, y: torch.Tensor) -> Tuple[torch.Tensor, Dict[str, float]]:
    """Joint loss of one batch: ``CE(f(x), y) + aux_weight · rotation CE`` (one pass over the 4 rotations, whose
    0° copy also gives the classification logits)."""
    rotated, labels = rotations(x)
    logits, h = soap.logits_and_embedding(rotated)
    ce = F.cross_entropy(logits[: x.shape[0]], y)
    rot = F.cross_entropy(soap.rotation_head(h), labels)
    return ce + soap.aux_weight * rot, {"ce": float(ce.detach()), "rotation": float(rot.detach())}


def fit_soap(soap: SOAPModel, x: np.ndarray, y: np.ndarray, nb_epochs: Optional[int] = None,
             batch_size: Optional[int] = None, checkpoint: Optional[str] = None, **kwargs: Any) -> None:
    """Train a :class:`SOAPModel` (classifier + rotation head) on labelled clean images; marks it fitted.
    ``checkpoint``: a resume file path (:func:`~art_idfr.experiments.baselines.training.train_epochs`)."""
    if kwargs:
        raise ValueError(f"SOAPModel.fit got unexpected arguments {sorted(kwargs)}.")
    check_clean_batch(x, soap.input_shape, soap.clip_values, "SOAP training data")
    labels = class_indices(y, soap.nb_classes)
    if len(labels) != len(x):
        raise ValueError(f"x has {len(x)} images but y has {len(labels)} labels.")
    device = next(iter(soap.parameters())).device
    history, info = train_epochs(
        soap, soap.parameters(), [x, labels], lambda xb, yb, gen: soap_loss(soap, xb, yb),
        nb_epochs=soap.nb_epochs if nb_epochs is None else int(nb_epochs), batch_size=batch_size or soap.batch_size,
        learning_rate=soap.learning_rate, lr_schedule=soap.lr_schedule, device=device, seed=soap.seed,
        verbose=soap.verbose, desc="SOAP",
        checkpoint=checkpoint, fingerprint=soap.get_config())
    soap.mark_fitted(history, info)


def soap_classifier(soap: SOAPModel, device_type: str = "gpu", **kwargs: Any):
    """
    An ART ``PyTorchClassifier`` around a (fitted) :class:`SOAPModel`: predictions purify then classify; with
    ``soap.bpda`` its ``loss_gradient`` is the BPDA white-box gradient. ``kwargs`` go to ``PyTorchClassifier``.
    """
    from art.estimators.classification import PyTorchClassifier

    return PyTorchClassifier(model=soap, loss=nn.CrossEntropyLoss(),
                             optimizer=torch.optim.Adam(soap.parameters(), lr=soap.learning_rate),
                             input_shape=soap.input_shape, nb_classes=soap.nb_classes, clip_values=soap.clip_values,
                             device_type=device_type, **kwargs)
