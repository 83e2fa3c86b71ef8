"""
The checks :meth:`EvalConfig.validate <art_idfr.experiments.evaluation.config.EvalConfig.validate>` runs on the
sub-configs and across them (model names and widths, weights files, extra AE sources, training and ID / FR knobs),
and the small normalising helpers it shares with them (comma lists to tuples, duplicates dropped, positive ints).
Each raises ``ValueError`` naming the field and, where there is a list, the valid values. (``cfg`` is the
``EvalConfig`` being validated, named in a string annotation and not imported: that would be an import cycle.)
"""
from __future__ import annotations

from typing import Any, Tuple

from art_idfr._names import AUGMENTATIONS
from art_idfr.experiments.choices import ID_ARCHITECTURES, ID_LOSSES, OPTIMIZERS, RESIDUAL_HEADS
from art_idfr.experiments.evaluation.knobs import FRConfig, IDConfig, TrainConfig


def _model_name(value: Any, what: str) -> str:
    from art_idfr._names import MODEL_NAMES

    if str(value).lower() not in MODEL_NAMES:
        raise ValueError(f"Unknown model {value!r} ({what}). Valid names: {', '.join(MODEL_NAMES)}.")
    return str(value).lower()


def _check_model_widths(cfg: "EvalConfig") -> None:
    for name in ("width", "id_width", "id_lr", "fr_lr"):
        if not float(getattr(cfg, name)) > 0:
            raise ValueError(f"`{name}` must be positive, got {getattr(cfg, name)!r}.")
    if cfg.surrogate.width is not None and not float(cfg.surrogate.width) > 0:
        raise ValueError(f"`surrogate_width` must be positive, got {cfg.surrogate.width!r}.")
    fixed_width = ("resnet50", "inception_v3")  # torchvision's architectures, no width multiplier
    for role, model, width, flag in (
        ("model", cfg.target.model, cfg.target.width, "--width"),
        ("surrogate_model", cfg.surrogate.model,
         cfg.surrogate.width if cfg.surrogate.width is not None else cfg.target.width, "--surrogate-width"),
    ):
        if model in fixed_width and float(width) != 1.0:
            raise ValueError(
                f"{role} {model!r} is torchvision's architecture at its fixed width, but its width is {width:g} "
                "(the cpu preset scales the small models to width 0.5): set width 1 "
                f"(CLI: {flag} 1)."
            )


def _check_weights(cfg: "EvalConfig") -> None:
    """Target / surrogate epochs (0 = the weights file as it is, no training) and their weights files."""
    import os

    for role, sub, flag in (("target", cfg.target, "--weights"), ("surrogate", cfg.surrogate, "--surrogate-weights")):
        if isinstance(sub.epochs, bool) or not isinstance(sub.epochs, int) or sub.epochs < 0:
            raise ValueError(f"`{role}_epochs` must be a non-negative int, got {sub.epochs!r}.")
        if sub.weights is not None:
            sub.weights = os.fspath(sub.weights)
            if not os.path.isfile(sub.weights):
                raise ValueError(f"{role} weights file {sub.weights!r} ({flag}) not found.")
        elif sub.epochs == 0:
            raise ValueError(f"`{role}_epochs` 0 means the {role}'s weights as they are: give the weights file "
                             f"({flag} PATH), or train it for at least one epoch.")


def _check_sources(cfg: "EvalConfig") -> None:
    """Widths (one for all or one per model, normalised to a tuple) and seeds of the extra AE sources."""
    src = cfg.idfr_source
    if src.width is not None:
        widths = src.width
        widths = (widths,) if isinstance(widths, (int, float)) else _as_tuple(widths, "idfr_source_width")
        try:
            widths = tuple(float(w) for w in widths)
        except (TypeError, ValueError):
            raise ValueError(f"`idfr_source_width` must be positive numbers, got {src.width!r}.") from None
        n_src = len(src.model or ())
        if not widths or not all(w > 0 for w in widths) or (len(widths) > 1 and len(widths) != n_src):
            raise ValueError(f"`idfr_source_width` must be one positive width, or one per idfr_source_model "
                             f"({n_src}), got {src.width!r}.")
        src.width = widths
    for i in range(len(src.model or ())):
        offset = src.seed_offset + 1000 * i
        if offset in (0, cfg.surrogate.seed_offset):
            raise ValueError(
                f"extra AE source {i} would get seed offset {offset} (`idfr_source_seed_offset` "
                f"{src.seed_offset} + 1000 * {i}), which must differ from 0 (the target) and from "
                f"`surrogate_seed_offset` ({cfg.surrogate.seed_offset}): the ID must never train on AEs of the "
                "black-box surrogate.")


