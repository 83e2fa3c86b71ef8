"""
Names shared by the evaluation suite and its report writers: attack display names, the keys of every record (the
CSV columns) and the description of each threat model. Kept apart so that
:mod:`~art_idfr.experiments.evaluation.suite` and :mod:`~art_idfr.experiments.evaluation.reports` both import them
without importing each other.
"""
from __future__ import annotations

__all__ = ["ATTACK_LABELS", "RECORD_FIELDS", "THREAT_DESCRIPTIONS"]

#: Display names of the attacks.
ATTACK_LABELS = {"clean": "clean", "fgsm": "FGSM", "cw": "CW", "bim": "BIM", "pgd": "PGD", "autoattack": "AutoAttack",
                 "square": "Square"}

#: Keys of every record (and columns of the CSV), in order.
RECORD_FIELDS = (
    "threat_model",
    "defence",
    "defence_key",
    "attack",
    "eps",
    "eps_label",
    "accuracy",
    "n",
    "n_correct",
    "gradient",
    "source",
    "source_accuracy",
    "attack_params",
    "seed",
    "dataset",
    "model",
    "device",
    "torch_version",
    "art_version",
    "command",
)

#: One sentence per threat model, written into the metadata and above each report table.
THREAT_DESCRIPTIONS = {
    "black-box": "AEs crafted on an independently trained surrogate model and transferred to every defended "
                 "classifier (crafted once per attack and eps).",
    "gray-box": "AEs crafted on the bare (undefended) target, defence unknown to the attacker, and given to every "
                "defended classifier (crafted once per attack and eps).",
    "white-box": "Adaptive: the attack runs on each defended classifier itself. ID and ID+FR are attacked with exact "
                 "gradients through the defence; NumPy defences (marked †) through ART's identity BPDA gradient "
                 "estimate (averaged over random draws, EOT, for a randomised one); Fast AT is its own (retrained) "
                 "model.",
    "query": "Score-based black-box: ART SquareAttack (L-inf) querying each defended classifier's outputs.",
}
