"""
Configuration of the IDFR evaluation suite: one dataclass of scale knobs, with nested sub-configs whose field names are
the keyword names of the library constructors / training functions they feed, and named presets.

Example::

    from art_idfr.experiments.evaluation import EvalConfig

    cfg = EvalConfig.preset("cpu")                      # the README demo: MNIST-5k, small CNN, minutes on a CPU
    cfg = EvalConfig.preset("cpu", eval_n=200, eps=(8 / 255, 0.3))
    cfg = EvalConfig.preset("paper", dataset="cifar10_jpeg")
    cfg = EvalConfig.preset("tiny", id=dict(nb_epochs=2), fr_lr=1e-3)   # sub-config dict or flat name
    IDFRDenoiser(input_shape, **cfg.id.kwargs())                         # no renaming

Every field has a value in every preset; ``None`` in a handful of fields (``eps``, ``idfr_eps``,
``fs_bit_depth``, ``fast_at.eps``, ``surrogate.model`` / ``surrogate.width``) means "choose from the dataset" (grey-scale / colour), resolved by
:meth:`EvalConfig.resolved` once the image shape is known.
"""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Dict, Optional, Tuple, Union

from art_idfr._names import ADAPTIVE_ATTACKS, ATTACK_NAMES, AUGMENTATIONS, TRADES_REFERENCES
from art_idfr.experiments.choices import DEVICES, ID_ARCHITECTURES, ID_LOSSES, OPTIMIZERS, RESIDUAL_HEADS

__all__ = [
    "EvalConfig",
    "TrainConfig",
    "TargetConfig",
    "SurrogateConfig",
    "SourceConfig",
    "IDConfig",
    "FRConfig",
    "FastATConfig",
    "SUB_CONFIGS",
    "flat_fields",
    "PRESETS",
    "DEFENCES",
    "DEFENCE_ALIASES",
    "THREAT_MODELS",
    "ATTACKS",
    "QUERY_ATTACK",
    "parse_eps",
    "eps_label",
    "canonical_defence",
    "canonical_threat_model",
    "canonical_attack",
]

#: Canonical defence keys, in table order.
DEFENCES: Tuple[str, ...] = (
    "none",
    "id",
    "idfr",
    "idfr_adaptive",
    "feature_squeezing",
    "jpeg25",
    "jpeg50",
    "jpeg75",
    "tvm",
    "spatial_smoothing",
    "fast_at",
)
#: Accepted spellings of each defence (case-insensitive).
DEFENCE_ALIASES: Dict[str, str] = {
    "none": "none",
    "no_defence": "none",
    "no-defence": "none",
    "undefended": "none",
    "id": "id",
    "idfr": "idfr",
    "id+fr": "idfr",
    "id_fr": "idfr",
    "idfr_adaptive": "idfr_adaptive",
    "adaptive": "idfr_adaptive",
    "idfr-adaptive": "idfr_adaptive",
    "fs": "feature_squeezing",
    "feature_squeezing": "feature_squeezing",
    "featuresqueezing": "feature_squeezing",
    "tvm": "tvm",
    "totalvarmin": "tvm",
    "total_var_min": "tvm",
    "ss": "spatial_smoothing",
    "spatial_smoothing": "spatial_smoothing",
    "spatialsmoothing": "spatial_smoothing",
    "median": "spatial_smoothing",
    "fast_at": "fast_at",
    "fastat": "fast_at",
    "fast-at": "fast_at",
    "fbf": "fast_at",
}
#: The four threat models, in report order.
THREAT_MODELS: Tuple[str, ...] = ("black-box", "gray-box", "white-box", "query")
#: Gradient / transfer attacks of the tables (black-box, gray-box, white-box).
ATTACKS: Tuple[str, ...] = ("fgsm", "cw", "bim", "pgd", "autoattack")
#: The score-based attack of the ``query`` threat model.
QUERY_ATTACK = "square"

_THREAT_ALIASES = {
    "black-box": "black-box",
    "blackbox": "black-box",
    "black_box": "black-box",
    "black": "black-box",
    "transfer": "black-box",
    "gray-box": "gray-box",
    "graybox": "gray-box",
    "gray_box": "gray-box",
    "grey-box": "gray-box",
    "greybox": "gray-box",
    "gray": "gray-box",
    "grey": "gray-box",
    "white-box": "white-box",
    "whitebox": "white-box",
    "white_box": "white-box",
    "white": "white-box",
    "adaptive": "white-box",
    "query": "query",
    "score": "query",
    "square": "query",
}


def _pick(value: str, aliases: Dict[str, str], valid: Tuple[str, ...], what: str) -> str:
    key = str(value).strip().lower()
    if key not in aliases:
        raise ValueError(f"Unknown {what} {value!r}. Valid {what}s: {', '.join(valid)}.")
    return aliases[key]


def canonical_defence(name: str) -> str:
    """
    Canonical key of a defence name (``"ID+FR"`` -> ``"idfr"``, ``"jpeg-90"`` -> ``"jpeg90"``); ``ValueError``
    listing the valid names. ``jpeg<q>`` accepts any JPEG quality ``q`` in 1..100.
    """
    m = re.fullmatch(r"jpeg[-_ ]?(?:q=?)?(\d+)", str(name).strip().lower())
    if m:
        q = int(m.group(1))
        if not 1 <= q <= 100:
            raise ValueError(f"JPEG quality must be in 1..100, got {name!r}.")
        return f"jpeg{q}"
    return _pick(name, DEFENCE_ALIASES, DEFENCES, "defence")


def canonical_threat_model(name: str) -> str:
    """Canonical threat-model name (``"whitebox"`` -> ``"white-box"``); ``ValueError`` listing the valid names."""
    return _pick(name, _THREAT_ALIASES, THREAT_MODELS, "threat model")


