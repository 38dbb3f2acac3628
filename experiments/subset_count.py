r"""results/subset-count.md: whether the subset surrogate's misplaced tasks come from the Monte Carlo noise of which
subsets were drawn, or from the curvature each subset gets. On finished planted-suite runs, the groups from the run's
m = 3 n^2 sampled subsets against those from every one of the C(n, alpha) subsets (both through the Newton-step
surrogate on the run's own features, which reproduces the exact fits), and against the closed form (the same
expectation under one shared curvature)::

    python experiments/subset_count.py runs/crn runs/crn-twins runs/suite-pt runs/suite --out results/subset-count.md

Each argument is a root whose run directories are read (the planted suite's ``--root``).

Per run: NMI against the planted groups of (a) the run's own exact groups, (b) Newton on the run's subsets, (c) Newton
on all C(n, alpha) subsets, (d) each of ``--halves`` random splits of all subsets into two disjoint halves (Newton on
each half); the correlation of the standardised U between the halves. The rows are summarised per kind and variant,
tuning seeds (0-2) apart from held-out ones (10 and up). Families whose m already covers every subset are skipped.
Fitting every subset is O(C(n, alpha) d^3) per run: meant for the suite's n = 12 (792 subsets), not for large n.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import normalized_mutual_info_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from planted_suite import TUNING_SEEDS, kind_and_env, mean_se, paired, variant, versions  # noqa: E402

from policygradex.common.artifacts import load_json, load_npy  # noqa: E402
from policygradex.common.threads import thread_limit  # noqa: E402
from policygradex.envs.registry import load_family  # noqa: E402
from policygradex.pipeline.affinity import subset_affinity  # noqa: E402
from policygradex.pipeline.clustering import cluster, standardized_corr  # noqa: E402
from policygradex.pipeline.config import RunConfig  # noqa: E402
from policygradex.pipeline.partitions import labels_from_groups  # noqa: E402
from policygradex.pipeline.rundir import RunDir  # noqa: E402
from policygradex.pipeline.closed_form import curvature_terms, expected_affinity  # noqa: E402
from policygradex.pipeline.statistics import rows_of_files, statistics_of_files  # noqa: E402
from policygradex.pipeline.subset_table import SubsetTable  # noqa: E402
from policygradex.pipeline.surrogate import default_subset_size, run_newton  # noqa: E402


def measure(run: Path, halves: int) -> dict[str, Any] | None:
    rd = RunDir(run)
    if not rd.groups.exists():
        return None
    cfg = RunConfig.from_dict(load_json(rd.config)["config"])
    family = load_family(cfg.family)
    n = family.n
    if family.planted_groups is None:
        return None
    alpha = cfg.surrogate.subset_size or default_subset_size(n)
    table = SubsetTable.load(rd.subsets)
    if len(table.subsets) >= math.comb(n, alpha):
        return None
    groups = load_json(rd.groups)
    k, solver = groups["k"], cfg.cluster.solver
    planted = labels_from_groups([list(g) for g in family.planted_groups], n)
    interaction = cfg.cluster.interaction == "subsets"
    paths = [rd.task_features(i) for i in range(n)]
    stats = statistics_of_files(paths, cfg.features.holdout_fraction, cfg.surrogate.blocks, None, per_task=True)

    # f^ of a subset does not depend on which other subsets are fitted: fit all C(n, alpha) once, then index
    every = [list(s) for s in itertools.combinations(range(n), alpha)]
    f_all = run_newton(stats, every, cfg.surrogate).f_hat
    position = {tuple(s): i for i, s in enumerate(every)}

    def U_of(subsets: list[list[int]]) -> np.ndarray:
        return subset_affinity(subsets, f_all[[position[tuple(s)] for s in subsets]], n, interaction)

    def nmi(U: np.ndarray) -> float:
        labels = cluster(U, k=k, solver=solver, exhaustive_check=False, relaxation_gap=False).labels
        return float(normalized_mutual_info_score(planted, labels))

    U_all = U_of(every)
    kind, env = kind_and_env(cfg.family)
    row: dict[str, Any] = {
        "run_dir": str(run), "kind": kind, "env": env, "variant": variant(cfg), "seed": cfg.seed,
        "held_out": cfg.seed not in TUNING_SEEDS, "n": n, "alpha": alpha, "m": len(table.subsets),
        "possible": len(every),
        "nmi_exact": float(normalized_mutual_info_score(planted, labels_from_groups(groups["group_indices"], n))),
        "nmi_newton": nmi(U_of(table.subsets)), "nmi_all": nmi(U_all),
        "corr_run_all": standardized_corr(load_npy(rd.affinity), U_all), "halves": [],
        # the same expectation over all subsets under one shared curvature (f0), and with each task's own curvature
        # to first order (f0 + f1): what the per-subset curvature adds, apart from which subsets were drawn
        "nmi_shared": nmi(expected_affinity(stats, cfg.surrogate.l2, alpha)),
        "nmi_first_order": nmi(expected_affinity(stats, cfg.surrogate.l2, alpha,
                                                 curvature_terms(rows_of_files(paths), stats, cfg.surrogate.l2)))}
    rng = np.random.default_rng(0)
    for _ in range(halves):
        perm = rng.permutation(len(every))
        a, b = ([every[i] for i in perm[: len(every) // 2]], [every[i] for i in perm[len(every) // 2:]])
        Ua, Ub = U_of(a), U_of(b)
        row["halves"].append({"corr": standardized_corr(Ua, Ub), "nmi": [nmi(Ua), nmi(Ub)]})
    return row


def _summary(rows: list[dict[str, Any]], name: str) -> list[str]:
    out = []
    for key, label in (("nmi_all", "Newton on all subsets"), ("nmi_shared", "closed form, shared curvature"),
                       ("nmi_first_order", "closed form, first order")):
        out.append(f"- {label} - Newton on the run's subsets: "
                   f"{paired([r[key] for r in rows], [r['nmi_newton'] for r in rows])}; mean "
                   f"{np.mean([r['nmi_newton'] for r in rows]):.2f} -> {np.mean([r[key] for r in rows]):.2f}, worst "
                   f"run {min(r['nmi_newton'] for r in rows):.2f} -> {min(r[key] for r in rows):.2f}")
    return [f"Over every run on the {name} ({len(rows)} runs):", "", *out, ""]


def page(rows: list[dict[str, Any]], command: str) -> str:
    lines = ["# Which subsets were drawn, and which curvature: two suspects for the subset surrogate's misplaced tasks",
             "", "The subset surrogate fits m = 3 n^2 subsets drawn from the C(n, alpha) possible ones (alpha = 5). At "
             "n = 12 that is 432 of 792. This page takes every finished planted-suite run here and clusters (k = the "
             "run's) U from the same features five ways, each scored against the planted groups (NMI):", "",
             "- the run itself (exact logistic fits on its 432 subsets);",
             "- the Newton-step surrogate on the run's subsets (it reproduces the exact fits: correlation of U 0.999+, "
             "[surrogate-reduction-actuation.md](surrogate-reduction-actuation.md));",
             "- Newton on all 792 subsets: no Monte Carlo noise of which subsets were drawn;",
             "- the closed form: the same expectation over all subsets, but under one curvature shared by every "
             "subset (`--surrogate closed_form`), and with each task's own curvature to first order "
             "(`--curvature first_order`);",
             "- Newton on two disjoint random halves of the 792 (396 each), three splits per run: how far the groups "
             "move with the subsets alone.", "",
             "Newton on all subsets against Newton on the run's subsets isolates the subset sampling; the closed "
             "form against Newton on all subsets isolates the per-subset curvature.", "",
             f"Package versions: {versions()}.", "", "```", command, "```", "",
             "| kind | env | variant | seeds | exact (the run) | Newton, run's subsets | Newton, all subsets | "
             "closed form, shared | closed form, first order | halves: NMI range | halves: corr of U |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    keys = sorted({(r["kind"], r["env"], r["variant"], r["held_out"]) for r in rows})
    for kind, env, var, held in keys:
        rs = sorted((r for r in rows if (r["kind"], r["env"], r["variant"], r["held_out"]) == (kind, env, var, held)),
                    key=lambda r: r["seed"])
        seeds = ", ".join(str(r["seed"]) for r in rs)
        half_nmi = [x for r in rs for h in r["halves"] for x in h["nmi"]]
        half_corr = [h["corr"] for r in rs for h in r["halves"]]
        spread = f"{min(half_nmi):.2f}-{max(half_nmi):.2f}" if half_nmi else "-"
        corr = f"{np.mean(half_corr):.2f}" if half_corr else "-"
        lines.append(f"| {kind} | {env} | {var} | {seeds} | "
                     + " | ".join(mean_se([r[key] for r in rs]) for key in
                                  ("nmi_exact", "nmi_newton", "nmi_all", "nmi_shared", "nmi_first_order"))
                     + f" | {spread} | {corr} |")
    lines += ["", "Mean ± standard error over seeds. Halves: NMI range over all halves of the row's runs, and the "
              "mean correlation of the two halves' standardised U (what the clustering sees).", ""]
    for held, name in ((False, "tuning seeds 0-2"), (True, "held-out seeds 10-14")):
        rs = [r for r in rows if r["held_out"] == held]
        if rs:
            lines += _summary(rs, name)
    lines += ["Differences are paired by run (mean ± standard error; within 2 SE is not resolved).", "",
              "Reading:", "",
              "- Which subsets were drawn is not what misplaces tasks on average: all 792 subsets instead of the "
              "run's 432 move NMI by a hundredth or two, on tuning and held-out seeds alike. Within one run the "
              "groups do move with the subsets (the halves' NMI range), so a single run's boundary tasks are "
              "uncertain, which the bootstrap over subsets in every report already measures. The default m = 3 n^2 "
              "stays.",
              "- The curvature each subset gets is the suspect that moves NMI: the closed form (the same expectation "
              "over all subsets, under one shared curvature) recovers CartPole's actuation kind on the held-out seeds "
              "where the per-subset curvature of the exact fits (and of Newton on all subsets) misplaces the "
              "long-pole tasks. It is not a rule: on the tuning seeds it is level overall and loses an actuation "
              "seed. Chosen on the tuning seeds, the small-n default stays the exact fits.",
              "- The first-order curvature correction (`--curvature first_order`) is far behind on CartPole's "
              "actuation kind, whose tasks' curvatures differ most (the trace of H_k spans 3 to 18 within seed 0's "
              "run). Whether the expansion around the shared curvature fails there or its implementation does is "
              "not measured here; it is not a default anywhere.", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("roots", nargs="+", type=Path, help="folders of finished planted-suite runs")
    ap.add_argument("--halves", type=int, default=2, help="random splits of all subsets into two halves, per run")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--data", type=Path, default=Path("results/data/subset-count.json"))
    args = ap.parse_args()
    rows = []
    with thread_limit(1):
        for run in (r for root in args.roots for r in sorted(root.iterdir())):
            if run.is_dir():
                row = measure(run, args.halves)
                if row is not None:
                    rows.append(row)
                    print(json.dumps({k: row[k] for k in ("run_dir", "nmi_exact", "nmi_newton", "nmi_all")}),
                          file=sys.stderr, flush=True)
    command = ("python experiments/subset_count.py " + " ".join(str(r) for r in args.roots)
               + f" --halves {args.halves} --out {args.out}")
    args.data.write_text(json.dumps({"command": command, "rows": rows}, indent=1) + "\n")
    args.out.write_text(page(rows, command))


if __name__ == "__main__":
    main()
