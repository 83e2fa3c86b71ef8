"""
Check a results.json against the goals of the "results that stand" issue, column by column, and print a Markdown
table (nothing is written; the numbers come only from the file).

    python benchmarks/goals.py benchmarks/results/fashion_mnist_cpu/results.json

Goals (black-box threat model, same target and images):
- IDFR's clean accuracy at most 0.7 points below the undefended clean accuracy;
- black-box accuracy drops (undefended clean minus IDFR under attack) no larger than the paper's ResNet-18 CIFAR-10
  drops: FGSM 3.2/7.0/17.8, CW 1.5/2.4/3.0, BIM 2.0/2.3/4.1 points at eps 4/8/16 (/255);
- IDFR above every ART baseline (and Fast AT) in every black-box column.
"""
import json
import sys

PAPER_DROP = {("fgsm", 4): 3.2, ("fgsm", 8): 7.0, ("fgsm", 16): 17.8, ("cw", 4): 1.5, ("cw", 8): 2.4, ("cw", 16): 3.0,
              ("bim", 4): 2.0, ("bim", 8): 2.3, ("bim", 16): 4.1}


def main(path: str) -> None:
    result = json.load(open(path))
    bb = [r for r in result["records"] if r["threat_model"] == "black-box"]
    acc = {(r["defence_key"], r["attack"], round(r["eps"] * 255, 3)): 100 * r["accuracy"] for r in bb}
    label = {round(r["eps"] * 255, 3): r["eps_label"] for r in bb}
    clean_none, clean_idfr = acc[("none", "clean", 0)], acc[("idfr", "clean", 0)]
    baselines = sorted({k[0] for k in acc} - {"none", "id", "idfr"})
    meta = result["metadata"]
    print(f"Goals check for `{path}` — {meta['dataset']}, {meta['model']}, black-box, n = {bb[0]['n']}, "
          f"seed {meta['seed']}\n")
    print("| column | undefended | IDFR | IDFR drop vs clean | goal | met | best baseline | IDFR above all |")
    print("|---|---:|---:|---:|---|---|---|---|")
    drop = clean_none - clean_idfr
    print(f"| clean | {clean_none:.1f} | {clean_idfr:.1f} | {drop:.1f} | ≤ 0.7 | {'yes' if drop <= 0.7 else 'NO'} | "
          f"{max((acc[(b, 'clean', 0)], b) for b in baselines)[1]} "
          f"{max(acc[(b, 'clean', 0)] for b in baselines):.1f} | "
          f"{'yes' if all(clean_idfr > acc[(b, 'clean', 0)] for b in baselines) else 'NO'} |")
    for attack in ("fgsm", "cw", "bim"):
        for e in sorted({k[2] for k in acc if k[1] == attack}):
            if ("idfr", attack, e) not in acc:
                continue
            a = acc[("idfr", attack, e)]
            drop = clean_none - a
            goal = PAPER_DROP.get((attack, e))
            met = "n/a" if goal is None else ("yes" if drop <= goal else "NO")
            best = max((acc[(b, attack, e)], b) for b in baselines if (b, attack, e) in acc)
            above = all(a > acc[(b, attack, e)] for b in baselines if (b, attack, e) in acc)
            print(f"| {attack.upper()} {label[e]} | {acc[('none', attack, e)]:.1f} | {a:.1f} | {drop:.1f} | "
                  f"{'≤ ' + str(goal) if goal is not None else '—'} | {met} | {best[1]} {best[0]:.1f} | "
                  f"{'yes' if above else 'NO'} |")


if __name__ == "__main__":
    main(sys.argv[1])
