"""
The paper's own numbers (IDFR paper, Tables 1 and 4: CIFAR-10, FGSM / CW / BIM at eps 4/8/16 (/255), accuracy in %),
quoted verbatim from ``../shared/paper`` for the "paper | ours" tables of ``docs/results.md``
(:func:`paper_beside_ours`; issue 42). Nothing here is measured by us.

Table 1 is the black-box table (AEs from a separate model) for a VGG16 and a ResNet-18 target; Table 4 is the
white-box table, whose undefended clean accuracy (92.6) is Table 1's VGG16 one: we read it as VGG16.
"""
from __future__ import annotations

import json
import os
from typing import Dict, List, Optional, Tuple

#: column order of every paper table: clean, then FGSM, CW, BIM at 4, 8, 16 (/255)
COLUMNS: Tuple[Tuple[str, int], ...] = (("clean", 0),) + tuple((a, e) for a in ("fgsm", "cw", "bim") for e in (4, 8, 16))
#: the paper's defence names -> our defence keys, in the paper's row order
DEFENCES: Dict[str, str] = {
    "No Defense": "none", "NRP": "nrp", "Fast AT": "fast_at", "ComDefend": "comdefend",
    "Feature Squeezing": "feature_squeezing", "JPEG(q=25)": "jpeg25", "JPEG(q=50)": "jpeg50", "JPEG(q=75)": "jpeg75",
    "TVM": "tvm", "ADP": "adp", "SOAP": "soap", "IDFR(Ours)": "idfr",
}


def _row(text: str) -> List[float]:
    """``"92.6 80.3/64.6/46.1 ..."`` -> the 10 numbers of one row (clean, FGSM x3, CW x3, BIM x3)."""
    values = [float(v) for part in text.split() for v in part.split("/")]
    assert len(values) == len(COLUMNS), text
    return values


#: Table 1 (black-box), per target: the paper's row per defence (clean, FGSM 4/8/16, CW 4/8/16, BIM 4/8/16)
TABLE1: Dict[str, Dict[str, List[float]]] = {
    "VGG16": {k: _row(v) for k, v in {
        "No Defense": "92.6 80.3/64.6/46.1 83.5/77.0/69.3 82.7/57.1/30.9",
        "NRP": "79.4 76.7/74.9/72.2 78.5/78.5/77.5 77.4/74.8/71.4",
        "Fast AT": "81.5 88.1/78.7/56.0 91.8/90.8/87.8 90.1/90.8/87.1",
        "ComDefend": "85.2 82.7/78.8/70.8 84.5/84.5/82.6 83.2/80.3/76.6",
        "Feature Squeezing": "91.0 82.5/65.3/48.8 89.5/88.1/83.3 85.2/62.2/41.6",
        "JPEG(q=25)": "71.0 66.6/63.0/54.3 70.1/69.8/68.2 67.5/64.2/60.2",
        "JPEG(q=50)": "80.2 74.4/68.2/51.0 79.0/77.8/75.1 75.7/70.5/63.3",
        "JPEG(q=75)": "85.9 78.4/68.5/47.5 84.4/83.0/78.5 80.5/72.9/58.8",
        "TVM": "88.8 81.5/76.7/52.7 87.0/86.2/81.8 83.1/74.0/60.3",
        "ADP": "86.4 77.6/74.1/70.4 78.7/79.5/78.8 77.8/74.7/70.1",
        "SOAP": "89.7 71.9/71.8/71.9 71.8/71.0/70.2 71.8/71.9/71.2",
        "IDFR(Ours)": "91.2 89.7/86.8/73.8 91.9/90.9/90.6 90.4/91.7/88.6",
    }.items()},
    "ResNet18": {k: _row(v) for k, v in {
        "No Defense": "93.2 82.8/67.6/45.2 84.5/76.2/70.3 83.2/55.1/31.5",
        "NRP": "78.7 74.8/72.5/68.1 77.1/76.7/75.8 75.6/72.5/68.3",
        "Fast AT": "83.8 89.0/79.1/55.0 91.2/90.7/87.4 91.0/90.7/87.5",
        "ComDefend": "87.1 82.2/77.3/69.9 84.6/84.5/81.9 84.0/79.8/74.9",
        "Feature Squeezing": "92.0 83.4/66.7/49.1 89.7/88.9/82.7 86.3/66.9/43.9",
        "JPEG(q=25)": "74.1 66.2/64.1/55.0 69.9/69.9/68.5 68.2/63.1/59.4",
        "JPEG(q=50)": "82.3 73.5/69.2/51.8 79.2/77.2/74.4 76.3/71.2/64.3",
        "JPEG(q=75)": "84.9 79.2/69.7/48.1 85.9/84.2/78.8 81.0/73.4/58.9",
        "TVM": "86.9 80.5/75.2/51.8 87.8/86.6/81.0 82.2/73.8/59.7",
        "ADP": "83.6 75.1/71.6/66.2 77.8/77.1/76.2 75.5/72.4/68.7",
        "SOAP": "90.1 70.7/70.6/70.1 70.3/69.9/69.3 71.6/71.9/71.8",
        "IDFR(Ours)": "92.5 90.0/86.2/75.4 91.7/90.8/90.2 91.2/90.9/89.1",
    }.items()},
}
#: Table 4 (white-box, CIFAR-10; VGG16 by its undefended clean accuracy)
TABLE4: Dict[str, List[float]] = {k: _row(v) for k, v in {
    "No Defense": "92.6 53.2/37.1/16.4 62.5/53.9/44.6 54.7/22.6/9.5",
    "NRP": "77.6 75.8/73.6/69.6 76.8/74.1/70.4 78.2/77.9/76.8",
    "Fast AT": "78.6 44.6/43.2/41.6 48.4/44.7/43.3 43.5/41.9/38.8",
    "ComDefend": "85.7 80.2/77.7/72.3 82.9/81.3/80.7 81.1/77.3/73.9",
    "Feature Squeezing": "91.3 81.8/74.2/57.7 83.7/81.9/75.8 80.7/59.1/48.4",
    "JPEG(q=25)": "67.5 63.7/61.6/58.5 65.8/63.7/62.6 64.2/60.9/55.8",
    "JPEG(q=50)": "74.6 69.3/62.7/57.9 71.2/69.6/67.4 68.3/62.7/50.9",
    "JPEG(q=75)": "83.1 72.9/61.5/53.2 74.1/72.7/69.3 71.7/65.7/52.3",
    "TVM": "87.5 76.9/63.1/53.6 73.9/71.8/64.2 77.5/73.8/65.2",
    "ADP": "86.1 76.5/74.9/73.8 79.1/78.8/76.1 74.4/71.1/69.2",
    "SOAP": "90.3 72.4/72.1/70.4 72.7/71.8/70.5 71.7/71.4/69.2",
    "IDFR(Ours)": "92.1 86.8/84.4/78.1 88.2/86.8/86.5 87.6/85.6/82.8",
}.items()}


