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

The pieces live in sibling modules, all re-exported here: the names of defences, threat models and attacks and the
budget parser (:mod:`~art_idfr.experiments.evaluation.names`), :func:`knob` and the sub-configs
(:mod:`~art_idfr.experiments.evaluation.knobs`), the checks of :meth:`EvalConfig.validate`
(:mod:`~art_idfr.experiments.evaluation.validation`) and :data:`PRESETS`
(:mod:`~art_idfr.experiments.evaluation.presets`). This module holds :class:`EvalConfig` itself and its flat names.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

from art_idfr._names import ATTACK_NAMES
from art_idfr.experiments.choices import DEVICES
from art_idfr.experiments.evaluation.knobs import (
    SUB_CONFIGS,
    AdaptiveConfig,
    BaselinesConfig,
    FastATConfig,
    FRConfig,
    IDConfig,
    InnerConfig,
    SourceConfig,
    SurrogateConfig,
    TargetConfig,
    TrainConfig,
    as_lists,
    knob,
    merge_sub_configs,
    sub_config_dict,
)
from art_idfr.experiments.evaluation.names import (
    ATTACKS,
    BASELINE_DEFENCES,
    DEFENCE_ALIASES,
    DEFENCES,
    INNER_DEFENCES,
    MASKING_CHECKED_DEFENCES,
    QUERY_ATTACK,
    THREAT_MODELS,
    canonical_attack,
    canonical_defence,
    canonical_threat_model,
    eps_label,
    parse_eps,
)
from art_idfr.experiments.evaluation.presets import PRESETS
from art_idfr.experiments.evaluation.validation import (
    _as_tuple,
    _check_id,
    _check_model_widths,
    _check_sources,
    _check_training,
    _check_weights,
    _int_tuple,
    _model_name,
    _require_positive_int,
    _unique,
)

__all__ = [
    "EvalConfig",
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
    "flat_fields",
    "PRESETS",
    "DEFENCES",
    "BASELINE_DEFENCES",
    "INNER_DEFENCES",
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
    * ``baselines`` (:class:`BaselinesConfig`: training scale of the opt-in ``comdefend`` / ``nrp`` / ``adp`` /
      ``soap`` defences),
    * ``adaptive`` (:class:`AdaptiveConfig`: ``AdaptiveDenoiserTrainer`` keywords; the ``idfr_adaptive`` defence,
      and the recipe of ``idfr_inner``),
    * ``inner`` (:class:`InnerConfig`: ``InnerRestorer`` keywords; the opt-in ``idfr_inner`` defence, not in the
      paper).

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
    inner: InnerConfig = _sub(InnerConfig)
    adaptive_fit_n: Optional[int] = knob(None, "training images of adaptive training (default: fit_n)", kind="int+",
                                         metavar="N", section="idfr")
    adaptive_restarts: Tuple[int, ...] = knob((), "warm restarts after the adaptive fit: the epochs of each further "
                                                  "one-cycle run from the weights reached, e.g. 1 or 1,1, or none "
                                                  "(the default)", kind="int+_list_or_none", metavar="LIST", section="idfr")
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
    baselines: BaselinesConfig = _sub(BaselinesConfig)
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
    sanity_defences: Tuple[str, ...] = knob(
        MASKING_CHECKED_DEFENCES, "defences the gradient-masking checks attack, when in the run (default "
        f"{','.join(MASKING_CHECKED_DEFENCES)}: those with exact gradients; add e.g. comdefend,nrp,adp to check the "
        "baselines' BPDA / EOT white-box rows)", kind="defence_list", metavar="LIST", section="eval")
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

        * ``cpu`` -- ``art-idfr demo --full`` and the CPU benchmarks: MNIST-5k (no download), small CNN at width 0.5
          (4 epochs), ID width 0.5 (3 epochs on 1200 training images), 500 eval images, 50 for white-box, 50 for the
          query attack (25 Square iterations), every defence.
        * ``paper`` -- the paper's protocol at full scale: CIFAR-10 (torchvision download; ``cifar10_jpeg`` offline),
          ResNet-18 target, VGG-16-BN surrogate, ID width 1 / 100 epochs, FR 80 epochs, the full test set, 1000
          white-box and 500 query images (a GPU job).
        * ``tiny`` -- smoke tests only (~30 s on one core): 2000 training images, a quarter-width CNN, 1-3 epochs,
          40 / 16 / 8 evaluation images, 3 attack iterations; the numbers mean little.
        * ``demo`` -- the default of ``art-idfr demo``: the ``cpu`` run at a smaller scale (200 / 20 / 20 evaluation /
          white-box / query images, fewer ID / FR / adaptive epochs and training images, Square with 100 queries in
          the gradient-masking check, TotalVarMin left out; :data:`~art_idfr.experiments.evaluation.presets.DEMO`),
          with every threat model, attack, budget and check; its time is in ``benchmarks/results/demo_time``.
        """
        key = str(name).strip().lower()
        if key not in PRESETS:
            raise ValueError(f"Unknown preset {name!r}. Valid presets: {', '.join(PRESETS)}.")
        values = merge_sub_configs(_nested(PRESETS[key]), _nested({k: v for k, v in overrides.items() if v is not None}))
        values["preset_name"] = key
        return cls(**values)

    def replace(self, **changes: Any) -> "EvalConfig":
        """A copy with ``changes`` applied (validated); the same keywords as :meth:`preset`'s overrides."""
        current = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return type(self)(**merge_sub_configs(_nested(current), _nested(changes)))

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
        return as_lists(dataclasses.asdict(self))

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
        self.sanity_defences = _unique(canonical_defence(d) for d in _as_tuple(self.sanity_defences,
                                                                               "sanity_defences"))
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
            out[key] = sub_config_dict(key, value)
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
