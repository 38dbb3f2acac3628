r"""results/expansion-defaults.md: ``--expansion-points 0.5,1`` (the planted suite's best variant on its held-out
seeds, results/expansion-points.md) against the current defaults on the demo and the paper families, each pair from
one theta_star.

The runs with the current defaults are results/crn-defaults.md's (``runs/crn-defaults/NAME``, made with the options
that became the defaults there). ``--make`` seeds each new run from that run's theta_star
(``planted_suite.seed_from_theta``; expansion points come after meta-training, so only the half-budget meta-training
of the point is new) and runs the same command with the option under ``--root``; without it, the page is written
from finished runs::

    python experiments/expansion_defaults.py --make --root runs/xd --only cartpole,lunarlander
    python experiments/expansion_defaults.py --root runs/xd --out results/expansion-defaults.md

Where the groups differ, the new run's ``compare`` trains the current groups beside its own (named ``value_head``,
the name :mod:`candidate_defaults` reads), at the budget of results/crn-defaults.md's compare::

    policygradex compare runs/xd/cartpole --seeds 5 --groups value_head=runs/crn-defaults/cartpole/groups.json
    policygradex compare runs/xd/lunarlander --seeds 5 --groups value_head=runs/crn-defaults/lunarlander/groups.json

``--trainings-from runs/crn-defaults/NAME`` lets each new compare reuse the trainings the two runs share (a training
from scratch depends on the family, network, budget, tasks and seed, not on the feature options), so that only the
new groups are trained.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from candidate_defaults import pair_record  # noqa: E402
from crn_defaults import PAIRS, pair_row  # noqa: E402
from planted_suite import seed_from_theta, versions  # noqa: E402

from policygradex.common.artifacts import load_json  # noqa: E402

CANDIDATE = ["--expansion-points", "0.5,1"]
"""The option, spelled out (with the default ``--expansion-policy retrain``)."""
SOURCE = Path("runs/crn-defaults")
"""Where the runs with the current defaults are (results/crn-defaults.md's new runs)."""


MAKE = ("python experiments/expansion_defaults.py --make --root runs/xd",
        "policygradex compare runs/xd/cartpole --seeds 5 --groups value_head=runs/crn-defaults/cartpole/groups.json "
        "--trainings-from runs/crn-defaults/cartpole",
        "policygradex compare runs/xd/lunarlander --seeds 5 "
        "--groups value_head=runs/crn-defaults/lunarlander/groups.json --trainings-from runs/crn-defaults/lunarlander",
        "policygradex compare runs/xd/mt10 --seeds 3 --steps-per-task 40000 --groups "
        "value_head=runs/crn-defaults/mt10/groups.json --trainings-from runs/crn-defaults/mt10 --backend process "
        "--workers 2")
"""The commands that make the page's runs and compares. They were made before compare had ``--trainings-from``:
this script copied the shared trainings into the new runs' caches then (its former ``--reuse-trainings``), and the
CartPole and LunarLander compares ran with ``--workers 1``; both give the same results. ``--trainings-from`` finds
every one of runs/crn-defaults' trainings in runs/xd under its key (65 on CartPole, 65 on LunarLander, 39 on MT10,
each with the same returns)."""


def make(root: Path, only: set[str] | None) -> None:
    for name, _, argv in PAIRS:
        if only is not None and name not in only:
            continue
        out = root / name
        if (out / "groups.json").exists():
            continue
        cmd = [*argv, *CANDIDATE]
        if not seed_from_theta(SOURCE / name, out, cmd) and not (out / "config.json").exists():
            print(f"{name}: cannot start from {SOURCE / name}'s theta_star; skipped", file=sys.stderr)
            continue
        print(f"{name}: policygradex {' '.join(cmd)} --out {out}", file=sys.stderr, flush=True)
        with open(root / f"{name}.log", "a") as log:
            subprocess.run([str(Path(sys.executable).parent / "policygradex"), *cmd, "--out", str(out)],
                           stdout=log, stderr=log, check=False)


def with_point_seconds(record: dict[str, Any], run: Path) -> dict[str, Any]:
    """``record`` with the candidate's feature + surrogate seconds summed over its points (each earlier point's
    stages are timed in ``points/F/timings.json``), and its half-budget meta-training's seconds."""
    cand = record["candidate"]
    for timings in sorted(run.glob("points/*/timings.json")):
        t = load_json(timings)
        cand["seconds"] = round(cand["seconds"] + t.get("features", 0.0) + t.get("surrogate", 0.0), 1)
    top = load_json(run / "timings.json")
    cand["point_meta_train_seconds"] = round(sum(v for k, v in top.items() if k.startswith("meta_train at")), 1)
    return record


def page(records: list[dict[str, Any]], command: str) -> str:
    lines = ["# Expansion points 0.5 and 1 on the demo and the paper families", "",
             "Each pair is one theta_star run twice: with the defaults before this page (results/crn-defaults.md's "
             "runs) and "
             "with `" + " ".join(CANDIDATE) + "`, which clusters the mean of the standardised affinities of "
             "theta_star and of a policy meta-trained on half the budget, the same seed "
             "([expansion-points.md](expansion-points.md)). The planted suite measures that the option recovers "
             "planted groups; this page asks whether the demo's and the paper families' results get worse with it. "
             "Where the groups differ, the new groups' `compare` trains both groupings on the same seeds (paired "
             "differences, mean ± standard error; within 2 SE is not resolved).", "",
             "`--expansion-points 0.5,1` is the default since this page. Result pages made before it took the "
             "features at theta_star alone: to reproduce one of them, add `--expansion-points 1` to its "
             "`policygradex run` commands (each page says the options it set, not the defaults it inherited).", "",
             f"Package versions: {versions()}.", "", "```", *MAKE, command, "```",
             "", "| family | run (defaults before) | groups (before) | groups (points 0.5, 1) | reliability | "
             "verdict | feature + surrogate s | new - before | new - multitask | new - random |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    lines += [pair_row(r, "as before") for r in records]
    lines += ["", "Task indices are the family's order (`policygradex show RUN` names them). Reliability: the split-"
              "half reliability of the gradient interaction (with the option, of the points' combined interaction); "
              "feature + surrogate s: those two stages' wall seconds on 2 CPU cores (with the option, at both points), "
              "shared with up to five other jobs, more than the runs with the defaults were, so the column overstates "
              "the ratio; within one run, under the same load, each report.md times the point's stages beside "
              "theta_star's. The option's half-budget meta-training is not in that column: it costs half of "
              "meta-training's time.", "",
              "The compare trainings of the groups both runs share (the defaults' groups, one multitask policy, "
              "random groups, gradient similarity) are the runs with the defaults' own, copied into the new runs' job "
              "caches (`compare --trainings-from`): a training from scratch does not depend on the "
              "feature options, and every training that both compares had run before the copy (14 on CartPole, 14 "
              "on LunarLander) agrees in every return.", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=Path("runs/xd"))
    ap.add_argument("--make", action="store_true", help="make the runs with the option that are missing")
    ap.add_argument("--only", default=None, help="comma-separated names of PAIRS to make (default: all)")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--data", type=Path, default=Path("results/data/expansion-defaults.json"))
    args = ap.parse_args()
    if args.make:
        args.root.mkdir(parents=True, exist_ok=True)
        make(args.root, None if args.only is None else set(args.only.split(",")))
    if args.out is None:
        return
    records = [with_point_seconds(pair_record(name, SOURCE / name, args.root / name), args.root / name)
               for name, _, _ in PAIRS if (args.root / name / "groups.json").exists()]
    command = f"python experiments/expansion_defaults.py --root {args.root} --out {args.out}"
    args.data.write_text(json.dumps({"command": command, "pairs": records}, indent=1) + "\n")
    args.out.write_text(page(records, command))


if __name__ == "__main__":
    main()
