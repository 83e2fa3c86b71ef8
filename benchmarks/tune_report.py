"""
Markdown table of the ID tuning runs (`benchmarks/tune_id.py`), validation split only.

    python benchmarks/tune_report.py fashion_mnist_idx      # writes results/tune_fashion_mnist_idx/tune.md
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


def _id_mmacs(cfg: dict) -> str:
    """Multiply-accumulates (millions) of the run's ID network per image, from its stored config."""
    from art_idfr.unet import make_unet

    shape = cfg["input_shape"] if cfg.get("channels_first", True) else [cfg["input_shape"][-1], *cfg["input_shape"][:2]]
    net = make_unet(cfg.get("architecture", "table6"), shape[0], cfg["width"], cfg.get("residual_head", "linear"))
    return f"{net.macs_per_image(*shape[1:]) / 1e6:.1f}"


def _undefended_row(row: dict, cols: list, first: dict) -> str:
    """The bare target's row; a target retrained since the first run is labelled with its validation accuracy."""
    label = "undefended target" if row is first else (
        f"undefended target, retrained ({100 * row['target_val_acc']:.1f}% on the validation split; the rows below "
        "use it)")
    return f"| {label} | — | — | — | — | " + " | ".join(f"{row['undefended'][c]:.1f}" for c in cols) + " | — |"


def _models(row: dict) -> str:
    """Target and surrogate of a run (rows written before these fields existed used the small-CNN defaults)."""
    t = row.get("target", {"model": "small_cnn", "width": 1.0, "epochs": 4})
    s = row.get("surrogate", {"model": "small_cnn", "width": 0.5, "epochs": 3})
    return (f"Target {t['model']} (width {t['width']:g}, {t['epochs']} epochs, {100 * row['target_val_acc']:.1f}% on "
            f"the validation split); black-box surrogate {s['model']} (width {s['width']:g}, {s['epochs']} epochs, "
            "other seed). ")


def main(dataset: str) -> int:
    folder = os.path.join(HERE, "results", f"tune_{dataset}")
    rows = [json.loads(line) for line in open(os.path.join(folder, "tune.jsonl")) if line.strip()]
    cols = list(rows[0]["id"])
    defaults = {"identity_weight": 0.0, "clean_weight": 1.0, "loss": "ce", "width": 0.5, "gaussian_sigma": 0.1,
                "idfr_source": None, "augment": "none", "regenerate_every": 0, "architecture": "table6"}
    lines = [
        f"ID tuning on the **validation** split of {dataset} (never the test split): clean and black-box accuracy (%)"
        f" through the ID alone (no FR) on {rows[0]['val_n']} validation images; best epoch chosen on 1,000 other "
        f"validation images. Device: {rows[0]['device']}. Seed {rows[0]['seed']}. {_models(rows[0])}One line per run "
        "of `benchmarks/tune_id.py`, in the order they ran; a run on another device (threads) says so beside its fit "
        "time, and a target retrained from scratch (the cached models were lost) gets its own undefended row.",
        "",
        "Best-epoch selection: `clean` = clean validation accuracy alone (runs before that rule changed), `clean+AE` = "
        "mean of clean accuracy and accuracy on the selection images' AEs from the training attacks (the current rule).",
        "",
        "| run | changed settings | selection | kept epoch | ID MMAC / image | " + " | ".join(cols) + " | fit s |",
        "|---|---|---|---:|---:|" + "---:|" * (len(cols) + 1),
    ]
    last_target = None
    for r in rows:
        target = (r["target_val_acc"], tuple(r["undefended"].values()))
        if target != last_target:
            lines.append(_undefended_row(r, cols, rows[0]))
            last_target = target
        cfg = r["config"]
        changed = [f"{k}={cfg[k]}" for k, v in defaults.items() if cfg.get(k, v) != v]
        changed += [f"{k}={cfg[k]}" for k, v in {"fit_n": 4000, "epochs": 4, "idfr_eps": "8/255,32/255",
                                                  "idfr_attacks": "fgsm,bim"}.items() if cfg.get(k, v) != v]
        hist = r.get("history", [])
        adv_rule = any(h.get("val_adv_acc") is not None for h in hist)
        scores = [h.get("val_score", h.get("val_acc", 0.0)) for h in hist]
        best = scores.index(max(scores)) if scores else None  # first best epoch, as IDFRDenoiser.fit keeps
        kept = "—" if best is None else hist[best].get("epoch", best + 1)
        lines.append(f"| {r['name']} | {', '.join(changed) or 'baseline: Algorithm 1, no extra term'} | "
                     f"{'clean+AE' if adv_rule else 'clean'} | {kept} | {_id_mmacs(cfg)} | "
                     + " | ".join(f"{r['id'][c]:.1f}" for c in cols) + f" | {r['fit_seconds']:.0f}"
                     + ("" if r["device"] == rows[0]["device"] else f" ({r['device'].split(', ')[1]})") + " |")
    diag = [r for r in rows if "test_diagnostic" in r]
    if diag:
        lines += ["", "**Validation/test gap diagnostic** (test images, measured *after* the settings were fixed on "
                  "validation and never used to choose them): the same runs on class-stratified test images.", "",
                  "| run | split | n | model | " + " | ".join(cols) + " |", "|---|---|---:|---|" + "---:|" * len(cols)]
        for r in diag:
            t = r["test_diagnostic"]
            for split, n, block in (("validation", r["val_n"], r), ("test", t["n"], t)):
                for model in ("undefended", "id"):
                    lines.append(f"| {r['name']} | {split} | {n} | {model} | "
                                 + " | ".join(f"{block[model][c]:.1f}" for c in cols) + " |")
    lines += ["", "Commands:", ""] + [f"- `{r['command']}`" for r in rows]
    lines += ["", f"Generated by: `python benchmarks/tune_report.py {dataset}`"]
    with open(os.path.join(folder, "tune.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "fashion_mnist_idx"))
