"""
The names of the evaluation protocol: the canonical keys of the defences, threat models and attacks of the tables,
the spellings each accepts (``canonical_defence`` / ``canonical_threat_model`` / ``canonical_attack``), and the
L-infinity budgets (``parse_eps`` reads ``"8/255"`` or ``0.3``, ``eps_label`` writes them back). Nothing here imports
more than the standard library; :mod:`~art_idfr.experiments.evaluation.config` re-exports every name.
"""
from __future__ import annotations

import math
import re
from fractions import Fraction
from typing import Any, Dict, Tuple

__all__ = [
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
#: Restorers inside the frozen target (not in the paper): a valid key, opt-in by name like the baselines below,
#: never in a default defence or AutoAttack list (so presets and committed records do not change); in table order
#: right after ``idfr_adaptive`` (:data:`VALID_DEFENCES`). Fitted by the run
#: (:func:`~art_idfr.experiments.evaluation.pipeline.adaptive.fit_inner_adaptive`).
INNER_DEFENCES: Tuple[str, ...] = ("idfr_inner",)
#: The paper's purification baselines (:mod:`art_idfr.experiments.baselines`): valid keys, but opt-in by name, never in
#: a default defence list (they are trained by the run, :mod:`~art_idfr.experiments.evaluation.pipeline.baselines`).
BASELINE_DEFENCES: Tuple[str, ...] = ("comdefend", "nrp", "adp", "soap")
#: The defences the gradient-masking checks attack by default (exact gradients; ``sanity_defences`` adds others, e.g.
#: the baselines, whose white-box rows run on BPDA / EOT).
MASKING_CHECKED_DEFENCES: Tuple[str, ...] = ("none", "id", "idfr", "idfr_adaptive", "idfr_inner", "fast_at")
#: Every defence key, in table order (the ``Valid defences`` of error messages).
VALID_DEFENCES: Tuple[str, ...] = (*DEFENCES[:DEFENCES.index("idfr_adaptive") + 1], *INNER_DEFENCES,
                                   *DEFENCES[DEFENCES.index("idfr_adaptive") + 1:], *BASELINE_DEFENCES)
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
    "idfr_inner": "idfr_inner",
    "idfr-inner": "idfr_inner",
    "inner": "idfr_inner",
    "id+fr+inner": "idfr_inner",
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
    "comdefend": "comdefend",
    "com_defend": "comdefend",
    "com-defend": "comdefend",
    "nrp": "nrp",
    "adp": "adp",
    "soap": "soap",
    "soap_rp": "soap",
    "soap-rp": "soap",
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
    return _pick(name, DEFENCE_ALIASES, VALID_DEFENCES, "defence")


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
