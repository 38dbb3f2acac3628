r"""results/third-point.md: should a third expansion point, at a quarter of the budget, join the default two, and
with what weight?

Every run under ``--root`` (``runs/x3``) is ``policygradex run`` with ``--expansion-points 0.25,0.5,1`` from the
theta_star of the same run under runs/crn. Its theta_star U and its half-budget point's U are byte for byte the
default run's (results/planted.md's ``points 0.5+1`` rows: the same theta_star, and the half-budget policy retrains
the same; checked on every run that has a default twin under ``--default-root``). So one run scores every variant:
each combination of its points' U's, standardised and averaged (:func:`~policygradex.pipeline.clustering.combine`
for equal weights, as the pipeline combines them), clustered with the run's k and solver, against the planted
groups (NMI), and how much of the planted pattern the combined U carries (the Pearson correlation, over task pairs,
of U_ij with "i and j share a planted group")::

    python experiments/planted_suite.py --envs cartpole --kinds reward,actuation,observation --seeds 0,1,2 \
        --root runs/x3 --reuse-theta runs/crn --extra '--expansion-points 0.25,0.5,1 --surrogate newton'
    python experiments/planted_suite.py --envs lunarlander,cartpole --kinds reward --seeds 3,4,5,6,7,8,9 \
        --root runs/x3 --reuse-theta runs/crn --extra '--expansion-points 0.25,0.5,1 --surrogate newton'
    cp -al runs/x3/RUN runs/x3w/RUN     # each held-out run (hard links: the rerun replaces only what it rewrites)
    policygradex run SPEC --preset demo --k 3 --seed S --out runs/x3w/RUN --expansion-points 0.25,0.5,1 \
        --surrogate newton --point-weights reliability
    python experiments/third_point.py --root runs/x3 --out results/third-point.md

Weighted variants weigh each point by its gradient signal's split-half reliability over transitions, r, measured
as the pipeline measures the confidence's (:func:`point_reliabilities`; ``w = r``, or the inverse-noise
``w = snr``), or by a one-factor model of the three U's (``w = factor``, :func:`factor_weights`). The r's are
cached in the page's data, so the page can be rewritten after the features are dropped.

Seeds 0-9 are tuning seeds here: 0-2 for every kind (issue 22's tuning seeds), and 3-9 for the two reward kinds,
whose default runs recover every tuning seed 0-2 on LunarLander but not the held-out seeds (0.69 +- 0.13): three
seeds did not show the weakness the choice is about. Seeds 10 and up are held out: 11-13 prompted the question and
are listed apart; 15-19 are run to test the choice written on the page before their rows exist.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import normalized_mutual_info_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from planted_suite import kind_and_env, mean_se, paired, score, versions  # noqa: E402

from policygradex.common.artifacts import load_json  # noqa: E402
from policygradex.envs.registry import load_family  # noqa: E402
from policygradex.pipeline.clustering import cluster, combine, standardize  # noqa: E402
from policygradex.pipeline.confidence import interaction_reliability, task_fitting_halves  # noqa: E402
from policygradex.pipeline.config import RunConfig  # noqa: E402
from policygradex.pipeline.group_record import Groups  # noqa: E402
from policygradex.pipeline.partitions import labels_from_groups  # noqa: E402
from policygradex.pipeline.rundir import RunDir  # noqa: E402
from policygradex.pipeline.statistics import rows_of_files  # noqa: E402

VARIANTS: dict[str, tuple[tuple[float, ...], str]] = {
    "theta_star alone": ((1.0,), "equal"), "default 0.5+1": ((0.5, 1.0), "equal"),
    "0.25+0.5+1": ((0.25, 0.5, 1.0), "equal"), "0.25 alone": ((0.25,), "equal"),
    "0.25+0.5+1, w = r": ((0.25, 0.5, 1.0), "r"), "0.25+0.5+1, w = snr": ((0.25, 0.5, 1.0), "snr"),
    "0.5+1, w = r": ((0.5, 1.0), "r"), "0.5+1, w = snr": ((0.5, 1.0), "snr"),
    "0.25+0.5+1, w = factor": ((0.25, 0.5, 1.0), "factor")}
"""What each column clusters: the U's of these points, standardised and averaged with these weights (``equal``: the
pipeline's :func:`~policygradex.pipeline.clustering.combine`; the others: :func:`point_weight` of each point's
gradient reliability r over transitions)."""
SNR_CAP = 0.99
"""The reliability above which ``snr`` weights stop growing (sqrt(r) / (1 - r) is infinite at r = 1, and a split-half
estimate of 0.99 or more cannot tell one such point from another)."""


def point_weight(r: float, rule: str) -> float:
    """A point's weight from its gradient reliability r: ``equal`` 1; ``r`` max(r, 0), the share of its U that is
    signal; ``snr`` sqrt(r) / (1 - r) (r clipped to [0, SNR_CAP]), the inverse-noise weight of a standardised
    U = sqrt(r) S + sqrt(1 - r) E whose noise E is independent between points: it maximises the combination's
    correlation with a common signal S."""
    if rule == "equal":
        return 1.0
    r = min(max(r, 0.0), SNR_CAP)
    return r if rule == "r" else float(np.sqrt(r) / (1.0 - r))


def point_combine(Us: list[np.ndarray], weights: list[float]) -> np.ndarray:
    """:func:`combine` with these weights; equal weights go through its unweighted mean, as the pipeline's do."""
    return combine(Us, None if len(set(weights)) == 1 else weights)


