"""
Regenerate the "Latest results" section of README.md from committed benchmark reports (verbatim copies of the
generated tables, never typed by hand).

    python benchmarks/readme_results.py fashion_mnist_cpu cifar10_cpu
"""
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
README = os.path.join(os.path.dirname(HERE), "README.md")
START, END = "<!-- results:start -->", "<!-- results:end -->"


def section(name: str, threat_models=("black-box", "white-box")) -> str:
    md = open(os.path.join(HERE, "results", name, "results.md")).read()
    command = re.search(r"- command: `([^`]*)`", md)
    parts = [f"#### `{name}` — from [`benchmarks/results/{name}/results.md`](benchmarks/results/{name}/results.md)"
             + (f" (`{command.group(1)}`)" if command else "")]
    for tm in threat_models:
        block = re.search(rf"### Threat model: {tm}\n(.*?)(?=\n### |\Z)", md, re.S)
        if block:
            parts.append(f"**{tm}**\n" + block.group(1).strip())
    return "\n\n".join(parts)


def main(names) -> None:
    text = open(README).read()
    body = "\n\n".join(section(n) for n in names)
    plot = f"benchmarks/results/{names[0]}/accuracy_vs_eps.png"
    body += f"\n\n![accuracy vs eps]({plot})\n\nGray-box and query tables, sanity checks and CSV/JSON: same folders."
    new = f"{START}\n{body}\n{END}"
    if START in text:
        text = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: new, text, flags=re.S)
    else:
        text = text.replace("RESULTS_PLACEHOLDER", new)
    open(README, "w").write(text)


if __name__ == "__main__":
    main(sys.argv[1:] or ["fashion_mnist_cpu"])