def paper_target(model: str) -> Optional[str]:
    """The paper's Table 1 column for one of our CIFAR-10 targets (``None``: no counterpart)."""
    if model.startswith("vgg16"):
        return "VGG16"
    return "ResNet18" if model.startswith("resnet18") else None


def paper_beside_ours(results_json: str) -> str:
    """
    Markdown "paper | ours" tables (black-box vs Table 1, white-box vs Table 4) for a CIFAR-10 run's results.json,
    one row per defence both have; empty for a run with no counterpart in the paper (another dataset or target).
    """
    doc = json.load(open(results_json))
    meta = doc["metadata"]
    column = paper_target(str(meta.get("model", ""))) if str(meta.get("dataset", "")).startswith("cifar10") else None
    if column is None:
        return ""
    acc = {(r["threat_model"], r["defence_key"], r["attack"], round(r["eps"] * 255)): 100 * r["accuracy"]
           for r in doc["records"]}
    parts = []
    for tm, table, source in (("black-box", TABLE1[column], f"Table 1, {column}"),
                              ("white-box", TABLE4, "Table 4 (white-box; VGG16)")):
        rows = [r for r in (_comparison_row(name, key, table[name], acc, tm) for name, key in DEFENCES.items())
                if r is not None]
        if rows:
            head = "| defence | " + " | ".join("clean" if a == "clean" else f"{a.upper()} {e}/255"
                                               for a, e in COLUMNS) + " |"
            parts.append(f"**{tm}**: paper ({source}) / ours (`{os.path.basename(os.path.dirname(results_json))}`, "
                         f"{meta['model']}), accuracy in %; — = not in our run\n\n{head}\n"
                         + "|---|" + "---:|" * len(COLUMNS) + "\n" + "\n".join(rows))
    return "\n\n".join(parts)


def _comparison_row(name: str, key: str, paper: List[float], acc: dict, tm: str) -> Optional[str]:
    cells = []
    for (attack, e), theirs in zip(COLUMNS, paper):
        # clean accuracy has one record per defence, in the black-box table
        ours = acc.get((tm, key, attack, e)) if attack != "clean" else acc.get(("black-box", key, "clean", 0))
        cells.append(f"{theirs:.1f} / {'—' if ours is None else f'{ours:.1f}'}")
    if all(c.endswith("/ —") for c in cells[1:]):  # no attack column of this threat model in our run
        return None
    return f"| {name} | " + " | ".join(cells) + " |"