def factor_weights(Us: list[np.ndarray]) -> list[float]:
    """Weights of three U's from a one-factor model of their off-diagonal entries, which needs no reliability and
    no features: with standardised U_p = a_p S + e_p and independent e_p, corr(U_p, U_q) = a_p a_q, so three points
    identify each loading, a_p^2 = r_pq r_pr / r_qr, and the inverse-noise weight is a_p / (1 - a_p^2) (a_p^2
    clipped to [0, SNR_CAP])."""
    assert len(Us) == 3
    n = Us[0].shape[0]
    off = ~np.eye(n, dtype=bool)
    r = np.corrcoef(np.stack([standardize(U)[off] for U in Us]))
    out = []
    for p in range(3):
        q, s_ = (x for x in range(3) if x != p)
        a2 = min(max(r[p, q] * r[p, s_] / r[q, s_], 0.0), SNR_CAP) if r[q, s_] > 0 else SNR_CAP
        out.append(float(np.sqrt(a2) / (1.0 - a2)))
    return out


def point_reliabilities(rd: RunDir, cfg: RunConfig, n: int, cached: dict[str, float] | None) -> dict[str, float]:
    """Each point's split-half reliability over transitions of its gradient interaction G G^T, computed as the
    pipeline computes the confidence's (``stages.gradient_signal_halves`` on feature files: each half's advantages
    from a per-task baseline fitted on that half alone), one point at a time; ``cached`` where the features have
    since been dropped, NaN where they were dropped before this page."""
    out = {}
    for f in cfg.features.expansion_points:
        key = f"{f:g}"
        if cached and key in cached and not np.isnan(cached[key]):
            out[key] = cached[key]
            continue
        prd = rd if f == 1.0 else rd.point(f)
        paths = [prd.task_features(i) for i in range(n)]
        if not all(p.exists() for p in paths):  # dropped (planted_suite --drop-features) before this page
            out[key] = float("nan")
            continue
        halves = [task_fitting_halves(F.numpy(), y.numpy(), w.numpy(), cfg.features.holdout_fraction)
                  for F, y, w in rows_of_files(paths, split=cfg.features.baseline == "per_task")]
        r = None if any(h is None for h in halves) else interaction_reliability(
            np.stack([h[0] for h in halves if h is not None]), np.stack([h[1] for h in halves if h is not None]))
        out[key] = float("nan") if r is None else float(r)
    return out


DEFAULT, CANDIDATE = "default 0.5+1", "0.25+0.5+1"
TUNING = range(10)
"""Tuning seeds of this page (see the module docstring); 10 and up are held out."""
PROMPTED = (11, 12, 13)
"""Held-out seeds of LunarLander's reward kind that were run with the point because the default missed them."""


def point_affinities(rd: RunDir, cfg: RunConfig) -> dict[float, np.ndarray]:
    points = cfg.features.expansion_points
    return {f: np.load(rd.affinity_theta_star if f == 1.0 else rd.point(f).affinity) for f in points}


