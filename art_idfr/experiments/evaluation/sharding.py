"""
Distributed evaluation (issue 16): under ``torchrun`` (a process group of :mod:`art_idfr.training.distributed`)
every rank runs the whole suite, but in every cell it attacks and scores only its contiguous shard of that cell's
images (:func:`shard`); the per-image hits are all-gathered in the original order (:func:`gather_hits`), so every
rank ends with the records and per-image outcomes of the whole run, and rank 0 writes the one report. In a single
process every helper here is the identity: the shard is all images, nothing is gathered or skipped.

Same per-image hits as one process on the same images (up to float reduction order, e.g. cuDNN kernels picked per
batch size):

* the deterministic cells: clean accuracy, FGSM, BIM, CW (no random start), on every deterministic defence;
* PGD (ART, one random start) on a deterministic defence: ART draws the random start image by image, one uniform
  per pixel, from the seeded ``np.random``; a shard starting at image ``lo`` first skips ``lo × pixels`` draws
  (:func:`start_draws`, ``make_attack(rng_skip=...)``) and so gets the single-process start of each of its images;
* predictions of TotalVarMin (randomised: one ``np.random.rand`` mask value per pixel, image by image): the same
  skip before predicting (:func:`prediction_draws`);
* the sanity checks and the gradient-masking checks' PGD at a large ε (one random start), and every check that
  compares per-image hits (computed on the gathered hits).

Not identical per image, only within sampling tolerance (their random draws depend on the other images of a batch
or run, so a shard cannot reproduce them without running the others):

* Square (the query threat model and the gradient-free masking check): ART's random search draws for the images
  of a batch that are still unbroken;
* AutoAttack (APGD restarts, Square);
* PGD with several random starts (the masking check ``more_steps_not_better``): ART draws them batch by batch;
* every white-box attack on a randomised defence (TotalVarMin with BPDA + EOT): masks are drawn per gradient call.

The resume checkpoint and partial reports are read and written by rank 0 only; rank 0's decision to take a threat
model from the checkpoint, with its records, is broadcast (:func:`from_main`).
"""
from __future__ import annotations

from typing import Any, Dict

import numpy as np

from art_idfr.training import distributed as ddp

__all__ = ["shard", "gather_hits", "start_draws", "prediction_draws", "generate", "predicted_hits", "processes",
           "from_main", "is_main_process"]

is_main_process = ddp.is_main_process


def shard(n: int) -> slice:
    """This rank's contiguous shard of ``range(n)`` as a slice (all of it in a single process)."""
    lo, hi = ddp.shard_bounds(int(n))
    return slice(lo, hi)


def gather_hits(hits: np.ndarray) -> np.ndarray:
    """Every rank's per-image hits (booleans) concatenated in rank order, i.e. in the order of the images."""
    if not ddp.is_distributed():
        return hits
    return ddp.all_gather_numpy(np.asarray(hits, dtype=np.uint8)).astype(bool)


def image_size(x: np.ndarray) -> int:
    """Values per image of a batch ``x``."""
    return int(np.prod(x.shape[1:]))


def start_draws(attack: str, first: int, size: int, randomised: bool = False, num_random_init: int = 1) -> int:
    """
    Numpy doubles a seeded ART ``attack`` draws for the images before image ``first`` of its run: PGD with one
    random start on a deterministic classifier draws one uniform per value (``size`` per image), image by image.
    0 for the deterministic attacks, and for those whose draws cannot be reproduced per image (module docstring).
    """
    if attack == "pgd" and num_random_init <= 1 and not randomised:
        return int(first) * int(size)
    return 0


def prediction_draws(randomised: bool, first: int, size: int) -> int:
    """Numpy doubles a randomised defence (TotalVarMin: one mask value per pixel) draws for the images before
    ``first`` of a seeded ``predict``; 0 for a deterministic one."""
    return int(first) * int(size) if randomised else 0


def generate(attack, x: np.ndarray, y1h: np.ndarray) -> np.ndarray:
    """``attack.generate(x, y1h)`` as float32; an empty shard stays empty (ART attacks refuse zero images)."""
    if not len(x):
        return np.asarray(x, dtype=np.float32)
    return np.asarray(attack.generate(x=x, y=y1h), dtype=np.float32)


def predicted_hits(clf, x: np.ndarray, y: np.ndarray, batch_size: int) -> np.ndarray:
    """Whether ``clf`` classifies each image of ``x`` as ``y`` (an empty shard: no hits)."""
    if not len(x):
        return np.zeros(0, dtype=bool)
    return np.argmax(clf.predict(x, batch_size=batch_size), axis=1) == y


def processes() -> Dict[str, int]:
    """``{"processes": world size}`` in a distributed run (its metadata and resume fingerprint), else nothing."""
    return {"processes": ddp.world_size()} if ddp.is_distributed() else {}


def from_main(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (``obj`` itself in a single process)."""
    return ddp.broadcast_object(obj)
