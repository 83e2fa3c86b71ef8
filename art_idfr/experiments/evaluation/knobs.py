"""
The pieces of :class:`~art_idfr.experiments.evaluation.config.EvalConfig`: :func:`knob` (a dataclass field with the
metadata the command line and the caches read: ``--help`` text, flat name, argument kind, section, ...) and the
nested sub-configs (``TrainConfig``, ``TargetConfig``, ``SurrogateConfig``, ``SourceConfig``, ``IDConfig``,
``FRConfig``, ``FastATConfig``, ``AdaptiveConfig``, ``InnerConfig``, ``BaselinesConfig``), each a dataclass whose
field names are the keyword names of the library constructor / training function it feeds, collected in
:data:`SUB_CONFIGS`.
:mod:`~art_idfr.experiments.evaluation.config` re-exports every name.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple, Union

from art_idfr._names import ADAPTIVE_ATTACKS, AUGMENTATIONS, INNER_KINDS, TRADES_REFERENCES
from art_idfr.experiments.choices import ID_ARCHITECTURES, ID_LOSSES, OPTIMIZERS, RESIDUAL_HEADS

__all__ = [
    "knob",
    "TrainConfig",
    "TargetConfig",
    "SurrogateConfig",
    "SourceConfig",
    "IDConfig",
    "FRConfig",
    "FastATConfig",
    "AdaptiveConfig",
    "InnerConfig",
    "BaselinesConfig",
    "SUB_CONFIGS",
    "sub_config_dict",
    "merge_sub_configs",
    "as_lists",
]


#: ``adaptive_autocast`` values (``none``: float32, the field's ``None``)
AUTOCAST_CHOICES = ("none", "bf16")
#: where SOAP's joint training starts (``baselines_soap_init``): a fresh network, or a copy of the trained target
SOAP_INITS = ("scratch", "target")
#: learning-rate schedules of SOAP's joint training (``baselines_soap_lr_schedule``): those of
#: ``art_idfr.experiments.baselines.training.LR_SCHEDULES`` (not imported here: the parser loads no torch; a test
#: checks they agree)
SOAP_LR_SCHEDULES = ("constant", "cosine")


def knob(default: Any = dataclasses.MISSING, help: str = "", *, flat: Optional[str] = None, kind: Optional[str] = None,
         choices: Optional[Tuple[str, ...]] = None, metavar: Optional[str] = None, cli: bool = True,
         section: Optional[str] = None, cache_if_set: bool = False, **kwargs: Any):
    """
    A config field with the metadata the command line and the caches read:

    :param help: ``--help`` text of its flag.
    :param flat: its flat name (override keyword, read-only attribute of :class:`EvalConfig`, ``dest`` and legacy
        flag ``--flat-name``), when not ``<group>_<field>``.
    :param kind: argument type of its flag (a key of ``art_idfr.experiments.cli_args._arg_types()``).
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
    # (added after adaptive caches existed: in a cache key or resume fingerprint only when set)
    train_denoiser: bool = knob(True, "train the ID (--no-adaptive-train-denoiser: keep the Algorithm-1 ID fixed in "
                                      "front; then the FR or, for idfr_inner, the inner restorers train)",
                                kind="bool", cache_if_set=True)
    autocast: Optional[str] = knob(None, "bf16: the inner attack and the update's forward passes under bfloat16 "
                                         "autocast (about 1.7-1.9x on CPUs with AVX-512 BF16, about 2.7x slower on CPUs "
                                         "without it; validation in float32); "
                                         "none: float32", choices=AUTOCAST_CHOICES, cache_if_set=True)
    channels_last: bool = knob(False, "images (and the ID's weights during the fit) in channels-last memory layout "
                                      "(with bf16 a further 1.1-1.2x on such CPUs)", kind="bool", cache_if_set=True)
    keep_start: bool = knob(True, "the starting weights compete in the best-epoch choice on validation ((clean + PGD) "
                                  "/ 2); --no-adaptive-keep-start: the best trained epoch is kept (the start is the "
                                  "undefended row already)", kind="bool", cache_if_set=True)

    def __post_init__(self) -> None:
        if isinstance(self.autocast, str) and self.autocast.strip().lower() in ("none", ""):
            self.autocast = None  # the flag's spelling of float32
        if self.autocast is not None:
            if str(self.autocast).strip().lower() not in AUTOCAST_CHOICES:
                raise ValueError(f"Unknown adaptive_autocast {self.autocast!r}. Valid: {', '.join(AUTOCAST_CHOICES)}.")
            self.autocast = str(self.autocast).strip().lower()