def score_run(run: Path, default_root: Path | None, cached: dict[str, float] | None) -> dict[str, Any]:
    """One run's row: NMI and planted-pattern correlation of every variant, and the checks that tie the offline
    clustering to the pipeline's (the run's own groups, and the default twin's U's and groups where it exists)."""
    rd = RunDir(run)
    cfg = RunConfig.from_dict(load_json(rd.config)["config"])
    family = load_family(cfg.family)
    n = family.n
    assert family.planted_groups is not None
    truth = labels_from_groups([list(g) for g in family.planted_groups], n)
    k = Groups.load(rd.groups, n).k
    Us = point_affinities(rd, cfg)
    iu = np.triu_indices(n, 1)
    same = (truth[:, None] == truth[None, :])[iu].astype(float)
    rel = point_reliabilities(rd, cfg, n, cached)
    nmi, corr, labels = {}, {}, {}
    for name, (points, rule) in VARIANTS.items():
        if rule == "factor":
            U = point_combine([Us[f] for f in points], factor_weights([Us[f] for f in points]))
            labels[name] = cluster(U, k=k, solver=cfg.cluster.solver, exhaustive_check=False).labels
            nmi[name] = float(normalized_mutual_info_score(truth, labels[name]))
            corr[name] = float(np.corrcoef(((U + U.T) / 2)[iu], same)[0, 1])
            continue
        if rule != "equal" and any(np.isnan(rel[f"{f:g}"]) for f in points):
            nmi[name] = corr[name] = float("nan")
            continue
        U = point_combine([Us[f] for f in points], [point_weight(rel[f"{f:g}"], rule) for f in points])
        labels[name] = cluster(U, k=k, solver=cfg.cluster.solver, exhaustive_check=False).labels
        nmi[name] = float(normalized_mutual_info_score(truth, labels[name]))
        corr[name] = float(np.corrcoef(((U + U.T) / 2)[iu], same)[0, 1])
    kind, env = kind_and_env(cfg.family)
    own = Groups.load(rd.groups, n).labels()
    row = {"run_dir": str(run), "family": env, "kind": kind, "seed": cfg.seed, "held_out": cfg.seed not in TUNING,
           "nmi": nmi, "corr": corr, "reliability": rel,
           "matches_own_groups": bool(normalized_mutual_info_score(own, labels[CANDIDATE]) == 1.0)}
    twin = None if default_root is None else default_root / run.name
    if twin is not None and (twin / "groups.json").exists():
        trd = RunDir(twin)
        row["default_twin"] = str(twin)
        row["twin_same_affinities"] = (trd.affinity_theta_star.read_bytes() == rd.affinity_theta_star.read_bytes()
                                       and trd.point(0.5).affinity.read_bytes() == rd.point(0.5).affinity.read_bytes())
        row["matches_twin_groups"] = bool(
            normalized_mutual_info_score(Groups.load(trd.groups, n).labels(), labels[DEFAULT]) == 1.0)
    return row


def summary_rows(rows: list[dict[str, Any]]) -> list[str]:
    """Variants down, (family, kind) across: NMI mean ± SE over the seeds and the worst seed; below each variant's
    mean, its difference from the default paired by seed."""
    by: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in sorted(rows, key=lambda r: r["seed"]):
        by.setdefault((r["family"], r["kind"]), []).append(r)
    keys = sorted(by)
    lines = ["| variant | " + " | ".join(f"{kind} {env} (seeds {seed_text([r['seed'] for r in by[(env, kind)]])})"
                                           for env, kind in keys) + " |", "|---|" + "---|" * len(keys)]
    for v in VARIANTS:
        cells = []
        for key in keys:
            have = [r for r in by[key] if not np.isnan(r["nmi"][v])]
            if not have:
                cells.append("-")
                continue
            xs, base = [r["nmi"][v] for r in have], [r["nmi"][DEFAULT] for r in have]
            diff = "" if v == DEFAULT else f"<br>{paired(xs, base)}"
            some = "" if len(have) == len(by[key]) else f" (seeds {seed_text([r['seed'] for r in have])})"
            cells.append(f"{mean_se(xs)}, worst {min(xs):.2f}{some}{diff}")
        lines.append(f"| {v} | " + " | ".join(cells) + " |")
    return lines


def choice_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The chosen variant against the default on each reward kind's tuning seeds, paired by seed."""
    lines = [f"The choice, `{CHOSEN}`, against the default on the tuning seeds (NMI; in brackets the correlation "
             "of U with the planted pattern, mean over seeds):", ""]
    for env in ("cartpole", "lunarlander"):
        rs = [r for r in rows if r["kind"] == "reward" and r["family"] == env]
        if not rs:
            continue
        new, old = [r["nmi"][CHOSEN] for r in rs], [r["nmi"][DEFAULT] for r in rs]
        corr = (np.mean([r["corr"][DEFAULT] for r in rs]), np.mean([r["corr"][CHOSEN] for r in rs]))
        lines.append(f"- reward, {env} (seeds {seed_text([r['seed'] for r in rs])}): {mean_se(old)} (worst "
                     f"{min(old):.2f}) -> {mean_se(new)} (worst {min(new):.2f}), paired {paired(new, old)}; "
                     f"correlation {corr[0]:+.2f} -> {corr[1]:+.2f}.")
    return lines


