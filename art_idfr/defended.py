"""
Defended classifiers: the FR hooked into a model (:class:`RestoredModel`, :func:`attach_feature_restorer`), restorers
inside the target (:class:`InnerRestoredModel`), the ID prepended to a classifier's preprocessing defences
(:func:`defend`), one way to copy an ART ``PyTorchClassifier``
with changes (:func:`clone_classifier`), and any defended classifier as a plain ``torch.nn.Module``
(:class:`DefendedModule`, :func:`as_module`) for evaluators outside ART (torchattacks, AutoAttack, RobustBench).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, List, Optional

import numpy as np
import torch
from torch import nn

from art_idfr._utils import check_finite, check_image_batch, check_pytorch_classifier, check_range, device_of, frozen
from art_idfr.denoiser import IDFRDenoiser
from art_idfr.embedding import find_embedding_layer, target_logits
from art_idfr.inner import InnerRestorer
from art_idfr.restorer import FeatureRestorer

if TYPE_CHECKING:  # pragma: no cover
    from art.estimators.classification import PyTorchClassifier

#: the constructor arguments of an ART ``PyTorchClassifier`` that :func:`clone_classifier` carries over
_CLASSIFIER_FIELDS = {
    "model": "model", "loss": "_loss", "input_shape": "input_shape", "nb_classes": "nb_classes",
    "optimizer": "optimizer", "channels_first": "channels_first", "clip_values": "clip_values",
    "preprocessing_defences": "preprocessing_defences", "postprocessing_defences": "postprocessing_defences",
    "preprocessing": "preprocessing", "device_type": "device_type",
}


def clone_classifier(classifier: "PyTorchClassifier", **changes: Any) -> "PyTorchClassifier":
    """
    A new ART ``PyTorchClassifier`` with the same model, loss, optimizer, shapes, clip values, defences,
    preprocessing and device as ``classifier``, except the constructor arguments given in ``changes``.
    """
    from art.estimators.classification import PyTorchClassifier

    unknown = sorted(set(changes) - set(_CLASSIFIER_FIELDS))
    if unknown:
        raise TypeError(f"clone_classifier: unknown PyTorchClassifier argument(s) {unknown}.")
    kwargs = {arg: getattr(classifier, attr) for arg, attr in _CLASSIFIER_FIELDS.items()}
    return PyTorchClassifier(**(kwargs | changes))


def defend(
    classifier: "PyTorchClassifier",
    denoiser: Optional[IDFRDenoiser] = None,
    restorer: Optional[FeatureRestorer] = None,
    inner: Optional[InnerRestorer] = None,
) -> "PyTorchClassifier":
    """
    A new ``PyTorchClassifier`` defended by the ID (prepended to the classifier's own preprocessing defences), the
    restorers inside the target (``inner``, not in the paper) and/or the FR (hooked into the penultimate layer).
    The classifier passed in, and its model object, are left unchanged.

    :param classifier: The undefended target.
    :param denoiser: A fitted :class:`IDFRDenoiser`, or ``None``.
    :param restorer: A fitted :class:`FeatureRestorer`, or ``None``.
    :param inner: An :class:`~art_idfr.inner.InnerRestorer` built for this target's model (``build(model)`` or
        ``load``), or ``None``.
    """
    check_pytorch_classifier(classifier)
    defended = classifier
    if denoiser is not None:
        if not isinstance(denoiser, IDFRDenoiser):
            raise TypeError(f"denoiser must be an IDFRDenoiser, got {type(denoiser).__name__}.")
        if not denoiser.is_fitted:
            raise ValueError("IDFRDenoiser is not fitted: call fit(...) or IDFRDenoiser.load(...) first.")
        own = [d for d in (classifier.preprocessing_defences or []) if not isinstance(d, IDFRDenoiser)]
        defended = clone_classifier(classifier, preprocessing_defences=[denoiser, *own])
    if inner is not None:
        defended = attach_inner_restorer(defended, inner)
    if restorer is not None:
        defended = attach_feature_restorer(defended, restorer)
    return defended


def attach_inner_restorer(classifier: "PyTorchClassifier", inner: InnerRestorer) -> "PyTorchClassifier":
    """
    A new ART ``PyTorchClassifier`` whose model runs with ``inner``'s parts in its layers
    (:class:`InnerRestoredModel`); everything else as ``classifier``, which is left unchanged.

    :raises ValueError: ``inner`` is not built, or was built for another model (layers or weights differ).
    """
    check_pytorch_classifier(classifier)
    if not isinstance(inner, InnerRestorer):
        raise TypeError(f"inner must be an InnerRestorer, got {type(inner).__name__}.")
    inner.check_model(classifier.model)
    inner.network.to(device_of(classifier.model) if any(True for _ in classifier.model.parameters())
                     else classifier.device)
    return clone_classifier(classifier, model=InnerRestoredModel(classifier.model, inner))


class DefendedModule(nn.Module):
    """
    A defended ART ``PyTorchClassifier`` as a plain ``torch.nn.Module``: ``x → preprocessing defences (ID) →
    standardisation → model (with the FR hook) → logits``, differentiable end to end, so that attack libraries
    outside ART (torchattacks, the reference AutoAttack, RobustBench's ``benchmark``) attack exactly what ART's
    ``predict`` computes. Inputs are NCHW (or the classifier's layout) in the classifier's ``clip_values``.

    Only PyTorch preprocessing can be differentiated: a classifier with a NumPy defence (JPEG, feature squeezing)
    raises ``TypeError`` on the first forward pass. Postprocessing defences are not applied (they change
    probabilities, not the decision ART's attacks use).
    """

    def __init__(self, classifier: "PyTorchClassifier") -> None:
        super().__init__()
        check_pytorch_classifier(classifier)
        self.classifier = classifier
        self.model = classifier.model  # registered: .to()/.eval() reach the network (and a hooked FR)
        self.denoisers = nn.ModuleList(d.network for d in (classifier.preprocessing_defences or [])
                                       if isinstance(d, IDFRDenoiser))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return target_logits(self.classifier, x)


def as_module(classifier: "PyTorchClassifier") -> DefendedModule:
    """The defended classifier as a plain, eval-mode ``nn.Module`` (see :class:`DefendedModule`)."""
    return DefendedModule(classifier).eval()


class RestoredModel(nn.Module):
    """
    ``model`` with the FR applied to its embedding by a forward hook that exists only during this module's forward
    pass, so the wrapped model object keeps behaving unchanged everywhere else.
    """

    def __init__(
        self,
        model: nn.Module,
        restorer: FeatureRestorer,
        layer: Optional[str] = None,
        input_check: Optional[Callable[[torch.Tensor], None]] = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.restorer_network = restorer.network  # registered so .to()/.train()/.eval() reach the FR
        self._restorer = restorer
        self._point = find_embedding_layer(model, layer)
        self._input_check = input_check

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._input_check is not None:
            self._input_check(x)
        restorer = self._restorer

        def restore(h: torch.Tensor) -> torch.Tensor:
            restorer.check_embedding(h)
            return self.restorer_network(h.to(device_of(self.restorer_network))).to(h.device)

        with self._point.intercept(restore):
            return self.model(x)


class InnerRestoredModel(nn.Module):
    """
    ``model`` with an :class:`~art_idfr.inner.InnerRestorer`'s parts in its layers, by forward hooks that exist only
    during this module's forward pass: the wrapped model object (and its tensors) stay unchanged everywhere else.
    """

    def __init__(self, model: nn.Module, inner: InnerRestorer) -> None:
        super().__init__()
        self.model = model
        self.inner_network = inner.network  # registered so .to()/.train()/.eval()/parameters() reach the parts
        self._inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with self._inner.intercept(self.model):
            return self.model(x)


def _model_input_check(classifier: "PyTorchClassifier") -> Callable[[torch.Tensor], None]:
    """
    A check of what reaches the wrapped model, so that a classifier defended by the FR alone rejects bad input as
    the ID does. When the classifier's only preprocessing is ART's mean/std standardisation (which the check undoes):
    the per-sample shape (e.g. NHWC given to a channels-first classifier), NaN/inf and values outside
    ``clip_values`` (e.g. 0-255 pixels given to a (0, 1) model). Behind other preprocessing (an ``IDFRDenoiser``,
    which checks its own input; JPEG; a resize) only NaN/inf, since those may legitimately change shape or range.
    """
    from art.preprocessing.standardisation_mean_std.numpy import StandardisationMeanStd
    from art.preprocessing.standardisation_mean_std.pytorch import StandardisationMeanStdPyTorch
    from art.preprocessing.standardisation_mean_std.utils import broadcastable_mean_std

    name = "input of the FR-defended classifier"
    ops = list(classifier.preprocessing_operations or [])
    if not all(isinstance(op, (StandardisationMeanStd, StandardisationMeanStdPyTorch)) for op in ops):
        return lambda x: check_finite(x.detach(), name)
    # x = (pixels - mean) / std after each standardisation, in order: undo them in reverse
    scales = [(np.asarray(op.mean, dtype=np.float32), np.asarray(op.std, dtype=np.float32)) for op in ops]
    input_shape, channels_first, clip_values = tuple(classifier.input_shape), classifier.channels_first, \
        classifier.clip_values

    def check(x: torch.Tensor) -> None:
        check_image_batch(x.detach(), input_shape, channels_first, None, name=name)  # layout, NaN/inf
        if clip_values is not None:
            raw = x.detach()
            for mean, std in reversed(scales):  # broadcast as ART does
                mean, std = broadcastable_mean_std(raw, mean, std)
                raw = raw * torch.as_tensor(std, device=raw.device) + torch.as_tensor(mean, device=raw.device)
            check_range(raw, clip_values, name=name)

    return check


def attach_feature_restorer(
    classifier: "PyTorchClassifier", restorer: FeatureRestorer, layer: Optional[str] = None
) -> "PyTorchClassifier":
    """
    Return a new ART ``PyTorchClassifier`` whose penultimate embedding passes through the FR
    (``x → defences → f_enc → FR → f_cls``), keeping the input classifier's preprocessing defences, clip values,
    preprocessing, loss, optimizer, channel layout and device. The classifier passed in is left unchanged.

    :param classifier: An ART ``PyTorchClassifier`` (typically already defended by an ``IDFRDenoiser``).
    :param restorer: A fitted :class:`FeatureRestorer`.
    :param layer: Hook point; default: the restorer's ``layer`` (``None`` = input of the last ``nn.Linear``).
    :raises TypeError: ``classifier`` is not a ``PyTorchClassifier``.
    :raises ValueError: the restorer is unfitted, or its embedding size does not match the model's.
    """
    check_pytorch_classifier(classifier)
    if not isinstance(restorer, FeatureRestorer):
        raise TypeError(f"restorer must be a FeatureRestorer, got {type(restorer).__name__}.")
    if not restorer.is_fitted:
        raise ValueError("FeatureRestorer is not fitted: call fit(...) or FeatureRestorer.load(...) first.")
    layer = layer if layer is not None else restorer.layer
    model = classifier.model
    restorer.network.to(device_of(model) if any(True for _ in model.parameters()) else classifier.device)
    wrapped = RestoredModel(model, restorer, layer, input_check=_model_input_check(classifier))

    # fail now, not at the first attack: probe the embedding size with two inputs at the lower clip value, through
    # ART's own predict (so NumPy preprocessing defences such as JpegCompression run as they will later)
    point = wrapped._point
    probe_value = 0.0 if classifier.clip_values is None else float(np.min(classifier.clip_values[0]))
    probe = np.full((2, *classifier.input_shape), probe_value, dtype=np.float32)
    sizes: List[int] = []
    with frozen(model), torch.no_grad(), point.intercept(lambda h: sizes.append(h.shape[1])):
        classifier.predict(probe, batch_size=2)
    if sizes and sizes[-1] != restorer.embedding_dim:
        raise ValueError(
            f"embedding size mismatch: the model's embedding at {point} has size {sizes[-1]} but the "
            f"FeatureRestorer was built for embedding_dim={restorer.embedding_dim}."
        )
    return clone_classifier(classifier, model=wrapped)