@dataclass
class InnerConfig(_SubConfig):
    """
    Restorers inside the frozen target (not in the paper): :class:`art_idfr.InnerRestorer` keywords (``kind``,
    ``rank``, ``width``, ``layers``) of the opt-in ``idfr_inner`` defence, built on the target and trained along with
    the ID (and the FR per ``adaptive_train_restorer``) by the adaptive recipe of ``adaptive``; ``alone`` (not an
    ``InnerRestorer`` keyword: :meth:`kwargs` leaves it out) chooses ``defend(target, None, None, inner=...)``, the
    restorers without the ID and the FR. Checked on construction.
    """

    PREFIX, SECTION = "inner", "idfr"
    kind: str = knob("lora", "restorers inside the target for idfr_inner (not in the paper): lora (low-rank weight "
                             "deltas on every Conv2d / Linear) or adapter (zero-initialised residual bottlenecks after "
                             "each residual block, else each max-pool)", choices=INNER_KINDS)
    rank: int = knob(4, "rank of each low-rank delta (--inner-kind lora), capped per layer at its full rank",
                     kind="int+", metavar="R")
    ranks: Optional[Dict[str, int]] = knob(None, "per-layer ranks overriding --inner-rank, NAME=R comma-separated "
                                                 "(module names of the target; --inner-kind lora)", kind="str",
                                           metavar="NAME=R,...", cache_if_set=True)
    width: float = knob(0.25, "adapter bottleneck channels as a fraction of the module's (--inner-kind adapter)",
                        kind="float+", metavar="W")
    layers: Optional[Tuple[str, ...]] = knob(None, "module names of the target to act at, comma-separated (default: "
                                                   "the kind's default places per architecture)", kind="str",
                                             metavar="LIST")
    norm_affine: bool = knob(False, "also a zero-initialised per-channel scale and shift delta on every BatchNorm "
                                    "of the target (its running statistics stay frozen)", kind="bool",
                             cache_if_set=True)
    alone: bool = knob(False, "the restorers inside the target alone: no ID in front and no FR (the rows of the "
                              "validation curve, benchmarks/NOTES.md); default: with the ID and the FR around them",
                       kind="bool", cache_if_set=True)

    def __post_init__(self) -> None:
        kind = str(self.kind).strip().lower()
        if kind not in INNER_KINDS:
            raise ValueError(f"Unknown inner_kind {self.kind!r}. Valid: {', '.join(INNER_KINDS)}.")
        self.kind = kind
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 1:
            raise ValueError(f"`inner_rank` must be a positive int, got {self.rank!r}.")
        if isinstance(self.width, bool) or not isinstance(self.width, (int, float)) or not self.width > 0:
            raise ValueError(f"`inner_width` must be a positive number, got {self.width!r}.")
        self.width = float(self.width)
        self.alone, self.norm_affine = bool(self.alone), bool(self.norm_affine)
        self.ranks = parse_inner_ranks(self.ranks)
        if self.layers is not None:
            names = self.layers.split(",") if isinstance(self.layers, str) else self.layers
            if not isinstance(names, (list, tuple)):
                raise ValueError(f"`inner_layers` must be module names (a list or a comma-separated string), got "
                                 f"{self.layers!r}.")
            self.layers = tuple(str(n).strip() for n in names if str(n).strip())
            if not self.layers:
                raise ValueError("`inner_layers` names no module: give module names, or leave it unset for the "
                                 "default places.")

    def kwargs(self) -> Dict[str, Any]:
        """The :class:`art_idfr.InnerRestorer` keywords (every field but ``alone``)."""
        return {k: v for k, v in super().kwargs().items() if k != "alone"}


