"""Regenerate results/highway.md from a Highway run and its comparison (the multitask setting of Table 2's rows).

    policygradex run highway --k 3 --steps-per-task 10000 --transitions 2048 --out runs/highway
    policygradex compare runs/highway --seeds 3 --steps-per-task 2000 --eval-episodes 5 --network-rows softmod,paco
    python experiments/highway_results.py runs/highway --out results/highway.md
"""

from __future__ import annotations

import shutil
import textwrap

from demo_results import (
    difference_cell,
    final_return,
    groups_bullet,
    load_comparison,
    per_task_table,
    resolution,
    versions,
)
from paper_table2 import paper_rows

PAPER = paper_rows("highway", {"softmod": "all tasks (softmod)", "paco": "all tasks (paco)"})
"""Table 2, Highway column: mean return ± std over 5 runs. These are returns after 200 MAML adaptation steps on 50
unseen densities (the meta-RL setting), on a return scale the paper does not define; shown for the rows' order only."""


def package_versions() -> str:
    from importlib.metadata import version

    return f"{versions()}, highway-env {version('highway-env')}"


def main() -> None:
    args, cfg, record, groups = load_comparison(__doc__, "results/highway.md")
    run = args.run
    seeds, rows, steps = record["config"]["seeds"], record["methods"], record["steps_per_task"]
    commands = textwrap.dedent(__doc__.split("\n\n")[1]).strip("\n")
    lines = ["# Highway: the multitask rows of Table 2 at a CPU budget", "",
             "highway-env's `highway-fast-v0` with 10 traffic densities (`vehicles_density` 0.25-2.0), discrete "
             "actions, gamma 0.8 (highway-env's own training scripts). An episode lasts at most 30 steps with a reward "
             "of at most 1 per step, so a return is at most 30; a crash ends the episode early.", "",
             "```", commands, "```", "",
             f"- Meta-training: `{cfg['network']['name']}`, {cfg['ppo']['steps_per_task']:,} PPO steps per task, "
             f"N = {cfg['features']['transitions_per_task']:,} transitions per task, d = "
             f"{cfg['features']['projection_dim']}, k = {record['k']}.",
             groups_bullet(groups),
             f"- Every row: {steps:,} PPO steps per task, from scratch, {seeds} seeds; mean undiscounted return over "
             f"{record['eval_episodes']} evaluation episodes per task. The groupings' policies and `multitask` are "
             f"`{record['group_network']}` networks; `all tasks (NAME)` is one NAME network on all 10 tasks with a "
             "one-hot task id. CARE is left out, as in the paper for the control tasks.",
             "- The simulator is pure Python, about 55 environment steps per second per core, which sets the budget: "
             f"each row spends {10 * steps:,} environment steps per seed, {len(rows)} rows x {seeds} seeds.",
             f"- Package versions: {package_versions()}.", "",
             "The paper's Highway column is a different setting: returns after 200 MAML adaptation steps on unseen "
             "densities, on a scale above our episodes' maximum of 30. It is shown beside each row for reference "
             "only; [meta-rl.md](meta-rl.md) is the setting it belongs to.", "",
             f"| row | here: mean return ± std ({seeds} seeds) | PolicyGradEx - row ± SE | paper (meta-RL setting) |",
             "|---|---|---|---|"]
    for key, (name, paper) in PAPER.items():
        if key in rows:
            row = rows[key]
            cell = difference_cell(row.get("policygradex_difference"), row.get("difference_stderr"))
            lines.append(f"| {name} (`{key}`) | {row['overall_mean']:.2f} ± {row['overall_std']:.2f} | {cell} | "
                         f"{paper} |")
    names = record["task_names"]
    lines += ["", "Return per task (mean over seeds):", "",
              *per_task_table(rows, list(PAPER), names, lambda n: n.removeprefix("density="), ".1f")]
    best = max(rows, key=lambda k: rows[k]["overall_mean"])
    means = [row["overall_mean"] for row in rows.values()]
    per_task = [row["per_task_mean"] for row in rows.values()]
    sparsest = (min(r[0] for r in per_task), max(r[0] for r in per_task))
    crowded = (min(r[-1] for r in per_task), max(r[-1] for r in per_task))
    lines += ["", "## Reading", "",
              f"- {resolution(rows)} Highest mean: `{best}`, but every row's mean lies between {min(means):.1f} and "
              f"{max(means):.1f}, on returns of at most 30.",
              f"- Density, not the grouping, sets the return: every row gets {sparsest[0]:.1f}-{sparsest[1]:.1f} at density "
              f"{names[0].removeprefix('density=')} and {crowded[0]:.1f}-{crowded[1]:.1f} at "
              f"{names[-1].removeprefix('density=')}.",
              "- Training return in the last iteration (the left plot: the sampling policy, over the episodes that "
              "ended in it; mean over seeds): " + ", ".join(f"`{k}` {rows[k]['curve'][-1]:.1f}" for k in
                                                             sorted(rows, key=lambda k: -rows[k]["curve"][-1]))
              + ". The evaluation of the final policies above does not resolve the order it suggests.",
              f"- {steps:,} steps per task is {steps / 20000:.0%} of highway-env's own 20,000-step PPO budget for one "
              f"density. theta_star, meta-trained {cfg['ppo']['steps_per_task']:,} steps per task, had a mean "
              f"training return of {final_return(run):.1f} in its last iteration. The table shows that every row "
              "runs on Highway; it cannot show whether the groups pay off at the paper's budget.",
              ""]
    out_dir = args.out.parent
    shutil.copyfile(run / "compare" / "learning_curves.png", out_dir / "highway-curves.png")
    shutil.copyfile(run / "affinity.png", out_dir / "highway-affinity.png")
    lines += ["![training curves](highway-curves.png)", "", "![affinity](highway-affinity.png)"]
    args.out.write_text("\n".join(lines).rstrip() + "\n")
    print(args.out.read_text())


if __name__ == "__main__":
    main()
