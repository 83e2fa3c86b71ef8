"""
The evaluation suite: every defence on the same test images under four threat models, plus sanity checks.

Threat models (each labelled in every record and table):

* ``black-box`` -- AEs crafted on an independently trained surrogate (other seed, optionally other architecture),
  once per (attack, eps), and given to every defended classifier (transfer attack).
* ``gray-box`` -- AEs crafted on the bare target, once per (attack, eps), the defence unknown to the attacker.
* ``white-box`` -- adaptive: the attack runs on each defended classifier itself. For ``id`` / ``idfr`` ART
  differentiates through the defence (exact autograd gradients); for the NumPy baselines ART uses the defence's
  ``estimate_gradient``, the identity (BPDA), averaged over ``eot_samples`` random draws for a randomised defence
  (TotalVarMin: BPDA + EOT); ``fast_at`` is a different model attacked directly.
* ``query`` -- score-based: ART ``SquareAttack`` (L-inf) against each defended classifier's outputs.

The white-box and query attacks run on class-stratified subsets of the evaluation images (``whitebox_n``,
``query_n``); every record carries its own ``n``. All randomness is seeded per cell (seed, threat model, defence,
attack, eps), so a cell's number does not depend on which other cells are run, and the same seed gives the same
numbers on CPU.

:func:`evaluate` builds an :class:`Evaluation` (the run's shared state, one method per threat model) and runs it.
Under ``torchrun`` each rank attacks and scores a contiguous shard of every cell's images and the per-image hits are
all-gathered in order, so every rank holds the single-process records (exactly for the deterministic attacks and
PGD, within tolerance for Square and AutoAttack: see :mod:`~art_idfr.experiments.evaluation.sharding`); only rank 0
reads and writes the resume checkpoint.
The record keys and display names live in :mod:`~art_idfr.experiments.evaluation.labels`, the result class in
:mod:`~art_idfr.experiments.evaluation.result` (both re-exported here), the sanity checks in
:mod:`~art_idfr.experiments.evaluation.sanity` (:func:`compare_whitebox` re-exported here), and the methods that
checkpoint threat models and reuse attack cells in :mod:`~art_idfr.experiments.evaluation.reuse`.
"""
from __future__ import annotations

import datetime as _dt
import inspect
import logging
import os
import platform
import shlex
import sys
import time
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import nn
from art_idfr.progress import progress_bar

from art_idfr._utils import skip_numpy_draws
from art_idfr.experiments.evaluation.config import QUERY_ATTACK, EvalConfig, eps_label
from art_idfr.experiments.evaluation.defences import DefendedClassifier, build_defences, wrap_model
from art_idfr.experiments.evaluation.labels import ATTACK_LABELS, RECORD_FIELDS, THREAT_DESCRIPTIONS
from art_idfr.experiments.evaluation.pipeline import PreparedData, seeded
from art_idfr.experiments.evaluation import sharding
from art_idfr.experiments.evaluation.seeds import cell_seed as _cell_seed
from art_idfr.experiments.evaluation.result import EvaluationResult
from art_idfr.experiments.evaluation.reuse import ReuseMixin, _version
from art_idfr.experiments.evaluation.sanity import _sanity_checks, compare_whitebox

logger = logging.getLogger(__name__)

# ATTACK_LABELS, RECORD_FIELDS, THREAT_DESCRIPTIONS (labels.py) and EvaluationResult (result.py) stay importable here
__all__ = ["Evaluation", "EvaluationResult", "evaluate", "compare_whitebox", "ATTACK_LABELS", "RECORD_FIELDS",
           "THREAT_DESCRIPTIONS"]


# ----------------------------------------------------------------------------------------------------------------------


