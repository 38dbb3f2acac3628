"""Diagnose a run on a family with planted groups: NMI against the planted groups of the run's own groups, of
gradient similarity on the run's own features, and of U refitted at other l2; plus the gradient reliability.

    python experiments/diagnose_planted.py runs/planted-s0 runs/planted-s1 --l2 0.1,10

Gradient similarity here uses the run's projected features: G_k = mean over task k's transitions of
sign(A) |A| g~ (advantages normalised as in the run), clustered by cosine ("cos") or inner product ("inner") with
the run's k and method. The U rows refit the surrogate on the run's subsets with another l2 (everything else as
configured) and cluster it the same way.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
from sklearn.metrics import normalized_mutual_info_score

from policygradex.common.artifacts import load_json
from policygradex.envs.registry import load_family
from policygradex.pipeline.affinity import subset_affinity
from policygradex.pipeline.clustering import cluster
from policygradex.pipeline.config import RunConfig
from policygradex.pipeline.features import feature_set
from policygradex.pipeline.partitions import labels_from_groups
from policygradex.pipeline.rundir import RunDir
from policygradex.pipeline.surrogate import run_surrogate


def diagnose(run: Path, l2s: list[float]) -> dict[str, float]:
    rd = RunDir(run)
    cfg = RunConfig.from_dict(load_json(rd.config)["config"])
    family = load_family(cfg.family)
    if family.planted_groups is None:
        raise SystemExit(f"{run}: family {family.name} has no planted groups")
    n = family.n
    truth = labels_from_groups([list(g) for g in family.planted_groups], n)
    groups = load_json(rd.groups)
    k = int(groups["k"])

    def nmi_of(U: np.ndarray) -> float:
        labels = cluster(U, k=k, method=cfg.cluster.method, exhaustive_check=False, relaxation_gap=False).labels
        return float(normalized_mutual_info_score(truth, labels))

    paths = [rd.task_features(i) for i in range(n)]
    data = feature_set([dict(np.load(p)) for p in paths], cfg.features.holdout_fraction, paths)
    X, y, w = (t.numpy().astype(np.float64) for t in data.part(held_out=False))
    G = ((y * w)[..., None] * X).mean(1)
    Gn = G / np.linalg.norm(G, axis=1, keepdims=True)
    out = {"run": float(normalized_mutual_info_score(truth, labels_from_groups(groups["group_indices"], n))),
           "gradient similarity (cos)": nmi_of(Gn @ Gn.T), "gradient similarity (inner)": nmi_of(G @ G.T),
           "gradient reliability": float(groups.get("confidence", {}).get("gradient_reliability", float("nan")))}
    subsets = [s["tasks"] for s in load_json(rd.subsets)["subsets"]]
    for l2 in l2s:
        res = run_surrogate(data, subsets, replace(cfg.surrogate, l2=l2))
        out[f"U at l2={l2:g}"] = nmi_of(subset_affinity(subsets, res.f_hat, n, cfg.cluster.interaction == "subsets"))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--l2", default="0.1,10", help="comma-separated l2 values to refit U at (default 0.1,10)")
    args = ap.parse_args()
    l2s = [float(x) for x in args.l2.split(",")]
    for run in args.runs:
        print(json.dumps({"run_dir": str(run), **{k: round(v, 3) for k, v in diagnose(run, l2s).items()}}))


if __name__ == "__main__":
    main()