def parse_inner_ranks(value: Any) -> Optional[Dict[str, int]]:
    """``inner_ranks`` as ``{module name: rank}``: a dict, or ``"NAME=R,NAME=R"`` (``ValueError`` for anything else)."""
    if value is None or value == "" or value == {}:
        return None
    if isinstance(value, str):
        pairs = [p.partition("=") for p in value.split(",") if p.strip()]
        if any(not sep or not name.strip() for name, sep, _ in pairs):
            raise ValueError(f"`inner_ranks` must be NAME=R pairs, comma-separated; got {value!r}.")
        try:
            value = {name.strip(): int(rank) for name, _, rank in pairs}
        except ValueError:
            raise ValueError(f"`inner_ranks` must be NAME=R with R an int; got {value!r}.") from None
    from art_idfr.inner import check_ranks  # here, not at the top: the parser must not load torch

    try:
        return check_ranks(value)
    except ValueError:
        raise ValueError(f"`inner_ranks` must map module names to positive ints; got {value!r}.") from None


@dataclass
class BaselinesConfig(_SubConfig):
    """
    Training scale of the paper's purification baselines (the opt-in defences ``comdefend``, ``nrp``, ``adp``,
    ``soap`` of :mod:`art_idfr.experiments.baselines`; their other settings are the library's CPU preset), read by
    :func:`~art_idfr.experiments.evaluation.pipeline.baselines.train_baselines`. Checked on construction.
    """

    PREFIX, SECTION = "baselines", "eval"
    nb_epochs: Optional[int] = knob(None, "epochs of the ComDefend / NRP / ADP networks (opt-in defences comdefend, "
                                          "nrp, adp; default: each one's own CPU preset)",
                                    flat="baselines_epochs", kind="int+", metavar="E")
    fit_n: Optional[int] = knob(None, "training images of the ComDefend / NRP / ADP networks (default: fit_n)",
                                kind="int+", metavar="N")
    soap_epochs: Optional[int] = knob(None, "SOAP: epochs retraining the target architecture with its rotation head "
                                            "on the whole training set (default: the target's epochs)", kind="int+",
                                      metavar="E")
    soap_eps: Optional[float] = knob(None, "SOAP: L-inf radius of the test-time purification (default 0.1 grey-scale, "
                                           "8/255 colour)", kind="eps")
    soap_steps: int = knob(5, "SOAP: purification steps", kind="int+", metavar="N")
    soap_init: str = knob("scratch", "SOAP: start the joint training from a fresh network (scratch, the paper's) or "
                                     "from a copy of the target's trained weights (target: a fine-tune, far fewer "
                                     "epochs; the target itself is not changed)", kind="str",
                          choices=SOAP_INITS)
    soap_lr_schedule: str = knob("constant", "SOAP: learning rate of the joint training, constant (the paper's) or "
                                             "cosine (annealed to 0 over the fit)", kind="str",
                                 choices=SOAP_LR_SCHEDULES)
    comdefend: Optional[str] = knob(None, "ComDefend constructor arguments, key=value,... (e.g. width=0.5; default: "
                                          "its CPU preset)", kind="str", metavar="K=V,...")
    nrp: Optional[str] = knob(None, "NRP constructor arguments, key=value,... (default: its CPU preset)", kind="str",
                              metavar="K=V,...")
    adp: Optional[str] = knob(None, "ADP constructor arguments, key=value,... (e.g. architecture=unet,noise_std=0.1; "
                                    "default: its CPU preset)", kind="str", metavar="K=V,...")

    def __post_init__(self) -> None:
        from art_idfr.experiments.evaluation.names import parse_eps

        for name in ("nb_epochs", "fit_n", "soap_epochs", "soap_steps"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"`{self.flat_name(_field(type(self), name))}` must be a positive int, got {value!r}.")
        if self.soap_eps is not None:
            self.soap_eps = parse_eps(self.soap_eps)
        if self.soap_init not in SOAP_INITS:
            raise ValueError(f"Unknown baselines_soap_init {self.soap_init!r}. Valid: {', '.join(SOAP_INITS)}.")
        if self.soap_lr_schedule not in SOAP_LR_SCHEDULES:
            raise ValueError(f"Unknown baselines_soap_lr_schedule {self.soap_lr_schedule!r}. "
                             f"Valid: {', '.join(SOAP_LR_SCHEDULES)}.")
        for name in ("comdefend", "nrp", "adp"):
            self.constructor_args(name)  # raises on a malformed or unknown argument

    def constructor_args(self, key: str) -> Dict[str, Any]:
        """
        The constructor arguments set for baseline ``key`` (``comdefend``, ``nrp``, ``adp``), parsed from its
        ``key=value,...`` field: numbers become ``int`` / ``float``. Only the defence's own settings may be given;
        the run sets the epochs, seed, shapes and device (``batch_size`` defaults to the run's).
        """
        import inspect

        from art_idfr.experiments.baselines import ADP, NRP, ComDefend

        text, flag = getattr(self, key), self.flat_name(_field(type(self), key))
        if text is None or not str(text).strip():
            return {}
        cls = {"comdefend": ComDefend, "nrp": NRP, "adp": ADP}[key]
        allowed = set(inspect.signature(cls).parameters) - set(RUN_SET_BASELINE_ARGS)
        out: Dict[str, Any] = {}
        for item in (i.strip() for i in str(text).split(",") if i.strip()):
            name, sep, value = (part.strip() for part in item.partition("="))
            if not sep or not name or not value:
                raise ValueError(f"`{flag}`: expected key=value pairs separated by commas, got {item!r} in {text!r}.")
            if name not in allowed:
                raise ValueError(f"`{flag}`: {cls.__name__} has no setting {name!r} a run may change. Valid: "
                                 f"{', '.join(sorted(allowed))} (the run sets {', '.join(RUN_SET_BASELINE_ARGS)}).")
            out[name] = _number_or_text(value)
        try:  # the defence's own checks, now rather than after the run has trained its target
            cls((1, 8, 8), device_type="cpu", **out)
        except (TypeError, ValueError) as err:
            raise ValueError(f"`{flag}` {text!r}: {err}") from err
        return out


