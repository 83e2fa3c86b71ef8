"""
``IDFRTrainer``: trains the ID (Algorithm 1) then the FR (Algorithm 2) for an ART ``PyTorchClassifier``, in the
shape of ART's ``Trainer`` (``fit`` then ``get_classifier``), and :func:`defend` to assemble a defended classifier
from fitted components.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, List, Optional, Sequence, Tuple

import numpy as np
from art.defences.trainer.trainer import Trainer

from art_idfr._utils import check_pytorch_classifier, craft, to_one_hot_indices, warn_unused_kwargs
from art_idfr.denoiser import IDFRDenoiser
from art_idfr.restorer import FeatureRestorer, attach_feature_restorer

if TYPE_CHECKING:  # pragma: no cover
    from art.attacks.attack import EvasionAttack
    from art.estimators.classification import PyTorchClassifier

logger = logging.getLogger(__name__)


def defend(
    classifier: "PyTorchClassifier",
    denoiser: Optional[IDFRDenoiser] = None,
    restorer: Optional[FeatureRestorer] = None,
) -> "PyTorchClassifier":
    """
    A new ``PyTorchClassifier`` defended by the ID (prepended to the classifier's own preprocessing defences) and/or
    the FR (hooked into the penultimate layer). The classifier passed in is left unchanged.

    :param classifier: The undefended target.
    :param denoiser: A fitted :class:`IDFRDenoiser`, or ``None``.
    :param restorer: A fitted :class:`FeatureRestorer`, or ``None``.
    """
    from art.estimators.classification import PyTorchClassifier

    check_pytorch_classifier(classifier)
    defended = classifier
    if denoiser is not None:
        if not isinstance(denoiser, IDFRDenoiser):
            raise TypeError(f"denoiser must be an IDFRDenoiser, got {type(denoiser).__name__}.")
        if not denoiser.is_fitted:
            raise ValueError("IDFRDenoiser is not fitted: call fit(...) or IDFRDenoiser.load(...) first.")
        own = [d for d in (classifier.preprocessing_defences or []) if not isinstance(d, IDFRDenoiser)]
        defended = PyTorchClassifier(
            model=classifier.model,
            loss=classifier.loss,
            input_shape=classifier.input_shape,
            nb_classes=classifier.nb_classes,
            optimizer=classifier.optimizer,
            channels_first=classifier.channels_first,
            clip_values=classifier.clip_values,
            preprocessing_defences=[denoiser, *own],
            postprocessing_defences=classifier.postprocessing_defences,
            preprocessing=classifier.preprocessing,
            device_type=classifier.device_type,
        )
    if restorer is not None:
        defended = attach_feature_restorer(defended, restorer)
    return defended


class IDFRTrainer(Trainer):
    """
    Train IDFR for a target classifier: the ID on AEs from ``attacks`` plus Gaussian-enhanced clean images
    (Algorithm 1), then the FR on embeddings of the denoised clean and adversarial images (Algorithm 2).
    After :meth:`fit`, :meth:`get_classifier` returns the fully defended classifier ``x → ID → f_enc → FR → f_cls``.

    The AEs are crafted once and shared by both stages.

    :param classifier: The undefended target, an ART ``PyTorchClassifier`` (left unchanged).
    :param attacks: ART ``EvasionAttack`` instances built on ``classifier`` (e.g. FGSM and BIM), optionally also on
        other, independently trained models (extra AE sources).
    :param denoiser: An :class:`IDFRDenoiser` to train; default one matching the classifier.
    :param restorer: A :class:`FeatureRestorer` to train; default Table 7 scaled to the embedding. ``False`` skips
        the FR (ID only).
    """

    def __init__(
        self,
        classifier: "PyTorchClassifier",
        attacks: Sequence["EvasionAttack"],
        denoiser: Optional[IDFRDenoiser] = None,
        restorer: Optional[FeatureRestorer] | bool = None,
    ) -> None:
        check_pytorch_classifier(classifier)
        super().__init__(classifier)
        self.target = classifier
        self.attacks: List["EvasionAttack"] = list(attacks)
        if denoiser is None:
            clip = classifier.clip_values
            denoiser = IDFRDenoiser(
                input_shape=classifier.input_shape,
                clip_values=(0.0, 1.0) if clip is None else (float(np.min(clip[0])), float(np.max(clip[1]))),
                channels_first=classifier.channels_first,
                device_type=classifier.device_type,
            )
        self.denoiser = denoiser
        self.restorer = None if restorer is False else (restorer or FeatureRestorer(device_type=classifier.device_type))

    def fit(
        self,
        x: np.ndarray,
        y: np.ndarray,
        nb_epochs_id: Optional[int] = None,
        nb_epochs_fr: Optional[int] = None,
        batch_size: Optional[int] = None,
        validation_data: Optional[Tuple[np.ndarray, np.ndarray]] = None,
        **kwargs,
    ) -> None:
        """
        Train the ID, then the FR, and build the defended classifier.

        :param x: Clean training images.
        :param y: Labels (indices or one-hot).
        :param nb_epochs_id: ID epochs (default: the denoiser's ``nb_epochs``).
        :param nb_epochs_fr: FR epochs (default: the restorer's ``nb_epochs``).
        :param batch_size: Batch size for both stages (default: each component's own).
        :param validation_data: ``(x_val, y_val)`` for best-epoch selection in both stages (never the test split);
            the attacks' AEs of ``x_val`` are crafted once and count as much as the clean images.
        """
        warn_unused_kwargs(kwargs, "IDFRTrainer.fit")
        y_idx = to_one_hot_indices(y, self.target.nb_classes)
        onehot = np.eye(self.target.nb_classes, dtype=np.float32)[y_idx]
        verbose = self.denoiser.verbose
        x_adv = craft(self.attacks, x, onehot, "crafting training AEs", verbose)
        x_adv_all = np.concatenate(x_adv) if x_adv else None
        y_adv_all = np.tile(y_idx, len(x_adv)) if x_adv else None

        if validation_data is not None and len(validation_data) == 2 and self.attacks:
            # AEs of the validation images, crafted once: best epochs are chosen on clean + adversarial accuracy
            x_val = np.asarray(validation_data[0], dtype=np.float32)
            y_val = to_one_hot_indices(validation_data[1], self.target.nb_classes)
            val_onehot = np.eye(self.target.nb_classes, dtype=np.float32)[y_val]
            val_adv = craft(self.attacks, x_val, val_onehot, "crafting validation AEs", verbose)
            validation_data = (x_val, y_val, val_adv)
        self.denoiser.fit(x, y_idx, classifier=self.target, x_adv=x_adv_all, y_adv=y_adv_all, nb_epochs=nb_epochs_id,
                          batch_size=batch_size, validation_data=validation_data)
        if self.restorer is not None:
            self.restorer.fit(x, y_idx, classifier=self.target, denoiser=self.denoiser, x_adv=x_adv_all,
                              y_adv=y_adv_all, nb_epochs=nb_epochs_fr, batch_size=batch_size,
                              validation_data=validation_data)
        self._classifier = defend(self.target, self.denoiser, self.restorer)

    def get_classifier(self) -> "PyTorchClassifier":
        """The defended classifier (the undefended target until :meth:`fit` has run)."""
        return self._classifier
