r"""results/candidate-defaults.md: the candidate defaults (``--baseline per_task --target-reliability 0.9``) against
the current ones (theta_star's value head, fixed N) on the demo and paper families, each pair from one theta_star.

For every pair, DEFAULT is a finished run with the current defaults and CANDIDATE the same command with the two
options, started from DEFAULT's theta_star (``planted_suite.reuse_theta`` copies it). Where the groups differ,
CANDIDATE's compare trains DEFAULT's groups beside its own (or DEFAULT's compare trains CANDIDATE's, named
``candidates``), so the difference is paired by seed::

    policygradex run cartpole --preset demo --k 3 --out runs/demo/cartpole
    policygradex run cartpole --preset demo --k 3 --baseline per_task --target-reliability 0.9 \
        --out runs/demo/cartpole-pt-tr                       # from runs/demo/cartpole's theta_star
    policygradex compare runs/demo/cartpole-pt-tr --seeds 5 --groups value_head=runs/demo/cartpole/groups.json
    python experiments/candidate_defaults.py --pair cartpole runs/demo/cartpole runs/demo/cartpole-pt-tr ... \
        --out results/candidate-defaults.md

Where the groups are the same, the compare of either run is the other's too (the same groups, seeds and budget
train the same policies), so none is run. The page's data go to results/data/candidate-defaults.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from planted_suite import paired, versions  # noqa: E402

from policygradex.common.artifacts import load_json  # noqa: E402

DEFAULT_NAME = "value_head"
"""The name CANDIDATE's compare gives DEFAULT's groups (``--groups value_head=DEFAULT/groups.json``)."""
CANDIDATE_NAME = "candidates"
"""Or the name DEFAULT's compare gives CANDIDATE's groups (``--groups candidates=CANDIDATE/groups.json``), where
DEFAULT's compare is the one a results page already runs (Highway's, with its network rows)."""


def summary(run: Path) -> dict[str, Any]:
    """What the page shows of one run: its groups, signal, verdict, N and the feature and surrogate stages' time."""
    groups = load_json(run / "groups.json")
    meta = load_json(run / "features" / "meta.json")
    timings = load_json(run / "timings.json")
    cfg = load_json(run / "config.json")["config"]
    return {"run_dir": str(run), "family": cfg["family"], "baseline": cfg["features"].get("baseline", "policy"),
            "target_reliability": cfg["features"].get("target_reliability"),
            "groups": sorted(sorted(g) for g in groups["group_indices"]),
            "names": groups["groups"], "reliability": groups["confidence"].get("gradient_reliability"),
            "verdict": groups["confidence"]["verdict"].split(":")[0], "N": meta["N"],
            "growth": meta.get("growth", []),
            "seconds": round(timings.get("features", 0.0) + timings.get("surrogate", 0.0), 1)}


def fmt(groups: list[list[int]]) -> str:
    """Groups of task indices as ``{0, 1} {2, 3}``."""
    return " ".join("{" + ", ".join(str(i) for i in g) + "}" for g in groups)


def pair_record(name: str, default: Path, candidate: Path) -> dict[str, Any]:
    rec: dict[str, Any] = {"name": name, "default": summary(default), "candidate": summary(candidate)}
    same = rec["default"]["groups"] == rec["candidate"]["groups"]
    rec["same_groups"] = same
    for run, cand_name, default_name in ((candidate, "policygradex", DEFAULT_NAME),
                                          (default, CANDIDATE_NAME, "policygradex")):
        compare = run / "compare" / "compare.json"
        methods = load_json(compare)["methods"] if not same and compare.exists() else {}
        if cand_name in methods and default_name in methods:
            cand = methods[cand_name]["per_seed"]
            rec["compare"] = {"seeds": len(cand), "candidate": cand, "default": methods[default_name]["per_seed"],
                              "multitask": methods["multitask"]["per_seed"], "random": methods["random"]["per_seed"]}
            break
    return rec


