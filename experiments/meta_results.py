"""Regenerate results/meta-rl.md from the meta-RL comparisons of one run per family, beside the paper's Table 2.

    policygradex run cartpole --preset demo --k 3 --out runs/meta-cartpole
    policygradex meta runs/meta-cartpole --seeds 5 --unseen-tasks 50 --adapt-steps 20 --iterations 20 --trajectories 5
    policygradex run lunarlander --preset demo --k 3 --out runs/meta-lunarlander
    policygradex meta runs/meta-lunarlander --seeds 5 --unseen-tasks 20 --adapt-steps 10 --iterations 50 --trajectories 5
    # MAML stopped at theta_star's budget (10 tasks x 100k steps); a copy of the run keeps theta_star and the cache
    cp -r runs/meta-cartpole runs/meta-cartpole-matched && rm -r runs/meta-cartpole-matched/meta
    policygradex meta runs/meta-cartpole-matched --seeds 5 --unseen-tasks 50 --adapt-steps 20 --iterations 100 --env-steps 1000000 --trajectories 5
    cp -r runs/meta-lunarlander runs/meta-lunarlander-matched && rm -r runs/meta-lunarlander-matched/meta
    policygradex meta runs/meta-lunarlander-matched --seeds 5 --unseen-tasks 20 --adapt-steps 10 --iterations 50 --env-steps 1000000 --trajectories 5
    python experiments/meta_results.py runs/meta-cartpole runs/meta-cartpole-matched runs/meta-lunarlander runs/meta-lunarlander-matched --out results/meta-rl.md

A section is made from RUN/meta/meta.json; its command is read back from the record, so the table always states the
budget it was made with. A run whose MAML stops at theta_star's budget gets its own section, beside the family's.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from demo_results import difference_cell, final_return, versions
from paper_table2 import TABLE2

FAMILIES = ("cartpole", "highway", "lunarlander")
"""The paper's meta-RL columns (Table 2), each a family here. Its Soft Modularization and PaCo rows have no
counterpart in `meta`; the other rows share their keys with it."""

NOT_RUN = {
    "highway": "highway-env steps at about 55 env-steps/s per core, and MAML needs whole episodes (up to 30 steps) "
               "for every inner and outer step. At the budget of the first lunarlander section (50 meta-iterations of "
               "10 slots x 5 episodes, before and after the inner step, then 10 adaptation steps on 20 targets) one "
               "job is about 3,000 env-steps per iteration, 55 minutes, and the 24 jobs of 5 seeds about 22 "
               "CPU-hours: beyond this project's 2-core sessions. The command works on Highway "
               "(`tests/envs/test_highway.py` runs it).",
}
"""Why a family of the paper's meta-RL columns has no section here."""

HEADER = """# Meta-RL: MAML on one representative per group, adapted to unseen tasks

The paper's meta-RL setting (Table 2, control columns): one task from each PolicyGradEx group is the training set
of MAML, and the meta-learned policy is adapted to 50 unseen tasks drawn from the family's parameter range. The
rows here:
- `policygradex`: one random member of each group, drawn anew per seed, as in the paper;
- `all tasks`: all 10 source tasks;
- `random`: 3 random source tasks;
- `gradient_similarity`: one random member of each gradient-similarity group;
- `multitask`: the run's theta_star (PPO on all 10 tasks) adapted by the same procedure.

The paper's "multi-task training" row does not say whether it is MAML on all tasks or a multitask policy
adapted; it stands beside `multitask` here. Its Soft Modularization and PaCo meta-RL rows have no counterpart.

MAML here is second order, with ProMP's PPO outer loop; README.md, "Meta-RL", describes it. Every MAML row spends
the same environment steps. A family's second section stops MAML at theta_star's budget (`--env-steps`), so that
its `multitask` row is budget-matched; the run and its theta_star are the first section's.

Package versions: {versions}.
"""


def commands(run: Path, record: dict) -> str:
    mc, maml = record["config"], record["maml"]
    cfg = json.loads((run / "config.json").read_text())["config"]
    return (f"policygradex run {cfg['family']} --preset demo --k {record['k']} --out {run}\n"
            f"policygradex meta {run} --seeds {mc['seeds']} --unseen-tasks {mc['unseen_tasks']} --adapt-steps "
            f"{mc['adapt_steps']} --iterations {maml['iterations']} --meta-batch {maml['meta_batch']} --trajectories "
            f"{maml['trajectories']}" + (f" --env-steps {maml['env_steps']}" if maml.get("env_steps") else ""))


