r"""results/expansion-points.md: the groups from policies at several points of meta-training, alone and together.

PolicyGradEx expands every task's loss around one policy, theta_star. A group that theta_star already serves has
nowhere to go to first order: its gradient is small and mostly noise, and the method cannot place it (the
expansion-point limit of results/reward-geometry.md and reward-geometry-lunarlander.md: LunarLander's middle
reward group, CartPole reward seed 13). A policy from earlier in meta-training has not yet settled on any group, so
every group still pulls it its own way; but it may also be too poor to show a conflict that needs competence (a
CartPole policy that drops the pole at once never moves the cart far). This page measures both, and the average of
the standardised affinities over the points, as TracIn sums influence over checkpoints::

    python experiments/expansion_points.py 25000=runs/ep25 50000=runs/ep50 100000=runs/crn \
        --out results/expansion-points.md

The last section measures the option that makes this a pipeline stage (``--expansion-points 0.5,1``), from the
option's planted-suite runs as ``planted_suite.py --rescore`` scored them::

    python experiments/planted_suite.py --rescore runs/xr --json results/data/expansion-option.json
    python experiments/expansion_points.py --page-only --option results/data/expansion-option.json \
        results/data/expansion-snapshot.json --out results/expansion-points.md

Each argument is ``STEPS=ROOT``: a folder of planted-suite runs whose meta-training ran STEPS PPO steps per task
(``--steps-per-task STEPS``), all else equal to the defaults (``--preset demo --k 3``). The run directories are
matched by name across the roots (same family, kind and seed). Every point's U is the Newton-step surrogate's on
that run's own features and subsets (it reproduces the exact fits; the run's affinity.npy when the run used
``--surrogate newton``, recomputed from its features otherwise), so the points differ in the policy alone.
``exact`` is the last root's own groups (the defaults' exact fits). Cost per run: a Newton fit (O(m d^3)) for each
root run under ``exact``, and one n x n clustering per variant.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import normalized_mutual_info_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from planted_suite import TUNING_SEEDS, kind_and_env, mean_se, paired, versions  # noqa: E402

from policygradex.common.artifacts import load_json, load_npy  # noqa: E402
from policygradex.common.threads import thread_limit  # noqa: E402
from policygradex.envs.registry import load_family  # noqa: E402
from policygradex.pipeline.affinity import subset_affinity  # noqa: E402
from policygradex.pipeline.clustering import cluster, standardize  # noqa: E402
from policygradex.pipeline.config import RunConfig  # noqa: E402
from policygradex.pipeline.partitions import labels_from_groups  # noqa: E402
from policygradex.pipeline.rundir import RunDir  # noqa: E402
from policygradex.pipeline.statistics import statistics_of_files  # noqa: E402
from policygradex.pipeline.subset_table import SubsetTable  # noqa: E402
from policygradex.pipeline.surrogate import run_newton  # noqa: E402


def newton_affinity(run: Path, cache: Path | None = None) -> np.ndarray:
    """The run's U from the Newton-step surrogate on its own features and subsets (its affinity.npy if it used it).
    ``cache`` (``--cache``): a folder where recomputed affinities are kept by run path, so a rerun skips the fits."""
    rd = RunDir(run)
    cfg = RunConfig.from_dict(load_json(rd.config)["config"])
    if cfg.surrogate.method == "newton":
        return load_npy(rd.affinity)
    cached = None if cache is None else cache / (str(run).replace("/", "+") + ".npy")
    if cached is not None and cached.exists():
        return np.load(cached)
    n = load_family(cfg.family).n
    stats = statistics_of_files([rd.task_features(i) for i in range(n)], cfg.features.holdout_fraction,
                                cfg.surrogate.blocks, None, per_task=True)
    subsets = SubsetTable.load(rd.subsets).subsets
    f_hat = run_newton(stats, subsets, cfg.surrogate).f_hat
    U = subset_affinity(subsets, f_hat, n, cfg.cluster.interaction == "subsets")
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        np.save(cached, U)
    return U


def measure(name: str, points: dict[int, Path], cache: Path | None = None) -> dict[str, Any] | None:
    """NMI of every combination of the points this run has finished at; None without the last point (theta_star)
    or any earlier one."""
    last = points[max(points)] / name
    runs = {steps: root / name for steps, root in points.items() if (root / name / "groups.json").exists()}
    if not (last / "groups.json").exists() or len(runs) < 2:
        return None
    cfg = RunConfig.from_dict(load_json(last / "config.json")["config"])
    family = load_family(cfg.family)
    if family.planted_groups is None:
        return None
    groups = load_json(last / "groups.json")
    n, k = family.n, groups["k"]
    planted = labels_from_groups([list(g) for g in family.planted_groups], n)

    def nmi(labels: np.ndarray) -> float:
        return round(float(normalized_mutual_info_score(planted, labels)), 4)

    def groups_of(U: np.ndarray) -> float:
        return nmi(cluster(U, k=k, solver=cfg.cluster.solver, exhaustive_check=False, relaxation_gap=False).labels)

    U = {steps: standardize(newton_affinity(r, cache)) for steps, r in runs.items()}
    kind, env = kind_and_env(cfg.family)
    row: dict[str, Any] = {"name": name, "kind": kind, "env": env, "seed": cfg.seed,
                           "held_out": cfg.seed not in TUNING_SEEDS,
                           "exact": nmi(labels_from_groups(groups["group_indices"], n)),
                           "points": {}}
    for size in range(1, len(U) + 1):
        for combo in itertools.combinations(sorted(U), size):
            row["points"]["+".join(str(s) for s in combo)] = groups_of(sum(U[s] for s in combo) / len(combo))
    return row


def _label(key: str) -> str:
    return " + ".join(f"{int(s) // 1000}k" for s in key.split("+"))


def page(rows: list[dict[str, Any]], command: str, candidate: str) -> str:
    keys = sorted({k for r in rows for k in r["points"]}, key=lambda s: (s.count("+"), [int(x) for x in s.split("+")]))
    doc = (__doc__ or "").split("::")[0].split("\n\n", 1)[1].replace("\n", " ") + "."
    lines = ["# Expansion points: groups from policies at several points of meta-training", "", doc, "",
             f"Package versions: {versions()}.", "", "```", command, "```", "",
             "NMI against the planted groups (k = 3), mean ± standard error over seeds and the worst seed in "
             "brackets. "
             "A column with one point is that policy alone; with several, the mean of their standardised affinities; "
             "[k runs]: only k of the row's runs have finished at every point of the column. "
             "`exact` is the defaults' run (theta_star after the demo budget, exact fits).", "",
             "| kind | env | seeds | exact | " + " | ".join(_label(k) for k in keys) + " |",
             "|---|---|---|---|" + "---|" * len(keys)]
    for kind, env, held in sorted({(r["kind"], r["env"], r["held_out"]) for r in rows}):
        rs = sorted((r for r in rows if (r["kind"], r["env"], r["held_out"]) == (kind, env, held)),
                    key=lambda r: r["seed"])

        def cell(key: str | None) -> str:
            xs = [r["exact"] if key is None else r["points"][key] for r in rs if key is None or key in r["points"]]
            if not xs:
                return "-"
            return f"{mean_se(xs)} ({min(xs):.2f})" + ("" if len(xs) == len(rs) else f" [{len(xs)} runs]")

        lines.append(f"| {kind} | {env} | {', '.join(str(r['seed']) for r in rs)} | {cell(None)} | "
                     + " | ".join(cell(k) for k in keys) + " |")
    lines.append("")
    for held, name in ((False, "tuning seeds 0-2"), (True, "held-out seeds 10 and up")):
        rs = [r for r in rows if r["held_out"] == held]
        if not rs:
            continue
        lines += [f"Over every run on the {name} ({len(rs)} runs), paired by run against `exact`:", ""]
        for key in keys:
            have = [r for r in rs if key in r["points"]]
            lines.append(f"- {_label(key)} ({len(have)} runs): "
                         f"{paired([r['points'][key] for r in have], [r['exact'] for r in have])}; runs below 0.8: "
                         f"{sum(r['points'][key] < 0.8 for r in have)} (exact: {sum(r['exact'] < 0.8 for r in have)})")
        lines.append("")
    lines += [f"Within 2 SE is not resolved. The candidate chosen on the tuning seeds: {_label(candidate)}.", ""]
    return "\n".join(lines)


def option_rows(options: list[Path], defaults: Path, rows: list[dict[str, Any]], candidate: str
                ) -> list[dict[str, Any]]:
    """The runs of the option (``--expansion-points 0.5,1``), as ``planted_suite.py --rescore`` scored them into
    ``options`` (JSONs of rows; a row's variant label says ``retrain``, the default, or ``snapshot``): one row per run
    name, with each variant's NMI and stable groups, the defaults' NMI (the run of the same name under ``defaults``)
    and, where the separate meta-trainings above measured it, the candidate's."""
    by_name = {r["name"]: r for r in rows}
    out: dict[str, dict[str, Any]] = {}
    for r in (r for option in options for r in json.loads(option.read_text())["rows"]):
        name = Path(r["run_dir"]).name
        base = defaults / name / "groups.json"
        if not base.exists():
            continue
        policy = "snapshot" if r["baseline"].endswith(" snapshot") else "retrain"
        row = out.setdefault(name, {"name": name, "kind": r["kind"], "env": r["family"], "seed": r["seed"],
                                    "held_out": r["held_out"], "defaults": round(load_json(base)["nmi_planted"], 4),
                                    "separate": by_name.get(name, {}).get("points", {}).get(candidate)})
        row[policy] = round(r["nmi"], 4)
        row[f"{policy}_stable"] = (r["stable_groups_correct"], r["stable_groups"])
    return sorted(out.values(), key=lambda r: (r["kind"], r["env"], r["seed"]))


def option_page(rows: list[dict[str, Any]], command: str) -> list[str]:
    lines = ["## As a pipeline stage: `--expansion-points 0.5,1`", "",
             "The default since [expansion-defaults.md](expansion-defaults.md); measured below while it was an option, "
             "against theta_star alone (the defaults then, `--expansion-points 1` now).", "",
             "`policygradex run ... --expansion-points 0.5,1 --surrogate newton` clusters the mean of the "
             "standardised affinities of theta_star and of a policy from half-way through meta-training; the "
             "confidence resamples both. With `--expansion-policy retrain` (the default) that policy is a "
             "meta-training of its own on half the budget, the same seed: its U is byte for byte the separate 50k "
             "run's above (checked on CartPole reward seed 0), and the two columns agree wherever both were run. "
             "With `snapshot` it is meta-training's "
             "own policy half-way, its learning rate not yet annealed, and costs no extra training. "
             "NMI against the planted groups, mean ± standard error (worst seed); stable: groups the confidence "
             "calls stable that match a planted group (or one plus at most one task) / groups called stable.", "",
             "```", command, "```", "",
             "| kind | env | seeds | theta_star alone | separate | retrain | stable correct | snapshot | "
             "stable correct |",
             "|---|---|---|---|---|---|---|---|---|"]

    def cell(rs: list[dict[str, Any]], key: str) -> str:
        xs = [r[key] for r in rs if r.get(key) is not None]
        if not xs:
            return "-"
        return f"{mean_se(xs)} ({min(xs):.2f})" + ("" if len(xs) == len(rs) else f" [{len(xs)} runs]")

    def stable(rs: list[dict[str, Any]], key: str) -> str:
        got = [r[f"{key}_stable"] for r in rs if f"{key}_stable" in r]
        return f"{sum(c for c, _ in got)}/{sum(n for _, n in got)}" if got else "-"

    for kind, env, held in sorted({(r["kind"], r["env"], r["held_out"]) for r in rows}):
        rs = [r for r in rows if (r["kind"], r["env"], r["held_out"]) == (kind, env, held)]
        lines.append(f"| {kind} | {env} | {', '.join(str(r['seed']) for r in rs)} | {cell(rs, 'defaults')} | "
                     f"{cell(rs, 'separate')} | {cell(rs, 'retrain')} | {stable(rs, 'retrain')} | "
                     f"{cell(rs, 'snapshot')} | {stable(rs, 'snapshot')} |")
    lines.append("")
    for held, name in ((False, "tuning seeds 0-2"), (True, "held-out seeds 10 and up")):
        for policy in ("retrain", "snapshot"):
            rs = [r for r in rows if r["held_out"] == held and r.get(policy) is not None]
            if not rs:
                continue
            lines.append(f"- {policy}, {name} ({len(rs)} runs): - theta_star alone "
                         f"{paired([r[policy] for r in rs], [r['defaults'] for r in rs])}; runs below 0.8: "
                         f"{sum(r[policy] < 0.8 for r in rs)} (theta_star alone "
                         f"{sum(r['defaults'] < 0.8 for r in rs)}); "
                         f"stable groups correct {stable(rs, policy)}.")
        both = [r for r in rows if r["held_out"] == held and r.get("retrain") is not None
                and r.get("snapshot") is not None]
        if both:
            lines.append(f"- retrain - snapshot, {name} ({len(both)} runs with both): "
                         f"{paired([r['retrain'] for r in both], [r['snapshot'] for r in both])}.")
    lines.append("")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("points", nargs="*", help="STEPS=ROOT: a folder of runs meta-trained STEPS PPO steps per task")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--data", type=Path, default=Path("results/data/expansion-points.json"))
    ap.add_argument("--page-only", action="store_true", help="rewrite the page from --data, measure nothing")
    ap.add_argument("--candidate", default=None, help="the combination chosen on the tuning seeds, e.g. "
                    "50000+100000 (default: every point)")
    ap.add_argument("--cache", type=Path, default=None, help="keep recomputed Newton affinities here")
    ap.add_argument("--option", type=Path, nargs="+", default=None, help="rows of the --expansion-points runs, "
                    "from planted_suite.py --rescore ROOT --json OPTION; with --defaults ROOT (the defaults' runs)")
    ap.add_argument("--defaults", type=Path, default=Path("runs/crn"))
    args = ap.parse_args()
    if args.page_only:
        data = json.loads(args.data.read_text())
        text = page(data["rows"], data["command"], data["candidate"])
        if args.option is not None:
            options = " ".join(map(str, args.option))
            command = (f"python experiments/expansion_points.py --page-only --option {options} "
                       f"--defaults {args.defaults} --out {args.out}")
            text += "\n".join(option_page(option_rows(args.option, args.defaults, data["rows"], data["candidate"]),
                                          command)) + "\n"
        args.out.write_text(text)
        return
    points = {int(s): Path(root) for s, root in (p.split("=", 1) for p in args.points)}
    names = sorted({r.name for root in points.values() for r in root.iterdir() if r.is_dir()})
    rows = []
    with thread_limit(1):
        for name in names:
            row = measure(name, points, args.cache)
            if row is not None:
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    candidate = args.candidate or "+".join(str(s) for s in sorted(points))
    command = ("python experiments/expansion_points.py " + " ".join(args.points) + f" --candidate {candidate}"
               + f" --out {args.out}")
    args.data.write_text(json.dumps({"command": command, "candidate": candidate, "rows": rows}, indent=1) + "\n")
    args.out.write_text(page(rows, command, candidate))


if __name__ == "__main__":
    main()
