"""Regenerate results/mo-lunar-lander.md from the multi-objective runs (their groups, confidence and compare).

    W=results/data/mo-lunar-lander-weights.csv
    for s in 0 1 2; do
      policygradex run mo:mo-lunar-lander-v3 --weights $W --preset demo --k 3 --seed $s --out runs/mo-ll-s$s
    done
    policygradex compare runs/mo-ll-s0 --seeds 5
    python experiments/mo_results.py runs/mo-ll-s0 runs/mo-ll-s1 runs/mo-ll-s2 --out results/mo-lunar-lander.md
"""

from __future__ import annotations

import argparse
import json
import shutil
import textwrap
from pathlib import Path

import numpy as np
from demo_results import versions
from sklearn.metrics import normalized_mutual_info_score

DIRECTIONS = [0, 0, 0, 1, 1, 1, 2, 2, 2]
"""The preference direction each weight vector of results/data/mo-lunar-lander-weights.csv was drawn around."""

HEADER = """# Multi-objective: which preference weights of mo-lunar-lander should share a policy?

MO-Gymnasium's `mo-lunar-lander-v3` returns four rewards per step:
1. landing (+100) or crash (-100), once;
2. the shaping reward (distance, speed, tilt, leg contact);
3. minus the main engine's fuel;
4. minus the side engines' fuel.

Each task is one preference weight vector w, with reward w . r (linear scalarisation). The nine vectors of
[data/mo-lunar-lander-weights.csv](data/mo-lunar-lander-weights.csv) lie around three preference directions, three
each: land well (rows 1-3), spare the main engine (rows 4-6), spare the side engines (rows 7-9). The directions
were chosen before any run. They are a hint of structure, not a ground truth: only training can say which
weights are better served together, and `compare` does that below.

Budget: `--preset demo`, that is 100k PPO steps per task, no task id, N = 16384 transitions per task, d = 400,
the 126 subsets of 5 tasks, l2 = 0.1, k = 3. One run takes about 3 minutes on 2 cores.

Package versions: {versions}, mo-gymnasium {mo}.

```
{commands}
```
"""


def run_row(run: Path) -> list[str]:
    cfg = json.loads((run / "config.json").read_text())["config"]
    groups = json.loads((run / "groups.json").read_text())
    labels = np.zeros(len(DIRECTIONS), dtype=int)
    for g, members in enumerate(groups["group_indices"]):
        labels[members] = g
    conf = groups["confidence"]
    jaccard = " / ".join(f"{j:.2f}" for j in conf.get("group_jaccard", []))
    return [str(cfg["seed"]), " ".join("{" + ",".join(str(i + 1) for i in g) + "}" for g in groups["group_indices"]),
            f"**{normalized_mutual_info_score(DIRECTIONS, labels):.2f}**", f"{conf['gradient_reliability']:.2f}",
            f"{conf['split_half_reliability']:.2f}", jaccard, conf["verdict"].split(":")[0]]


def summary(record: dict) -> list[str]:
    """PolicyGradEx against each grouping (resolved or not at 2 standard errors), and per direction."""
    out = []
    for method, row in record["methods"].items():
        diff, se = row.get("policygradex_difference"), row.get("difference_stderr")
        if diff is None or se is None:
            continue
        ratio = abs(diff) / se if se > 0 else float("inf")
        resolved = f"{ratio:.1f} standard errors: " + ("resolved, barely" if 2 < ratio < 3 else "resolved"
                                                       if ratio >= 3 else "not resolved at 2 standard errors")
        if row["groups"] == record["methods"]["policygradex"]["groups"]:
            resolved = "the same groups, so the same trainings"
        out.append(f"- PolicyGradEx groups - {method}: {diff:+.1f} ± {se:.1f} ({resolved}).")
    pgx, multi = (np.array(record["methods"][m]["per_task_mean"]) for m in ("policygradex", "multitask"))
    names = ["land well", "spare the main engine", "spare the side engines"]
    per_direction = [f"{names[d]} {pgx[np.array(DIRECTIONS) == d].mean():.1f} vs "
                     f"{multi[np.array(DIRECTIONS) == d].mean():.1f}" for d in range(3)]
    out.append("- Per direction, the mean weighted return of its three tasks, own group vs one policy for all: "
               + "; ".join(per_direction) + ".")
    out.append("- The one policy for all weights (no task id) learns a single behaviour from 9 x 100k steps; each "
               "group's policy learns its own from 3 x 100k.")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", type=Path, help="run directories (the first one also has compare/)")
    ap.add_argument("--out", type=Path, default=Path("results/mo-lunar-lander.md"))
    args = ap.parse_args()
    import mo_gymnasium

    commands = textwrap.dedent(__doc__.split("\n\n")[1]).strip("\n")
    lines = HEADER.format(versions=versions(), mo=mo_gymnasium.__version__, commands=commands).splitlines()
    lines += ["", "## The groups", "",
              "Tasks are numbered by their row in the CSV. NMI is against the three directions.", "",
              "| seed | groups | NMI vs directions | gradient reliability | split-half reliability | "
              "Jaccard per group (200 resamples) | verdict |", "|---|---|---|---|---|---|---|"]
    lines += ["| " + " | ".join(run_row(run)) + " |" for run in args.runs]
    first = args.runs[0]
    shutil.copyfile(first / "affinity.png", args.out.parent / "mo-lunar-lander-affinity.png")
    lines += ["", "![affinity of seed 0](mo-lunar-lander-affinity.png)", ""]
    compare_md = first / "compare" / "compare.md"
    if compare_md.exists():
        body = compare_md.read_text().splitlines()[1:]  # without its title
        shutil.copyfile(first / "compare" / "learning_curves.png", args.out.parent / "mo-lunar-lander-curves.png")
        record = json.loads((first / "compare" / "compare.json").read_text())
        lines += ["## Do the groups beat one policy for all weights?", "",
                  f"`compare` trains one policy per group from scratch, {record['config']['seeds']} seeds, with the "
                  "run's budget (100k steps per task) for every grouping. The scalar return of a task is its own "
                  "weighted return w . r.", ""]
        lines += summary(record) + ["", "Copied from compare.md:"]
        lines += [line.replace("learning_curves.png", "mo-lunar-lander-curves.png") for line in body]
    args.out.write_text("\n".join(lines).rstrip() + "\n")
    print(args.out.read_text())


if __name__ == "__main__":
    main()