def canonical_attack(name: str) -> str:
    """
    Canonical attack name for the tables (``fgsm``, ``cw``, ``bim``, ``pgd``, ``autoattack``); ``ValueError``
    otherwise. (ART's ``CarliniLInfMethod``, ``cw-art`` in :func:`art_idfr.experiments.attacks.make_attack`, has no eps bound,
    so it has no column at an eps here; ``benchmarks/cw_speed.py`` compares it with ``cw``.)
    """
    aliases = {"cw-linf": "cw", "cw_inf": "cw", "i-fgsm": "bim", "aa": "autoattack", "auto-attack": "autoattack",
               "auto_attack": "autoattack"}
    return _pick(name, {a: a for a in ATTACKS} | aliases, ATTACKS, "attack")


def parse_eps(value: Any) -> float:
    """
    One L-infinity budget from a number or a string such as ``"8/255"``, ``"0.3"`` or ``"8/255."``.

    :raises ValueError: unparsable, or outside ``(0, 1]`` (pixel scale ``[0, 1]``).
    """
    if isinstance(value, bool):
        raise ValueError(f"epsilon must be a number in (0, 1], got {value!r}.")
    if isinstance(value, str):
        text = value.strip()
        m = re.fullmatch(r"\s*([0-9.eE+-]+)\s*/\s*([0-9.eE+-]+)\s*", text)
        try:
            eps = float(m.group(1)) / float(m.group(2)) if m else float(text)
        except (ValueError, ZeroDivisionError):
            raise ValueError(f"cannot parse epsilon {value!r}; use a number such as 0.03 or a fraction such as 8/255.")
    else:
        try:
            eps = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"epsilon must be a number in (0, 1], got {value!r}.") from None
    if not math.isfinite(eps) or not 0.0 < eps <= 1.0:
        raise ValueError(
            f"epsilon {value!r} = {eps:g} is outside (0, 1]: budgets are L-inf distances on pixels scaled to [0, 1] "
            "(write 8/255, not 8)."
        )
    return eps


def eps_label(eps: float) -> str:
    """``8/255`` for multiples of 1/255, otherwise the shortest decimal (``0.3``); ``clean`` for 0."""
    if eps == 0:
        return "clean"
    k = eps * 255.0
    if abs(k - round(k)) < 1e-6 and round(k) >= 1:
        return f"{int(round(k))}/255"
    frac = Fraction(eps).limit_denominator(1000)
    if abs(float(frac) - eps) < 1e-9 and frac.denominator in (1, 2, 4, 5, 10, 20, 25, 50, 100):
        return f"{float(frac):g}"
    return f"{eps:.4g}"


# ----------------------------------------------------------------------------------------------------------------------
# field metadata
# ----------------------------------------------------------------------------------------------------------------------


def knob(default: Any = dataclasses.MISSING, help: str = "", *, flat: Optional[str] = None, kind: Optional[str] = None,
         choices: Optional[Tuple[str, ...]] = None, metavar: Optional[str] = None, cli: bool = True,
         section: Optional[str] = None, cache_if_set: bool = False, **kwargs: Any):
    """
    A config field with the metadata the command line and the caches read:

    :param help: ``--help`` text of its flag.
    :param flat: its flat name (override keyword, read-only attribute of :class:`EvalConfig`, ``dest`` and legacy
        flag ``--flat-name``), when not ``<group>_<field>``.
    :param kind: argument type of its flag (a key of ``art_idfr.experiments.cli.ARG_TYPES``).
    :param choices: valid values (an argparse ``choices`` list).
    :param cli: ``False``: no generated flag (the common options ``--seed``, ``--dataset``, ... are written by hand).
    :param section: which ``--help`` group (and subcommands) the flag belongs to; default: its sub-config's.
    :param cache_if_set: recorded in the IDFR cache key only when not at its default (added after caches existed).
    """
    md = {"help": help, "flat": flat, "kind": kind, "choices": choices, "metavar": metavar, "cli": cli,
          "section": section, "cache_if_set": cache_if_set}
    return field(default=default, metadata=md, **kwargs)


