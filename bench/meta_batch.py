"""Meta-training in batches of tasks (``--tasks-per-iteration B``) against every task in every rollout, at equal
total environment steps.

Each PPO iteration of the default meta-training steps every task; at n tasks the budget is n x steps-per-task. With
B < n each iteration steps a batch of B tasks and the budget is B x steps-per-task. This page holds the total
fixed (``--total-steps``) and varies B on one planted family: B = n (all tasks; fewer, larger iterations), 32 (the
default) and 8 (more, smaller iterations), and reports what the later stages need of theta_star: its mean return
over all n tasks on the feature episodes, the planted-group NMI of the groups, and the bootstrap's mean Jaccard.

    .venv/bin/python bench/meta_batch.py --out results/meta-training-at-scale.md
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import command_line, git_state, log, machine_info, run_fresh, table, write_report  # noqa: E402

from policygradex.common.artifacts import load_json  # noqa: E402

FAMILY = "planted(n=64,groups=8,orthogonal=1)"
N_TASKS = 64
BUDGET = ["--hidden", "64,64,64", "--transitions", "2048", "--projection-dim", "64", "--k", "8"]


def run(batch: int, total: int, seed: int, root: Path) -> dict:
    out = root / f"b{batch}-s{seed}"
    steps = total // batch
    log(f"B = {batch}, seed {seed}: {steps} steps per task slot")
    run_fresh([FAMILY, *BUDGET, "--steps-per-task", str(steps), "--seed", str(seed),
               "--tasks-per-iteration", str(0 if batch >= N_TASKS else batch)], out)
    meta = load_json(out / "features" / "meta.json")
    returns = [v for v in meta["mean_episode_return"].values() if v is not None]
    g = load_json(out / "groups.json")
    curve_rows = (out / "meta_train_curve.csv").read_text().strip().splitlines()[1:]
    return {"batch": batch, "seed": seed, "steps_per_task": steps, "iterations": len(curve_rows),
            "theta_star_return": float(np.mean(returns)), "nmi_planted": float(g["nmi_planted"]),
            "mean_jaccard": float(np.mean(g["confidence"]["group_jaccard"])),
            "meta_train_s": float(load_json(out / "timings.json")["meta_train"])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("results/meta-training-at-scale.md"))
    ap.add_argument("--total-steps", type=int, default=32 * 16_384)
    ap.add_argument("--batches", default=f"{N_TASKS},32,8")
    ap.add_argument("--seeds", default="1,2")
    ap.add_argument("--root", type=Path, default=Path("runs/meta-batch"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    batches = [int(x) for x in args.batches.split(",")]
    seeds = [int(x) for x in args.seeds.split(",")]
    rows = [run(b, args.total_steps, s, args.root) for b in batches for s in seeds]

    def ms(vals: list[float], fmt: str) -> str:
        if len(vals) < 2:
            return format(vals[0], fmt)
        return f"{format(np.mean(vals), fmt)} +- {format(np.std(vals, ddof=1) / np.sqrt(len(vals)), fmt)}"

    trows = []
    for b in batches:
        rs = [r for r in rows if r["batch"] == b]
        trows.append([f"{b}" + (" (all tasks)" if b >= N_TASKS else " (default)" if b == 32 else ""),
                      f"{rs[0]['steps_per_task']:,}", str(rs[0]["iterations"]),
                      ms([r["theta_star_return"] for r in rs], ".1f"), ms([r["nmi_planted"] for r in rs], ".2f"),
                      ms([r["mean_jaccard"] for r in rs], ".2f"), ms([r["meta_train_s"] for r in rs], ".0f")])
    reading = ["Against every task in every rollout (B = 64), difference of the means +- its standard error "
               "(resolved when beyond 2 SE):", ""]
    base = [r for r in rows if r["batch"] >= N_TASKS]
    for b in batches:
        rs = [r for r in rows if r["batch"] == b]
        if b >= N_TASKS or not base or len(rs) < 2 or len(base) < 2:
            continue
        cells = []
        for key, label, fmt in (("theta_star_return", "theta_star return", ".1f"), ("nmi_planted", "NMI", ".2f"),
                                ("mean_jaccard", "Jaccard", ".2f"), ("meta_train_s", "seconds", ".0f")):
            a, c = np.array([r[key] for r in rs]), np.array([r[key] for r in base])
            diff = a.mean() - c.mean()
            se = float(np.sqrt(a.var(ddof=1) / len(a) + c.var(ddof=1) / len(c)))
            verdict = "resolved" if se > 0 and abs(diff) > 2 * se else "not resolved"
            cells.append(f"{label} {format(diff, '+' + fmt)} +- {format(se, fmt)} ({verdict})")
        reading.append(f"- B = {b}: " + "; ".join(cells))
    per_seed = [[str(r["batch"]), str(r["seed"]), f"{r['theta_star_return']:.1f}", f"{r['nmi_planted']:.2f}",
                 f"{r['mean_jaccard']:.2f}"] for r in rows]
    info = machine_info()
    text = "\n".join([
        "# Meta-training in batches of tasks, at equal total environment steps", "",
        f"Produced by (from the repository root): `{command_line()}`", "",
        f"- machine: {info['cpu']}, nproc={info['nproc']}, torch {info['torch']}; source: {git_state()}",
        f"- family `{FAMILY}`, options `{' '.join(BUDGET)}`, total meta-training budget {args.total_steps:,} "
        f"environment steps in every row (steps per task slot = total / B), seeds {', '.join(map(str, seeds))} "
        "(mean +- standard error); wall time of the page "
        f"{time.perf_counter() - t0:.0f} s", "",
        "theta_star return: its mean episodic return over all 64 tasks on the feature stage's episodes (the policy "
        "whose gradients become the features). NMI: the groups against the planted ones (k = 8 given). Jaccard: "
        "the bootstrap's mean group stability.", "",
        table(["B (tasks per iteration)", "steps per task slot", "PPO iterations", "theta_star return", "NMI planted",
               "mean Jaccard", "meta-training s"], trows), "",
        *reading, "",
        "Per seed:", "",
        table(["B", "seed", "theta_star return", "NMI planted", "mean Jaccard"], per_seed), "",
    ])
    write_report(args.out, text, t0)


if __name__ == "__main__":
    main()