def page(records: list[dict[str, Any]], command: str) -> str:
    lines = ["# Candidate defaults: per-task baselines and a target reliability of the gradient signal", "",
             "Each pair below is one theta_star run twice: with the current defaults (theta_star's value head as the "
             "baseline of the advantages, N fixed) and with the candidates `--baseline per_task --target-reliability "
             "0.9` (each task's own value function; N grown until the split-half reliability of the gradient signal "
             "reaches 0.9, up to 4 x N). results/planted.md has the candidates' recovery on the planted suite; this "
             "page asks the other half of the question: do the demo's and the paper families' results get worse?",
             "", "Where the groups differ, the candidate's `compare` trains both groupings on the same seeds (paired "
             "differences, mean ± standard error; within 2 SE is not resolved). Where they are the same, so is "
             "every trained policy, and nothing is trained.", "",
             f"Package versions: {versions()}.", "", "```", command, "```", "",
             "| family | run (current) | groups (current) | groups (candidates) | reliability | N | verdict | "
             "feature + surrogate s | candidates - current | candidates - multitask | candidates - random |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        d, c = r["default"], r["candidate"]
        rel = f"{d['reliability']:.2f} -> {c['reliability']:.2f}"
        n = f"{d['N']:,} -> {c['N']:,}"
        verdict = f"{d['verdict']} -> {c['verdict']}"
        secs = f"{d['seconds']:.0f} -> {c['seconds']:.0f}"
        if r["same_groups"]:
            diffs = ["the same groups", "as current", "as current"]
        elif "compare" in r:
            k = r["compare"]
            diffs = [paired(k["candidate"], k["default"]), paired(k["candidate"], k["multitask"]),
                     paired(k["candidate"], k["random"])]
            diffs[0] += f", {k['seeds']} seeds"
        else:
            diffs = ["compare not run yet", "", ""]
        lines.append(f"| {r['name']} | `{d['run_dir']}` | {fmt(d['groups'])} | "
                     f"{'the same' if r['same_groups'] else fmt(c['groups'])} | {rel} | {n} | {verdict} | {secs} | "
                     + " | ".join(diffs) + " |")
    lines += ["", "Task indices are the family's order (`policygradex show RUN` names them). Reliability: the split-"
              "half reliability of the gradient interaction on the final N; N: transitions per task the features "
              "were made from; feature + surrogate s: those two stages' wall seconds on 2 CPU cores, shared with "
              "other jobs (a guide to the ratio, not a benchmark).", "",
              "Read the reliability column with care: with per-task baselines the split-half statistic shares the "
              "baseline's fit between its halves, and [baseline-reliability.md](baseline-reliability.md) measures "
              "that it then overstates how well a fresh sample of transitions reproduces the interaction. The growth "
              "of N under `--target-reliability` stops on the same statistic.", ""]
    growth = [r for r in records if len(r["candidate"]["growth"]) > 1]
    if growth:
        lines += ["How N grew (reliability at each N):", ""]
        for r in growth:
            steps = ", ".join(f"{g['reliability']:.2f} at {g['N']:,}" for g in r["candidate"]["growth"])
            lines.append(f"- {r['name']}: {steps}")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pair", nargs=3, action="append", metavar=("NAME", "DEFAULT", "CANDIDATE"), required=True,
                    help="a family's name on the page, the run with the current defaults, the candidate twin")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--data", type=Path, default=Path("results/data/candidate-defaults.json"))
    args = ap.parse_args()
    records = [pair_record(name, Path(d), Path(c)) for name, d, c in args.pair]
    command = "python experiments/candidate_defaults.py " + " ".join(
        f"--pair {name} {d} {c}" for name, d, c in args.pair) + f" --out {args.out}"
    args.data.write_text(json.dumps({"command": command, "pairs": records}, indent=1) + "\n")
    args.out.write_text(page(records, command))


if __name__ == "__main__":
    main()
