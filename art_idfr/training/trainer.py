"""
``IDFRTrainer``: trains the ID (Algorithm 1) then the FR (Algorithm 2) for an ART ``PyTorchClassifier``, in the
shape of ART's ``Trainer`` (``fit`` then ``get_classifier``); the AEs are crafted once and shared by both stages.
"""
from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, List, Optional, Sequence, Tuple

import numpy as np
import torch
from art.defences.trainer.trainer import Trainer

from art_idfr._utils import check_pytorch_classifier, class_indices, digest
from art_idfr.defended import defend
from art_idfr.denoiser import IDFRDenoiser
from art_idfr.restorer import FeatureRestorer
from art_idfr.training.algorithm1 import fit_denoiser
from art_idfr.training.algorithm2 import fit_restorer
from art_idfr.training.common import craft, warn_unused_kwargs
from art_idfr.training.resume import ResumeFile

if TYPE_CHECKING:  # pragma: no cover
    from art.attacks.attack import EvasionAttack
    from art.estimators.classification import PyTorchClassifier

logger = logging.getLogger(__name__)


def default_denoiser(classifier: "PyTorchClassifier") -> IDFRDenoiser:
    """An :class:`IDFRDenoiser` matching the classifier's input shape, layout, clip values and device."""
    clip = classifier.clip_values
    return IDFRDenoiser(
        input_shape=classifier.input_shape,
        clip_values=(0.0, 1.0) if clip is None else (float(np.min(clip[0])), float(np.max(clip[1]))),
        channels_first=classifier.channels_first,
        device_type=classifier.device_type,
    )


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
        self.denoiser = denoiser if denoiser is not None else default_denoiser(classifier)
        self.restorer = None if restorer is False else (restorer or FeatureRestorer(device_type=classifier.device_type))

    def fit(
        self,
        x: np.ndarray,
        y: np.ndarray,
        nb_epochs_id: Optional[int] = None,
        nb_epochs_fr: Optional[int] = None,
        batch_size: Optional[int] = None,
        validation_data: Optional[Tuple[np.ndarray, np.ndarray]] = None,
        checkpoint: Optional[str] = None,
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
        :param checkpoint: Path of a resume file (:class:`~art_idfr.training.resume.ResumeFile`) for the crafted AEs
            and the random state after crafting, and beside it (:func:`id_checkpoint`) one for the ID's state after
            each epoch: a fit cut off (a session limit) crafts nothing when called again with the same path, skips
            the ID epochs already done, and ends exactly as the uncut fit would have. A file of another fit (other
            images, attacks, attacked weights, ID settings or starting weights) is refused with a ``ValueError``.
            Both are deleted when the fit finishes.
        """
        warn_unused_kwargs(kwargs, "IDFRTrainer.fit")
        y_idx = class_indices(y, self.target.nb_classes)
        onehot = np.eye(self.target.nb_classes, dtype=np.float32)[y_idx]
        verbose = self.denoiser.verbose
        val_images = None
        if validation_data is not None and len(validation_data) == 2 and self.attacks:
            # AEs of the validation images, crafted once: best epochs are chosen on clean + adversarial accuracy
            val_images = (np.asarray(validation_data[0], dtype=np.float32),
                          class_indices(validation_data[1], self.target.nb_classes))
        fingerprint = self._crafting_fingerprint(x, y_idx, val_images)
        resume = ResumeFile(checkpoint, fingerprint) if checkpoint else None
        id_resume = ResumeFile(id_checkpoint(checkpoint), {
            **fingerprint, "denoiser": self.denoiser.get_config(), "start": digest(self.denoiser.network),
            "nb_epochs": nb_epochs_id, "batch_size": batch_size}) if checkpoint else None
        x_adv, val_adv = self._crafted(x, onehot, val_images, verbose, resume)
        x_adv_all = np.concatenate(x_adv) if x_adv else None
        y_adv_all = np.tile(y_idx, len(x_adv)) if x_adv else None
        if val_images is not None:
            validation_data = (*val_images, val_adv)
        fit_denoiser(self.denoiser, x, y_idx, self.target, (), nb_epochs_id, batch_size, x_adv_all, y_adv_all,
                     validation_data, resume=id_resume)
        if self.restorer is not None:
            fit_restorer(self.restorer, x, y_idx, self.target, self.denoiser, (), nb_epochs_fr, batch_size, x_adv_all,
                         y_adv_all, validation_data=validation_data)
        self._classifier = defend(self.target, self.denoiser, self.restorer)
        for done in (resume, id_resume):
            if done is not None:
                done.remove()

    def _crafting_fingerprint(self, x: np.ndarray, y: np.ndarray, val_images) -> dict:
        """What the crafted AEs depend on: the images, the attacks (type, settings, attacked weights)."""
        def attack(a):
            params = {p: getattr(a, p, None) for p in a.attack_params if p not in ("verbose", "batch_size")}
            return {"type": type(a).__name__, "params": repr(params), "weights": digest(a.estimator.model)}

        val = digest(*val_images) if val_images is not None else None
        return {"images": digest(np.asarray(x, dtype=np.float32), y), "validation": val,
                "attacks": [attack(a) for a in self.attacks]}

    def _crafted(self, x, onehot, val_images, verbose, resume):
        """Training AEs and the AEs of ``val_images`` (``None`` without them): from ``resume``'s file, else crafted
        (then stored there with the random state after crafting, which a resumed fit restores)."""
        state = resume.load() if resume is not None else None
        if state is not None:
            name, keys, pos, has_gauss, cached = state["numpy_rng"]
            np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
            torch.set_rng_state(state["torch_rng"])
            logger.info("IDFRTrainer: AEs taken from %s", resume.path)
            val = state["validation"]
            return [t.numpy() for t in state["train"]], None if val is None else [t.numpy() for t in val]
        x_adv = craft(self.attacks, x, onehot, "crafting training AEs", verbose)
        val_adv = None
        if val_images is not None:
            val_onehot = np.eye(self.target.nb_classes, dtype=np.float32)[val_images[1]]
            val_adv = craft(self.attacks, val_images[0], val_onehot, "crafting validation AEs", verbose)
        if resume is not None:
            resume.save({"train": [torch.from_numpy(a) for a in x_adv],
                         "validation": None if val_adv is None else [torch.from_numpy(a) for a in val_adv],
                         "numpy_rng": _numpy_rng_state(), "torch_rng": torch.get_rng_state()})
        return x_adv, val_adv

    def get_classifier(self) -> "PyTorchClassifier":
        """The defended classifier (the undefended target until :meth:`fit` has run)."""
        return self._classifier


def id_checkpoint(checkpoint: str) -> str:
    """The ID epochs' resume file beside the crafting one ``checkpoint`` of :meth:`IDFRTrainer.fit`."""
    root, ext = os.path.splitext(checkpoint)
    return f"{root}.id_epochs{ext or '.pt'}"


def _numpy_rng_state() -> list:
    """numpy's global RNG state with its key array as a tensor (a resume file holds tensors and plain values only)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)]
