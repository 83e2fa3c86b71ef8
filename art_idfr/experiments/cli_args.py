"""
The argument types of the ``art-idfr`` command line and its flags generated from the config: one parser per
``kind`` of config field (positive ints, budgets such as ``8/255``, comma lists of names checked against the
registries, ...; :func:`_arg_types`), and :func:`config_flags` / :func:`_add_knobs`, which turn every
:class:`~art_idfr.experiments.evaluation.EvalConfig` field of a ``--help`` section into its flags. Light to import:
the config and the name registries are imported inside the functions, never torch or ART.
"""
from __future__ import annotations

import argparse
from typing import Any, Callable, Dict, List, Sequence, Tuple

PROG = "art-idfr"


def _eps_list(text: str) -> tuple:
    from art_idfr.experiments.evaluation.config import parse_eps

    items = [t for t in (p.strip() for p in text.split(",")) if t]
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list of budgets, e.g. 4/255,8/255,0.3")
    try:
        return tuple(parse_eps(t) for t in items)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _eps(text: str) -> float:
    from art_idfr.experiments.evaluation.config import parse_eps

    try:
        return parse_eps(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _name_list(canonical: Callable[[str], str]) -> Callable[[str], tuple]:
    def parse(text: str) -> tuple:
        items = [t for t in (p.strip() for p in text.split(",")) if t]
        if not items:
            raise argparse.ArgumentTypeError("expected a comma-separated list")
        try:
            return tuple(canonical(t) for t in items)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    parse.__name__ = "list"
    return parse


def _none_or(parse_list: Callable[[str], tuple]) -> Callable[[str], tuple]:
    """A list flag that also takes ``none`` (the empty list), so a later flag can clear an earlier one."""
    def parse(text: str) -> tuple:
        return () if text.strip().lower() == "none" else parse_list(text)

    parse.__name__ = "list"
    return parse


def _parse_positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _parse_non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _choice(valid: Sequence[str], what: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        key = text.strip().lower()
        if key not in valid:
            raise argparse.ArgumentTypeError(f"unknown {what} {text!r}; valid {what}s: {', '.join(valid)}")
        return key

    parse.__name__ = what
    return parse



def _arg_types() -> Dict[str, Callable[[str], Any]]:
    """Argument type of each ``kind`` of config field (see :func:`art_idfr.experiments.evaluation.config.knob`)."""
    from art_idfr._names import ATTACK_NAMES, MODEL_NAMES
    from art_idfr.experiments.evaluation.config import canonical_attack, canonical_defence, canonical_threat_model

    return {
        "int+": _parse_positive_int,
        "int0": _parse_non_negative_int,
        "float+": _positive_float,
        "float": float,
        "str": str,
        "eps": _eps,
        "eps_list": _eps_list,
        "model": _choice(MODEL_NAMES, "model"),
        "model_list": _name_list(_choice(MODEL_NAMES, "model")),
        "float+_list": _name_list(_positive_float),
        "int+_list": _name_list(_parse_positive_int),
        "int+_list_or_none": _none_or(_name_list(_parse_positive_int)),
        "attack_list": _name_list(_choice(ATTACK_NAMES, "attack")),
        "table_attack_list": _name_list(canonical_attack),
        "defence_list": _name_list(canonical_defence),
        "threat_list": _name_list(canonical_threat_model),
    }


#: ``--help`` group title of each section of config flags
SECTION_TITLES = {
    "data": "data and model knobs (override the preset)",
    "surrogate": "surrogate (black-box source) knobs",
    "idfr": "IDFR knobs",
    "source": "extra AE source knobs",
    "eval": "evaluation knobs",
}


def config_flags(section: str) -> List[Tuple[List[str], Dict[str, Any]]]:
    """
    ``(option strings, add_argument keywords)`` of every :class:`EvalConfig` field in ``section``, generated from the
    fields: sub-config field ``<group>.<name>`` -> ``--<group>-<name>`` plus its flat name ``--<flat-name>`` where that
    differs (``id.nb_epochs``: ``--id-nb-epochs``, ``--id-epochs``), top-level field ``name`` -> ``--name``. The
    destination is the flat name, an override keyword of :meth:`EvalConfig.preset`.
    """
    from art_idfr.experiments.evaluation.config import SUB_CONFIGS, flat_fields

    types = _arg_types()
    out = []
    for flat, (group, f) in flat_fields().items():
        md = f.metadata
        cls = SUB_CONFIGS.get(group)
        if not md.get("cli", True) or (md.get("section") or getattr(cls, "SECTION", None)) != section:
            continue
        generated = f"{cls.PREFIX}_{f.name}" if cls is not None and cls.PREFIX else f.name
        flags = [_flag(generated)] + ([_flag(flat)] if flat != generated else [])
        kwargs: Dict[str, Any] = {"dest": flat, "default": None, "help": md.get("help") or None}
        if md.get("kind") == "bool":
            kwargs["action"] = argparse.BooleanOptionalAction
        elif md.get("choices"):
            kwargs["choices"] = md["choices"]
        elif md.get("kind"):
            kwargs["type"] = types[md["kind"]]
        if md.get("metavar"):
            kwargs["metavar"] = md["metavar"]
        out.append((flags, kwargs))
    return out


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add_knobs(p: argparse.ArgumentParser, section: str, group=None) -> None:
    """Add the generated flags of ``section`` (into ``group``, default a new group titled by the section)."""
    g = group if group is not None else p.add_argument_group(SECTION_TITLES[section])
    for flags, kwargs in config_flags(section):
        g.add_argument(*flags, **kwargs)