def seed_text(seeds: list[int]) -> str:
    return f"{seeds[0]}-{seeds[-1]}" if seeds == list(range(seeds[0], seeds[-1] + 1)) and len(seeds) > 2 \
        else ", ".join(map(str, seeds))


def run_rows(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| run | r at 0.25 / 0.5 / 1 | " + " | ".join(VARIANTS) + " |", "|---|---|" + "---|" * len(VARIANTS)]
    for r in sorted(rows, key=lambda r: (r["family"], r["kind"], r["seed"])):
        rel = " / ".join("-" if np.isnan(x) else f"{x:.2f}" for x in r["reliability"].values())
        lines.append(f"| {r['kind']} {r['family']} s{r['seed']} | {rel} | "
                     + " | ".join("-" if np.isnan(r["nmi"][v]) else f"{r['nmi'][v]:.2f} ({r['corr'][v]:+.2f})"
                                  for v in VARIANTS) + " |")
    return lines


def pipeline_lines(root: Path, rows: list[dict[str, Any]]) -> list[str]:
    """The choice run by the pipeline itself: each run under ``root`` is a held-out run of ``--root`` reclustered
    with ``--point-weights reliability`` (a hard-linked copy; only the affinity and cluster stages rerun), scored as
    the planted suite scores its rows: NMI, and the confidence's words against the planted groups."""
    runs = [p.parent for p in sorted(root.glob("*/affinity_stats.json"))
            if (load_json(p).get("point_weights") or {}).get("rule") == "reliability"
            and (p.parent / "groups.json").exists()  # a copy not yet reclustered holds the equal run's files
            and (p.parent / "groups.json").stat().st_mtime >= p.stat().st_mtime]
    if not runs:
        return []
    lines = [f"## The choice run by the pipeline (`{root}`)", "",
             "The held-out runs above, reclustered by `policygradex run ... --point-weights reliability` (the same "
             "features; the affinity and cluster stages rerun): the groups and the confidence's words the user would "
             "get. Stable groups: matching a planted group (or one plus or minus a task) / called stable.", "",
             f"| run | NMI | NMI of `{CHOSEN}` above | words | stable: correct / called | verdict |",
             "|---|---|---|---|---|---|"]
    offline = {(r["family"], r["kind"], r["seed"]): r["nmi"][CHOSEN] for r in rows}
    for run in runs:
        s = score(run)
        cfg = load_json(run / "config.json")["config"]
        kind, env = kind_and_env(cfg["family"])
        above = offline.get((env, kind, cfg["seed"]))
        lines.append(f"| {kind} {env} s{cfg['seed']} | {s['nmi']:.2f} | {'-' if above is None else f'{above:.2f}'} | "
                     f"{', '.join(s['words'])} | "
                     f"{s['stable_groups_correct']} / {s['stable_groups']} | {(s['verdict'] or '').split(':')[0]} |")
    return [*lines, ""]


def page(rows: list[dict[str, Any]], command: str, findings: str, pipeline_root: Path | None = None) -> str:
    tuning = [r for r in rows if not r["held_out"]]
    held = [r for r in rows if r["held_out"]]
    twins = [r for r in rows if "default_twin" in r]
    lines = ["# A third expansion point at 0.25?", "",
             "Every run is `--expansion-points 0.25,0.5,1` (`--preset demo --k 3`, N = 16,384, d = 400, "
             "`--surrogate newton`, per-task baselines, paired transitions: the default variant of results/planted.md "
             "plus the point) from runs/crn's theta_star. Each column clusters the combined U of its points with the "
             "run's k: `default 0.5+1` is the default's U (its two U's are byte for byte the default run's, checked on "
             f"{sum(r['twin_same_affinities'] for r in twins)} of {len(twins)} runs with a default twin, whose own "
             f"groups it gives in {sum(r['matches_twin_groups'] for r in twins)} of {len(twins)}), `0.25+0.5+1` the "
             f"run's own (its groups in {sum(r['matches_own_groups'] for r in rows)} of {len(rows)} runs). "
             "NMI against the planted groups, mean ± SE over seeds; differences paired by seed, resolved at 2 SE.", "",
             "## Tuning seeds", "", *summary_rows(tuning), "", *choice_lines(tuning), "", findings, ""]
    if held:
        prompted = [r for r in held if r["seed"] in PROMPTED]
        fresh = [r for r in held if r["seed"] not in PROMPTED]
        if fresh:
            lines += ["## Held-out seeds 15 and up (never used to choose)", "",
                      "Run after the tuning table above was read and the choice written down, to test it.", "",
                      *summary_rows(fresh), ""]
        if prompted:
            lines += ["## Held-out seeds that prompted the question", "",
                      "Seeds 11-13 of LunarLander's reward kind were run with the point because the default misses "
                      "them (results/lunar-reward-diagnosis.md); their features were dropped before this page, so the "
                      "weighted columns cannot be computed. They prompted the question and cannot answer it.", "",
                      *summary_rows(prompted), ""]
    if pipeline_root is not None:
        lines += pipeline_lines(pipeline_root, rows)
    lines += ["## Every run", "", "NMI (correlation of U with the planted same-group pattern over task pairs).", "",
              *run_rows(rows), "", f"Package versions: {versions()}.", "", "```", command, "```", ""]
    return "\n".join(lines)


CHOSEN = "0.25+0.5+1, w = r"
"""The variant chosen on the tuning seeds (``--expansion-points 0.25,0.5,1 --point-weights reliability``), written
down before any row of seeds 15 and up existed."""

FINDINGS = """What the rows say (the numbers are in the tables; a word here does not move with them):

- Every variant recovers every tuning seed of the actuation, observation and objective kinds; the choice is made on
  the two reward kinds, and they pull apart. On LunarLander the later policies lose the groups: theta_star's U
  follows the planted pattern least of all (on seed 8 not at all), the default's half-budget point helps, and the
  quarter-budget point carries the most; its gradient signal is the most reliable of the three on most seeds there,
  and theta_star's the least (near 0 on several). On CartPole it is the other way round: the quarter-budget point
  alone is the worst column, its gradient signal the least reliable of the three on every seed, and adding it with
  equal weight costs seeds that the default recovers.
- Weighting each point by its own gradient reliability r follows both: the quarter-budget point counts where its
  gradients reproduce and theta_star's do not (LunarLander), and less where the later points' reproduce better
  (CartPole): the best mean on both reward kinds. The inverse-noise weight sqrt(r) / (1 - r) trusts a point with
  r near 1 so much that it loses CartPole seeds; a one-factor model of the three U's (no reliabilities) loses
  seeds of both. Weighting the default's two points by r moves single seeds either way without the quarter-budget
  point: that point is what carries the signal.
- The choice is therefore `--expansion-points 0.25,0.5,1 --point-weights reliability`, chosen here and not yet a
  default: it is tested on held-out seeds 15-19, which no row above has seen, and must keep the demo's and the
  paper families' results (results/expansion-defaults.md's procedure) before it can be one. It costs a third feature
  stage and a quarter-budget meta-training (1.75 x meta-training in all, against the default's 1.5 x).
- Even chosen, LunarLander's reward kind misses the issue's bar on the tuning seeds: its worst seed stays below 0.8."""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=Path("runs/x3"))
    ap.add_argument("--default-root", type=Path, default=Path("runs/xr"))
    ap.add_argument("--out", type=Path, default=Path("results/third-point.md"))
    ap.add_argument("--data", type=Path, default=Path("results/data/third-point.json"))
    ap.add_argument("--pipeline-root", type=Path, default=Path("runs/x3w"),
                    help="held-out runs reclustered with --point-weights reliability (pipeline_lines)")
    args = ap.parse_args()
    before = {r["run_dir"]: r.get("reliability") for r in json.loads(args.data.read_text())["rows"]} \
        if args.data.exists() else {}
    rows = []
    for run in sorted(p.parent for p in args.root.glob("*/groups.json")):
        rows.append(score_run(run, args.default_root, before.get(str(run))))
        print(f"{run}: {rows[-1]['nmi']}", file=sys.stderr, flush=True)
    command = (f"python experiments/third_point.py --root {args.root} --default-root {args.default_root} "
               f"--pipeline-root {args.pipeline_root} --out {args.out}")
    args.data.write_text(json.dumps({"command": command, "rows": rows}, indent=1) + "\n")
    args.out.write_text(page(rows, command, FINDINGS, args.pipeline_root))


if __name__ == "__main__":
    main()
