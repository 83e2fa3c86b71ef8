"""
Compare the records of two evaluation runs (``results.json`` of `art-idfr demo` / `evaluate`), field by field.

    python benchmarks/compare_records.py A/results.json B/results.json --threat-models white-box,query

Records are matched by (threat model, defence, attack, eps); every field but the command line must be equal. Prints
the counts and the first differing records; exit status 1 when a matched record differs or one side lacks a record.
"""
import argparse
import json
import sys


def records(path, threat_models):
    with open(path) as f:
        data = json.load(f)
    return {(r["threat_model"], r["defence"], r["attack"], r.get("eps")): {k: v for k, v in r.items() if k != "command"}
            for r in data["records"] if not threat_models or r["threat_model"] in threat_models}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--threat-models", default="", help="comma-separated; default: all")
    p.add_argument("--show", type=int, default=15, help="differing records to print")
    args = p.parse_args()
    tms = {t for t in args.threat_models.split(",") if t}
    a, b = records(args.a, tms), records(args.b, tms)
    common = a.keys() & b.keys()
    diff = sorted((k for k in common if a[k] != b[k]), key=str)
    print(f"{args.a}: {len(a)} records; {args.b}: {len(b)}; matched {len(common)}; identical {len(common) - len(diff)}; "
          f"different {len(diff)}; only in one: {len(a.keys() ^ b.keys())}")
    for k in diff[: args.show]:
        print(k, {f: (a[k].get(f), b[k].get(f)) for f in a[k].keys() | b[k].keys() if a[k].get(f) != b[k].get(f)})
    return int(bool(diff) or a.keys() != b.keys())


if __name__ == "__main__":
    sys.exit(main())
