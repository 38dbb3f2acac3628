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

The page then asks why the groupings train as they do: every training a compare made (each grouping on each seed,
random groupings included) is one more observation of which tasks help each other when trained together
(:func:`transfer_record`), and each point's U is correlated with those pair effects.

Each family's row is kept in the page's data (results/data/choice-defaults.json) once its compare has finished, so
the page can be rewritten after the runs are deleted.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from candidate_defaults import fmt, summary  # noqa: E402
from planted_suite import paired, versions  # noqa: E402

from policygradex.common.artifacts import file_sha, load_json  # noqa: E402
from policygradex.pipeline.rundir import RunDir  # noqa: E402

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
    "# the three points with equal weights, without and with the group points (runs/demo3g/equal3.json: the run's own "
    "U's reclustered; runs/demo3e: the option's run linked, with --point-weights equal)",
    "cp -al runs/demo3/lunarlander runs/demo3e/lunarlander",
    "policygradex run lunarlander --preset demo --k 3 --steps-per-task 30000 --out runs/demo3e/lunarlander "
    "--expansion-points 0.25,0.5,1 --point-weights equal --group-points 0.25",
    "policygradex compare runs/demo3g/lunarlander --seeds 10 --workers 1 --groups option=runs/demo3/lunarlander/"
    "groups.json --groups defaults=runs/demo3d/lunarlander/groups.json --groups equal3=runs/demo3g/equal3.json "
    "--groups equal_gp=runs/demo3e/lunarlander/groups.json",
    "cp -al runs/demo3g/cartpole runs/demo3e/cartpole   # then jobs/, compare/ and eval/ removed: group points kept",
    "policygradex run cartpole --preset demo --k 3 --out runs/demo3e/cartpole --expansion-points 0.25,0.5,1 "
    "--point-weights equal --group-points 0.25",
    "policygradex compare runs/demo3g/cartpole --seeds 5 --workers 1 --groups option=runs/demo3/cartpole/groups.json "
    "--groups defaults=runs/demo3d/cartpole/groups.json --groups equal_gp=runs/demo3e/cartpole/groups.json",
)
"""The commands that made the page's runs and compares, FAM each family."""


def pair_record(name: str, defaults: Path, option: Path, choice: Path) -> dict[str, Any]:
    """One family: the three runs' summaries and, where the choice's compare holds them, every grouping's returns
    per seed (a grouping equal to another is trained once, under the run's own name when it is the choice's)."""
    rec: dict[str, Any] = {"name": name, "runs": {k: summary(p) for k, p in
                                                  (("defaults", defaults), ("option", option), ("choice", choice))}}
    path = choice / "compare" / "compare.json"
    compare = load_json(path) if path.exists() else {}  # read once: groupings, task names and its budget
    methods = compare.get("methods", {})
    per_seed = {key: methods[m]["per_seed"] for key, m in NAMES.items() if m in methods}
    for key in ("defaults", "option"):  # the same groups as the choice's: the same trainings
        if key not in per_seed and rec["runs"][key]["groups"] == rec["runs"]["choice"]["groups"]:
            per_seed[key] = per_seed.get("choice")
    for extra in ("multitask", "random", "gradient_similarity"):
        if extra in methods:
            per_seed[extra] = methods[extra]["per_seed"]
    rec["per_seed"] = per_seed
    rec["others"] = {m: methods[m]["per_seed"] for m in methods
                     if m not in {*NAMES.values(), "multitask", "random", "gradient_similarity"}}
    names = compare.get("task_names", [])
    rec["other_groups"] = {m: [sorted(names.index(t) for t in g) for g in methods[m]["groups"]]
                           for m in rec["others"]}
    rec["transfer"] = transfer_record(choice, compare.get("steps_per_task_asked"))
    rec["same_theta_star"] = len({file_sha(p / "theta_star.pt") for p in (defaults, option, choice)}) == 1
    return rec


TRAIN_JOB = "policygradex.analysis.context:train_job"


