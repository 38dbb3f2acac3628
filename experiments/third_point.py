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
    python experiments/planted_suite.py --envs cartpole,lunarlander,planted \
        --kinds reward,observation,actuation,objective --seeds 15,16,17 --root runs/x3 \
        --extra '--expansion-points 0.25,0.5,1 --surrogate newton --point-weights reliability'
        # LunarLander's reward kind excepted (above); CartPole's: seeds 15-19; seed 18 of the CartPole and planted
        # observation and actuation kinds too
    policygradex run cartpole --preset demo --k 3 --out runs/demo3/cartpole --expansion-points 0.25,0.5,1 \
        --point-weights reliability
    policygradex run lunarlander --preset demo --k 3 --steps-per-task 30000 --out runs/demo3/lunarlander \
        --expansion-points 0.25,0.5,1 --point-weights reliability
    python experiments/third_point.py --root runs/x3 --out results/third-point.md

(:data:`RUN_COMMANDS` lists the held-out runs' commands exactly as they ran, for the page.)

The held-out runs of every kind but LunarLander's reward were made with ``--point-weights reliability`` from the
start (their own groups are the chosen column's; the equal-weight columns come from the same run's U's), meta-trained
in the run. Each run's row is kept in the page's data (``results/data/third-point.json``) once scored: a run deleted
since keeps its row, so the page can be rewritten from the data with part or none of the runs on disk.

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
from candidate_defaults import fmt  # noqa: E402
from planted_suite import issue_bar, kind_and_env, load_planted, mean_se, paired, score, versions  # noqa: E402

from policygradex.common.artifacts import load_json  # noqa: E402
from policygradex.envs.registry import load_family  # noqa: E402
from policygradex.pipeline.clustering import cluster, combine, standardize  # noqa: E402
from policygradex.pipeline.confidence import interaction_reliability, task_fitting_halves  # noqa: E402
from policygradex.pipeline.config import RunConfig  # noqa: E402
from policygradex.pipeline.group_record import Groups  # noqa: E402
from policygradex.pipeline.rundir import RunDir  # noqa: E402
from policygradex.pipeline.stages import cluster_by  # noqa: E402
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
    rd, cfg, family, truth = load_planted(run)
    n = family.n
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
    mine = CHOSEN if cfg.cluster.point_weights == "reliability" else CANDIDATE
    row = {"run_dir": str(run), "family": env, "kind": kind, "seed": cfg.seed, "held_out": cfg.seed not in TUNING,
           "nmi": nmi, "corr": corr, "reliability": rel, "point_weights": cfg.cluster.point_weights,
           "matches_own_groups": bool(normalized_mutual_info_score(own, labels[mine]) == 1.0)}
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


def pipeline_row(run: Path) -> dict[str, Any]:
    """A run made or reclustered with ``--point-weights reliability``, scored as the planted suite scores its rows:
    NMI, and the confidence's words against the planted groups."""
    s = score(run)
    cfg = load_json(run / "config.json")["config"]
    kind, env = kind_and_env(cfg["family"])
    return {"run_dir": str(run), "family": env, "kind": kind, "seed": int(cfg["seed"]), "nmi": s["nmi"],
            "nmi_gradsim": s["nmi_gradsim"], "words": s["words"], "stable_groups": s["stable_groups"],
            "stable_groups_correct": s["stable_groups_correct"], "verdict": (s["verdict"] or "").split(":")[0]}


def pipeline_runs(*roots: Path) -> list[Path]:
    """The finished runs under ``roots`` whose groups were clustered with ``--point-weights reliability``."""
    return [p.parent for root in roots for p in sorted(root.glob("*/affinity_stats.json"))
            if (load_json(p).get("point_weights") or {}).get("rule") == "reliability"
            and (p.parent / "groups.json").exists()  # a copy not yet reclustered holds the equal run's files
            and (p.parent / "groups.json").stat().st_mtime >= p.stat().st_mtime]


AHEAD = {"yes": "ahead", "tie": "a tie", "no": "behind"}
""":func:`~planted_suite.issue_bar`'s comparison with gradient similarity, in words."""


def pipeline_lines(prows: list[dict[str, Any]], rows: list[dict[str, Any]]) -> list[str]:
    """The choice as the pipeline itself gives it on the held-out seeds: the groups and the confidence's words the
    user would get, with the calibration of the word ``stable``."""
    if not prows:
        return []
    lines = ["## The choice run by the pipeline", "",
             "The groups and the confidence's words a user gets from `policygradex run ... --expansion-points "
             "0.25,0.5,1 --point-weights reliability` on the held-out seeds. LunarLander's reward kind: its equal-"
             "weight runs (runs/x3) reclustered with the option (hard-linked copies in runs/x3w: the same features; "
             "the affinity and cluster stages rerun). Every other row: run with the option from the start (the "
             "default's U's are in the same run, so the offline columns above are scored from it too). Stable groups: "
             "matching a planted group (or one plus or minus a task) / called stable.", "",
             f"| run | NMI | NMI of `{CHOSEN}` above | gradient similarity | words | stable: correct / called | "
             "verdict |", "|---|---|---|---|---|---|---|"]
    offline = {(r["family"], r["kind"], r["seed"]): r["nmi"][CHOSEN] for r in rows}
    for p in sorted(prows, key=lambda p: (p["kind"], p["family"], p["seed"])):
        above, gs = offline.get((p["family"], p["kind"], p["seed"])), p.get("nmi_gradsim")
        lines.append(f"| {p['kind']} {p['family']} s{p['seed']} | {p['nmi']:.2f} | "
                     f"{'-' if above is None or np.isnan(above) else f'{above:.2f}'} | "
                     f"{'-' if gs is None else f'{gs:.2f}'} | {', '.join(p['words'])} | "
                     f"{p['stable_groups_correct']} / {p['stable_groups']} | {p['verdict']} |")
    by: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for p in sorted(prows, key=lambda p: p["seed"]):
        by.setdefault((p["kind"], p["family"]), []).append(p)
    lines += ["", "Per kind (the bar: mean >= 0.95, every seed >= 0.8, and not behind gradient similarity on the "
              "same features; equal means are a tie, as in results/planted.md):", ""]
    for (kind, env), ps in sorted(by.items()):
        xs, gs_ = [p["nmi"] for p in ps], [p["nmi_gradsim"] for p in ps if p.get("nmi_gradsim") is not None]
        recorded = len(gs_) == len(xs)
        mean_ok, min_ok, ahead = issue_bar(xs, gs_ if recorded else xs)
        verdict = ("misses the bar" if not (mean_ok and min_ok) or ahead == "no" else
                   "meets the bar" if recorded else "meets the NMI bar")
        against = f"{mean_se(gs_)} ({AHEAD[ahead]})" if recorded else "not recorded"
        lines.append(f"- {kind} {env} (seeds {seed_text([p['seed'] for p in ps])}): {mean_se(xs)}, worst "
                     f"{min(xs):.2f}; gradient similarity {against}; {verdict}.")
    called = sum(p["stable_groups"] for p in prows)
    correct = sum(p["stable_groups_correct"] for p in prows)
    agree = sum(1 for p in prows if (p["family"], p["kind"], p["seed"]) in offline
                and abs(offline[(p["family"], p["kind"], p["seed"])] - p["nmi"]) < 0.005)
    return [*lines, "", f"Groups called stable that match a planted group: {correct} of {called}"
            + (f" ({correct / called:.0%}; the issue's bar is 95%)" if called else "")
            + f". The pipeline's NMI is the offline column's in {agree} of {len(prows)} runs.", ""]


def demo_row(run: Path) -> dict[str, Any]:
    """A demo family run with the choice: its groups, and the default's (the equal-weight combination of its
    0.5 and 1 points' U's, clustered as the pipeline clusters; the default run's U's byte for byte), with each
    point's gradient reliability and weight as the run recorded them."""
    rd = RunDir(run)
    cfg = RunConfig.from_dict(load_json(rd.config)["config"])
    family = load_family(cfg.family)
    groups = Groups.load(rd.groups, family.n)
    Us = point_affinities(rd, cfg)
    default = cluster_by(combine([Us[0.5], Us[1.0]]), cfg.cluster).labels
    weights = load_json(rd.affinity_stats).get("point_weights") or {}
    conf = groups.confidence
    return {"run_dir": str(run), "family": cfg.family, "groups": [list(g) for g in groups.indices],
            "default_groups": [sorted(int(i) for i in np.flatnonzero(default == c)) for c in np.unique(default)],
            "nmi_to_default": float(normalized_mutual_info_score(default, groups.labels())),
            "point_weights": weights, "verdict": None if conf is None else conf.verdict.split(":")[0],
            "gradient_reliability": None if conf is None else conf.gradient_reliability}


def demo_lines(drows: list[dict[str, Any]]) -> list[str]:
    if not drows:
        return []
    lines = ["## The demo families", "",
             "`policygradex run FAMILY --preset demo --k 3 --expansion-points 0.25,0.5,1 --point-weights reliability`"
             " (results/demo.md's commands with the option; LunarLander at `--steps-per-task 30000`, as there). "
             "The default's groups are its 0.5 and 1 points' U's "
             "combined with equal weights and clustered as the pipeline clusters (byte for byte the default run's "
             "U's: the same seed and options). Where the groups differ, `compare` must train both before the option "
             "can be a default.", "",
             "| family | default's groups (0.5+1) | the choice's groups | point: r (weight) | reliability, verdict |",
             "|---|---|---|---|---|"]
    for d in drows:
        w = d["point_weights"]
        per = sorted(zip(w.get("points", []), w.get("reliability", []), w.get("weights") or []))
        pts = ", ".join(f"{f:g}: {'-' if r is None else f'{r:.2f}'} ({x:.2f})" for f, r, x in per)
        lines.append(f"| {d['family']} | {fmt(d['default_groups'])} | "
                     f"{'the same' if d['nmi_to_default'] == 1.0 else fmt(d['groups'])} | {pts or '-'} | "
                     + ("-" if d["gradient_reliability"] is None else f"{d['gradient_reliability']:.2f}")
                     + f", {d['verdict']} |")
    return [*lines, ""]


def page(rows: list[dict[str, Any]], command: str, findings: str, prows: list[dict[str, Any]],
         drows: list[dict[str, Any]]) -> str:
    tuning = [r for r in rows if not r["held_out"]]
    held = [r for r in rows if r["held_out"]]
    twins = [r for r in rows if "default_twin" in r]
    lines = ["# A third expansion point at 0.25?", "",
             "Every run is `--expansion-points 0.25,0.5,1` (`--preset demo --k 3`, N = 16,384, d = 400, "
             "`--surrogate newton`, per-task baselines, paired transitions: the default variant of results/planted.md "
             "plus the point), the tuning seeds and LunarLander's reward kind from runs/crn's theta_star, the other "
             "held-out runs meta-trained in the run (the same seed and options). Each column clusters the combined U "
             "of its points with the run's k: `default 0.5+1` is the default's U (its two U's are byte for byte the "
             f"default run's, checked on {sum(r['twin_same_affinities'] for r in twins)} of {len(twins)} runs with a "
             f"default twin, whose own groups it gives in {sum(r['matches_twin_groups'] for r in twins)} of "
             f"{len(twins)}); a run's own groups are `0.25+0.5+1`'s, or `w = r`'s where it was made with "
             f"`--point-weights reliability` (in {sum(r['matches_own_groups'] for r in rows)} of {len(rows)} runs). "
             "NMI against the planted groups, mean ± SE over seeds; differences paired by seed, resolved at 2 SE.", "",
             "## Tuning seeds", "", *summary_rows(tuning), "", *choice_lines(tuning), "", findings, ""]
    if held:
        prompted = [r for r in held if r["seed"] in PROMPTED]
        fresh = [r for r in held if r["seed"] not in PROMPTED]
        if fresh:
            lines += ["## Held-out seeds 15 and up (never used to choose)", "",
                      "Run after the tuning table above was read and the choice written down, to test it.", "",
                      *summary_rows(fresh), "", HELD_OUT_FINDINGS, ""]
        if prompted:
            lines += ["## Held-out seeds that prompted the question", "",
                      "Seeds 11-13 of LunarLander's reward kind were run with the point because the default misses "
                      "them (results/lunar-reward-diagnosis.md); their features were dropped before this page, so the "
                      "weighted columns cannot be computed. They prompted the question and cannot answer it.", "",
                      *summary_rows(prompted), ""]
    lines += pipeline_lines(prows, rows) + demo_lines(drows)
    lines += ["## Every run", "", "NMI (correlation of U with the planted same-group pattern over task pairs).", "",
              *run_rows(rows), "", f"Package versions: {versions()}.", "", "```", *RUN_COMMANDS, command, "```", ""]
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


X3W = "--expansion-points 0.25,0.5,1 --surrogate newton --point-weights reliability"
RUN_COMMANDS = (
    "python experiments/planted_suite.py --envs lunarlander --kinds reward --seeds 15,16,17,18,19 --root runs/x3 "
    "--reuse-theta runs/crn --extra '--expansion-points 0.25,0.5,1 --surrogate newton'",
    "cp -al runs/x3/reward-lunarlander-sS runs/x3w/reward-lunarlander-sS   # S = 15 ... 19",
    "policygradex run 'planted(kind=reward,env=lunarlander,n=12,groups=3)' --preset demo --k 3 --seed S "
    f"--out runs/x3w/reward-lunarlander-sS {X3W}",
    f"python experiments/planted_suite.py --envs cartpole --kinds reward --seeds 15,16,17,18,19 --root runs/x3 "
    f"--extra '{X3W}'",
    "python experiments/planted_suite.py --envs cartpole,lunarlander,planted --kinds observation,actuation,objective "
    f"--seeds 15,16,17 --root runs/x3 --extra '{X3W}'",
    "python experiments/planted_suite.py --envs planted,cartpole --kinds observation,actuation --seeds 18 "
    f"--root runs/x3 --extra '{X3W}'",
    "policygradex run cartpole --preset demo --k 3 --out runs/demo3/cartpole --expansion-points 0.25,0.5,1 "
    "--point-weights reliability",
    "policygradex run lunarlander --preset demo --k 3 --steps-per-task 30000 --out runs/demo3/lunarlander "
    "--expansion-points 0.25,0.5,1 --point-weights reliability")
"""The held-out runs and the demo runs, as they were made (the tuning runs' commands are in the module docstring);
the seeds 15-17 runs of the other kinds were queued one seed at a time."""

HELD_OUT_FINDINGS = """What the held-out rows say:

- The choice holds where it was chosen: on LunarLander's reward kind it is ahead of the default on the held-out seeds
  as on the tuning seeds (not resolved at 5 seeds), and every seed reaches 0.8.
- It costs nothing elsewhere: every variant of more than one point recovers every held-out seed of the actuation,
  observation and objective kinds.
- CartPole's reward kind misses the issue's bar on these seeds with the default and with the choice alike (the
  paired difference is a few hundredths, not resolved), and gradient similarity on the same features does as well as
  either. Its held-out seeds
  10-14 (results/planted.md) were kinder to the default. The misses are the known one
  (results/reward-geometry.md): the middle group's tasks join a side's, whose first-order steps at every expansion
  point point the same way. The confidence does not hide it: the merged group is called a pattern or said to
  dissolve, and every group called stable is a planted group give or take one task.
  An earlier expansion point does not help there: the quarter-budget policy's gradient signal is the least
  reliable of the three on CartPole, and it gets little weight."""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=Path("runs/x3"))
    ap.add_argument("--default-root", type=Path, default=Path("runs/xr"))
    ap.add_argument("--out", type=Path, default=Path("results/third-point.md"))
    ap.add_argument("--data", type=Path, default=Path("results/data/third-point.json"))
    ap.add_argument("--pipeline-root", type=Path, default=Path("runs/x3w"),
                    help="held-out runs reclustered with --point-weights reliability (pipeline_lines)")
    ap.add_argument("--demo-root", type=Path, default=Path("runs/demo3"),
                    help="the demo families run with the choice (demo_lines)")
    args = ap.parse_args()
    data = json.loads(args.data.read_text()) if args.data.exists() else {"rows": [], "pipeline": []}
    cached = {r["run_dir"]: r for r in data["rows"]}
    rows = []
    for run in sorted(p.parent for p in args.root.glob("*/groups.json")):
        rows.append(score_run(run, args.default_root, (cached.get(str(run)) or {}).get("reliability")))
        print(f"{run}: {rows[-1]['nmi']}", file=sys.stderr, flush=True)
    # a run deleted since it was scored keeps its row: the data is the record of what it gave
    on_disk = {r["run_dir"] for r in rows}
    rows += [r for key, r in cached.items() if key not in on_disk]
    prows = {p["run_dir"]: p for p in data.get("pipeline", [])}
    for run in pipeline_runs(args.pipeline_root, args.root):
        prows[str(run)] = pipeline_row(run)
    drows = {d["run_dir"]: d for d in data.get("demo", [])}
    for run in sorted(p.parent for p in args.demo_root.glob("*/groups.json")):
        drows[str(run)] = demo_row(run)
    command = (f"python experiments/third_point.py --root {args.root} --default-root {args.default_root} "
               f"--pipeline-root {args.pipeline_root} --demo-root {args.demo_root} --out {args.out}")
    pipeline, demo = [prows[k] for k in sorted(prows)], [drows[k] for k in sorted(drows)]
    rows.sort(key=lambda r: r["run_dir"])
    args.data.write_text(json.dumps({"command": command, "rows": rows, "pipeline": pipeline, "demo": demo},
                                    indent=1) + "\n")
    args.out.write_text(page(rows, command, FINDINGS, pipeline, demo))


if __name__ == "__main__":
    main()
