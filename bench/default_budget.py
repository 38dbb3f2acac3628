"""Features to groups at the default budget (N = 16,384 transitions per task, d = 400, the 64-64-64 MLP) for 100
planted tasks: the default (dense P, ``--store statistics`` by ``auto``), the same with per-transition features
(``--store features``), and the factorised projection: the issue's "n = 100 features through groups under one
minute at the default budget". Meta-training is cut to 2,048 steps per task slot (it is not part of features to
groups, and its budget does not change the later stages' cost).

    .venv/bin/python bench/default_budget.py --out results/default-budget-n100.md
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import command_line, fmt_s, git_state, log, machine_info, run_fresh, table, write_report  # noqa: E402

from policygradex.common.artifacts import load_json  # noqa: E402

FAMILY = "planted(n=100,groups=10,orthogonal=1)"
OPTIONS = ["--steps-per-task", "2048", "--k", "10"]
STAGES = ("meta_train", "features", "surrogate", "affinity", "cluster")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("results/default-budget-n100.md"))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--root", type=Path, default=Path("runs/default-budget"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    rows = []
    for projection, store in (("dense", "auto"), ("dense", "features"), ("factorised", "auto")):
        out = args.root / f"{projection}-{store}-s{args.seed}"
        log(f"{FAMILY} --projection {projection} --store {store}")
        wall = run_fresh([FAMILY, *OPTIONS, "--projection", projection, "--store", store, "--seed", str(args.seed)], out)
        t = load_json(out / "timings.json")
        g = load_json(out / "groups.json")
        meta = load_json(out / "features" / "meta.json")
        rows.append([projection, f"{store} ({meta['store']})", str(meta["d"]), *[fmt_s(t[s]) for s in STAGES],
                     fmt_s(meta["seconds"]["rollouts"]), f"**{fmt_s(sum(t[s] for s in STAGES[1:]))}**", fmt_s(wall),
                     f"{g['nmi_planted']:.2f}"])
    info = machine_info()
    text = "\n".join([
        "# 100 tasks at the default budget: features to groups", "",
        f"Produced by (from the repository root): `{command_line()}`", "",
        f"- machine: {info['cpu']}, nproc={info['nproc']}, torch {info['torch']}; source: {git_state()}",
        f"- `policygradex run '{FAMILY}' {' '.join(OPTIONS)} --projection P --store S --seed {args.seed}`: every other option "
        f"the default (N = 16,384, d = 400, 64-64-64 MLP, closed-form surrogate, SDP clustering with a fast bootstrap); "
        f"wall time of the page {time.perf_counter() - t0:.0f} s", "",
        table(["projection", "store (resolved)", "d", *[f"{s} s" for s in STAGES], "of features: rollouts s", "features to groups s",
               "whole command s", "NMI planted"], rows), "",
    ])
    write_report(args.out, text, t0)


if __name__ == "__main__":
    main()
