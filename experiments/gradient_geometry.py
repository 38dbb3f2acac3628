"""results/reward-geometry.md: why a planted group is merged with another, seen in the tasks' mean gradients.

For each run: every task's mean advantage-weighted gradient feature G_k = mean_t sign(A_t) |A_t| g~_t (the direction
theta_star's first-order step for task k takes in the projected space), the cosine between the tasks' G_k averaged
within and between planted groups, the norms of G_k by group, and the run's own groups against the planted ones.

    python experiments/gradient_geometry.py runs/suite-pt/reward-cartpole-s0 runs/suite-pt/reward-cartpole-s1 \
        runs/suite-pt/actuation-cartpole-s0 --out results/reward-geometry.md

The runs are the planted suite's (experiments/planted_suite.py, `--baseline per_task` twins); they need their
per-task feature files (``--store features``, the default at n = 12).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import normalized_mutual_info_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from planted_suite import versions  # noqa: E402

from policygradex.common.artifacts import load_json, load_npz  # noqa: E402
from policygradex.envs.registry import load_family  # noqa: E402
from policygradex.pipeline.group_record import Groups  # noqa: E402
from policygradex.pipeline.partitions import labels_from_groups  # noqa: E402
from policygradex.pipeline.rundir import RunDir  # noqa: E402


def mean_gradients(run: Path, n: int) -> np.ndarray:
    rd = RunDir(run)
    rows = []
    for i in range(n):
        d = load_npz(rd.task_features(i))
        sign = np.where(d["labels"] > 0, 1.0, -1.0)
        rows.append(((sign * d["weights"])[:, None] * d["features"].astype(np.float64)).mean(axis=0))
    return np.array(rows)


def section(run: Path) -> list[str]:
    cfg = load_json(RunDir(run).config)["config"]
    family = load_family(cfg["family"])
    truth = [list(g) for g in family.planted_groups]
    G = mean_gradients(run, family.n)
    norms = np.linalg.norm(G, axis=1)
    C = (G / norms[:, None]) @ (G / norms[:, None]).T
    groups = Groups.load(RunDir(run).groups, family.n)
    nmi = normalized_mutual_info_score(labels_from_groups(truth, family.n),
                                       labels_from_groups(groups.index_lists(), family.n))

    def label(g: int) -> str:
        target = family.tasks[truth[g][0]].params.get("target")
        shown = "reward" in family.name and target is not None
        return f"group {g}" + (f" (x = {target:+g}{unit(family.name)})" if shown else "")

    lines = [f"## `{run}`", "", f"`{cfg['family']}`, seed {cfg['seed']}, baseline "
             f"{cfg['features'].get('baseline', 'policy')}: NMI {nmi:.2f}; the run's groups "
             + " ".join("{" + ", ".join(f"{i}" for i in g) + "}" for g in groups.index_lists())
             + ", planted " + " ".join("{" + ", ".join(f"{i}" for i in g) + "}" for g in truth) + ".", "",
             "Mean cosine of the tasks' G_k, within a planted group (diagonal, off-diagonal pairs only) and between "
             "two:", "", "| | " + " | ".join(label(g) for g in range(len(truth))) + " |",
             "|---|" + "---|" * len(truth)]
    for a in range(len(truth)):
        cells = []
        for b in range(len(truth)):
            block = C[np.ix_(truth[a], truth[b])]
            value = block[~np.eye(len(truth[a]), dtype=bool)].mean() if a == b else block.mean()
            cells.append(f"{value:+.2f}")
        lines.append(f"| {label(a)} | " + " | ".join(cells) + " |")
    lines += ["", "Norm of G_k by planted group: " + "; ".join(
        f"group {g}: " + ", ".join(f"{norms[i]:.2f}" for i in truth[g]) for g in range(len(truth))), ""]
    return lines


def unit(family_name: str) -> str:
    """The unit of a reward family's positions: metres on CartPole's track, none for LunarLander's normalised x."""
    return "" if "lunarlander" in family_name else " m"


def coverage_lines(run: Path, episodes: int) -> list[str]:
    """Where theta_star keeps the cart: percentiles of x over ``episodes`` episodes of the first task of each planted
    group (actions sampled, as the feature stage samples them; reset seeds 0..episodes-1)."""
    import torch

    from policygradex.analysis.context import load_context

    ctx = load_context(run)
    truth = [list(g) for g in ctx.family.planted_groups]
    lunar = "lunarlander" in ctx.family.name
    lines = [f"Where theta_star keeps the {'lander (normalised x' if lunar else 'cart (x in m'}, {episodes} episodes "
             "of the first task of each planted group; percentiles 5 / 25 / 50 / 75 / 95):", ""]
    torch.manual_seed(0)
    for g, members in enumerate(truth):
        task = ctx.family.tasks[members[0]]
        env = task.make_env()
        xs = []
        for ep in range(episodes):
            obs, _ = env.reset(seed=ep)
            done = False
            while not done:
                with torch.no_grad():
                    action = ctx.model.get_action_and_value(torch.as_tensor(obs, dtype=torch.float32)[None])[0]
                obs, _, terminated, truncated, _ = env.step(int(action[0]))
                xs.append(float(obs[0]))
                done = terminated or truncated
        pct = np.percentile(xs, [5, 25, 50, 75, 95])
        lines.append(f"- group {g} (x_g = {task.params.get('target', float('nan')):+g}{unit(ctx.family.name)}): "
                     + " / ".join(f"{v:+.2f}" for v in pct))
    return lines + [""]