class _SubConfig:
    """Shared helpers of the nested configs (each is a dataclass whose fields are keyword names of what it feeds)."""

    #: prefix of the flat names and flags of the fields (``id`` -> ``id_width``, ``--id-width``)
    PREFIX = ""
    #: ``--help`` group / subcommand section of the generated flags
    SECTION = ""

    def kwargs(self) -> Dict[str, Any]:
        """The fields as keyword arguments of the constructor / function this sub-config feeds."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    @classmethod
    def flat_name(cls, f: dataclasses.Field) -> str:
        return f.metadata.get("flat") or (f"{cls.PREFIX}_{f.name}" if cls.PREFIX else f.name)


@dataclass
class TrainConfig(_SubConfig):
    """Keyword arguments of :func:`art_idfr.experiments.models.train_model` for the target, surrogate and AE sources."""

    SECTION = "data"
    batch_size: int = knob(128, "training batch size (target, surrogate, ID)", kind="int+", metavar="B")
    lr: Optional[float] = knob(None, "target / surrogate learning rate (default: the optimizer's)", kind="float+")
    optimizer: str = knob("sgd", "target / surrogate optimizer", choices=OPTIMIZERS)
    augment: bool = knob(True, "random crop / flip of the target and surrogate training batches", kind="bool")


@dataclass
class TargetConfig(_SubConfig):
    """The target network: ``make_model(model, width=width)`` trained ``epochs`` epochs."""

    PREFIX, SECTION = "target", "data"
    model: str = knob("small_cnn", "target architecture", flat="model", cli=False)  # the common --model
    width: float = knob(0.5, "target width multiplier", flat="width", kind="float+", metavar="W")
    epochs: int = knob(4, "target training epochs (0 with --weights: the weights as they are)", kind="int0",
                       metavar="E")
    weights: Optional[str] = knob(None, "start the target from this weights file: a torchvision state_dict of the "
                                        "architecture (e.g. resnet50, inception_v3) or a model.pt; read with "
                                        "torch.load(weights_only=True), nothing downloaded", flat="weights",
                                  kind="str", metavar="PATH")


@dataclass
class SurrogateConfig(_SubConfig):
    """
    The independently trained source model of the black-box AEs (``None`` model / width: the target's); seed
    ``seed + seed_offset``.
    """

    PREFIX, SECTION = "surrogate", "surrogate"
    model: Optional[str] = knob(None, "surrogate architecture (default: the target's)", kind="model")
    width: Optional[float] = knob(None, "surrogate width (default: the target's)", kind="float+", metavar="W")
    epochs: int = knob(3, "surrogate epochs (0 with --surrogate-weights: the weights as they are)", kind="int0",
                       metavar="E")
    seed_offset: int = knob(1000, "surrogate seed = seed + this (must differ from 0)", kind="int+", metavar="N")
    weights: Optional[str] = knob(None, "start the surrogate from this weights file (as --weights; default: "
                                        "trained from scratch)", kind="str", metavar="PATH")


@dataclass
class SourceConfig(_SubConfig):
    """
    Optional extra, independently trained models on which the IDFR training attacks also craft AEs (several AE
    sources, as in ensemble adversarial training; not in the paper). ``model``: ``None`` = target only; one name or
    several (a list or a comma-separated string; normalised to a tuple). ``width``: one for all or one per model
    (``None``: the target's). Source ``i`` (from 0) gets the seed ``seed + seed_offset + 1000 * i``, never the
    surrogate's.
    """

    PREFIX, SECTION = "idfr_source", "source"
    model: Union[None, str, Tuple[str, ...]] = knob(
        None, "also craft the IDFR training AEs on these extra, independently trained models, comma-separated "
              "(seeds + 3000, + 4000, ...; never the black-box surrogate; default: the target only, as in the paper)",
        kind="model_list", metavar="LIST")
    width: Union[None, float, Tuple[float, ...]] = knob(
        None, "width of the extra AE sources: one for all or one per model (default: the target's)",
        kind="float+_list", metavar="LIST")
    epochs: int = knob(3, "training epochs of the extra AE sources", kind="int+", metavar="E")
    seed_offset: int = knob(3000, "seed of extra AE source i = seed + this + 1000 * i", kind="int+", metavar="N")


@dataclass
class IDConfig(_SubConfig):
    """Keyword arguments of :class:`art_idfr.IDFRDenoiser` (the input denoiser), by the constructor's names."""

    PREFIX, SECTION = "id", "idfr"
    width: float = knob(0.5, "U-Net width multiplier of the ID", kind="float+", metavar="W")
    residual_head: str = knob("linear", "last U-Net layer: linear (zero-initialised, starts as the identity) or "
                                        "bn_relu", choices=RESIDUAL_HEADS, cache_if_set=True)
    architecture: str = knob("table6", "ID network: table6 (the paper's U-Net); light (the same U-Net at half "
                                       "resolution on a space-to-depth copy, ~0.26x the MACs) or slim (Table 6 with "
                                       "a slim decoder, 0.42x): lighter IDs for large inputs, not in the paper",
                             choices=ID_ARCHITECTURES, cache_if_set=True)
    loss: str = knob("ce", "ID training loss (Eq. 3 = ce)", choices=ID_LOSSES)
    gaussian_sigma: float = knob(0.1, "sigma of the Gaussian-enhanced copies", flat="id_sigma", kind="float")
    gaussian_rounds: int = knob(1, "Gaussian-enhanced copies per clean image", kind="int+", metavar="N",
                                cache_if_set=True)
    clean_weight: float = knob(1.0, "loss weight of clean training images relative to AEs (1 = the paper)",
                               kind="float+", metavar="W")
    identity_weight: float = knob(0.0, "weight of the identity term mean|ID(x) - x| on clean training images "
                                       "(0 = the paper)", kind="float", metavar="L")
    learning_rate: float = knob(2e-3, "ID learning rate", flat="id_lr", kind="float+")
    nb_epochs: int = knob(3, "ID training epochs", flat="id_epochs", kind="int+", metavar="E")
    regenerate_every: int = knob(0, "regenerate the training AEs every N epochs (0 = never)", kind="int0",
                                 metavar="N", cache_if_set=True)
    augment: str = knob("none", "augmentation of the ID's training batches (none = the paper; crop_flip for "
                                "CIFAR-like images)", choices=AUGMENTATIONS, cache_if_set=True)


@dataclass
class FRConfig(_SubConfig):
    """Keyword arguments of :class:`art_idfr.FeatureRestorer` (the feature restorer), by the constructor's names."""

    PREFIX, SECTION = "fr", "idfr"
    embedding_dim: Optional[int] = knob(None, "embedding size (default: found from the target)", kind="int+",
                                        metavar="D", cache_if_set=True)
    widths: Optional[Tuple[int, ...]] = knob(None, "hidden widths of the FR MLP, comma-separated (default: Table 7's "
                                                   "fractions of the embedding size)", kind="int+_list",
                                             metavar="LIST", cache_if_set=True)
    skips: bool = knob(True, "skip connections in the FR", kind="bool", cache_if_set=True)
    batch_norm: bool = knob(True, "batch normalisation in the FR", kind="bool", cache_if_set=True)
    residual: bool = knob(True, "FR outputs embedding + correction", kind="bool", cache_if_set=True)
    layer: Optional[str] = knob(None, "name of the target's embedding layer (default: found automatically)",
                                kind="str", metavar="NAME", cache_if_set=True)
    learning_rate: float = knob(1e-3, "FR learning rate", flat="fr_lr", kind="float+")
    nb_epochs: int = knob(2, "FR training epochs", flat="fr_epochs", kind="int+", metavar="E")


@dataclass
class FastATConfig(_SubConfig):
    """The Fast AT baseline: ART's ``AdversarialTrainerFBFPyTorch(eps=eps).fit(nb_epochs=nb_epochs)``."""

    PREFIX, SECTION = "fast_at", "eval"
    nb_epochs: int = knob(3, "Fast AT epochs", flat="fast_at_epochs", kind="int+", metavar="E")
    eps: Optional[float] = knob(None, "Fast AT training budget (0.3 grey-scale, 8/255 colour)", kind="eps")


@dataclass
class AdaptiveConfig(_SubConfig):
    """
    Adaptive training of the ID (not in the paper): :class:`art_idfr.training.AdaptiveDenoiserTrainer` keywords; it
    fine-tunes a copy of the Algorithm-1 ID against attacks through ID(+FR)+target (the ``idfr_adaptive`` defence).
    """

    PREFIX, SECTION = "adaptive", "idfr"
    eps: Optional[float] = knob(None, "inner-attack budget (default 16/255 grey-scale, 8/255 colour)", kind="eps")
    attack: str = knob("pgd", "inner attack: pgd (random start), fgsm_rs (one step; overfits to it) or n_fgsm "
                       "(one step from a 2-eps noise start, |delta| <= 3 eps; de Jorge et al. 2022)",
                       choices=ADAPTIVE_ATTACKS)
    max_iter: int = knob(5, "inner PGD steps", kind="int+", metavar="N")
    eps_step: Optional[float] = knob(None, "inner PGD step (default 2.5 eps / steps)", kind="float+")
    eps_warmup: float = knob(0.0, "fraction of the epochs over which eps rises linearly from 0", kind="float")
    trades_beta: float = knob(0.0, "beta of the TRADES-style KL term to a clean reference prediction (0 = off)",
                              kind="float")
    trades_reference: str = knob("target", "the KL term's reference: target (the frozen target's clean prediction) "
                                 "or defended (the defended classifier's own, and the inner PGD on that KL: TRADES)",
                                 choices=TRADES_REFERENCES, cache_if_set=True)
    adversarial_weight: float = knob(1.0, "weight of Eq. 3 on the online AEs (0 with trades_beta > 0: TRADES's loss)",
                                     kind="float", cache_if_set=True)
    clean_weight: float = knob(1.0, "weight of Eq. 3 on the clean images", kind="float")
    identity_weight: Optional[float] = knob(None, "weight of mean|ID(x) - x| on clean images (default: the ID's)",
                                            kind="float")
    fixed_weight: float = knob(1.0, "weight of Eq. 3 on Algorithm 1's fixed AEs of the bare target", kind="float")
    learning_rate: Optional[float] = knob(None, "Adam learning rate (default: the ID's / 10)", kind="float+")
    nb_epochs: int = knob(2, "adaptive training epochs", kind="int+", metavar="E")
    batch_size: Optional[int] = knob(None, "adaptive training batch size (default: --batch-size); smaller batches "
                                           "mean more steps for the same compute", kind="int+", metavar="B",
                                     cache_if_set=True)
    train_restorer: bool = knob(False, "also train the FR on the same loss", kind="bool")


#: The nested sub-configs of :class:`EvalConfig`: attribute -> class.
SUB_CONFIGS: Dict[str, type] = {"train": TrainConfig, "target": TargetConfig, "surrogate": SurrogateConfig,
                                "id": IDConfig, "fr": FRConfig, "idfr_source": SourceConfig, "fast_at": FastATConfig,
                                "adaptive": AdaptiveConfig}


def _sub(cls: type):
    return field(default_factory=cls, metadata={"sub_config": True})


@dataclass(init=False)
class EvalConfig:
    """
    Every knob of an IDFR evaluation run. Build it with :meth:`preset` and override what you need.

    Sub-configs (nested dataclasses whose field names are the keyword names of what they feed, so
    ``IDFRDenoiser(**cfg.id.kwargs(), ...)`` needs no renaming):

    * ``train`` (:class:`TrainConfig`: ``batch_size``, ``lr``, ``optimizer``, ``augment`` of ``train_model``),
    * ``target`` (:class:`TargetConfig`: ``model``, ``width``, ``epochs``),
    * ``surrogate`` (:class:`SurrogateConfig`: the black-box source model),
    * ``id`` (:class:`IDConfig`: ``IDFRDenoiser`` keywords), ``fr`` (:class:`FRConfig`: ``FeatureRestorer`` keywords),
    * ``idfr_source`` (:class:`SourceConfig`: extra AE sources of the ID / FR training AEs),
    * ``fast_at`` (:class:`FastATConfig`: ``nb_epochs``, ``eps``),
    * ``adaptive`` (:class:`AdaptiveConfig`: ``AdaptiveDenoiserTrainer`` keywords; the ``idfr_adaptive`` defence).

    Flat names: every sub-config field also has a flat name, ``<group>_<field>`` unless its metadata says otherwise
    (``id.nb_epochs`` -> ``id_epochs``, ``id.learning_rate`` -> ``id_lr``, ``id.gaussian_sigma`` -> ``id_sigma``,
    ``fr.learning_rate`` -> ``fr_lr``, ``fr.nb_epochs`` -> ``fr_epochs``, ``target.model`` -> ``model``,
    ``target.width`` -> ``width``, ``fast_at.nb_epochs`` -> ``fast_at_epochs``; the ``train`` fields keep their names:
    ``batch_size``, ``lr``, ...). A flat name is a read-only attribute (``cfg.id_epochs``), an override keyword
    (``EvalConfig.preset("cpu", id_epochs=2)``, the same as ``id=dict(nb_epochs=2)``) and a CLI flag
    (``--id-epochs``, next to the generated ``--id-nb-epochs``).

    Top-level fields (the evaluation protocol)
        ``dataset``, ``data_root``, ``download``: passed to :func:`art_idfr.experiments.data.load_dataset`.
        ``train_size`` / ``test_size``: stratified subsets (``None`` = all).
        ``val_n``: images split off the training set for model selection (never the test set).
        ``fit_n``: training images used to fit the ID and FR (``None`` = all). ``idfr_attacks`` / ``idfr_eps``: the
        ART attacks (on the bare target and the extra AE sources) crafting their training AEs.
        ``fs_bit_depth`` (Feature Squeezing; ``None``: 4 for grey-scale, 5 for colour), JPEG via the defence keys
        ``jpeg<quality>`` (default 25, 50, 75),
        ``tvm_prob`` / ``tvm_lamb`` / ``tvm_max_iter`` (TotalVarMin; ART's default ``lamb=0.5`` flattens 28x28
        digits to ~20% accuracy, 0.05 keeps ~92% on MNIST-5k validation), ``smoothing_window`` (SpatialSmoothing).
        ``defences``, ``threat_models``, ``attacks`` (FGSM / CW / BIM / PGD / AutoAttack), ``eps`` (``None``: 4, 8,
        16/255 plus 0.3 for grey-scale or 32/255 for colour). ``eval_n`` test images for clean / black-box / gray-box;
        ``whitebox_n`` of them for the adaptive white-box attacks; ``query_n`` and ``query_iter`` for Square.
        ``attack_iter`` / ``eps_step``: BIM and CW iterations and step (paper: 20, 0.03).
        ``eot_samples``: white-box gradients of a randomised defence (TotalVarMin's random pixel mask) are averaged
        over this many draws (BPDA + EOT, Athalye et al. 2018); 1 = a single draw per step.
        ``sanity_eps``: budget of the "undefended white-box BIM must reach ~0%" check.
        ``seed``, ``device`` (``auto`` | ``cpu`` | ``cuda``), ``attack_batch_size``.
    """

    # data (the common CLI options --dataset, --data-root, --download are written by hand)
    dataset: str = knob("mnist5k", "dataset name", cli=False)
    data_root: Optional[str] = knob(None, "dataset folder / file", cli=False)
    download: bool = knob(False, "let torchvision download", cli=False)
    train_size: Optional[int] = knob(None, "stratified training subset", kind="int+", metavar="N", section="data")
    test_size: Optional[int] = knob(None, "stratified test subset", kind="int+", metavar="N", section="data")
    val_n: int = knob(500, "validation images split off the training set", kind="int+", metavar="N", section="data")
    image_size: Optional[int] = knob(None, "ImageFolder datasets: resize the shorter side to size / 0.875 and "
                                           "centre-crop size x size (224: ResNet-50, 299: Inception-v3; default: "
                                           "the images as they are)", kind="int+", metavar="S", section="data")
    # models
    train: TrainConfig = _sub(TrainConfig)
    target: TargetConfig = _sub(TargetConfig)
    surrogate: SurrogateConfig = _sub(SurrogateConfig)
    # IDFR
    id: IDConfig = _sub(IDConfig)
    fr: FRConfig = _sub(FRConfig)
    fit_n: Optional[int] = knob(1200, "training images used to fit ID and FR", kind="int+", metavar="N",
                                section="idfr")
    idfr_attacks: Tuple[str, ...] = knob(("fgsm", "bim"), "attacks crafting the IDFR training AEs (default fgsm,bim; "
                                                         f"valid: {', '.join(ATTACK_NAMES)})",
                                         kind="attack_list", metavar="LIST", section="idfr")
    idfr_eps: Optional[Tuple[float, ...]] = knob(None, "budgets of the IDFR training AEs (default 0.1,0.3 grey-scale; "
                                                       "8/255,16/255 colour)", kind="eps_list", metavar="LIST",
                                                 section="idfr")
    idfr_source: SourceConfig = _sub(SourceConfig)
    adaptive: AdaptiveConfig = _sub(AdaptiveConfig)
    adaptive_fit_n: Optional[int] = knob(None, "training images of adaptive training (default: fit_n)", kind="int+",
                                         metavar="N", section="idfr")
    adaptive_restarts: Tuple[int, ...] = knob((), "warm restarts after the adaptive fit: the epochs of each further "
                                                  "one-cycle run from the weights reached, e.g. 1 or 1,1 (default: "
                                                  "none)", kind="int+_list", metavar="LIST", section="idfr")
    adaptive_curriculum_eps: Tuple[float, ...] = knob(
        (), "an eps curriculum across the warm restarts: the budgets of the first fit and of every restart but the "
            "last, which trains at adaptive_eps; one per restart, e.g. 2/255,4/255 with --adaptive-restarts 1,1 "
            "(default: adaptive_eps throughout); a run at a curriculum budget hands its best trained epoch on, "
            "never its start", kind="eps_list", metavar="LIST", section="idfr")
    # baselines
    fs_bit_depth: Optional[int] = knob(None, "Feature Squeezing bit depth (4 / 5)", kind="int+", section="eval")
    tvm_prob: float = knob(0.3, "TotalVarMin pixel-keeping probability (0.3)", kind="float+", section="eval")
    tvm_lamb: float = knob(0.05, "TotalVarMin lambda (0.05; ART's default 0.5)", kind="float+", section="eval")
    tvm_max_iter: int = knob(10, "TotalVarMin solver iterations", kind="int+", section="eval")
    smoothing_window: int = knob(2, "SpatialSmoothing window (2)", kind="int+", section="eval")
    fast_at: FastATConfig = _sub(FastATConfig)
    # evaluation
    defences: Tuple[str, ...] = knob(DEFENCES, f"defences to compare (default all: {','.join(DEFENCES)}; jpeg<q> "
                                               "for any quality)", kind="defence_list", metavar="LIST",
                                     section="eval")
    threat_models: Tuple[str, ...] = knob(THREAT_MODELS, f"threat models (default all: {','.join(THREAT_MODELS)})", kind="threat_list", metavar="LIST",
                                          section="eval")
    attacks: Tuple[str, ...] = knob(("fgsm", "cw", "bim"), "attacks of the black/gray/white-box tables (default "
                                    f"fgsm,cw,bim; valid: {', '.join(ATTACKS)})",
                                    kind="table_attack_list", metavar="LIST", section="eval")
    autoattack_defences: Tuple[str, ...] = knob(
        ("none", "id", "idfr", "idfr_adaptive", "fast_at"), "defences AutoAttack (--attacks ...,autoattack) attacks "
        "in the white-box table (default none,id,idfr,idfr_adaptive,fast_at; through a NumPy defence it runs on "
        "BPDA gradients and is slow)", kind="defence_list", metavar="LIST", section="eval")
    eps: Optional[Tuple[float, ...]] = knob(None, "L-inf budgets in (0, 1], e.g. 4/255,8/255,16/255,0.3 (default: "
                                                  "that for grey-scale, 32/255 instead of 0.3 for colour)",
                                            kind="eps_list", metavar="LIST", section="eval")
    eval_n: int = knob(500, "test images (clean, black-box, gray-box)", kind="int+", metavar="N", section="eval")
    # the demo's budget: BPDA+EOT through TotalVarMin is most of its white-box time
    whitebox_n: int = knob(50, "images for the white-box attacks", kind="int+", metavar="N", section="eval")
    query_n: int = knob(50, "images for the query attack", kind="int+", metavar="N", section="eval")
    query_iter: int = knob(25, "SquareAttack iterations", kind="int+", metavar="N", section="eval")
    attack_iter: int = knob(20, "BIM / CW iterations (paper: 20)", kind="int+", metavar="N", section="eval")
    eps_step: float = knob(0.03, "BIM / CW step, capped at eps (paper: 0.03)", kind="float+", section="eval")
    eot_samples: int = knob(4, "white-box attacks on a randomised defence (TotalVarMin) average gradients over N "
                               "draws (EOT; 4)", kind="int+", section="eval")
    autoattack_transfer: bool = knob(False, "also craft AutoAttack on the black-/gray-box sources (off: it is a "
                                     "white-box table attack; on a CPU it costs minutes per 1,000 images)",
                                     kind="bool", section="eval")
    autoattack_restarts: int = knob(5, "random restarts of AutoAttack's APGD-CE and APGD-DLR (5, ART's default)",
                                    kind="int+", metavar="N", section="eval")
    autoattack_square_iter: int = knob(5000, "Square queries inside AutoAttack (5000, one restart)", kind="int+",
                                       metavar="N", section="eval")
    sanity_square_iter: int = knob(1000, "Square queries of the gradient-masking check (1000)", kind="int+",
                                   metavar="N", section="eval")
    sanity_eps: float = knob(0.5, "budget of the undefended white-box sanity check (0.5)", kind="eps", section="eval")
    attack_batch_size: int = knob(128, "batch size of attacks and predictions (128; larger is faster on a GPU)",
                                  kind="int+", metavar="B", section="eval")
    # run (the common CLI options --seed, --device)
    seed: int = knob(0, "random seed", cli=False)
    device: str = knob("auto", "auto (CUDA if available), cpu or cuda", cli=False)
    preset_name: str = knob("custom", cli=False, repr=False)

    def __init__(self, **values: Any) -> None:
        """
        Keyword arguments: top-level fields, sub-configs (an instance or a dict of some of its fields) and flat names
        (``id_epochs=2``, applied on top of the sub-config). Everything is validated.
        """
        values = _nested(values)
        for f in dataclasses.fields(self):
            if f.metadata.get("sub_config"):
                part = values.pop(f.name, {})
                setattr(self, f.name, SUB_CONFIGS[f.name](**part))
            elif f.name in values:
                setattr(self, f.name, values.pop(f.name))
            else:
                setattr(self, f.name, f.default_factory() if f.default is dataclasses.MISSING else f.default)
        self.validate()

    # ------------------------------------------------------------------ presets
    @classmethod
    def preset(cls, name: str = "cpu", **overrides: Any) -> "EvalConfig":
        """
        A named preset with ``overrides`` applied (``None`` values are ignored, so CLI defaults can be passed as is).
        Overrides take top-level names, flat names (``id_epochs=2``) or sub-config dicts (``id=dict(nb_epochs=2)``,
        merged into the preset's values; a sub-config instance replaces them).

        * ``cpu`` -- the README demo: MNIST-5k (no download), small CNN at width 0.5 (4 epochs), ID width 0.5
          (3 epochs on 1200 training images), 500 eval images, 100 for white-box, 50 for the query attack (25 Square
          iterations); 9-10 minutes on one thread of a busy 2-core machine.
        * ``paper`` -- the paper's protocol at full scale: CIFAR-10 (torchvision download; ``cifar10_jpeg`` offline),
          ResNet-18 target, VGG-16-BN surrogate, ID width 1 / 100 epochs, FR 80 epochs, the full test set, 1000
          white-box and 500 query images (a GPU job).
        * ``tiny`` -- smoke tests only (~30 s on one core): 2000 training images, a quarter-width CNN, 1-3 epochs,
          40 / 16 / 8 evaluation images, 3 attack iterations; the numbers mean little.
        """
        key = str(name).strip().lower()
        if key not in PRESETS:
            raise ValueError(f"Unknown preset {name!r}. Valid presets: {', '.join(PRESETS)}.")
        values = _merge(_nested(PRESETS[key]), _nested({k: v for k, v in overrides.items() if v is not None}))
        values["preset_name"] = key
        return cls(**values)

    def replace(self, **changes: Any) -> "EvalConfig":
        """A copy with ``changes`` applied (validated); the same keywords as :meth:`preset`'s overrides."""
        current = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return type(self)(**_merge(_nested(current), _nested(changes)))

    # ------------------------------------------------------------------ derived values
    def resolved(self, channels: int) -> "EvalConfig":
        """
        A copy whose dataset-dependent ``None`` fields are filled for images with ``channels`` channels
        (1 = grey-scale MNIST-like, otherwise colour).
        """
        grey = channels == 1
        return self.replace(
            eps=self.eps if self.eps is not None else ((4 / 255, 8 / 255, 16 / 255, 0.3) if grey
                                                       else (4 / 255, 8 / 255, 16 / 255, 32 / 255)),
            idfr_eps=self.idfr_eps if self.idfr_eps is not None else ((0.1, 0.3) if grey else (8 / 255, 16 / 255)),
            fs_bit_depth=self.fs_bit_depth if self.fs_bit_depth is not None else (4 if grey else 5),
            fast_at_eps=self.fast_at.eps if self.fast_at.eps is not None else (0.3 if grey else 8 / 255),
            adaptive_eps=self.adaptive.eps if self.adaptive.eps is not None else (16 / 255 if grey else 8 / 255),
            surrogate_model=self.surrogate.model or self.target.model,
            surrogate_width=self.surrogate.width if self.surrogate.width is not None else self.target.width,
        )

    @property
    def device_type(self) -> str:
        """ART's ``device_type`` for this run's ``device``: ``"cpu"`` or ``"gpu"`` (CUDA)."""
        return "cpu" if self.device == "cpu" else "gpu"

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready dictionary of every field, sub-configs as nested dictionaries."""
        return _lists(dataclasses.asdict(self))

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Normalise names and raise ``ValueError`` for any invalid value, naming the valid options."""
        self._check_names()
        self._check_protocol_lists()
        self._check_budgets()
        self._check_counts()
        _check_model_widths(self)
        _check_weights(self)
        _check_sources(self)
        _check_training(self.train)
        _check_id(self.id, self.fr)
        self._check_baselines()
        self._check_run()

    def _check_names(self) -> None:
        from art_idfr.experiments.data import DATASET_NAMES

        if str(self.dataset).lower() not in DATASET_NAMES:
            raise ValueError(f"Unknown dataset {self.dataset!r}. Valid names: {', '.join(DATASET_NAMES)}.")
        self.dataset = str(self.dataset).lower()
        self.target.model = _model_name(self.target.model, "model")
        if self.surrogate.model is not None:
            self.surrogate.model = _model_name(self.surrogate.model, "surrogate_model")
        if self.idfr_source.model is not None:
            names = _as_tuple(self.idfr_source.model, "idfr_source_model")
            self.idfr_source.model = tuple(_model_name(v, "idfr_source_model") for v in names) or None

    def _check_protocol_lists(self) -> None:
        self.defences = _unique(canonical_defence(d) for d in _as_tuple(self.defences, "defences"))
        self.threat_models = _unique(canonical_threat_model(t) for t in _as_tuple(self.threat_models, "threat_models"))
        self.attacks = _unique(canonical_attack(a) for a in _as_tuple(self.attacks, "attacks"))
        self.autoattack_defences = _unique(canonical_defence(d) for d in _as_tuple(self.autoattack_defences,
                                                                                   "autoattack_defences"))
        self.idfr_attacks = tuple(_as_tuple(self.idfr_attacks, "idfr_attacks"))
        for a in self.idfr_attacks:
            if str(a).lower() not in ATTACK_NAMES:
                raise ValueError(f"Unknown attack {a!r} in idfr_attacks. Valid names: {', '.join(ATTACK_NAMES)}.")
        self.idfr_attacks = tuple(str(a).lower() for a in self.idfr_attacks)
        if not self.defences:
            raise ValueError("`defences` is empty.")
        if not self.threat_models:
            raise ValueError("`threat_models` is empty.")
        if not self.attacks and set(self.threat_models) - {"query"}:
            raise ValueError("`attacks` is empty.")

    def _check_budgets(self) -> None:
        if self.eps is not None:
            self.eps = tuple(sorted(_unique(parse_eps(e) for e in _as_tuple(self.eps, "eps"))))
            if not self.eps:
                raise ValueError("`eps` is empty.")
        if self.idfr_eps is not None:
            self.idfr_eps = tuple(parse_eps(e) for e in _as_tuple(self.idfr_eps, "idfr_eps"))
        if self.fast_at.eps is not None:
            self.fast_at.eps = parse_eps(self.fast_at.eps)
        self.sanity_eps = parse_eps(self.sanity_eps)
        self.eps_step = float(self.eps_step)
        if not self.eps_step > 0:
            raise ValueError(f"`eps_step` must be positive, got {self.eps_step}.")

    def _check_counts(self) -> None:
        for name in ("val_n", "idfr_source_epochs", "idfr_source_seed_offset",
                     "batch_size", "id_epochs", "fr_epochs", "fast_at_epochs", "eval_n", "whitebox_n", "query_n",
                     "query_iter", "attack_iter", "attack_batch_size", "tvm_max_iter", "smoothing_window",
                     "eot_samples"):
            _require_positive_int(getattr(self, name), name)
        for name in ("train_size", "test_size", "fit_n", "image_size"):
            if getattr(self, name) is not None:
                _require_positive_int(getattr(self, name), name)
        self.adaptive_restarts = _int_tuple(self.adaptive_restarts, "adaptive_restarts")
        for epochs in self.adaptive_restarts:
            _require_positive_int(epochs, "adaptive_restarts")
        self._check_curriculum()
        if self.whitebox_n > self.eval_n or self.query_n > self.eval_n:
            raise ValueError(
                f"whitebox_n ({self.whitebox_n}) and query_n ({self.query_n}) must not exceed eval_n ({self.eval_n}):"
                " they are subsets of the evaluation images."
            )

    def _check_curriculum(self) -> None:
        self.adaptive_curriculum_eps = tuple(parse_eps(e) for e in _as_tuple(self.adaptive_curriculum_eps,
                                                                              "adaptive_curriculum_eps"))
        if self.adaptive_curriculum_eps and len(self.adaptive_curriculum_eps) != len(self.adaptive_restarts):
            raise ValueError(
                f"`adaptive_curriculum_eps` gives {len(self.adaptive_curriculum_eps)} budget(s) for "
                f"{len(self.adaptive_restarts)} warm restart(s): it needs one per restart (the first fit and every "
                "restart but the last; the last trains at adaptive_eps), e.g. adaptive_restarts=1,1 with "
                "adaptive_curriculum_eps=2/255,4/255.")

    def adaptive_stage_eps(self) -> Tuple[Optional[float], ...]:
        """The inner-attack budget of each adaptive run: the first fit, then every warm restart (the last one's is
        ``adaptive_eps``; without a curriculum, ``adaptive_eps`` throughout)."""
        curriculum = self.adaptive_curriculum_eps or (self.adaptive.eps,) * len(self.adaptive_restarts)
        return (*curriculum, self.adaptive.eps)

    def _check_baselines(self) -> None:
        if self.fs_bit_depth is not None and not 1 <= int(self.fs_bit_depth) <= 64:
            raise ValueError(f"`fs_bit_depth` must be in [1, 64], got {self.fs_bit_depth}.")
        if not self.tvm_lamb > 0:
            raise ValueError(f"`tvm_lamb` must be positive, got {self.tvm_lamb}.")
        if not 0.0 < self.tvm_prob <= 1.0:
            raise ValueError(f"`tvm_prob` must be in (0, 1], got {self.tvm_prob}.")

    def _check_run(self) -> None:
        if self.device not in DEVICES:
            raise ValueError(f"Unknown device {self.device!r}. Valid: {', '.join(DEVICES)}.")
        if self.device == "cuda":
            import torch

            if not torch.cuda.is_available():
                raise ValueError("device='cuda' was requested but CUDA is not available; use --device cpu or auto.")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"`seed` must be a non-negative int, got {self.seed!r}.")


# ----------------------------------------------------------------------------------------------------------------------
# flat names
# ----------------------------------------------------------------------------------------------------------------------


def flat_fields() -> Dict[str, Tuple[Optional[str], dataclasses.Field]]:
    """
    Every knob by its flat name: ``{flat name: (sub-config attribute or None for a top-level field, field)}``, in
    field order (sub-config fields where their sub-config sits).
    """
    out: Dict[str, Tuple[Optional[str], dataclasses.Field]] = {}
    for f in dataclasses.fields(EvalConfig):
        if f.metadata.get("sub_config"):
            cls = SUB_CONFIGS[f.name]
            for g in dataclasses.fields(cls):
                out[cls.flat_name(g)] = (f.name, g)
        else:
            out[f.name] = (None, f)
    return out


def _flat_property(group: str, name: str) -> property:
    return property(lambda self: getattr(getattr(self, group), name),
                    doc=f"``{group}.{name}`` (read-only flat name; set it with ``replace``).")


_FLAT = flat_fields()
for _flat, (_group, _f) in _FLAT.items():
    if _group is not None:
        setattr(EvalConfig, _flat, _flat_property(_group, _f.name))


def _nested(values: Dict[str, Any]) -> Dict[str, Any]:
    """Keyword arguments with flat names folded into sub-config dicts (``id_epochs=2`` -> ``id={"nb_epochs": 2}``);
    sub-config instances become dicts of all their fields. ``ValueError`` for unknown names."""
    out: Dict[str, Any] = {}
    flat: Dict[str, Any] = {}
    for key, value in values.items():
        if key in SUB_CONFIGS:
            out[key] = _sub_dict(key, value)
        elif key in _FLAT and _FLAT[key][0] is None:
            out[key] = value
        elif key in _FLAT:
            flat[key] = value
        else:
            raise ValueError(f"Unknown EvalConfig field(s) {[key]}.")
    for key, value in flat.items():  # applied on top of a sub-config given as a whole
        group, f = _FLAT[key]
        out.setdefault(group, {})[f.name] = value
    return out


def _sub_dict(group: str, value: Any) -> Dict[str, Any]:
    cls = SUB_CONFIGS[group]
    if isinstance(value, cls):
        return value.kwargs()
    if not isinstance(value, dict):
        raise ValueError(f"`{group}` must be a {cls.__name__} or a dict of its fields, got {value!r}.")
    unknown = sorted(set(value) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise ValueError(f"Unknown {cls.__name__} field(s) {unknown} in `{group}`. Valid: "
                         f"{', '.join(f.name for f in dataclasses.fields(cls))}.")
    return dict(value)


def _merge(base: Dict[str, Any], top: Dict[str, Any]) -> Dict[str, Any]:
    """``base`` updated by ``top``, sub-config dicts merged field by field."""
    out = dict(base)
    for key, value in top.items():
        out[key] = {**out.get(key, {}), **value} if key in SUB_CONFIGS else value
    return out


def _lists(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _lists(v) for k, v in value.items()}
    return list(value) if isinstance(value, tuple) else value


# ----------------------------------------------------------------------------------------------------------------------
# checks of the sub-configs
# ----------------------------------------------------------------------------------------------------------------------


def _model_name(value: Any, what: str) -> str:
    from art_idfr._names import MODEL_NAMES

    if str(value).lower() not in MODEL_NAMES:
        raise ValueError(f"Unknown model {value!r} ({what}). Valid names: {', '.join(MODEL_NAMES)}.")
    return str(value).lower()


def _check_model_widths(cfg: EvalConfig) -> None:
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


def _check_weights(cfg: EvalConfig) -> None:
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


def _check_sources(cfg: EvalConfig) -> None:
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


#: Preset values (every other field keeps its dataclass default, which is the ``cpu`` preset).
PRESETS: Dict[str, Dict[str, Any]] = {
    "cpu": {},
    "paper": {
        "dataset": "cifar10",
        "val_n": 2000,
        "target": {"model": "resnet18_cifar", "width": 1.0, "epochs": 60},
        "surrogate": {"model": "vgg16_bn_cifar", "epochs": 40},
        "id": {"width": 1.0, "nb_epochs": 100, "learning_rate": 1e-3, "gaussian_sigma": 0.05},
        "fr": {"nb_epochs": 80},
        "fit_n": None,
        "fast_at": {"nb_epochs": 15},
        "eps": (4 / 255, 8 / 255, 16 / 255),
        "eval_n": 10000,
        "whitebox_n": 1000,
        "query_n": 500,
        "query_iter": 1000,
        "attack_batch_size": 256,
    },
    "tiny": {
        "train_size": 2000,
        "test_size": 100,
        "val_n": 100,
        "target": {"width": 0.25, "epochs": 3},
        "surrogate": {"epochs": 2},
        "id": {"width": 0.25, "nb_epochs": 1},
        "fr": {"nb_epochs": 1},
        "fit_n": 100,
        "idfr_attacks": ("fgsm",),
        "fast_at": {"nb_epochs": 1},
        "adaptive": {"nb_epochs": 1, "max_iter": 2},
        "sanity_square_iter": 20,
        "autoattack_square_iter": 20,
        "tvm_max_iter": 2,
        "eval_n": 40,
        "whitebox_n": 16,
        "query_n": 8,
        "query_iter": 5,
        "attack_iter": 3,
    },
}
