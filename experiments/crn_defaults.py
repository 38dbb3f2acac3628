r"""results/crn-defaults.md: the planted suite's best variant (``--baseline per_task --common-random-numbers``, the
defaults since this page) against the earlier defaults on the demo and the paper families, each pair from one
theta_star.

``--make`` seeds each new run from its earlier-defaults run's theta_star (``planted_suite.seed_from_theta``) and runs
the command in ``PAIRS`` with the new options under ``--root``; without it, the page is written from finished runs::

    python experiments/crn_defaults.py --make --root runs/crn-defaults
    python experiments/crn_defaults.py --root runs/crn-defaults --out results/crn-defaults.md

Where the groups differ, the new run's ``compare`` trains the earlier groups beside its own (named ``value_head``),
as in results/candidate-defaults.md; where they are the same, so is every trained policy::

    policygradex compare runs/crn-defaults/cartpole --seeds 5 --groups value_head=runs/demo-cartpole-policy/groups.json
    policygradex compare runs/crn-defaults/lunarlander --seeds 5 \
        --groups value_head=runs/demo-lunarlander-policy/groups.json
    policygradex compare runs/crn-defaults/mt10 --seeds 3 --steps-per-task 40000 \
        --groups value_head=runs/mt10-policy/groups.json --backend process --workers 2

(MT10's at results/mt10.md's budget.)"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from candidate_defaults import fmt, pair_record  # noqa: E402
from planted_suite import paired, seed_from_theta, versions  # noqa: E402


CANDIDATE = ["--baseline", "per_task", "--common-random-numbers"]
"""The new defaults, spelled out: each task's own value function as the advantages' baseline, and paired feature
rollouts (explicit, so that the commands still mean the same if the defaults change again)."""

_W = "results/data/mo-lunar-lander-weights.csv"
PAIRS: tuple[tuple[str, str, list[str]], ...] = (
    ("cartpole", "runs/demo-cartpole-policy", ["run", "cartpole", "--preset", "demo", "--k", "3"]),
    *((f"mo-lunar-lander-s{s}", f"runs/mo-ll-auto-s{s}",
       ["run", "mo:mo-lunar-lander-v3", "--weights", _W, "--preset", "demo", "--k", "3", "--seed", str(s)])
      for s in (0, 1, 2)),
    ("lunarlander", "runs/demo-lunarlander-policy",
     ["run", "lunarlander", "--preset", "demo", "--k", "3", "--steps-per-task", "30000"]),
    ("highway", "runs/highway-auto",
     ["run", "highway", "--k", "3", "--steps-per-task", "10000", "--transitions", "2048"]),
    ("mt10", "runs/mt10-policy", ["run", "mt10", "--k", "3", "--network", "softmod", "--steps-per-task", "50000"]),
)
"""(name on the page, the run with the earlier defaults, its command without ``--out``). runs/demo-*-policy are the
demo runs made before the defaults changed (``--baseline policy``, unpaired), copied aside before the demo was rerun.
The mo-lunar-lander and Highway runs were made with ``--baseline auto``, which kept the value head on them
(results/baseline-choice.md), so their groups are the earlier defaults'. runs/mt10-policy holds runs/mt10-auto's
theta_star with the value head."""


def make(root: Path) -> None:
    for name, source, argv in PAIRS:
        out = root / name
        if (out / "groups.json").exists():
            continue
        cmd = [*argv, *CANDIDATE]
        if not seed_from_theta(Path(source), out, cmd) and not (out / "config.json").exists():
            print(f"{name}: cannot start from {source}'s theta_star; skipped", file=sys.stderr)
            continue
        print(f"{name}: policygradex {' '.join(cmd)} --out {out}", file=sys.stderr, flush=True)
        with open(root / f"{name}.log", "a") as log:
            subprocess.run([str(Path(sys.executable).parent / "policygradex"), *cmd, "--out", str(out)],
                           stdout=log, stderr=log, check=False)


def pair_row(r: dict[str, Any], as_before: str) -> str:
    """One pair's table row: groups, reliability, verdict and seconds before -> after, and where the groups differ
    the paired differences of their ``compare`` (``as_before`` fills the columns when the groups are the same)."""
    d, c = r["default"], r["candidate"]
    rel = " -> ".join("-" if x is None else f"{x:.2f}" for x in (d["reliability"], c["reliability"]))
    if r["same_groups"]:
        diffs = ["the same groups", as_before, as_before]
    elif "compare" in r:
        k = r["compare"]
        diffs = [paired(k["candidate"], k["default"]) + f", {k['seeds']} seeds",
                 paired(k["candidate"], k["multitask"]), paired(k["candidate"], k["random"])]
    else:
        diffs = ["compare not run yet", "", ""]
    return (f"| {r['name']} | `{d['run_dir']}` | {fmt(d['groups'])} | "
            f"{'the same' if r['same_groups'] else fmt(c['groups'])} | {rel} | "
            f"{d['verdict']} -> {c['verdict']} | {d['seconds']:.0f} -> {c['seconds']:.0f} | "
            + " | ".join(diffs) + " |")


def page(records: list[dict[str, Any]], command: str) -> str:
    lines = ["# The defaults: per-task baselines with common random numbers, on the demo and the paper families", "",
             "Each pair is one theta_star run twice: with the earlier defaults (theta_star's value head behind the "
             "advantages, every task's feature rollouts on its own seeds) and with `" + " ".join(CANDIDATE) + "`, the "
             "planted suite's best variant on its held-out seeds ([planted.md](planted.md), "
             "[common-random-numbers.md](common-random-numbers.md)) and the defaults since this page. It asks "
             "whether the demo's and the paper families' results get worse with them. Where the groups differ, the "
             "new groups' `compare` trains both groupings on the same seeds (paired differences, mean ± standard "
             "error; within 2 SE is not resolved).", "",
             "Result pages made before this change ran with the earlier defaults: to reproduce one of them, add "
             "`--baseline policy --no-common-random-numbers` to its `policygradex run` commands (each page says the "
             "options it set, not the defaults it inherited).", "",
             f"Package versions: {versions()}.", "", "```", command, "```",
             "", "| family | run (earlier defaults) | groups (earlier) | groups (new) | reliability | "
             "verdict | feature + surrogate s | new - earlier | new - multitask | new - random |",
             "|---|---|---|---|---|---|---|---|---|---|"]

    lines += [pair_row(r, "as earlier") for r in records]
    lines += ["", "Task indices are the family's order (`policygradex show RUN` names them). Reliability: the split-"
              "half reliability of the gradient interaction; feature + surrogate s: those two stages' wall seconds on "
              "2 CPU cores, shared with other jobs (a guide to the ratio, not a benchmark).", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=Path("runs/crn-defaults"))
    ap.add_argument("--make", action="store_true", help="make the candidate runs that are missing")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--data", type=Path, default=Path("results/data/crn-defaults.json"))
    args = ap.parse_args()
    if args.make:
        args.root.mkdir(parents=True, exist_ok=True)
        make(args.root)
    if args.out is None:
        return
    records = []
    for name, source, _ in PAIRS:
        if not (args.root / name / "groups.json").exists():
            continue
        records.append(pair_record(name, Path(source), args.root / name))
    command = f"python experiments/crn_defaults.py --root {args.root} --out {args.out}"
    args.data.write_text(json.dumps({"command": command, "pairs": records}, indent=1) + "\n")
    args.out.write_text(page(records, command))


if __name__ == "__main__":
    main()
