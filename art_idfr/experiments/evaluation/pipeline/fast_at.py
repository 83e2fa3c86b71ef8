"""
The Fast AT baseline: a fresh copy of the target architecture trained with ART's ``AdversarialTrainerFBFPyTorch``
(with a BatchNorm train-mode fix, :func:`make_fbf_trainer`) by :func:`train_fast_at`, saved as a model folder and
reused when its settings match; under ``torchrun`` rank 0 alone trains it.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch
from torch import nn

from art_idfr._utils import json_clean, seeded
from art_idfr.experiments.evaluation.config import EvalConfig
from art_idfr.experiments.evaluation.pipeline.networks import (
    _empty_model,
    _trained_on_main,
    load_model_dir,
    save_model_dir,
)
from art_idfr.experiments.evaluation.pipeline.prepare import PreparedData

logger = logging.getLogger(__name__)


def _fbf_class():
    from art.defences.trainer import AdversarialTrainerFBFPyTorch

    class _Fixed(AdversarialTrainerFBFPyTorch):
        """
        ART's ``AdversarialTrainerFBFPyTorch`` with one fix: ART 1.20 computes the FGSM step with
        ``classifier.loss_gradient``, which leaves the model in *eval* mode, and then takes the training step in that
        mode, so BatchNorm layers never use batch statistics nor update their running averages. This subclass puts
        the model back in train mode for the weight update (and in eval mode for the attack step). Everything else
        (random start, 1.25·eps step, cyclic LR peaking at 0.21, grad-norm clip 0.5) is ART's.
        """

        def _batch_process(self, x_batch, y_batch, l_r):
            wrapper = self._classifier._model  # ART's ModelWrapper around the user's model
            grad_fn = self._classifier.loss_gradient

            def loss_gradient(*args, **kwargs):
                out = grad_fn(*args, **kwargs)  # ART: eval mode for the attack step
                wrapper.train(True)  # ... and train mode for the weight update that follows
                return out

            self._classifier.loss_gradient = loss_gradient  # type: ignore[method-assign]
            try:
                return super()._batch_process(x_batch, y_batch, l_r)
            finally:
                del self._classifier.loss_gradient
                wrapper.eval()

    return _Fixed


def make_fbf_trainer(classifier, eps: float, use_amp: bool = False):
    """ART's Fast-AT trainer (``AdversarialTrainerFBFPyTorch``) with the BatchNorm train-mode fix (see
    :func:`_fbf_class`)."""
    return _fbf_class()(classifier, eps=eps, use_amp=use_amp)


def train_fast_at(
    config: EvalConfig,
    data: PreparedData,
    out_dir: Optional[str] = None,
    reuse: bool = True,
    verbose: bool = True,
) -> Tuple[nn.Module, Dict[str, Any]]:
    """
    "Fast AT" baseline: a fresh copy of the target architecture trained from scratch with ART's
    ``AdversarialTrainerFBFPyTorch`` (Wong et al. 2020; SGD momentum 0.9, weight decay 5e-4, ART's cyclic LR) at
    ``config.fast_at.eps`` for ``config.fast_at.nb_epochs`` epochs. Saved as a model folder in ``out_dir`` (reused when
    the settings match). Distributed: rank 0 alone reuses or trains it (:func:`_trained_on_main`).
    """
    arch = config.target
    return _trained_on_main(lambda: _train_fast_at(config, data, out_dir, reuse),
                            lambda: _empty_model(arch.model, data, arch.width, config.device, config.seed + 2000))


def _train_fast_at(config: EvalConfig, data: PreparedData, out_dir: Optional[str], reuse: bool):
    """:func:`train_fast_at` in one process."""
    from art_idfr.experiments.evaluation.defences import wrap_model
    from art_idfr.experiments.models import accuracy, make_model

    fast_at, arch = config.fast_at, config.target
    settings = {"model": arch.model, "width": float(arch.width), "fast_at_eps": fast_at.eps,
                "fast_at_epochs": fast_at.nb_epochs, "batch_size": config.train.batch_size, "seed": config.seed,
                "dataset": data.dataset.name, "train_n": int(len(data.y_train))}
    if out_dir is not None and reuse:
        try:
            model, meta = load_model_dir(out_dir, device=config.device)
            if meta.get("settings") == json_clean(settings):
                logger.info("reusing the Fast AT model in %s", out_dir)
                return model, meta
        except (FileNotFoundError, ValueError, KeyError):
            pass
    if fast_at.eps is None:
        raise ValueError("config.fast_at.eps is not set: call config.resolved(channels) first.")
    t0 = time.perf_counter()
    seed = config.seed + 2000
    model = make_model(arch.model, data.num_classes, data.input_shape, width=arch.width, seed=seed)
    opt = torch.optim.SGD(model.parameters(), lr=0.0, momentum=0.9, weight_decay=5e-4)
    clf = wrap_model(model, data.input_shape, data.num_classes, config.device_type, optimizer=opt)
    trainer = make_fbf_trainer(clf, eps=float(fast_at.eps))
    onehot = np.eye(data.num_classes, dtype=np.float32)[data.y_train]
    with seeded(seed):
        trainer.fit(data.x_train, onehot, nb_epochs=fast_at.nb_epochs, batch_size=config.train.batch_size)
    model.eval()
    meta = {
        "role": "fast_at",
        "model": arch.model,
        "width": float(arch.width),
        "num_classes": data.num_classes,
        "input_shape": list(data.input_shape),
        "dataset": data.dataset.name,
        "seed": seed,
        "settings": settings,
        "trainer": "art.defences.trainer.AdversarialTrainerFBFPyTorch (BatchNorm train-mode fix)",
        "val_accuracy": accuracy(model, data.x_val, data.y_val),
        "test_accuracy": accuracy(model, data.x_test, data.y_test),
        "train_seconds": time.perf_counter() - t0,
    }
    if out_dir is not None:
        save_model_dir(model, meta, out_dir)
    return model, meta
