r"""results/lunar-reward-diagnosis.md: what the affinity of a planted reward run follows where it misses the groups.

LunarLander's reward kind pays each planted group for hovering near its own x_g and varies gravity inside every
group (-10..-8). For each run and each affinity it clusters or combines (theta_star's own, each earlier expansion
point's, the combined U), over the n(n-1)/2 task pairs: the correlation of U_ij with "i and j share a planted group"
and the Spearman correlation of U_ij with gravity closeness -|g_i - g_j| (over all pairs, and within planted groups),
beside the run's NMI and the confidence's gradient reliability::

    python experiments/planted_suite.py --envs lunarlander --kinds reward --seeds 11 --root runs/xn \
        --reuse-theta runs/crn --extra '--expansion-points 0.5,1 --surrogate newton --transitions 65536'
    python experiments/planted_suite.py --envs lunarlander --kinds reward --seeds 11,12,13 --root runs/x3 \
        --reuse-theta runs/crn --extra '--expansion-points 0.25,0.5,1 --surrogate newton'
    python experiments/reward_confounds.py runs/xr/reward-lunarlander-s10 ... runs/x3/reward-lunarlander-s13 \
        --out results/lunar-reward-diagnosis.md      # the page's command line lists every run

A run whose U follows gravity more than the groups reads the within-group variation of the dynamics, not the
reward conflict; a larger N (``runs/xn``: ``--transitions 65536``, 4 x the default) tells whether that is sampling
noise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from planted_suite import score, versions  # noqa: E402

from policygradex.common.artifacts import load_json  # noqa: E402
from policygradex.envs.registry import load_family  # noqa: E402
from policygradex.pipeline.config import RunConfig  # noqa: E402
from policygradex.pipeline.rundir import RunDir  # noqa: E402


FINDINGS = """## What it says

- The runs that recover the groups (seeds 10, 14 and the tuning seeds 0-2) have a combined U that correlates +0.75 to
  +0.87 with the planted structure; the misses (seeds 11-13) +0.24 to +0.50. The earlier point helps wherever it is
  run (its U alone: +0.48 to +0.83 on every seed but 11), which is why the option lifts the kind from 0.58 to 0.69.
- Gravity is not what the misses follow. Seed 11's theta_star U at N = 16,384 correlates more with gravity
  closeness (+0.43) than with the groups (+0.24), but with four times the transitions (the last row, the same
  theta_star and half-budget policy) that correlation is gone (-0.05): it was sampling noise, as the confidence's
  gradient reliability of 0.08 said. Seeds 12 and 13 do not follow gravity either (+0.04, +0.15 at theta_star).
- N is not the cause: at 4 x N seed 11's group correlation rises (+0.24 -> +0.43 combined) and its gradient
  reliability with it (0.08 -> 0.17), but NMI does not (0.42 -> 0.38) and the run is still called noise. What is
  left is a between-task interaction too small at both policies to place the groups on those seeds; the confidence
  says so (noise on seed 11, partly stable on 12 and 13), which is what issue 22 asks of it where recovery fails.
- An earlier policy carries more of it. A third point at a quarter of the budget (`runs/x3`: `--expansion-points
  0.25,0.5,1`, the same theta_star and half-budget policy) correlates with the groups at +0.57, +0.88 and +0.72 on
  its own, and the three points together recover seed 12 exactly (0.42 -> 1.00, stable), lift seed 13 (0.59 ->
  0.74) and seed 11 a little (0.42 -> 0.50, still noise). These three seeds were run because they fail, and they
  are held-out seeds: this is a lead, not a choice. A third point must be chosen on the tuning seeds, on every kind
  (the earliest point alone lost CartPole's reward kind in expansion-points.md), and reported on seeds that
  neither chose it nor prompted it. results/third-point.md makes that choice, on tuning seeds 0-9: the third point
  with each point weighted by its own gradient reliability (`--point-weights reliability`), to be tested on
  held-out seeds 15-19."""


def affinities(run: Path) -> list[tuple[str, np.ndarray]]:
    """The run's U's: theta_star's own, each earlier point's, and (with points) the combined one it clustered."""
    rd = RunDir(run)
    earlier = RunConfig.from_dict(load_json(rd.config)["config"]).earlier_points
    if not earlier:
        return [("theta_star", np.load(rd.affinity))]
    return [("theta_star", np.load(rd.affinity_theta_star)),
            *((f"point {f:g}", np.load(rd.point(f).affinity)) for f in earlier), ("combined", np.load(rd.affinity))]


def row(run: Path) -> list[str]:
    cfg = load_json(run / "config.json")["config"]
    family = load_family(cfg["family"])
    n = family.n
    assert family.planted_groups is not None
    group = np.zeros(n, dtype=int)
    for g, members in enumerate(family.planted_groups):
        group[list(members)] = g
    gravity = np.array([t.params["gravity"] for t in family.tasks])
    iu = np.triu_indices(n, 1)
    same = (group[:, None] == group[None, :])[iu]
    closeness = -np.abs(gravity[:, None] - gravity[None, :])[iu]
    s = score(run)
    cells = []
    for name, U in affinities(run):
        u = ((U + U.T) / 2)[iu]
        cells.append(f"{name}: {np.corrcoef(u, same.astype(float))[0, 1]:+.2f} / {spearmanr(u, closeness)[0]:+.2f} / "
                     f"{spearmanr(u[same], closeness[same])[0]:+.2f}")
    rel = s["gradient_reliability"]
    return [f"`{run}`", str(load_json(run / "features" / "meta.json")["N"]), f"{s['nmi']:.2f}",
            "-" if rel is None else f"{rel:.2f}", "<br>".join(cells)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    command = "python experiments/reward_confounds.py " + " ".join(map(str, args.runs)) + f" --out {args.out}"
    lines = ["# LunarLander's reward kind: what the affinity follows where it misses the groups", "",
             __doc__.split("\n\n")[1].replace("\n", " ").rstrip(":") + ".", "", f"Package versions: {versions()}.",
             "", "```", command,
             "```", "", "| run | N | NMI | gradient reliability | U: r with same group / rho with gravity closeness / "
             "rho with gravity closeness within groups |", "|---|---|---|---|---|"]
    lines += ["| " + " | ".join(row(r)) + " |" for r in args.runs]
    lines += ["", FINDINGS]
    args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