def pair_effects(obs: list[tuple[int, list[int], float, int]], n: int, ridge: float) -> np.ndarray:
    """Each task pair's effect on a task's return of training in one group: least squares (ridge ``ridge``) of every
    (task, trained group) return on a task term plus one symmetric term per other task of its group: an m x (n +
    n(n-1)/2) design for m returns and a solve in O(n^6) (the demos' 10 tasks: 55 terms); n x n, 0 on the
    diagonal."""
    pairs = list(itertools.combinations(range(n), 2))
    index = {p: i for i, p in enumerate(pairs)}
    X = np.zeros((len(obs), n + len(pairs)))
    for row, (t, group, _, _) in enumerate(obs):
        X[row, t] = 1.0
        for u in group:
            if u != t:
                X[row, n + index[(min(t, u), max(t, u))]] = 1.0
    y = np.array([v for _, _, v, _ in obs])
    beta = np.linalg.solve(X.T @ X + ridge * np.eye(X.shape[1]), X.T @ y)
    C = np.zeros((n, n))
    for (a, b), i in index.items():
        C[a, b] = C[b, a] = beta[n + i]
    return C


def transfer_record(run: Path, budget: int | None) -> dict[str, Any] | None:
    """What the trainings of ``run``'s compare (its job cache: every grouping, random ones included) say about
    which pairs of tasks help each other, against each point's U. Each trained group's return per task is one
    observation; :func:`pair_effects` fits the pairs; their split-half reliability splits the trainings by the parity
    of each training's own seed (ridge 1 in each half). Spearman correlations over the n(n-1)/2 pairs: of each
    point's U with the pair effects and with the task distance |i - j| (the families' tasks are in order of their
    varied parameter). Only trainings at ``budget`` steps per task (the compare on record's) count. None without
    them."""
    obs = []
    for f in sorted((run / "jobs").glob("*.json")):
        job = load_json(f)
        if job["spec"]["fn"] != TRAIN_JOB or job["spec"]["args"]["ppo"]["steps_per_task"] != budget:
            continue
        group = [int(i) for i in job["result"]["task_ids"]]
        obs += [(int(t), group, float(v), int(job["spec"]["seed"])) for t, v in job["result"]["returns"].items()]
    if not obs:
        return None
    n = 1 + max(t for t, *_ in obs)  # one multitask policy trains every task
    iu = np.triu_indices(n, 1)
    C = pair_effects(obs, n, 1e-3)
    halves = [pair_effects([o for o in obs if o[3] % 2 == h], n, 1.0)[iu] for h in (0, 1)]
    distance = np.abs(np.subtract.outer(np.arange(n), np.arange(n))).astype(float)[iu]
    rd = RunDir(run)
    cfg = load_json(rd.config)["config"]
    us = {"theta_star": rd.affinity_theta_star}
    us |= {f"{f:g}": rd.point(f).affinity for f in cfg["features"]["expansion_points"][:-1]}
    us |= {f"group{j}": rd.group_point(j).affinity for j in range(len(rd.group_point_tasks()))
           if rd.group_point(j).affinity.exists()} if (rd.path / "points").exists() else {}
    us["combined"] = rd.affinity
    points = {name: {"with_pair_effects": float(spearmanr(np.load(p)[iu], C[iu]).statistic),
                     "with_distance": float(spearmanr(np.load(p)[iu], distance).statistic)}
              for name, p in us.items() if p.exists()}
    return {"observations": len(obs), "trainings": len({(tuple(g), s) for _, g, _, s in obs}),
            "split_half": float(np.corrcoef(*halves)[0, 1]),
            "effects_with_distance": float(spearmanr(C[iu], distance).statistic), "points": points}


def difference(rec: dict[str, Any], a: str, b: str) -> str:
    runs, ps = rec["runs"], rec["per_seed"]
    if a in runs and b in runs and runs[a]["groups"] == runs[b]["groups"]:
        return "the same groups"
    if ps.get(a) is None or ps.get(b) is None:
        return "compare not run yet"
    return f"{paired(ps[a], ps[b])}, {len(ps[a])} seeds"


