"""The planted suite: does the pipeline recover groups that conflict by reward, actuation, observation or objective?

Runs ``policygradex run 'planted(kind=K,env=E,n=N,groups=G)' --preset P --k G --seed S`` for every kind, base
environment and seed asked for (a finished run directory is reused, so an interrupted sweep resumes), then scores
each run against the planted groups: NMI of the run's groups, NMI of gradient similarity on the run's own features
(the baseline: G_k = mean over task k's fitting transitions of sign(A) |A| g~, cosine, clustered with the same k),
and how many of the groups the confidence calls stable match a planted group (or one plus at most one task).

    python experiments/planted_suite.py --seeds 0,1,2 --root runs/suite --json results/planted-suite-tuning.json

Seeds 0-2 are the tuning seeds; 10 and up are held out (never used to choose anything).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import normalized_mutual_info_score

from policygradex.common.artifacts import load_json, load_npz
from policygradex.envs.registry import load_family
from policygradex.pipeline.clustering import cluster
from policygradex.pipeline.config import RunConfig
from policygradex.pipeline.features import feature_set
from policygradex.pipeline.group_record import Groups
from policygradex.pipeline.partitions import labels_from_groups
from policygradex.pipeline.rundir import RunDir

SUITE = {("reward", "cartpole"), ("actuation", "cartpole"), ("observation", "cartpole"),
         ("reward", "lunarlander"), ("actuation", "lunarlander"), ("observation", "lunarlander"),
         ("objective", "lunarlander")}
TUNING_SEEDS = (0, 1, 2)


def family_spec(kind: str, env: str, n: int, groups: int) -> str:
    return f"planted(kind={kind},env={env},n={n},groups={groups})"


def run_one(spec: str, k: int, seed: int, preset: str, out: Path, extra: list[str]) -> float:
    """Run (or resume) one pipeline run; returns the wall seconds of this call."""
    t0 = time.perf_counter()
    cmd = [str(Path(sys.executable).parent / "policygradex"), "run", spec, "--preset", preset, "--k", str(k), "--seed", str(seed),
           "--out", str(out), *extra]
    with open(out.parent / f"{out.name}.log", "a") as log:
        subprocess.run(cmd, check=True, stdout=log, stderr=log, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return time.perf_counter() - t0


def matches(group: set[int], truth: list[set[int]]) -> bool:
    """A planted group, or a planted group plus or minus at most one task."""
    return any(len(group ^ t) <= 1 and len(group & t) >= len(t) - 1 for t in truth)


def score(run: Path) -> dict:
    rd = RunDir(run)
    cfg = RunConfig.from_dict(load_json(rd.config)["config"])
    family = load_family(cfg.family)
    n = family.n
    assert family.planted_groups is not None
    truth_groups = [set(g) for g in family.planted_groups]
    truth = labels_from_groups([list(g) for g in family.planted_groups], n)
    groups = Groups.load(rd.groups, n)
    if rd.statistics.exists():
        G = load_npz(rd.statistics)["b"].astype(np.float64)
    else:
        paths = [rd.task_features(i) for i in range(n)]
        data = feature_set([dict(np.load(p)) for p in paths], cfg.features.holdout_fraction, paths)
        X, y, w = (t.numpy().astype(np.float64) for t in data.part(held_out=False))
        G = ((y * w)[..., None] * X).mean(1)
    Gn = G / np.linalg.norm(G, axis=1, keepdims=True).clip(1e-12)
    gs = cluster(Gn @ Gn.T, k=groups.k, exhaustive_check=False, relaxation_gap=False).labels
    conf = groups.confidence
    words = []
    if conf is not None and conf.group_jaccard:
        from policygradex.pipeline.confidence import stability_word

        words = [stability_word(j) for j in conf.group_jaccard]
    correct = [matches(set(g), truth_groups) for g in groups.indices]
    return {"nmi": float(normalized_mutual_info_score(truth, groups.labels())),
            "nmi_gradsim": float(normalized_mutual_info_score(truth, gs)),
            "words": words, "correct": correct,
            "stable_groups": sum(w == "stable" for w in words),
            "stable_groups_correct": sum(w == "stable" and c for w, c in zip(words, correct)),
            "gradient_reliability": None if conf is None else conf.gradient_reliability,
            "verdict": None if conf is None else conf.verdict}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kinds", default="reward,actuation,observation,objective")
    ap.add_argument("--envs", default="cartpole,lunarlander")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--n", type=int, default=12)
    ap.add_argument("--groups", type=int, default=3)
    ap.add_argument("--preset", default="demo")
    ap.add_argument("--root", type=Path, default=Path("runs/suite"))
    ap.add_argument("--json", type=Path, default=None, help="append-free: rewrite this JSON with every row scored")
    ap.add_argument("--extra", default="", help="further `policygradex run` options, space separated")
    args = ap.parse_args()
    args.root.mkdir(parents=True, exist_ok=True)
    rows = []
    for kind in args.kinds.split(","):
        for env in args.envs.split(","):
            if (kind, env) not in SUITE:
                continue
            for seed in (int(s) for s in args.seeds.split(",")):
                spec = family_spec(kind, env, args.n, args.groups)
                out = args.root / f"{kind}-{env}-s{seed}"
                secs = run_one(spec, args.groups, seed, args.preset, out, args.extra.split())
                row = {"family": env, "kind": kind, "seed": seed, "held_out": seed not in TUNING_SEEDS,
                       "seconds": round(secs, 1), **score(out)}
                rows.append(row)
                print(json.dumps(row), flush=True)
                if args.json:
                    args.json.write_text(json.dumps({"rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
