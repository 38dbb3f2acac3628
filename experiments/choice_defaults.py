r"""results/choice-defaults.md: issue 22's choice (``--expansion-points 0.25,0.5,1 --point-weights reliability
--group-points 0.25``) against the current defaults on the demo and the paper families, each pair from one
theta_star.

The planted suite measures that the choice recovers planted groups (results/third-point.md, results/group-points.md);
this page asks the other half of the question before it can be a default: do the demo's and the paper families'
results get worse? Each family is run three times from the same theta_star: with the current defaults, with the
choice's first half alone (``--expansion-points 0.25,0.5,1 --point-weights reliability``, runs/demo3) and with the
whole choice (that run with ``--group-points 0.25`` added, linked: every stage before the group points is the
first's). The defaults' run is seeded from the choice's theta_star (``planted_suite.seed_from_theta``: expansion
points come after meta-training). Where the groups differ, the choice's ``compare`` trains the other runs' groups
beside its own (``--groups defaults=... --groups option=...``), on the same seeds, so the differences are paired::

    cp -al runs/demo3/FAM runs/demo3g/FAM
    policygradex run FAM --preset demo --k 3 --out runs/demo3g/FAM --expansion-points 0.25,0.5,1 \
        --point-weights reliability --group-points 0.25
    policygradex run FAM --preset demo --k 3 --out runs/demo3d/FAM     # seeded from runs/demo3/FAM's theta_star
    policygradex compare runs/demo3g/FAM --seeds 5 --workers 1 --groups option=runs/demo3/FAM/groups.json \
        --groups defaults=runs/demo3d/FAM/groups.json
    python experiments/choice_defaults.py --pair FAM runs/demo3d/FAM runs/demo3/FAM runs/demo3g/FAM \
        --out results/choice-defaults.md

Each family's row is kept in the page's data (results/data/choice-defaults.json) once its compare has finished, so
the page can be rewritten after the runs are deleted.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
sys.path.insert(0, str(Path(__file__).resolve().parent))
from candidate_defaults import fmt, summary  # noqa: E402
from planted_suite import paired, versions  # noqa: E402

from policygradex.common.artifacts import file_sha, load_json  # noqa: E402

DATA = Path("results/data/choice-defaults.json")
NAMES = {"choice": "policygradex", "defaults": "defaults", "option": "option"}
"""The compare's method names: the run's own groups (the choice's), and the ``--groups`` of the other two runs."""


MAKE = (
    "# FAM: cartpole, or lunarlander with --steps-per-task 30000 after --k 3 in both runs (results/demo.md's budgets);",
    "# runs/demo3/FAM: results/third-point.md's demo runs (--expansion-points 0.25,0.5,1 --point-weights reliability)",
    "cp -al runs/demo3/FAM runs/demo3g/FAM",
    "policygradex run FAM --preset demo --k 3 --out runs/demo3g/FAM --expansion-points 0.25,0.5,1 --point-weights "
    "reliability --group-points 0.25",
    "policygradex run FAM --preset demo --k 3 --out runs/demo3d/FAM   # seeded from runs/demo3/FAM's theta_star",
    "policygradex compare runs/demo3g/FAM --seeds 5 --workers 1 --groups option=runs/demo3/FAM/groups.json "
    "--groups defaults=runs/demo3d/FAM/groups.json",
    "policygradex compare runs/demo3g/lunarlander --seeds 10 --workers 2 --groups option=runs/demo3/lunarlander/"
    "groups.json --groups defaults=runs/demo3d/lunarlander/groups.json   # 5 more seeds (the first 5 cached)",
)
"""The commands that made the page's runs and compares, FAM each family."""


def pair_record(name: str, defaults: Path, option: Path, choice: Path) -> dict[str, Any]:
    """One family: the three runs' summaries and, where the choice's compare holds them, every grouping's returns
    per seed (a grouping equal to another is trained once, under the run's own name when it is the choice's)."""
    rec: dict[str, Any] = {"name": name, "runs": {k: summary(p) for k, p in
                                                  (("defaults", defaults), ("option", option), ("choice", choice))}}
    compare = choice / "compare" / "compare.json"
    methods = load_json(compare)["methods"] if compare.exists() else {}
    per_seed = {key: methods[m]["per_seed"] for key, m in NAMES.items() if m in methods}
    for key in ("defaults", "option"):  # the same groups as the choice's: the same trainings
        if key not in per_seed and rec["runs"][key]["groups"] == rec["runs"]["choice"]["groups"]:
            per_seed[key] = per_seed.get("choice")
    for extra in ("multitask", "random", "gradient_similarity"):
        if extra in methods:
            per_seed[extra] = methods[extra]["per_seed"]
    rec["per_seed"] = per_seed
    rec["same_theta_star"] = len({file_sha(p / "theta_star.pt") for p in (defaults, option, choice)}) == 1
    return rec


def difference(rec: dict[str, Any], a: str, b: str) -> str:
    runs, ps = rec["runs"], rec["per_seed"]
    if a in runs and b in runs and runs[a]["groups"] == runs[b]["groups"]:
        return "the same groups"
    if ps.get(a) is None or ps.get(b) is None:
        return "compare not run yet"
    return f"{paired(ps[a], ps[b])}, {len(ps[a])} seeds"


def resolved(rec: dict[str, Any], a: str, b: str) -> float | None:
    """The mean paired difference a - b where 2 standard errors resolve it, else None."""
    ps = rec["per_seed"]
    if ps.get(a) is None or ps.get(b) is None or len(ps[a]) < 2:
        return None
    d = np.asarray(ps[a]) - np.asarray(ps[b])
    return float(d.mean()) if abs(d.mean()) > 2 * float(np.std(d, ddof=1) / np.sqrt(len(d))) else None


def findings(records: list[dict[str, Any]]) -> str:
    """Each family's resolved differences, read from the rows, and what they say about a default."""
    parts = []
    for r in records:
        said = [f"{'ahead of' if x > 0 else 'behind'} {b.replace('_', ' ')} ({x:+.1f})"
                for b in ("defaults", "option", "multitask", "random", "gradient_similarity")
                if (x := resolved(r, "choice", b)) is not None]
        parts.append(f"{r['name']}: the choice's groups are " + (", ".join(said) if said else
                                                                  "level with every other grouping") + ".")
    worse = [r["name"] for r in records if (x := resolved(r, "choice", "defaults")) is not None and x < 0]
    verdict = (f"The choice trains worse than the defaults on {', '.join(worse)}: not a default as it stands."
               if worse else "The choice trains no worse than the defaults on any family here.")
    return "What the compares show, difference of the mean return resolved at 2 SE: " + " ".join(parts) + " " + verdict


def page(records: list[dict[str, Any]], command: str) -> str:
    lines = ["# Issue 22's choice against the current defaults on the demo and the paper families", "",
             "Each family is one theta_star run three times: with the current defaults (`--expansion-points 0.5,1`), "
             "with the option of results/third-point.md (`--expansion-points 0.25,0.5,1 --point-weights "
             "reliability`) and with the whole choice (the option plus `--group-points 0.25`, "
             "results/group-points.md). Where the groups differ, the choice's `compare` trains every run's groups on "
             "the same seeds: paired differences of the mean return over tasks, mean ± standard error (within 2 SE "
             "is not resolved). Where two runs' groups are the same, so is every trained policy.", "",
             f"Package versions: {versions()}.", "", "```", *MAKE, command, "```", "",
             "| family | groups (defaults) | groups (option) | groups (choice) | reliability | verdict | "
             "choice - defaults | choice - option | choice - multitask | choice - random | "
             "choice - gradient similarity |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        d, o, c = (r["runs"][k] for k in ("defaults", "option", "choice"))
        rel = " -> ".join(f"{x['reliability']:.2f}" for x in (d, o, c))
        verdict = " -> ".join(x["verdict"] for x in (d, o, c))
        lines.append(f"| {r['name']} | {fmt(d['groups'])} | {fmt(o['groups'])} | {fmt(c['groups'])} | {rel} | "
                     f"{verdict} | {difference(r, 'choice', 'defaults')} | {difference(r, 'choice', 'option')} | "
                     f"{difference(r, 'choice', 'multitask')} | {difference(r, 'choice', 'random')} | "
                     f"{difference(r, 'choice', 'gradient_similarity')} |")
    lines += ["", "Task indices are the family's order (`policygradex show RUN` names them). Reliability and verdict: "
              "the split-half reliability of the gradient interaction at the run's points, and the confidence's "
              "verdict, defaults -> option -> choice. The three runs of each family share theta_star's file "
              f"(sha256) in {sum(r['same_theta_star'] for r in records)} of {len(records)} families.", "",
              findings(records), ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pair", nargs=4, action="append", metavar=("NAME", "DEFAULTS", "OPTION", "CHOICE"), default=[],
                    help="a family's name on the page and its three runs")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--data", type=Path, default=DATA)
    args = ap.parse_args()
    data = json.loads(args.data.read_text()) if args.data.exists() else {"pairs": []}
    records = {r["name"]: r for r in data["pairs"]}
    for name, d, o, c in args.pair:
        records[name] = pair_record(name, Path(d), Path(o), Path(c))
    command = "python experiments/choice_defaults.py " + " ".join(
        f"--pair {' '.join(p)}" for p in args.pair) + f" --out {args.out}"
    out = sorted(records.values(), key=lambda r: r["name"])
    args.data.parent.mkdir(parents=True, exist_ok=True)
    args.data.write_text(json.dumps({"pairs": out}, indent=1) + "\n")
    args.out.write_text(page(out, command))


if __name__ == "__main__":
    main()