def section(run: Path, record: dict, out_dir: Path, earlier: dict | None = None) -> list[str]:
    """One family's section from RUN/meta/meta.json's ``record``; ``earlier``: the record of the same family's
    section above it, at another budget."""
    family = record["family"].split("(")[0]
    mc, maml = record["config"], record["maml"]
    paper = TABLE2.get(family, {})
    png = f"meta-rl-{run.name.removeprefix('meta-')}.png"  # runs/meta-cartpole -> meta-rl-cartpole.png
    shutil.copyfile(run / "meta" / "adaptation_curves.png", out_dir / png)
    groups = json.loads((run / "groups.json").read_text())["groups"]
    cap = maml.get("env_steps")
    title = family if not cap else (f"{family}, MAML stopped at theta_star's budget" if cap == record[
        "theta_star_env_steps"] else f"{family}, MAML stopped at {cap:,} environment steps")
    lines = [f"## {title}", "", "```", commands(run, record), "```", "",
             f"- Groups of the run (k = {record['k']}): " + "; ".join("{" + ", ".join(g) + "}" for g in groups) + ".",
             f"- Budget: {maml['iterations']} meta-iterations"
             + (f" at most, stopping at {maml['env_steps']:,} environment steps," if maml.get("env_steps") else "")
             + f" of {maml['meta_batch']} task slots and "
             f"{maml['trajectories']} episodes per slot per step, so {record['meta_train_env_steps']:,} environment "
             f"steps per MAML training (seed 0's `policygradex` row). theta_star had {record['theta_star_env_steps']:,}"
             f" (PPO on all source tasks; mean training return {final_return(run):.1f} in its last iteration).",
             f"- Adaptation: {mc['adapt_steps']} steps (the paper: 200) of size {maml['inner_lr']} on "
             f"{len(record['unseen'])} unseen tasks, {maml['trajectories']} fresh episodes per step.",
             f"- Seeds: {mc['seeds']}. Mean ± std over seeds of the mean return over the unseen tasks; PolicyGradEx - "
             "row ± the standard error of the difference.", "",
             "| row | before adaptation | after adaptation | PolicyGradEx - row | paper (after 200 steps) |",
             "|---|---|---|---|---|"]
    for row, e in record["rows"].items():
        cell = difference_cell(e["policygradex_difference"], e["difference_stderr"])
        lines.append(f"| {row} | {e['before_mean']:.1f} ± {e['before_std']:.1f} | {e['after_mean']:.1f} ± "
                     f"{e['after_std']:.1f} | {cell} | {paper.get(row, '—')} |")
    share = record["meta_train_env_steps"] / record["theta_star_env_steps"]
    if not 0.9 <= share <= 1.1:
        lines += ["", f"The `multitask` row is not budget-matched: each MAML training took {share:.0%} of the "
                  f"environment steps theta_star had ({record['theta_star_env_steps']:,}). `--env-steps "
                  f"{record['theta_star_env_steps']}` stops MAML at theta_star's budget (with enough `--iterations` "
                  "to reach it)."]
    rows = record["rows"]
    best = max(rows, key=lambda r: rows[r]["after_mean"])
    gains = {r: e["after_mean"] - e["before_mean"] for r, e in rows.items()}
    against = []
    if earlier is not None:
        ratio = earlier["meta_train_env_steps"] / record["meta_train_env_steps"]
        against = [f"- Against the {family} section above, whose MAML had {ratio:.2g}x these steps, after "
                   "adaptation: " + ", ".join(f"{r} {earlier['rows'][r]['after_mean']:.1f} -> {e['after_mean']:.1f}"
                                              for r, e in rows.items() if r in earlier["rows"]) + "."]
    lines += ["", *against, f"- Highest after adaptation: `{best}` ({rows[best]['after_mean']:.1f}).",
              "- Gain from adaptation (after - before): " + ", ".join(f"{r} {g:+.1f}" for r, g in gains.items()) + ".",
              "", f"![adaptation curves]({png})", ""]
    unresolved = [r for r, e in rows.items() if e["difference_stderr"] and
                  abs(e["policygradex_difference"]) < 2 * e["difference_stderr"]]
    if unresolved:
        lines.insert(-3, "- Not resolved at 2 standard errors against PolicyGradEx: "
                     + ", ".join(f"`{r}`" for r in unresolved) + ".")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", type=Path, help="run directories with meta/meta.json")
    ap.add_argument("--out", type=Path, default=Path("results/meta-rl.md"))
    args = ap.parse_args()
    lines = HEADER.format(versions=versions()).splitlines()
    records: dict[str, dict] = {}  # family -> its latest section's record
    for run in args.runs:
        family = json.loads((run / "config.json").read_text())["config"]["family"]
        record = json.loads((run / "meta" / "meta.json").read_text())
        lines += [""] + section(run, record, args.out.parent, records.get(family))
        records[family] = record
    for name in FAMILIES:
        if name not in records:
            lines += ["", f"## {name}", "", f"Not run: {NOT_RUN.get(name, 'no run was given.')}"]
    args.out.write_text("\n".join(lines).rstrip() + "\n")
    print(args.out.read_text())


if __name__ == "__main__":
    main()
