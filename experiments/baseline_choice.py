r"""results/baseline-choice.md: the evidence behind the default of ``--baseline`` (theta_star's value head or each
task's own value function), from the planted suite's rows and a ``compare`` of the demo's two groupings.

    policygradex run cartpole --preset demo --k 3 --out runs/demo/cartpole
    # the per_task twin starts from the same theta_star: copy theta_star.pt, meta_train_curve.csv/.png and
    # timings.json of runs/demo/cartpole into runs/demo/cartpole-pt first (what planted_suite.reuse_theta does)
    policygradex run cartpole --preset demo --k 3 --baseline per_task --out runs/demo/cartpole-pt
    policygradex compare runs/demo/cartpole-pt --seeds 5 --groups value_head=runs/demo/cartpole/groups.json
    cp runs/demo/cartpole-pt/compare/compare.json results/data/demo-baseline-compare.json
    W=results/data/mo-lunar-lander-weights.csv
    for s in 0 1 2; do
      policygradex run mo:mo-lunar-lander-v3 --weights $W --preset demo --k 3 --seed $s --baseline auto \
          --out runs/mo-ll-auto-s$s
    done
    # runs/demo-cartpole-auto: the demo's theta_star copied in first, as for runs/demo/cartpole-pt above
    policygradex run cartpole --preset demo --k 3 --baseline auto --out runs/demo-cartpole-auto
    policygradex run highway --k 3 --steps-per-task 10000 --transitions 2048 --baseline auto --out runs/highway-auto
    policygradex run mt10 --k 3 --network softmod --steps-per-task 50000 --baseline auto --out runs/mt10-auto
    # runs/mt10-policy: runs/mt10-auto's theta_star copied in first (planted_suite.reuse_theta)
    policygradex run mt10 --k 3 --network softmod --steps-per-task 50000 --baseline policy --out runs/mt10-policy
    python experiments/baseline_choice.py --planted results/planted.json \
        --demo-compare results/data/demo-baseline-compare.json \
        --auto-runs runs/demo-cartpole-auto:runs/demo-cartpole \
        runs/mo-ll-auto-s0 runs/mo-ll-auto-s1 runs/mo-ll-auto-s2 \
        runs/highway-auto runs/mt10-auto:runs/mt10-policy --out results/baseline-choice.md

results/planted.json comes from experiments/planted_suite.py (its docstring has the commands).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from demo_results import cpu_model  # noqa: E402
from planted_suite import group_rows, mean_se, paired, versions  # noqa: E402


def recovery_lines(rows: list[dict]) -> list[str]:
    """Per family and kind, held-out and tuning seeds apart: NMI with each baseline on the same theta_star, and the
    per_task - policy difference paired by seed (only seeds both baselines ran)."""
    lines = ["| seeds | family | kind | seeds both ran | NMI, value head (policy) | NMI, per_task | per_task - policy |",
             "|---|---|---|---|---|---|---|"]
    for held in (True, False):
        by = group_rows([r for r in rows if r["held_out"] == held])
        for (fam, kind) in sorted({(f, k) for f, k, _ in by}):
            pol = {r["seed"]: r["nmi"] for r in by.get((fam, kind, "policy"), [])}
            pt = {r["seed"]: r["nmi"] for r in by.get((fam, kind, "per_task"), [])}
            seeds = sorted(set(pol) & set(pt))
            if not seeds:
                continue
            a, b = [pol[s] for s in seeds], [pt[s] for s in seeds]
            lines.append(f"| {'held out' if held else 'tuning (0-2)'} | {fam} | {kind} | "
                         f"{', '.join(map(str, seeds))} | {mean_se(a)} | {mean_se(b)} | {paired(b, a)} |")
    return lines


def chosen(pol: dict, pt: dict) -> dict:
    """The row a per-run choice by the gradient signal's split-half reliability keeps: per_task where its
    reliability (each half's baseline fitted apart) is above the value head's, else the value head's (also where
    either is not measurable)."""
    a, b = pol.get("gradient_reliability"), pt.get("gradient_reliability")
    return pt if a is not None and b is not None and b > a else pol


def choice_lines(rows: list[dict]) -> list[str]:
    """Per family and kind, held-out and tuning seeds apart: NMI of the per-run choice (:func:`chosen`) against
    each fixed baseline, paired by seed, and how often it chose per_task."""
    overall: dict[bool, list[tuple[float, float, float]]] = {True: [], False: []}
    lines = ["| seeds | family | kind | seeds | reliability, value head | reliability, per_task | per_task chosen | "
             "NMI, chosen | chosen - policy | chosen - per_task |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for held in (True, False):
        by = group_rows([r for r in rows if r["held_out"] == held])
        for (fam, kind) in sorted({(f, k) for f, k, _ in by}):
            pol = {r["seed"]: r for r in by.get((fam, kind, "policy"), [])}
            pt = {r["seed"]: r for r in by.get((fam, kind, "per_task"), [])}
            seeds = sorted(set(pol) & set(pt))
            if not seeds:
                continue
            pick = [chosen(pol[s], pt[s]) for s in seeds]
            nmi = [r["nmi"] for r in pick]
            overall[held] += [(c, pol[s]["nmi"], pt[s]["nmi"]) for c, s in zip(nmi, seeds)]

            def rel(rs: list[dict]) -> str:
                return mean_se([r["gradient_reliability"] for r in rs if r.get("gradient_reliability") is not None])

            lines.append(f"| {'held out' if held else 'tuning (0-2)'} | {fam} | {kind} | "
                         f"{', '.join(map(str, seeds))} | {rel([pol[s] for s in seeds])} | "
                         f"{rel([pt[s] for s in seeds])} | {sum(r is pt[s] for r, s in zip(pick, seeds))} / "
                         f"{len(seeds)} | {mean_se(nmi)} | {paired(nmi, [pol[s]['nmi'] for s in seeds])} | "
                         f"{paired(nmi, [pt[s]['nmi'] for s in seeds])} |")
    lines.append("")
    for held in (True, False):
        c, pol_nmi, pt_nmi = (list(x) for x in zip(*overall[held]))
        lines.append(f"Over all {len(c)} {'held-out' if held else 'tuning'} pairs (every family and kind, paired by "
                     f"run): chosen - policy {paired(c, pol_nmi)}, chosen - per_task {paired(c, pt_nmi)}.")
    return lines


def demo_lines(record: dict) -> list[str]:
    methods = record["methods"]
    pt, vh = np.array(methods["policygradex"]["per_seed"]), np.array(methods["value_head"]["per_seed"])
    d = pt - vh
    se = d.std(ddof=1) / np.sqrt(len(d))
    lines = [f"`policygradex compare` of the demo run with `--baseline per_task` ({record['steps_per_task']:,} steps "
             f"per task, {record['config']['seeds']} seeds, {record['eval_episodes']} evaluation episodes per task): "
             "its groups (`policygradex`) against the groups the same theta_star gives with the value head "
             "(`value_head`), one multitask policy, random groups and gradient similarity. Mean return over the "
             "10 tasks, mean ± standard error over seeds.", "",
             "| grouping | groups | mean return |", "|---|---|---|"]
    for name, row in methods.items():
        groups = row["groups"] if isinstance(row["groups"], str) else \
            " ".join("{" + ", ".join(x.removeprefix("len=") for x in g) + "}" for g in row["groups"])
        lines.append(f"| {name} | {groups} | {mean_se(row['per_seed'])} |")
    word = "resolved" if abs(d.mean()) > 2 * se else "not resolved"
    lines += ["", f"per_task's groups - the value head's: {d.mean():+.1f} ± {se:.1f} return, paired by seed ({word}). "
              "At this budget every grouping is near CartPole's ceiling of 500, so the demo cannot tell groupings "
              "apart by training: it says the per_task groups are no worse, not that they are better."]
    return lines


def auto_lines(specs: list[str]) -> list[str]:
    """One row per run made with ``--baseline auto`` (``DIR``, or ``DIR:TWIN`` with TWIN the value head's run from
    the same theta_star): the baseline it kept, both reliabilities, its groups, the value head's groups where
    they differ and the NMI between the two, and for mo-lunar-lander's nine weights of results/data
    (mo_results.DIRECTIONS) the NMI against the directions."""
    from mo_results import DIRECTIONS
    from sklearn.metrics import normalized_mutual_info_score

    from policygradex.pipeline.partitions import labels_from_groups

    def labels_of(groups: list[list[int]]) -> np.ndarray:
        return labels_from_groups(groups, sum(map(len, groups)))

    def shown(groups: list[list[int]]) -> str:
        return " ".join("{" + ",".join(str(i + 1) for i in g) + "}" for g in groups)

    lines = ["| run | family | seed | kept | reliability, value head | reliability, per_task | groups (task numbers "
             "from 1) | the value head's groups (same theta_star) | NMI between the two | NMI vs the preference "
             "directions |", "|---|---|---|---|---|---|---|---|---|---|"]
    for spec in specs:
        run, _, twin = spec.partition(":")
        run_dir = Path(run)
        record = json.loads((run_dir / "config.json").read_text())
        cfg, family = record["config"], record["family"]["name"]
        choice = json.loads((run_dir / "features" / "meta.json").read_text())["baseline"]
        groups = json.loads((run_dir / "groups.json").read_text())["group_indices"]
        rel = choice["reliability"]
        if choice["chosen"] == "policy":
            head, agreement = "the same run", "1.00"
        elif twin:
            head_groups = json.loads((Path(twin) / "groups.json").read_text())["group_indices"]
            head = f"{shown(head_groups)} (`{twin}`)"
            agreement = f"{normalized_mutual_info_score(labels_of(groups), labels_of(head_groups)):.2f}"
        else:
            head, agreement = "not run", "-"
        nmi = "-"
        if cfg["family"].startswith("mo:mo-lunar-lander") and sum(map(len, groups)) == len(DIRECTIONS):
            nmi = f"{normalized_mutual_info_score(DIRECTIONS, labels_of(groups)):.2f}"
        lines.append(f"| {run} | {family} | {cfg['seed']} | {choice['chosen']} | {rel['policy']:.2f} | "
                     f"{rel['per_task']:.2f} | {shown(groups)} | {head} | {agreement} | {nmi} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--planted", type=Path, required=True)
    ap.add_argument("--demo-compare", type=Path, required=True)
    ap.add_argument("--auto-runs", nargs="*", default=[],
                    help="run directories made with --baseline auto, one row each (DIR, or DIR:TWIN with TWIN the "
                         "value head's run from the same theta_star)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    rows = json.loads(args.planted.read_text())["rows"]
    record = json.loads(args.demo_compare.read_text())
    text = "\n".join([
        "# Which value estimates behind the advantages: theta_star's value head or each task's own?",
        "",
        "`--baseline policy` (the default so far) computes each task's GAE advantages with theta_star's one value "
        "head, which sees no task id; `--baseline per_task` fits each task's own value function (ridge regression on "
        "quadratic features of the observation) on its transitions. results/weak-signal.md measured why it matters: "
        "for tasks paid differently, the shared value head is biased task by task. This page gathers what decides "
        "the default. Same theta_star for both baselines in every pair (planted_suite.py --reuse-theta).",
        "",
        f"Package versions: {versions()}.",
        "",
        "## Recovery of planted groups (results/planted.md)",
        "",
        *recovery_lines(rows),
        "",
        "## Choosing the baseline per run by the gradient signal's reliability",
        "",
        "Both baselines' advantages come from the same transitions and the same projected gradients, so a run "
        "can compute both and keep the one whose gradient signal reproduces better across halves of the "
        "transitions: the split-half reliability of G G^T, with each half's per-task baseline fitted on that half "
        "alone (results/baseline-reliability.md: the joint fit overstates it). The rule below keeps per_task where "
        "its reliability is above the value head's; it is applied to the pairs of runs above (same theta_star, "
        "same transitions), so it is what the choice would give. Mean ± standard error over seeds; differences "
        "paired by seed.",
        "",
        *choice_lines(rows),
        "",
        "## The demo: are the per_task groups worse by training?",
        "",
        *demo_lines(record),
        "",
        *(["## Runs made with `--baseline auto`", "",
           "What the option itself kept, run by run (features/meta.json), on this machine "
           f"({cpu_model()}). The CartPole demo's theta_star here is not the one of the section above "
           "(results/reproducibility.md).", "", *auto_lines(args.auto_runs), ""] if args.auto_runs else []),
        "Commands:",
        "",
        "```",
        *[line[4:] for line in __doc__.split("\n\n")[1].splitlines()],
        "```",
    ])
    args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