def resolved(ps: dict[str, Any], a: str, b: str) -> float | None:
    """The mean paired difference a - b of the per-seed returns ``ps`` where 2 standard errors resolve it, else
    None."""
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
                if (x := resolved(r["per_seed"], "choice", b)) is not None]
        parts.append(f"{r['name']}: the choice's groups are " + (", ".join(said) if said else
                                                                  "level with every other grouping") + ".")
    for r in records:
        for name in r.get("others", {}):
            x = resolved({**r["per_seed"], name: r["others"][name]}, name, "defaults")
            parts.append(f"{r['name']}, {name}: " + ("level with the defaults" if x is None else
                                                     f"{'ahead of' if x > 0 else 'behind'} the defaults ({x:+.1f})")
                         + ".")
    worse = [r["name"] for r in records if (x := resolved(r["per_seed"], "choice", "defaults")) is not None and x < 0]
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
    others = [(r, name) for r in records for name in r.get("others", {})]
    if others:
        lines += ["Further groupings trained in the same compares (`--groups NAME=...`, the same seeds). equal3: "
                  "the option's three points with equal weights (its run's U's reclustered); equal_gp: the whole "
                  "choice with equal weights (`--point-weights equal`, runs/demo3e: the same points, group points "
                  "from an equal-weight first clustering). Where a grouping's groups are another's, so are its "
                  "trainings.", "",
                  "| family | grouping | groups | choice - it | defaults - it |", "|---|---|---|---|---|"]
        for r, name in others:
            ps = {**r["per_seed"], name: r["others"][name]}
            lines.append(f"| {r['name']} | {name} | {fmt(r.get('other_groups', {}).get(name, []))} | "
                         f"{paired(ps['choice'], ps[name])} | {paired(ps['defaults'], ps[name])} |")
        lines.append("")
    lines += transfer_lines(records)
    return "\n".join(lines)


def transfer_lines(records: list[dict[str, Any]]) -> list[str]:
    """The page's section on which task pairs the compares' trainings say help each other (:func:`transfer_record`)."""
    have = [r for r in records if r.get("transfer")]
    if not have:
        return []
    names = list(dict.fromkeys(p for r in have for p in r["transfer"]["points"]))
    lines = ["## Do the U's predict which tasks train well together?", "",
             "Every training a family's compare made (each grouping's groups on every seed, the random groupings "
             "included) gives each of its tasks' returns; a least-squares fit of those returns on a term per task and "
             "a term per pair of tasks trained in one group gives each pair's effect (`transfer_record`). Split-half: "
             "the pair effects fitted on the trainings of even and of odd seeds, correlated. Then Spearman "
             "correlations over the pairs: of each point's U with the pair effects (does the point's affinity "
             "predict what trains well together?) and with the distance |i - j| of the two tasks' varied parameter "
             "(pole length, gravity: the tasks are in its order).", "",
             "| family | trainings (returns) | pair effects split-half | pair effects ~ distance | "
             + " | ".join(f"U {n} ~ effects / ~ distance" for n in names) + " |",
             "|---|---|---|---|" + "---|" * len(names)]
    for r in have:
        t = r["transfer"]
        cells = [f"{t['points'][n]['with_pair_effects']:+.2f} / {t['points'][n]['with_distance']:+.2f}"
                 if n in t["points"] else "-" for n in names]
        lines.append(f"| {r['name']} | {t['trainings']} ({t['observations']}) | {t['split_half']:.2f} | "
                     f"{t['effects_with_distance']:+.2f} | " + " | ".join(cells) + " |")
    return lines + ["", transfer_findings(have), ""]


def transfer_findings(have: list[dict[str, Any]]) -> str:
    """One sentence per family, read from its row: whether any point's U predicts the pair effects."""
    parts = []
    for r in have:
        t = r["transfer"]
        best = max(t["points"].items(), key=lambda kv: kv[1]["with_pair_effects"])
        parts.append(f"{r['name']}: the pair effects reproduce across seeds at {t['split_half']:.2f}; the U that "
                     f"follows them best is {best[0]}'s ({best[1]['with_pair_effects']:+.2f}), and they follow the "
                     f"tasks' distance at {t['effects_with_distance']:+.2f}.")
    return " ".join(parts)


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
