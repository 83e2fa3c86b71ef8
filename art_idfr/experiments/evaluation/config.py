"""
Configuration of the IDFR evaluation suite: one dataclass of scale knobs and named presets.

Example::

    from art_idfr.experiments.evaluation import EvalConfig

    cfg = EvalConfig.preset("cpu")                      # the README demo: MNIST-5k, small CNN, minutes on a CPU
    cfg = EvalConfig.preset("cpu", eval_n=200, eps=(8 / 255, 0.3))
    cfg = EvalConfig.preset("paper", dataset="cifar10_jpeg")

Every field has a value in every preset; ``None`` in a handful of fields (``eps``, ``idfr_eps``,
``fs_bit_depth``, ``fast_at_eps``) means "choose from the dataset" (grey-scale / colour), resolved by
:meth:`EvalConfig.resolved` once the image shape is known.
"""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Dict, Optional, Tuple, Union

from art_idfr._names import AUGMENTATIONS

__all__ = [
    "EvalConfig",
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


@dataclass
class EvalConfig:
    """
    Every knob of an IDFR evaluation run. Build it with :meth:`preset` and override what you need.

    Data and models
        ``dataset``, ``data_root``, ``download``: passed to :func:`art_idfr.experiments.data.load_dataset`.
        ``train_size`` / ``test_size``: stratified subsets (``None`` = all).
        ``val_n``: images split off the training set for model selection (never the test set).
        ``model``, ``width``, ``target_epochs``: the target network (:func:`art_idfr.experiments.models.make_model`).
        ``surrogate_model``, ``surrogate_width``, ``surrogate_epochs``, ``surrogate_seed_offset``: the independently
        trained source model of the black-box AEs (``None`` = same architecture / width as the target; it always
        gets a different seed).
        ``batch_size``, ``lr``, ``optimizer``, ``augment``: target / surrogate training.
    IDFR
        ``id_width``, ``id_epochs``, ``id_lr``, ``id_sigma``, ``id_loss``, ``id_identity_weight``,
        ``id_clean_weight``, ``id_augment``, ``fr_epochs``, ``fr_lr``: the ID and FR.
        ``fit_n``: training images used to fit them (``None`` = all). ``idfr_attacks`` / ``idfr_eps``: the ART
        attacks (on the bare target) crafting their training AEs.
        ``idfr_source_model``, ``idfr_source_width``, ``idfr_source_epochs``, ``idfr_source_seed_offset``:
        optional extra, independently trained models on which the same attacks also craft ID/FR training AEs
        (several AE sources, as in ensemble adversarial training; not in the paper). ``None`` = target only. One
        name or several (a list or a comma-separated string; normalised to a tuple), with one width for all or one
        per model (``None``: the target's width). Extra source ``i`` (from 0) gets the seed
        ``seed + idfr_source_seed_offset + 1000 * i``; none is ever the black-box surrogate: no such offset may
        equal ``surrogate_seed_offset`` (or 0, the target).
    Baselines
        ``fs_bit_depth`` (Feature Squeezing; ``None``: 4 for grey-scale, 5 for colour), JPEG via the defence keys
        ``jpeg<quality>`` (default 25, 50, 75),
        ``tvm_prob`` / ``tvm_lamb`` / ``tvm_max_iter`` (TotalVarMin; ART's default ``lamb=0.5`` flattens 28x28
        digits to ~20% accuracy, 0.05 keeps ~92% on MNIST-5k validation), ``smoothing_window`` (SpatialSmoothing),
        ``fast_at_epochs`` / ``fast_at_eps`` (``AdversarialTrainerFBFPyTorch``; ``None``: 0.3 grey-scale,
        8/255 colour).
    Evaluation
        ``defences``, ``threat_models``, ``attacks`` (FGSM / CW / BIM / PGD / AutoAttack), ``eps`` (``None``: 4, 8,
        16/255 plus 0.3 for grey-scale or 32/255 for colour). ``eval_n`` test images for clean / black-box / gray-box;
        ``whitebox_n`` of them for the adaptive white-box attacks; ``query_n`` and ``query_iter`` for Square.
        ``attack_iter`` / ``eps_step``: BIM and CW iterations and step (paper: 20, 0.03).
        ``eot_samples``: white-box gradients of a randomised defence (TotalVarMin's random pixel mask) are averaged
        over this many draws (BPDA + EOT, Athalye et al. 2018); 1 = a single draw per step.
        ``sanity_eps``: budget of the "undefended white-box BIM must reach ~0%" check.
    Run
        ``seed``, ``device`` (``auto`` | ``cpu`` | ``cuda``), ``attack_batch_size``.
    """

    # data
    dataset: str = "mnist5k"
    data_root: Optional[str] = None
    download: bool = False
    train_size: Optional[int] = None
    test_size: Optional[int] = None
    val_n: int = 500
    # target and surrogate
    model: str = "small_cnn"
    width: float = 0.5
    target_epochs: int = 4
    surrogate_model: Optional[str] = None
    surrogate_width: Optional[float] = None
    surrogate_epochs: int = 3
    surrogate_seed_offset: int = 1000
    batch_size: int = 128
    lr: Optional[float] = None
    optimizer: str = "sgd"
    augment: bool = True
    # IDFR
    id_width: float = 0.5
    id_epochs: int = 3
    id_lr: float = 2e-3
    id_sigma: float = 0.1
    id_loss: str = "ce"
    id_identity_weight: float = 0.0
    id_clean_weight: float = 1.0
    id_augment: str = "none"
    fr_epochs: int = 2
    fr_lr: float = 1e-3
    fit_n: Optional[int] = 1200
    idfr_attacks: Tuple[str, ...] = ("fgsm", "bim")
    idfr_eps: Optional[Tuple[float, ...]] = None
    idfr_source_model: Union[None, str, Tuple[str, ...]] = None
    idfr_source_width: Union[None, float, Tuple[float, ...]] = None
    idfr_source_epochs: int = 3
    idfr_source_seed_offset: int = 3000
    # baselines
    fs_bit_depth: Optional[int] = None
    tvm_prob: float = 0.3
    tvm_lamb: float = 0.05
    tvm_max_iter: int = 10
    smoothing_window: int = 2
    fast_at_epochs: int = 3
    fast_at_eps: Optional[float] = None
    # evaluation
    defences: Tuple[str, ...] = DEFENCES
    threat_models: Tuple[str, ...] = THREAT_MODELS
    attacks: Tuple[str, ...] = ("fgsm", "cw", "bim")
    eps: Optional[Tuple[float, ...]] = None
    eval_n: int = 500
    whitebox_n: int = 50  # the demo's budget: BPDA+EOT through TotalVarMin is most of its white-box time
    query_n: int = 50
    query_iter: int = 25
    attack_iter: int = 20
    eps_step: float = 0.03
    eot_samples: int = 4
    sanity_eps: float = 0.5
    attack_batch_size: int = 128
    # run
    seed: int = 0
    device: str = "auto"
    preset_name: str = field(default="custom", repr=False)

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ presets
    @classmethod
    def preset(cls, name: str = "cpu", **overrides: Any) -> "EvalConfig":
        """
        A named preset with ``overrides`` applied (``None`` values are ignored, so CLI defaults can be passed as is).

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
        values = dict(PRESETS[key])
        unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"Unknown EvalConfig field(s) {unknown}.")
        values.update({k: v for k, v in overrides.items() if v is not None})
        values["preset_name"] = key
        return cls(**values)

    def replace(self, **changes: Any) -> "EvalConfig":
        """A copy with ``changes`` applied (validated)."""
        return dataclasses.replace(self, **changes)

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
            fast_at_eps=self.fast_at_eps if self.fast_at_eps is not None else (0.3 if grey else 8 / 255),
            surrogate_model=self.surrogate_model or self.model,
            surrogate_width=self.surrogate_width if self.surrogate_width is not None else self.width,
        )

    @property
    def device_type(self) -> str:
        """ART's ``device_type`` for this run's ``device``: ``"cpu"`` or ``"gpu"`` (CUDA)."""
        return "cpu" if self.device == "cpu" else "gpu"

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready dictionary of every field."""
        out = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Normalise names and raise ``ValueError`` for any invalid value, naming the valid options."""
        from art_idfr.experiments.data import DATASET_NAMES
        from art_idfr._names import MODEL_NAMES

        if str(self.dataset).lower() not in DATASET_NAMES:
            raise ValueError(f"Unknown dataset {self.dataset!r}. Valid names: {', '.join(DATASET_NAMES)}.")
        self.dataset = str(self.dataset).lower()
        for attr in ("model", "surrogate_model"):
            value = getattr(self, attr)
            if value is None and attr != "model":
                continue
            if str(value).lower() not in MODEL_NAMES:
                raise ValueError(f"Unknown model {value!r} ({attr}). Valid names: {', '.join(MODEL_NAMES)}.")
            setattr(self, attr, str(value).lower())
        if self.idfr_source_model is not None:
            names = _as_tuple(self.idfr_source_model, "idfr_source_model")
            for value in names:
                if str(value).lower() not in MODEL_NAMES:
                    raise ValueError(f"Unknown model {value!r} (idfr_source_model). Valid names: "
                                     f"{', '.join(MODEL_NAMES)}.")
            self.idfr_source_model = tuple(str(v).lower() for v in names) or None
        self.defences = _unique(canonical_defence(d) for d in _as_tuple(self.defences, "defences"))
        self.threat_models = _unique(canonical_threat_model(t) for t in _as_tuple(self.threat_models, "threat_models"))
        self.attacks = _unique(canonical_attack(a) for a in _as_tuple(self.attacks, "attacks"))
        from art_idfr._names import ATTACK_NAMES

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
        if self.eps is not None:
            self.eps = tuple(sorted(_unique(parse_eps(e) for e in _as_tuple(self.eps, "eps"))))
            if not self.eps:
                raise ValueError("`eps` is empty.")
        if self.idfr_eps is not None:
            self.idfr_eps = tuple(parse_eps(e) for e in _as_tuple(self.idfr_eps, "idfr_eps"))
        if self.fast_at_eps is not None:
            self.fast_at_eps = parse_eps(self.fast_at_eps)
        self.sanity_eps = parse_eps(self.sanity_eps)
        self.eps_step = float(self.eps_step)
        if not self.eps_step > 0:
            raise ValueError(f"`eps_step` must be positive, got {self.eps_step}.")
        for name in ("val_n", "target_epochs", "surrogate_epochs", "idfr_source_epochs", "idfr_source_seed_offset",
                     "batch_size", "id_epochs", "fr_epochs", "fast_at_epochs", "eval_n", "whitebox_n", "query_n",
                     "query_iter", "attack_iter", "attack_batch_size", "tvm_max_iter", "smoothing_window",
                     "eot_samples"):
            _positive_int(self, name)
        for name in ("train_size", "test_size", "fit_n"):
            if getattr(self, name) is not None:
                _positive_int(self, name)
        if self.whitebox_n > self.eval_n or self.query_n > self.eval_n:
            raise ValueError(
                f"whitebox_n ({self.whitebox_n}) and query_n ({self.query_n}) must not exceed eval_n ({self.eval_n}):"
                " they are subsets of the evaluation images."
            )
        for name in ("width", "id_width", "id_lr", "fr_lr"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"`{name}` must be positive, got {getattr(self, name)!r}.")
        if self.surrogate_width is not None and not float(self.surrogate_width) > 0:
            raise ValueError(f"`surrogate_width` must be positive, got {self.surrogate_width!r}.")
        fixed_width = ("resnet50", "inception_v3")  # torchvision's architectures, no width multiplier
        for role, model, width, flag in (
            ("model", self.model, self.width, "--width"),
            ("surrogate_model", self.surrogate_model,
             self.surrogate_width if self.surrogate_width is not None else self.width, "--surrogate-width"),
        ):
            if model in fixed_width and float(width) != 1.0:
                raise ValueError(
                    f"{role} {model!r} is torchvision's architecture at its fixed width, but its width is {width:g} "
                    "(the cpu preset scales the small models to width 0.5): set width 1 "
                    f"(CLI: {flag} 1)."
                )
        if self.idfr_source_width is not None:
            widths = self.idfr_source_width
            widths = (widths,) if isinstance(widths, (int, float)) else _as_tuple(widths, "idfr_source_width")
            try:
                widths = tuple(float(w) for w in widths)
            except (TypeError, ValueError):
                raise ValueError(f"`idfr_source_width` must be positive numbers, got {self.idfr_source_width!r}.") \
                    from None
            n_src = len(self.idfr_source_model or ())
            if not widths or not all(w > 0 for w in widths) or (len(widths) > 1 and len(widths) != n_src):
                raise ValueError(f"`idfr_source_width` must be one positive width, or one per idfr_source_model "
                                 f"({n_src}), got {self.idfr_source_width!r}.")
            self.idfr_source_width = widths
        for i in range(len(self.idfr_source_model or ())):
            offset = self.idfr_source_seed_offset + 1000 * i
            if offset in (0, self.surrogate_seed_offset):
                raise ValueError(
                    f"extra AE source {i} would get seed offset {offset} (`idfr_source_seed_offset` "
                    f"{self.idfr_source_seed_offset} + 1000 * {i}), which must differ from 0 (the target) and from "
                    f"`surrogate_seed_offset` ({self.surrogate_seed_offset}): the ID must never train on AEs of the "
                    "black-box surrogate.")
        if self.lr is not None and not float(self.lr) > 0:
            raise ValueError(f"`lr` must be positive, got {self.lr!r}.")
        if self.id_sigma < 0:
            raise ValueError(f"`id_sigma` must be >= 0, got {self.id_sigma}.")
        if self.id_identity_weight < 0 or not self.id_clean_weight > 0:
            raise ValueError("`id_identity_weight` must be >= 0 and `id_clean_weight` > 0, got "
                             f"{self.id_identity_weight} and {self.id_clean_weight}.")
        if self.fs_bit_depth is not None and not 1 <= int(self.fs_bit_depth) <= 64:
            raise ValueError(f"`fs_bit_depth` must be in [1, 64], got {self.fs_bit_depth}.")
        if not self.tvm_lamb > 0:
            raise ValueError(f"`tvm_lamb` must be positive, got {self.tvm_lamb}.")
        if not 0.0 < self.tvm_prob <= 1.0:
            raise ValueError(f"`tvm_prob` must be in (0, 1], got {self.tvm_prob}.")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"Unknown device {self.device!r}. Valid: auto, cpu, cuda.")
        if self.device == "cuda":
            import torch

            if not torch.cuda.is_available():
                raise ValueError("device='cuda' was requested but CUDA is not available; use --device cpu or auto.")
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"Unknown optimizer {self.optimizer!r}. Valid: sgd, adam.")
        if self.id_loss not in ("ce", "feature", "both"):
            raise ValueError(f"Unknown id_loss {self.id_loss!r}. Valid: ce, feature, both.")
        if self.id_augment not in AUGMENTATIONS:
            raise ValueError(f"Unknown id_augment {self.id_augment!r}. Valid: {', '.join(AUGMENTATIONS)}.")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"`seed` must be a non-negative int, got {self.seed!r}.")


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


def _positive_int(cfg: EvalConfig, name: str) -> None:
    value = getattr(cfg, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive int, got {value!r}.")


#: Preset values (every other field keeps its dataclass default, which is the ``cpu`` preset).
PRESETS: Dict[str, Dict[str, Any]] = {
    "cpu": {},
    "paper": {
        "dataset": "cifar10",
        "val_n": 2000,
        "model": "resnet18_cifar",
        "width": 1.0,
        "target_epochs": 60,
        "surrogate_model": "vgg16_bn_cifar",
        "surrogate_epochs": 40,
        "id_width": 1.0,
        "id_epochs": 100,
        "id_lr": 1e-3,
        "id_sigma": 0.05,
        "fr_epochs": 80,
        "fit_n": None,
        "fast_at_epochs": 15,
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
        "width": 0.25,
        "target_epochs": 3,
        "surrogate_epochs": 2,
        "id_width": 0.25,
        "id_epochs": 1,
        "fr_epochs": 1,
        "fit_n": 100,
        "idfr_attacks": ("fgsm",),
        "fast_at_epochs": 1,
        "tvm_max_iter": 2,
        "eval_n": 40,
        "whitebox_n": 16,
        "query_n": 8,
        "query_iter": 5,
        "attack_iter": 3,
    },
}