def metric_lines(run: Path, l2s: list[float]) -> list[str]:
    """NMI of the closed form's groups when the metric A = (H + l2 I)^-1 whitens more (smaller l2), and the
    spectrum of the shared curvature H: how many directions the per-transition gradients span."""
    from policygradex.pipeline.clustering import cluster
    from policygradex.pipeline.statistics import closed_form_affinity, statistics_of_files

    rd = RunDir(run)
    cfg = load_json(rd.config)["config"]
    family = load_family(cfg["family"])
    truth = labels_from_groups([list(g) for g in family.planted_groups], family.n)
    stats = statistics_of_files([rd.task_features(i) for i in range(family.n)], cfg["features"]["holdout_fraction"])
    ev = np.linalg.eigvalsh(stats.curvature)[::-1]
    cells = []
    for l2 in l2s:
        labels = cluster(closed_form_affinity(stats, l2), k=len(family.planted_groups), exhaustive_check=False,
                         relaxation_gap=False).labels
        cells.append(f"l2 = {l2:g}: {normalized_mutual_info_score(truth, labels):.2f}")
    return [f"Shared curvature H: {int((ev > 1e-3 * ev[0]).sum())} of {len(ev)} eigenvalues above 1e-3 of the "
            f"largest, {int((ev > 1e-6 * ev[0]).sum())} above 1e-6. NMI of the closed form's groups by ridge "
            "(a smaller l2 whitens more of H's small directions): " + "; ".join(cells) + ".", ""]


def variant_lines(runs: list[Path]) -> list[str]:
    """The planted NMI of further runs of the same families (e.g. with --task-id), beside their options."""
    lines = ["## Other suspects: the same families with one option changed", "",
             "| run | seed | task id | baseline | NMI |", "|---|---|---|---|---|"]
    for run in runs:
        cfg = load_json(RunDir(run).config)["config"]
        family = load_family(cfg["family"])
        truth = labels_from_groups([list(g) for g in family.planted_groups], family.n)
        groups = Groups.load(RunDir(run).groups, family.n)
        nmi = normalized_mutual_info_score(truth, labels_from_groups(groups.index_lists(), family.n))
        lines.append(f"| `{run}` | {cfg['seed']} | {'on' if cfg['network']['task_id'] else 'off'} | "
                     f"{cfg['features'].get('baseline', 'policy')} | {nmi:.2f} |")
    return lines + [""]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", type=Path, nargs="+")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--coverage", type=int, default=0, metavar="EPISODES",
                    help="also say where theta_star keeps the cart, from this many episodes per planted group")
    ap.add_argument("--l2", default="", help="also the closed form's NMI at these ridges, e.g. 1,0.1,0.01,0.001")
    ap.add_argument("--variants", type=Path, nargs="*", default=[],
                    help="further runs of these families with one option changed, scored against the planted groups")
    ap.add_argument("--intro", type=Path, default=None,
                    help="a Markdown file whose text replaces the page's title and reading (CartPole's by default)")
    args = ap.parse_args()
    intro = ["# Where the reward kind's middle group goes: the geometry of the tasks' gradients at theta_star", "",
             "The planted suite's `reward` kind pays each group for keeping the cart near its own position on a line "
             "(-1.2, 0 and +1.2 m). With per-task value baselines the gradient signal is reliable "
             "(results/weak-signal.md), yet the middle group is merged with one side in most seeds "
             "(results/planted.md). Below, the direction each task's first-order step takes at theta_star "
             "(the mean advantage-weighted gradient feature G_k) by planted group, against a kind that is "
             "recovered (actuation).", "",
             "What the tables below show: in both reward runs the middle group's step points the same way as the "
             "right group's (mean cosine near +1): at theta_star, to first order, the two differ in how far they want "
             "to move, not where. Where the norms of G_k separate them (seed 1) the surrogate's logistic fits tell "
             "them apart and the groups are recovered; where the norms overlap (seed 0) the middle group is merged "
             "with the right one. The actuation kind's groups point in different directions. `compare` on seed 0 "
             "(results/planted.md, the section on training) shows the merge costs return against the planted "
             "groups: the structure is real, and first-order information at one theta_star does not show it "
             "reliably.", "",
             "Why, one suspect at a time (the lines under each reward run, and the last table):", "",
             "- **Where theta_star goes.** One policy for every task keeps the cart near the size-weighted mean of the "
             "positions (the left group is the largest), so almost all of its transitions sit left of 0. There the "
             "middle and the right group both want the cart to move right; they disagree only between 0 and +1.2 m, "
             "which theta_star seldom visits. The gradients at theta_star can only tell apart what its state "
             "distribution covers.",
             "- **The metric.** The per-transition gradients span a handful of directions (the spectrum of H), and "
             "whitening more of them (a smaller l2) leaves the groups where they were: the difference is not hidden in "
             "small directions of the features, it is absent from them.",
             "- **A task id.** With `--task-id` theta_star can serve each task's own position, so its transitions "
             "would cover each group's region; the groups come back worse (the table at the end), so a task id is not "
             "the way to more coverage here.",
             "",
             "So the limit is the expansion point, not the estimator: an affinity from one theta_star's first-order "
             "expansion sees a reward conflict only where theta_star's own states show it. Left for later: a second "
             "expansion point per group of candidates, or transitions from a more exploratory policy.", ""]
    if args.intro is not None:
        intro = [args.intro.read_text().rstrip(), ""]
    lines = [*intro, f"Package versions: {versions()}.", "",
             "```", " ".join(["python experiments/gradient_geometry.py", *sys.argv[1:]]), "```", ""]
    for run in args.runs:
        lines += section(run)
        if args.coverage and "reward" in load_json(RunDir(run).config)["config"]["family"]:
            lines += coverage_lines(run, args.coverage)
        if args.l2:
            lines += metric_lines(run, [float(x) for x in args.l2.split(",")])
    if args.variants:
        lines += variant_lines(args.variants)
    args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
