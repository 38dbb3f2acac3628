"""Why is a task's gradient signal weak? One suspect at a time, on finished runs (issue 22 item 3).

For each run directory and each variant of the feature stage (one setting changed against the run's own), re-collect
theta_star's transitions, and from each task's advantage-weighted gradient sums over R = 32 blocks of its fitting
rows (one forward and backward per block, the run's projection) measure:

- ``snr``: ||b_k|| over the standard error of b_k from the spread of its block sums (||mean|| / sqrt(tr Cov / R));
  above about 2 a task's mean gradient stands out of its own noise;
- ``task_signal``: ``confidence.task_signal`` (split-half cosine of the task's own direction, Spearman-Brown;
  with per-task baselines each half's advantages come from value functions fitted on that half alone, as the
  feature stage measures it, ``features.split_advantages``);
- ``gradient_reliability``: split-half reliability of G G^T (``confidence.interaction_reliability``);
- ``nmi_gradsim``: NMI with the planted groups of the cosine of the b_k, clustered with the planted k.

Nothing is trained: theta_star is the run's. Variants:
  default, N x4 (``--transitions``), advantage normalisation none / batch, per-task value baselines
  (``--baseline per_task``), GAE lambda 1.0 and 0.8, each alone.

    python experiments/weak_signal.py runs/suite/reward-lunarlander-s0 runs/suite/reward-cartpole-s0 \\
        --json results/weak-signal.json --out results/weak-signal.md
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import normalized_mutual_info_score

from policygradex.common.artifacts import load_json, load_torch
from policygradex.envs.registry import load_family
from policygradex.pipeline.clustering import cluster
from policygradex.pipeline.config import RunConfig
from policygradex.pipeline.confidence import interaction_reliability, task_signal
from policygradex.pipeline.features import fit_rows, logistic_targets, normalize_advantages, projection_for, \
    run_transitions
from policygradex.pipeline.gradient_statistics import weighted_gradient_sums
from policygradex.pipeline.partitions import labels_from_groups
from policygradex.pipeline.rundir import RunDir
from policygradex.pipeline.stages import make_model
from policygradex.pipeline.statistics import block_bounds

sys.path.insert(0, str(Path(__file__).resolve().parent))
from planted_suite import versions  # noqa: E402  (one list of package versions for the experiments' pages)

VARIANTS = {
    "default": {},
    "N x4": {"features": {"transitions_per_task": 4}},
    "normalisation none": {"features": {"advantage_normalization": "none"}},
    "normalisation batch": {"features": {"advantage_normalization": "batch"}},
    "per-task baseline": {"features": {"baseline": "per_task"}},
    "GAE lambda 1.0": {"ppo": {"gae_lambda": 1.0}},
    "GAE lambda 0.8": {"ppo": {"gae_lambda": 0.8}},
}
BLOCKS = 32


def variant_config(cfg: RunConfig, change: dict) -> RunConfig:
    feats = dict(change.get("features", {}))
    if "transitions_per_task" in feats:
        feats["transitions_per_task"] = cfg.features.transitions_per_task * feats["transitions_per_task"]
    return replace(cfg, features=replace(cfg.features, **feats), ppo=replace(cfg.ppo, **change.get("ppo", {})))


def measure(run: Path, name: str) -> dict:
    rd = RunDir(run)
    base = RunConfig.from_dict(load_json(rd.config)["config"])
    cfg = variant_config(base, VARIANTS[name])
    family = load_family(cfg.family)
    assert family.planted_groups is not None, f"{run}: not a planted family"
    model = make_model(cfg, family)
    model.load_state_dict(load_torch(rd.theta_star)["state_dict"])
    t0 = time.perf_counter()
    trans = run_transitions(cfg, family, model)
    advs = normalize_advantages([t.advantages for t in trans], cfg.features.advantage_normalization)
    projection = projection_for(cfg, model)
    sums = []
    for t, a in zip(trans, advs):
        n_fit = fit_rows(len(a), cfg.features.holdout_fraction)
        y, w = logistic_targets(a)
        z = torch.from_numpy(0.5 * w * y)
        bounds = block_bounds(n_fit, BLOCKS)
        s = weighted_gradient_sums(model, t.obs[:n_fit], t.actions[:n_fit], z[:n_fit], bounds, projection)
        sums.append(s / np.diff(bounds)[:, None])  # block means
    S = np.stack(sums)  # (n, R, d) block means
    b = S.mean(1)
    se = np.sqrt(S.var(1, ddof=1).sum(1) / BLOCKS)
    snr = np.linalg.norm(b, axis=1) / se
    half = BLOCKS // 2
    first, second = S[:, :half].mean(1), S[:, half:].mean(1)
    if all(t.split_advantages is not None for t in trans):  # per-task baselines: each half's fitted on it alone
        halves = []
        for t, a in zip(trans, normalize_advantages([t.split_advantages for t in trans],
                                                    cfg.features.advantage_normalization)):
            n_fit = fit_rows(len(a), cfg.features.holdout_fraction)
            y, w = logistic_targets(a)
            bounds = np.array([0, n_fit // 2, n_fit])
            s = weighted_gradient_sums(model, t.obs[:n_fit], t.actions[:n_fit], torch.from_numpy(0.5 * w * y)[:n_fit],
                                       bounds, projection)
            halves.append(s / np.diff(bounds)[:, None])
        first, second = np.stack([h[0] for h in halves]), np.stack([h[1] for h in halves])
    signal = task_signal(first, second)
    rel = interaction_reliability(first, second)
    truth = labels_from_groups([list(g) for g in family.planted_groups], family.n)
    bn = b / np.linalg.norm(b, axis=1, keepdims=True).clip(1e-12)
    gs = cluster(bn @ bn.T, k=len(family.planted_groups), exhaustive_check=False, relaxation_gap=False).labels
    episodes = [len(t.episode_returns) for t in trans]
    return {"run": str(run), "variant": name, "family": cfg.family, "seed": cfg.seed,
            "N": cfg.features.transitions_per_task, "seconds": round(time.perf_counter() - t0, 1),
            "snr": snr.round(3).tolist(), "task_signal": signal.round(3).tolist(),
            "gradient_reliability": None if rel is None else round(float(rel), 3),
            "nmi_gradsim": round(float(normalized_mutual_info_score(truth, gs)), 3),
            "episodes": episodes, "rows": [len(t.advantages) for t in trans], "truth": truth.tolist()}


def reading(rows: list[dict]) -> list[str]:
    """Per run, the variants ranked by gradient reliability, against the default: computed, not written by hand."""
    out = ["## Reading", ""]
    for run in dict.fromkeys(r["run"] for r in rows):
        rs = [r for r in rows if r["run"] == run]
        base = next((r for r in rs if r["variant"] == "default"), None)
        if base is None:
            continue
        rel = {r["variant"]: r["gradient_reliability"] if r["gradient_reliability"] is not None else float("nan")
               for r in rs}
        ranked = sorted((v for v in rel if v != "default"), key=lambda v: -rel[v])
        best = ranked[0]
        weak = {r["variant"]: int((np.array(r["task_signal"]) < 0.5).sum()) for r in rs}
        out.append(f"- {Path(run).name}: the default's gradient reliability is {rel['default']:.2f} with "
                   f"{weak['default']} of {len(base['task_signal'])} tasks below 0.5; the best single change is "
                   f"**{best}** ({rel[best]:.2f}, {weak[best]} tasks below 0.5), then "
                   + ", ".join(f"{v} ({rel[v]:.2f})" for v in ranked[1:]) + ".")
    return out + [""]


def page(rows: list[dict], command: str) -> str:
    lines = ["# Why is a task's gradient signal weak? One suspect at a time", "",
             "From `experiments/weak_signal.py`, on runs of the planted suite (`planted(kind=K,env=E,n=12,groups=3)`, "
             "`--preset demo --k 3`: 100k PPO steps per task, N = 16,384 transitions per task, d = 400, no task id; "
             "experiments/planted_suite.py made them). theta_star is each run's own; each variant re-collects the "
             "transitions with one setting changed and nothing else, so each row tests one suspect. SNR: a task's "
             "||b_k|| over its standard error from 32 blocks of its transitions (the shared direction included). "
             "Task signal: `confidence.task_signal`, the split-half cosine of the task's own direction (the mean "
             "over tasks removed), Spearman-Brown; below 0.5 `show` names the task too weak to place. Gradient "
             "reliability: split-half reliability of G G^T. Gradient-similarity NMI: the cosine of the b_k clustered "
             "with the planted k, against the planted groups.", "",
             f"Package versions: {versions()}.", "", "```", command, "```", "",
             "| run | variant | median SNR (min) | median task signal (min) | tasks below 0.5 | gradient reliability "
             "| gradient-similarity NMI | seconds |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        snr, sig = np.array(r["snr"]), np.array(r["task_signal"])
        rel = "-" if r["gradient_reliability"] is None else f"{r['gradient_reliability']:.2f}"
        lines.append(f"| {Path(r['run']).name} | {r['variant']} | {np.median(snr):.2f} ({snr.min():.2f}) | "
                     f"{np.median(sig):.2f} ({sig.min():.2f}) | {int((sig < 0.5).sum())} / {len(sig)} | {rel} | "
                     f"{r['nmi_gradsim']:.2f} | {r['seconds']:.0f} |")
    return "\n".join(lines + [""] + reading(rows))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", type=Path, nargs="*")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--json", type=Path, required=True, help="rows are merged into this JSON (by run and variant)")
    ap.add_argument("--out", type=Path, default=None, help="write the page from --json's rows")
    args = ap.parse_args()
    torch.set_num_threads(1)
    blob = json.loads(args.json.read_text()) if args.json.exists() else {"commands": [], "rows": []}
    command = " ".join(["python", "experiments/weak_signal.py", *(shlex.quote(a) for a in sys.argv[1:])])
    for run in args.runs:
        for name in args.variants.split(","):
            if any(r["run"] == str(run) and r["variant"] == name for r in blob["rows"]):
                continue
            row = measure(run, name)
            print(json.dumps({k: row[k] for k in ("run", "variant", "gradient_reliability", "nmi_gradsim")}),
                  file=sys.stderr, flush=True)
            blob["rows"].append(row)
            if command not in blob["commands"]:
                blob["commands"].append(command)
            args.json.write_text(json.dumps(blob, indent=1) + "\n")
    if args.out:
        args.out.write_text(page(blob["rows"], "\n".join(blob["commands"])))


if __name__ == "__main__":
    main()