#: constructor arguments of the baselines that a run sets itself (not through ``--baselines-<key>``)
RUN_SET_BASELINE_ARGS = ("input_shape", "clip_values", "nb_epochs", "device_type", "apply_fit", "apply_predict",
                         "verbose", "seed")


def _number_or_text(value: str) -> Any:
    """``"3"`` -> 3, ``"0.1"`` -> 0.1, anything else unchanged."""
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def _field(cls: type, name: str) -> dataclasses.Field:
    return next(f for f in dataclasses.fields(cls) if f.name == name)


#: The nested sub-configs of :class:`EvalConfig`: attribute -> class.
SUB_CONFIGS: Dict[str, type] = {"train": TrainConfig, "target": TargetConfig, "surrogate": SurrogateConfig,
                                "id": IDConfig, "fr": FRConfig, "idfr_source": SourceConfig, "fast_at": FastATConfig,
                                "adaptive": AdaptiveConfig, "inner": InnerConfig, "baselines": BaselinesConfig}


def sub_config_dict(group: str, value: Any) -> Dict[str, Any]:
    """A sub-config given as an instance or a dict, as a dict of its fields (``ValueError`` for unknown ones)."""
    cls = SUB_CONFIGS[group]
    if isinstance(value, cls):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(cls)}
    if not isinstance(value, dict):
        raise ValueError(f"`{group}` must be a {cls.__name__} or a dict of its fields, got {value!r}.")
    unknown = sorted(set(value) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise ValueError(f"Unknown {cls.__name__} field(s) {unknown} in `{group}`. Valid: "
                         f"{', '.join(f.name for f in dataclasses.fields(cls))}.")
    return dict(value)


def merge_sub_configs(base: Dict[str, Any], top: Dict[str, Any]) -> Dict[str, Any]:
    """``base`` updated by ``top``, sub-config dicts merged field by field."""
    out = dict(base)
    for key, value in top.items():
        out[key] = {**out.get(key, {}), **value} if key in SUB_CONFIGS else value
    return out


def as_lists(value: Any) -> Any:
    """Tuples as lists, through nested dicts (a config as JSON writes it)."""
    if isinstance(value, dict):
        return {k: as_lists(v) for k, v in value.items()}
    return list(value) if isinstance(value, tuple) else value