def _check_training(train: TrainConfig) -> None:
    if train.lr is not None and not float(train.lr) > 0:
        raise ValueError(f"`lr` must be positive, got {train.lr!r}.")
    if train.optimizer not in OPTIMIZERS:
        raise ValueError(f"Unknown optimizer {train.optimizer!r}. Valid: {', '.join(OPTIMIZERS)}.")


def _check_id(id_cfg: IDConfig, fr: FRConfig) -> None:
    if id_cfg.gaussian_sigma < 0:
        raise ValueError(f"`id_sigma` must be >= 0, got {id_cfg.gaussian_sigma}.")
    if id_cfg.identity_weight < 0 or not id_cfg.clean_weight > 0:
        raise ValueError("`id_identity_weight` must be >= 0 and `id_clean_weight` > 0, got "
                         f"{id_cfg.identity_weight} and {id_cfg.clean_weight}.")
    if id_cfg.loss not in ID_LOSSES:
        raise ValueError(f"Unknown id_loss {id_cfg.loss!r}. Valid: {', '.join(ID_LOSSES)}.")
    if id_cfg.augment not in AUGMENTATIONS:
        raise ValueError(f"Unknown id_augment {id_cfg.augment!r}. Valid: {', '.join(AUGMENTATIONS)}.")
    if id_cfg.residual_head not in RESIDUAL_HEADS:
        raise ValueError(f"Unknown id_residual_head {id_cfg.residual_head!r}. Valid: {', '.join(RESIDUAL_HEADS)}.")
    if id_cfg.architecture not in ID_ARCHITECTURES:
        raise ValueError(f"Unknown id_architecture {id_cfg.architecture!r}. Valid: {', '.join(ID_ARCHITECTURES)}.")
    _require_positive_int(id_cfg.gaussian_rounds, "id_gaussian_rounds")
    if isinstance(id_cfg.regenerate_every, bool) or not isinstance(id_cfg.regenerate_every, int) \
            or id_cfg.regenerate_every < 0:
        raise ValueError(f"`id_regenerate_every` must be a non-negative int, got {id_cfg.regenerate_every!r}.")
    if fr.embedding_dim is not None:
        _require_positive_int(fr.embedding_dim, "fr_embedding_dim")
    if fr.widths is not None:
        fr.widths = _int_tuple(fr.widths, "fr_widths")
        for w in fr.widths:
            _require_positive_int(w, "fr_widths")


def _int_tuple(value: Any, what: str) -> Tuple[Any, ...]:
    """``_as_tuple`` with digit strings (from a comma list) as ints; anything else is left for the caller to check."""
    return tuple(int(v) if isinstance(v, str) and v.strip().isdigit() else v for v in _as_tuple(value, what))


def _as_tuple(value: Any, what: str) -> Tuple[Any, ...]:
    if isinstance(value, str):
        return tuple(v for v in (p.strip() for p in value.split(",")) if v)
    try:
        return tuple(value)
    except TypeError:
        raise ValueError(f"`{what}` must be a list or a comma-separated string, got {value!r}.") from None


def _unique(items) -> Tuple[Any, ...]:
    out = []
    for item in items:
        if item not in out:
            out.append(item)
    return tuple(out)


def _require_positive_int(value: Any, name: str) -> None:
    """``ValueError`` unless ``value`` (the config field ``name``) is an int >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive int, got {value!r}.")