def _subset(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    from art_idfr.experiments.data import stratified_subset_indices

    n = min(int(n), len(y))
    return np.arange(len(y)) if n == len(y) else stratified_subset_indices(y, n, seed=seed)


def threat_model_indices(cfg, y_test: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """
    The images an evaluation with ``cfg`` attacks: indices of its evaluation images into the test split (black- and
    gray-box), and of the white-box and query subsets into those (class-stratified, seeded by ``cfg.seed``).
    """
    eval_idx = _subset(y_test, cfg.eval_n, cfg.seed)
    y_eval = y_test[eval_idx]
    return eval_idx, _subset(y_eval, cfg.whitebox_n, cfg.seed + 1), _subset(y_eval, cfg.query_n, cfg.seed + 2)


def _device_description(clf) -> str:
    dev = torch.device(clf.device)
    if dev.type == "cuda":
        return f"{dev} ({torch.cuda.get_device_name(dev)})"
    cpu = platform.processor() or platform.machine()
    return f"cpu ({torch.get_num_threads()} threads, {os.cpu_count()} cores, {cpu})"


def _command_line() -> str:
    argv = list(sys.argv)
    if argv and argv[0].endswith(("art-idfr", os.path.join("art_idfr", "experiments", "cli.py"))):
        argv[0] = "art-idfr"
    return " ".join(shlex.quote(a) for a in argv)


def evaluate(*args: Any, **kwargs: Any) -> EvaluationResult:
    """
    Run the evaluation suite (builds an :class:`Evaluation` and runs it); the parameters are those of
    :class:`Evaluation`, whose signature this function carries:

    :param config: The run's configuration (resolved here for the data's channel count).
    :param data: :func:`~art_idfr.experiments.evaluation.pipeline.prepare_data` output; the test split is evaluated.
    :param target_model: The trained target network (NCHW images in [0, 1] -> logits).
    :param surrogate_model: Source of the black-box AEs (required for the ``black-box`` threat model).
    :param denoiser: Fitted ID (for ``id`` / ``idfr``); ``restorer``: fitted FR (for ``idfr``).
    :param fast_at_model: The Fast-AT network (for ``fast_at``).
    :param adaptive_denoiser: The adaptively trained ID (for ``idfr_adaptive``, not in the paper), with
        ``adaptive_restorer`` (default ``restorer``) behind it.
    :param inner: The :class:`~art_idfr.InnerRestorer` fitted inside ``target_model`` (for the opt-in
        ``idfr_inner``, not in the paper), with ``inner_denoiser`` in front (``None``: none) and ``inner_restorer``
        (default ``restorer``) behind it, from
        :func:`~art_idfr.experiments.evaluation.pipeline.adaptive.fit_inner_adaptive`.
    :param model_info: Free-form metadata about the models (stored under ``metadata["models"]``).
    :param command: Command line to record (default: ``sys.argv``).
    :param verbose: Progress bars.
    :param checkpoint_dir: If given, each finished threat model is checkpointed there and the partial reports
        (``results.partial.json`` / ``.md``) rewritten, and threat models already finished by an earlier run with
        the same configuration, images, device and model weights are taken from the checkpoint instead of re-run
        (:mod:`art_idfr.experiments.evaluation.resume`; ``metadata["resumed"]`` names them). Each white-box, query
        and gradient-masking cell is also stored in ``checkpoint_dir/eval_cells``, and a cell an earlier run measured
        on identical images, settings, device and defence weights is taken from there
        (:mod:`~art_idfr.experiments.evaluation.cells`; ``metadata["reused_cells"]`` counts them, and
        ``metadata["cell_keys"]`` names every cell this run used, so that the folder's cells of other configurations
        can be told apart).
    :param reuse_cells: ``False``: measure every cell again (still storing them).
    :param baselines: ``{key: fitted defence}`` of the opt-in purification baselines (``comdefend``, ``nrp``, ``adp``,
        ``soap``) named in ``config.defences``, from
        :func:`~art_idfr.experiments.evaluation.pipeline.baselines.train_baselines`.
    :return: The :class:`EvaluationResult`.
    """
    return Evaluation(*args, **kwargs).run()


class Evaluation(ReuseMixin):
    """
    One run of the evaluation suite (see :func:`evaluate` for the parameters).

    Holds what every threat model shares: the evaluation images and their white-box / query subsets, the defended
    classifiers, the records and per-image hits found so far, the timings and the resume checkpoint (its methods,
    and the cell cache's, come from :class:`~art_idfr.experiments.evaluation.reuse.ReuseMixin`). :meth:`run`
    measures the clean accuracy, then runs one method per threat model (:meth:`black_box`, :meth:`gray_box`,
    :meth:`white_box`, :meth:`query`; each a no-op unless configured) and the sanity checks, always in that order.
    """

    def __init__(
        self,
        config: EvalConfig,
        data: PreparedData,
        target_model: nn.Module,
        surrogate_model: Optional[nn.Module] = None,
        denoiser=None,
        restorer=None,
        fast_at_model: Optional[nn.Module] = None,
        model_info: Optional[Dict[str, Any]] = None,
        command: Optional[str] = None,
        verbose: bool = True,
        checkpoint_dir: Optional[str] = None,
        adaptive_denoiser=None,
        adaptive_restorer=None,
        reuse_cells: bool = True,
        baselines: Optional[Dict[str, Any]] = None,
        inner_denoiser=None,
        inner_restorer=None,
        inner=None,
    ) -> None:
        import art

        self.t_start = time.perf_counter()
        cfg = self.cfg = config.resolved(data.input_shape[0])
        if "black-box" in cfg.threat_models and surrogate_model is None:
            raise ValueError("the black-box threat model needs a surrogate model (an independently trained source).")
        self.data, self.model_info = data, model_info
        self.verbose = verbose and sharding.is_main_process()  # distributed: progress bars on rank 0 only
        self.models = {"target": target_model, "surrogate": surrogate_model, "denoiser": denoiser,
                       "restorer": restorer, "fast_at": fast_at_model}
        if adaptive_denoiser is not None:  # (only then: the resume fingerprints of earlier runs stay valid)
            self.models.update(adaptive_denoiser=adaptive_denoiser, adaptive_restorer=adaptive_restorer)
        self.models.update({f"baseline_{k}": v for k, v in (baselines or {}).items()})  # (only when given, as above)
        inner_restorer = inner_restorer if inner_restorer is not None else restorer
        if inner is not None:  # (only when given, as above)
            self.models.update(inner_denoiser=inner_denoiser, inner_restorer=inner_restorer, inner=inner)
        self.command = command if command is not None else _command_line()
        self._select_images()
        shape, k = data.input_shape, data.num_classes
        self.target = wrap_model(target_model, shape, k, cfg.device_type)
        self.defended: Dict[str, DefendedClassifier] = build_defences(
            cfg, self.target, denoiser=denoiser, restorer=restorer, fast_at_model=fast_at_model,
            adaptive=(adaptive_denoiser, adaptive_restorer if adaptive_restorer is not None else restorer),
            baselines=baselines, inner=(inner_denoiser, inner_restorer, inner))
        self.device_text = _device_description(self.target)
        #: the fields every record shares
        self.base = {
            "seed": cfg.seed,
            "dataset": data.dataset.name,
            "model": f"{cfg.model} (width {cfg.width:g})",
            "device": self.device_text,
            "torch_version": torch.__version__,
            "art_version": art.__version__,
            "command": self.command,
        }
        self.records: List[Dict[str, Any]] = []
        self.per_sample: Dict[Tuple[str, str, str, float], np.ndarray] = {}
        self.timings: Dict[str, float] = {}
        self.resumed: Dict[str, str] = {}
        self.finished: List[str] = []
        self.checkpoint_dir = checkpoint_dir
        # distributed: rank 0 alone reads and writes the checkpoint (its decisions are broadcast, see _resume)
        self.ckpt = self._open_checkpoint() if checkpoint_dir is not None and sharding.is_main_process() else None
        self._open_cell_cache(reuse_cells)

    # ---- set-up ------------------------------------------------------------------------------------------------------

    def _select_images(self) -> None:
        """One stratified evaluation set, and stratified subsets of it for white-box / query."""
        cfg, data = self.cfg, self.data
        eval_idx, self.wb_idx, self.q_idx = threat_model_indices(cfg, data.y_test)
        self.x_eval = np.ascontiguousarray(data.x_test[eval_idx], dtype=np.float32)
        self.y_eval = data.y_test[eval_idx].astype(np.int64)
        self.onehot = np.eye(data.num_classes, dtype=np.float32)[self.y_eval]
        #: the images of each threat model (indices into the evaluation set)
        self.images = {"black-box": np.arange(len(self.y_eval)), "gray-box": np.arange(len(self.y_eval)),
                       "white-box": self.wb_idx, "query": self.q_idx}

    def metadata(self) -> Dict[str, Any]:
        """The run's metadata (timings and resumed threat models as far as known now)."""
        import art

        cfg, data = self.cfg, self.data
        return {
            "tool": "art-idfr evaluation suite",
            "art_idfr_version": _version(),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "command": self.command,
            "dataset": data.dataset.name,
            "dataset_description": data.dataset.describe(),
            "model": self.base["model"],
            "device": self.device_text,
            "torch_version": torch.__version__,
            "art_version": art.__version__,
            "numpy_version": np.__version__,
            "python_version": platform.python_version(),
            "platform": platform.platform(),
            "seed": cfg.seed,
            "preset": cfg.preset_name,
            "n": {tm: int(len(self.images[tm])) for tm in cfg.threat_models},
            "eval_n": int(len(self.y_eval)),
            "eps": [float(e) for e in cfg.eps],
            "eps_labels": [eps_label(e) for e in cfg.eps],
            "attacks": list(cfg.attacks),
            "threat_models": list(cfg.threat_models),
            "threat_model_descriptions": {tm: THREAT_DESCRIPTIONS[tm] for tm in cfg.threat_models},
            "defences": [{"key": dc.key, "label": dc.label, "description": dc.description,
                          "white_box_gradient": dc.gradient, "randomised": dc.randomised}
                         for dc in self.defended.values()],
            "models": self.model_info or {},
            "timings_seconds": dict(self.timings),
            **sharding.processes(),
            **({"resumed": {tm: f"taken from the evaluation checkpoint written {when} by an earlier run with the "
                                "same configuration, images, device and model weights"
                            for tm, when in self.resumed.items()}}
               if self.resumed else {}),
            **({"reused_cells": dict(self.reused_cells)} if self.reused_cells else {}),
            **({"cell_keys": sorted({k for keys in self.cell_keys.values() for k in keys})}
               if self.cell_keys and not self.cell_keys_unknown else {}),  # a partial list would undercount
        }

    # ---- one cell ----------------------------------------------------------------------------------------------------

    def _correct(self, dc: DefendedClassifier, x: np.ndarray, y: np.ndarray, seed: int,
                 part: Optional[slice] = None) -> np.ndarray:
        """
        Per-image hits of the defended classifier ``dc`` on ``(x, y[part])``: ``x`` holds the images ``part`` of the
        cell (this rank's shard; default all). Returns the hits of all the cell's images, gathered over the ranks.
        """
        part = slice(0, len(y)) if part is None else part
        with seeded(seed):  # TotalVarMin draws its mask from np.random (a shard skips the earlier images' draws)
            skip_numpy_draws(sharding.prediction_draws(dc.randomised, part.start, sharding.image_size(x)))
            hits = sharding.predicted_hits(dc.classifier, x, y[part], self.cfg.attack_batch_size)
        return sharding.gather_hits(hits)

    def _add(self, tm: str, dc: DefendedClassifier, attack: str, eps: float, hits: np.ndarray, *, gradient: str,
             source: str, source_accuracy: Optional[float] = None, params: Optional[Dict[str, Any]] = None) -> None:
        """Record one cell: its per-image hits and its record."""
        self.per_sample[(tm, dc.key, attack, float(eps))] = hits
        self.records.append({
            "threat_model": tm,
            "defence": dc.label,
            "defence_key": dc.key,
            "attack": attack,
            "eps": float(eps),
            "eps_label": eps_label(eps),
            "accuracy": float(hits.mean()) if len(hits) else float("nan"),
            "n": int(len(hits)),
            "n_correct": int(hits.sum()),
            "gradient": gradient,
            "source": source,
            "source_accuracy": source_accuracy,
            "attack_params": params or {},
            **self.base,
        })

    def attack_params(self, name: str, eps: float) -> Dict[str, Any]:
        """The settings of attack ``name`` at ``eps`` as recorded in its records."""
        cfg = self.cfg
        if name == "fgsm":
            return {"norm": "inf", "eps": eps}
        if name == "autoattack":
            return {"norm": "inf", "eps": eps, "ensemble": "ART AutoAttack: APGD-CE, APGD-DLR (100 steps, "
                    f"{cfg.autoattack_restarts} restarts), DeepFool, Square ({cfg.autoattack_square_iter} queries)"}
        if name == QUERY_ATTACK:
            return {"norm": "inf", "eps": eps, "max_iter": cfg.query_iter, "nb_restarts": 1}
        return {"norm": "inf", "eps": eps, "max_iter": cfg.attack_iter, "eps_step": min(cfg.eps_step, eps),
                **({"loss": "C&W margin"} if name == "cw" else {}), **({"random_init": True} if name == "pgd" else {})}

    def craft(self, name: str, clf, x: np.ndarray, y1h: np.ndarray, eps: float, seed: int,
              part: Optional[slice] = None, randomised: bool = False, **settings) -> np.ndarray:
        """
        AEs of attack ``name`` at ``eps`` on the ART classifier ``clf`` (``randomised``: a random defence inside),
        seeded with ``seed``, of the images ``x[part]`` (default all): distributed, this rank's shard, with the random
        start a single process gives those images where ART's draws allow it (see ``sharding``). ``settings``: more
        keyword arguments of :func:`~art_idfr.experiments.attacks.make_attack`.
        """
        from art_idfr.experiments.attacks import make_attack

        cfg = self.cfg
        part = slice(0, len(x)) if part is None else part
        max_iter = {QUERY_ATTACK: cfg.query_iter, "autoattack": cfg.autoattack_square_iter}.get(name, cfg.attack_iter)
        extra = {"nb_random_init": cfg.autoattack_restarts} if name == "autoattack" else {}
        skip = sharding.start_draws(name, part.start, sharding.image_size(x), randomised)
        atk = make_attack(name, clf, eps, max_iter=max_iter, eps_step=cfg.eps_step,
                          batch_size=cfg.attack_batch_size, seed=seed, verbose=False, rng_skip=skip, **extra,
                          **settings)
        with seeded(seed):  # numpy defences inside the loop (TotalVarMin) draw from np.random
            return sharding.generate(atk, x[part], y1h[part])

    def _attack_cell(self, dc: DefendedClassifier, attack: str, x: np.ndarray, y1h: np.ndarray, y: np.ndarray,
                     eps: float, seed: int, part: slice) -> np.ndarray:
        """Per-image hits of ``dc`` under ``attack`` run on ``dc`` itself (white-box and query cells)."""
        x_adv = self.craft(attack, dc.classifier, x, y1h, eps, seed, part, randomised=dc.randomised,
                           **dc.square_settings(attack))
        return self._correct(dc, x_adv, y, _cell_seed(seed, "eval"), part)

    # ---- the threat models -------------------------------------------------------------------------------------------

    def run(self) -> EvaluationResult:
        """Clean accuracy, every configured threat model, the sanity checks; the :class:`EvaluationResult`."""
        self.clean_accuracy()
        self.black_box()
        self.gray_box()
        self.white_box()
        self.query()
        return self.finish()

    def clean_accuracy(self) -> None:
        """Clean accuracy of every defence on the evaluation set, recorded once per threat model (on its images)."""
        cfg = self.cfg
        t0 = time.perf_counter()
        clean: Dict[str, np.ndarray] = {}
        part = sharding.shard(len(self.y_eval))  # distributed: this rank's images, hits gathered
        for key, dc in progress_bar(self.defended.items(), desc="clean accuracy", disable=not self.verbose):
            clean[key] = self._correct(dc, self.x_eval[part], self.y_eval, _cell_seed(cfg.seed, "clean", key), part)
        self.timings["clean"] = time.perf_counter() - t0
        for tm in cfg.threat_models:
            for key, dc in self.defended.items():
                self._add(tm, dc, "clean", 0.0, clean[key][self.images[tm]], gradient="-", source="-")

    def black_box(self) -> None:
        """Transfer from the independently trained surrogate (AEs crafted once per attack and eps)."""
        cfg = self.cfg
        if "black-box" not in cfg.threat_models:
            return
        sur = wrap_model(self.models["surrogate"], self.data.input_shape, self.data.num_classes, cfg.device_type)
        sur_name = f"surrogate {cfg.surrogate_model} (width {cfg.surrogate_width:g}, " \
                   f"seed {cfg.seed + cfg.surrogate_seed_offset})"
        self._transfer("black-box", sur_name, sur)

    def gray_box(self) -> None:
        """Transfer from the bare, undefended target (AEs crafted once per attack and eps)."""
        if "gray-box" in self.cfg.threat_models:
            self._transfer("gray-box", "bare target (undefended)", self.target)

    def _transfer(self, tm: str, src_name: str, src_clf) -> None:
        """A transfer threat model: AEs crafted on ``src_clf`` once per (attack, eps), given to every defence."""
        if self._resume(tm):
            return
        from art_idfr.experiments.evaluation.cells import source_fingerprint

        cfg = self.cfg
        t0 = time.perf_counter()
        source = source_fingerprint(src_name, src_clf)
        cells = [(a, e) for a in cfg.attacks for e in cfg.eps if a != "autoattack" or cfg.autoattack_transfer]
        bar = progress_bar(cells, desc=f"{tm}: craft + transfer", disable=not self.verbose)
        for attack, eps in bar:
            bar.set_postfix_str(f"{ATTACK_LABELS[attack]} {eps_label(eps)}", refresh=False)
            self._transfer_cell(tm, src_name, src_clf, source, attack, eps)
        self._done(tm, time.perf_counter() - t0)

    def _transfer_cell(self, tm: str, src_name: str, src_clf, source: Optional[str], attack: str, eps: float) -> None:
        """
        One transfer cell: the source's and every defence's hits on AEs of ``attack`` at ``eps`` crafted on
        ``src_clf``, each taken from the cell cache where an earlier run measured it (``source``: the source's
        fingerprint); the AEs are crafted only if some hit is not cached.
        """
        cfg, y_eval = self.cfg, self.y_eval
        seed = _cell_seed(cfg.seed, tm, attack, eps)
        params = self.attack_params(attack, eps)
        cell = {"kind": tm, "attack": attack, "eps": eps, "seed": seed, "settings": params, "source": source}
        part = sharding.shard(len(y_eval))  # distributed: this rank's images, hits gathered
        crafted: List[np.ndarray] = []

        def x_adv() -> np.ndarray:
            if not crafted:
                crafted.append(self.craft(attack, src_clf, self.x_eval, self.onehot, eps, seed, part))
            return crafted[0]

        src_hits = self.cached_hits(source, {**cell, "role": "source"}, tm, lambda: sharding.gather_hits(
            sharding.predicted_hits(src_clf, x_adv(), y_eval[part], cfg.attack_batch_size)), f"source {src_name}")
        for key, dc in self.defended.items():
            hits = self.measure_cell(dc, cell, tm, lambda: self._correct(
                dc, x_adv(), y_eval, _cell_seed(cfg.seed, tm, key, attack, eps, "eval"), part))
            self._add(tm, dc, attack, eps, hits, gradient="transfer", source=src_name,
                      source_accuracy=float(src_hits.mean()), params=params)

    def white_box(self) -> None:
        """Adaptive white-box: every attack runs on every defended classifier itself (white-box images)."""
        cfg = self.cfg
        if "white-box" not in cfg.threat_models or self._resume("white-box"):
            return
        t0 = time.perf_counter()
        x_wb, y_wb, oh_wb = self.x_eval[self.wb_idx], self.y_eval[self.wb_idx], self.onehot[self.wb_idx]
        cells = [(key, a, e) for key in self.defended for a in cfg.attacks for e in cfg.eps
                 if a != "autoattack" or key in cfg.autoattack_defences]
        part = sharding.shard(len(y_wb))  # distributed: this rank's images, hits gathered
        bar = progress_bar(cells, desc="white-box (adaptive)", disable=not self.verbose)
        for key, attack, eps in bar:
            dc = self.defended[key]
            bar.set_postfix_str(f"{dc.label}: {ATTACK_LABELS[attack]} {eps_label(eps)}", refresh=False)
            seed = _cell_seed(cfg.seed, "white-box", key, attack, eps)
            params = self.attack_params(attack, eps) | dc.square_settings(attack)
            hits = self.measure_cell(dc, {"kind": "white-box", "attack": attack, "eps": eps, "seed": seed,
                                          "params": params}, "white-box",
                                     lambda: self._attack_cell(dc, attack, x_wb, oh_wb, y_wb, eps, seed, part))
            self._add("white-box", dc, attack, eps, hits, gradient=dc.gradient, source="defended classifier itself",
                      params=params)
        self._done("white-box", time.perf_counter() - t0)

    def query(self) -> None:
        """Query-based: SquareAttack on each defended classifier's outputs (query images)."""
        cfg = self.cfg
        if "query" not in cfg.threat_models or self._resume("query"):
            return
        t0 = time.perf_counter()
        x_q, y_q, oh_q = self.x_eval[self.q_idx], self.y_eval[self.q_idx], self.onehot[self.q_idx]
        cells = [(key, e) for key in self.defended for e in cfg.eps]
        part = sharding.shard(len(y_q))  # distributed: this rank's images, hits gathered (Square: see sharding)
        bar = progress_bar(cells, desc="query (Square)", disable=not self.verbose)
        for key, eps in bar:
            dc = self.defended[key]
            bar.set_postfix_str(f"{dc.label}: Square {eps_label(eps)}", refresh=False)
            seed = _cell_seed(cfg.seed, "query", key, eps)
            params = self.attack_params(QUERY_ATTACK, eps) | dc.square_settings(QUERY_ATTACK)
            hits = self.measure_cell(dc, {"kind": "query", "attack": QUERY_ATTACK, "eps": eps, "seed": seed,
                                          "params": params}, "query",
                                     lambda: self._attack_cell(dc, QUERY_ATTACK, x_q, oh_q, y_q, eps, seed, part))
            self._add("query", dc, QUERY_ATTACK, eps, hits, gradient="none (scores only)",
                      source="queries to the defended classifier", params=params)
        self._done("query", time.perf_counter() - t0)

    # ---- the end -----------------------------------------------------------------------------------------------------

    def sanity_checks(self) -> Dict[str, Any]:
        """
        The sanity checks (:func:`_sanity_checks`) and the gradient-masking checks
        (:func:`~art_idfr.experiments.evaluation.masking.gradient_masking_checks`) on this run's images; defences
        failing a gradient-masking check are listed under ``"failed_defences"``.
        """
        from art_idfr.experiments.evaluation.masking import (
            RUNS_PER_DEFENCE,
            checked_defences,
            failed_defences,
            gradient_masking_checks,
        )
        from art_idfr.experiments.evaluation.sanity import SANITY_STEPS

        total = SANITY_STEPS + RUNS_PER_DEFENCE * len(checked_defences(self))
        with progress_bar(total=total, desc="sanity + gradient-masking checks", disable=not self.verbose) as bar:
            sanity = _sanity_checks(self.cfg, self.target, self.defended, self.x_eval, self.y_eval, self.onehot,
                                    self.wb_idx, self.per_sample, self.verbose, bar=bar)
            checks, warnings = gradient_masking_checks(self, bar=bar)
        sanity["checks"].update(checks)
        sanity["warnings"].extend(warnings)
        sanity["failed_defences"] = failed_defences(checks)
        sanity["passed"] = all(c.get("status") != "FAIL" for c in sanity["checks"].values())
        return sanity

    def finish(self) -> EvaluationResult:
        """Run the sanity checks, log their warnings and return the :class:`EvaluationResult`."""
        t0 = time.perf_counter()
        sanity = self.sanity_checks()
        self.timings["sanity"] = time.perf_counter() - t0
        self.timings["total"] = time.perf_counter() - self.t_start
        result = EvaluationResult(self.records, self.metadata(), sanity, self.cfg, self.per_sample)
        for warning in sanity.get("warnings", []) if sharding.is_main_process() else []:
            logger.warning(warning)
        return result


#: ``evaluate`` takes what ``Evaluation`` takes: one signature, written once (on ``Evaluation.__init__``)
evaluate.__signature__ = inspect.signature(Evaluation).replace(return_annotation="EvaluationResult")
