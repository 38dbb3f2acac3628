"""The planted suite: does the pipeline recover groups that conflict by reward, actuation, observation or objective?

Runs ``policygradex run 'planted(kind=K,env=E,n=N,groups=G)' --preset P --k G --seed S`` for every kind, base
environment and seed asked for (a finished run directory is reused, so an interrupted sweep resumes), then scores
each run against the planted groups: NMI of the run's groups, NMI of gradient similarity on the run's own features
(the baseline: G_k = mean over task k's fitting transitions of sign(A) |A| g~, cosine, clustered with the same k),
how many of the groups the confidence calls stable match a planted group (or one plus at most one task), which tasks
it names too weak to place and which land in another planted group's group. ``--envs planted`` runs the built-in
``planted`` family (10 tasks, rotations). Rows are merged into ``--json`` (by family, kind, baseline and seed), with
the commands that made them; ``--page`` writes results/planted.md from them.

    python experiments/planted_suite.py --seeds 0,1,2 --root runs/suite --json results/planted.json
    python experiments/planted_suite.py --seeds 0,1,2 --root runs/suite-pt --reuse-theta runs/suite \
        --extra "--baseline per_task" --json results/planted.json     # the same theta_star, per-task baselines
    python experiments/planted_suite.py --seeds 10,11,12,13,14 --root runs/suite --json results/planted.json
    python experiments/planted_suite.py --json results/planted.json --page results/planted.md

Seeds 0-2 are the tuning seeds; 10 and up are held out (never used to choose anything).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

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
         ("objective", "lunarlander"), ("observation", "planted"), ("reward", "lunarlander-penalty")}
"""(kind, env) pairs the suite runs; env ``planted`` is the built-in ``planted`` family (10 tasks, rotations), and
``lunarlander-penalty`` is LunarLander's reward kind paid by the per-step penalty instead of the bonus
(``payment=penalty``, envs/conflicts.py)."""
TUNING_SEEDS = (0, 1, 2)


def family_spec(kind: str, env: str, n: int, groups: int) -> str:
    if env == "planted":
        return "planted"
    if env.endswith("-penalty"):
        return f"planted(kind={kind},env={env.removesuffix('-penalty')},n={n},groups={groups},payment=penalty)"
    return f"planted(kind={kind},env={env},n={n},groups={groups})"


def run_one(spec: str, k: int, seed: int, preset: str, out: Path, extra: list[str]) -> float:
    """Run (or resume) one pipeline run; returns the wall seconds of this call."""
    t0 = time.perf_counter()
    cmd = [str(Path(sys.executable).parent / "policygradex"), "run", spec, "--preset", preset, "--k", str(k), "--seed", str(seed),
           "--out", str(out), *extra]
    with open(out.parent / f"{out.name}.log", "a") as log:
        subprocess.run(cmd, check=True, stdout=log, stderr=log, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return time.perf_counter() - t0


AFTER_META_TRAIN = ("features.", "surrogate.", "cluster.")
"""Config sections that theta_star does not depend on: a run that differs from another only there can start from
the other's theta_star (``--reuse-theta``)."""


def reuse_theta(source: Path, out: Path, spec: str, k: int, seed: int, preset: str, extra: list[str]) -> bool:
    """Seed the empty run directory ``out`` with ``source``'s theta_star (and its curve and meta-training time) and
    the configuration the command would write, when the two differ only after meta-training. Returns whether it did."""
    return seed_from_theta(source, out, ["run", spec, "--preset", preset, "--k", str(k), "--seed", str(seed), *extra])


def seed_from_theta(source: Path, out: Path, argv: list[str]) -> bool:
    """:func:`reuse_theta` for any ``policygradex`` command line ``argv`` (``["run", SPEC, ...]``, without
    ``--out``)."""
    from policygradex.cli.options import config_from_args
    from policygradex.cli.parser import build_parser
    from policygradex.pipeline.rundir import config_diff, config_record
    from policygradex.pipeline.runner import with_family_defaults

    if (out / "config.json").exists() or not (source / "theta_star.pt").exists():
        return False
    config = config_from_args(build_parser().parse_args(argv))
    spec = config.family
    family = load_family(spec)
    record = config_record(with_family_defaults(config, family), family)
    old = RunConfig.from_dict(load_json(source / "config.json")["config"]).to_dict()
    diffs = config_diff(old, record["config"])
    if old["family"] != spec and same_family(old["family"], spec):  # e.g. a parameter spelled out at its default
        diffs = [d for d in diffs if not d.startswith("family:")]
    if not diffs or not all(d.startswith(AFTER_META_TRAIN) for d in diffs):
        return False
    out.mkdir(parents=True, exist_ok=True)
    for name in ("theta_star.pt", "meta_train_curve.csv", "meta_train_curve.png"):
        if (source / name).exists():
            shutil.copy2(source / name, out / name)
    timings = load_json(source / "timings.json")
    (out / "timings.json").write_text(json.dumps({"meta_train": timings["meta_train"]}))
    (out / "config.json").write_text(json.dumps(record, indent=1))
    return True


def same_family(a: str, b: str) -> bool:
    """Whether two family specs build the same tasks (names, parameters, planted groups)."""
    fa, fb = load_family(a), load_family(b)
    return (fa.name, [(t.name, dict(t.params)) for t in fa.tasks], fa.planted_groups) == \
        (fb.name, [(t.name, dict(t.params)) for t in fb.tasks], fb.planted_groups)


def matches(group: set[int], truth: list[set[int]]) -> bool:
    """A planted group, or a planted group plus or minus at most one task."""
    return any(len(group ^ t) <= 1 and len(group & t) >= len(t) - 1 for t in truth)


MEAN_GRADIENTS = "task_mean_gradients.npy"
"""Each task's mean advantage-weighted feature (n x d), the one thing :func:`score` reads from the feature files
(for the gradient-similarity baseline); :func:`drop_features` keeps it when it deletes them."""


def drop_features(run: Path) -> int:
    """Delete a finished run's per-transition feature files (theta_star's and every expansion point's) after saving
    what :func:`score` needs of them (:data:`MEAN_GRADIENTS`, byte for byte the G it computes from them), so that
    the run can still be rescored; returns the bytes freed. The run's affinities, groups and reports stay; a run that
    needs its features again (``stability``, ``--store`` changes) recollects them."""
    rd = RunDir(run)
    files = [*sorted((run / "features").glob("task_*.npz")), *sorted(run.glob("points/*/features/task_*.npz"))]
    if not files or rd.statistics.exists() or not rd.groups.exists():
        return 0
    if not (run / MEAN_GRADIENTS).exists():
        cfg = RunConfig.from_dict(load_json(rd.config)["config"])
        np.save(run / MEAN_GRADIENTS, task_mean_gradients(rd, cfg, load_family(cfg.family).n))
    freed = sum(f.stat().st_size for f in files)
    for f in files:
        f.unlink()
    return freed


def task_mean_gradients(rd: RunDir, cfg: RunConfig, n: int) -> np.ndarray:
    """theta_star's per-task mean advantage-weighted feature (n x d): from the statistics store, from
    :data:`MEAN_GRADIENTS` where :func:`drop_features` left it, else from the fitting part of the feature files."""
    if rd.statistics.exists():
        return load_npz(rd.statistics)["b"].astype(np.float64)
    if (rd.path / MEAN_GRADIENTS).exists():
        return np.load(rd.path / MEAN_GRADIENTS)
    paths = [rd.task_features(i) for i in range(n)]
    data = feature_set([dict(np.load(p)) for p in paths], cfg.features.holdout_fraction, paths)
    X, y, w = (t.numpy().astype(np.float64) for t in data.part(held_out=False))
    return ((y * w)[..., None] * X).mean(1)


def load_planted(run: Path) -> tuple[RunDir, RunConfig, Any, np.ndarray]:
    """A finished run of a planted family: its directory, config, family and the planted labels."""
    rd = RunDir(run)
    cfg = RunConfig.from_dict(load_json(rd.config)["config"])
    family = load_family(cfg.family)
    assert family.planted_groups is not None
    return rd, cfg, family, labels_from_groups([list(g) for g in family.planted_groups], family.n)


def score(run: Path) -> dict:
    rd, cfg, family, truth = load_planted(run)
    n = family.n
    truth_groups = [set(g) for g in family.planted_groups]
    groups = Groups.load(rd.groups, n)
    G = task_mean_gradients(rd, cfg, n)
    Gn = G / np.linalg.norm(G, axis=1, keepdims=True).clip(1e-12)
    gs = cluster(Gn @ Gn.T, k=groups.k, exhaustive_check=False, relaxation_gap=False).labels
    conf = groups.confidence
    correct = [matches(set(g), truth_groups) for g in groups.indices]
    labels = groups.labels()
    majority = {int(c): int(np.bincount(truth[labels == c]).argmax()) for c in np.unique(labels)}
    misplaced = [i for i in range(n) if majority[int(labels[i])] != int(truth[i])]
    words = [conf.word(g) for g in range(len(conf.group_jaccard))] if conf is not None and conf.group_jaccard else []
    return {"baseline": variant(cfg),
            "nmi": float(normalized_mutual_info_score(truth, groups.labels())),
            "nmi_gradsim": float(normalized_mutual_info_score(truth, gs)),
            "words": words, "correct": correct, "misplaced": misplaced,
            "weak_tasks": [] if conf is None else conf.weak_tasks(), "n": n,
            "jaccard": [] if conf is None or not conf.group_jaccard else
            [conf.jaccard(g) for g in range(len(conf.group_jaccard))],
            "transition": bool(conf is not None and conf.transition_jaccard),
            "stable_groups": sum(w == "stable" for w in words),
            "stable_groups_correct": sum(w == "stable" and c for w, c in zip(words, correct)),
            "gradient_reliability": None if conf is None else conf.gradient_reliability,
            "verdict": None if conf is None else conf.verdict}


def variant(cfg: RunConfig) -> str:
    """The row's baseline, the N rule where --target-reliability is on, the pairing where
    --common-random-numbers is, the expansion points where there are several and their weights where they are not
    equal: ``per_task, target 0.9``, ``per_task, paired``, ``per_task, paired, points 0.5+1``,
    ``per_task, paired, points 0.25+0.5+1, weights reliability``, and the group points where they are on
    (``..., group points 0.25``)."""
    target, points = cfg.features.target_reliability, cfg.features.expansion_points
    return (cfg.features.baseline + ("" if target is None else f", target {target:g}")
            + (", paired" if cfg.features.common_random_numbers else "")
            + ("" if len(points) == 1 else f", points {'+'.join(f'{f:g}' for f in points)}"
               + ("" if cfg.features.expansion_policy == "retrain" else f" {cfg.features.expansion_policy}"))
            + ("" if cfg.cluster.point_weights == "equal" else f", weights {cfg.cluster.point_weights}")
            + ("" if cfg.features.group_points is None else f", group points {cfg.features.group_points:g}"))


def row_key(row: dict) -> tuple:
    return (row["family"], row["kind"], row.get("baseline", "policy"), row["seed"])


def mean_se(xs: list[float]) -> str:
    if len(xs) < 2:
        return f"{xs[0]:.2f}" if xs else "-"
    return f"{np.mean(xs):.2f} ± {np.std(xs, ddof=1) / np.sqrt(len(xs)):.2f}"


def versions() -> str:
    from importlib.metadata import version

    names = ("torch", "gymnasium", "numpy", "scipy", "cvxpy", "scikit-learn", "mo-gymnasium")
    return ", ".join(f"{n} {version(n)}" for n in names) + f", Python {sys.version.split()[0]}, {os.cpu_count()} CPU cores"


def paired(xs: list[float], ys: list[float]) -> str:
    """Mean +- SE of the per-seed differences xs - ys, and whether 2 SE resolve it."""
    d = np.asarray(xs) - np.asarray(ys)
    if len(d) < 2:
        return f"{d.mean():+.2f}" if len(d) else "-"
    se = float(np.std(d, ddof=1) / np.sqrt(len(d)))
    word = "resolved" if abs(d.mean()) > max(2 * se, 1e-9) else "not resolved"
    return f"{d.mean():+.2f} ± {se:.2f} ({word})"


def group_rows(rows: list[dict]) -> dict[tuple, list[dict]]:
    out: dict[tuple, list[dict]] = {}
    for r in sorted(rows, key=lambda r: r["seed"]):
        out.setdefault((r["family"], r["kind"], r.get("baseline", "policy")), []).append(r)
    return dict(sorted(out.items()))


def kind_and_env(spec: str) -> tuple[str, str]:
    """(kind, env) of a suite family from its spec: ``planted-K-E``, or the built-in ``planted`` (observation)."""
    name = load_family(spec).name
    if name == "planted":
        return "observation", "planted"
    kind, env = name.removeprefix("planted-").split("-", 1)
    return kind, env


def compare_row(run: Path) -> dict:
    """The planted grouping against one multitask policy, random groups and the run's own groups, from
    ``RUN/compare/compare.json``: each grouping's mean headline over all tasks per seed, and the differences paired
    by seed (the groupings of one seed share their trained policies where they share a group)."""
    record = load_json(run / "compare" / "compare.json")
    cfg = load_json(run / "config.json")["config"]
    kind, env = kind_and_env(cfg["family"])
    methods = record["methods"]
    return {"run_dir": str(run), "family": env, "kind": kind, "seed": int(cfg["seed"]),
            "baseline": cfg["features"].get("baseline", "policy"), "steps_per_task": record["steps_per_task"],
            "seeds": record["config"]["seeds"], "metric": record.get("metric", "return"),
            "per_seed": {m: methods[m]["per_seed"] for m in ("planted", "multitask", "random", "policygradex",
                                                             "gradient_similarity") if m in methods},
            "policygradex_groups": methods["policygradex"]["groups"], "planted_groups": methods["planted"]["groups"]}


def issue_bar(nmi: list[float], gradsim: list[float]) -> tuple[bool, bool, str]:
    """Issue 22's bar on one kind's seeds: mean NMI >= 0.95, every seed >= 0.8, and the mean against gradient
    similarity on the same features (``yes`` ahead, ``tie`` equal, ``no`` behind)."""
    mean, gs = float(np.mean(nmi)), float(np.mean(gradsim))
    return mean >= 0.95, min(nmi) >= 0.8, "yes" if mean > gs else "tie" if mean == gs else "no"


def resolved_ahead(xs: list[float], ys: list[float]) -> bool:
    """xs ahead of ys by more than 2 standard errors of the paired differences."""
    d = np.asarray(xs) - np.asarray(ys)
    return len(d) >= 2 and d.mean() > 2 * float(np.std(d, ddof=1) / np.sqrt(len(d)))


def real_by_training(compares: list[dict], family: str, kind: str) -> str:
    """``yes`` / ``no`` (not a test) / ``not run``: whether the kind's planted groups beat one multitask policy and
    random groups in its compare."""
    found = [c for c in compares if c["family"] == family and c["kind"] == kind]
    if not found:
        return "not run"
    ps = found[0]["per_seed"]
    real = resolved_ahead(ps["planted"], ps["multitask"]) and resolved_ahead(ps["planted"], ps["random"])
    return "yes" if real else "no: not a test"


def compare_lines(compares: list[dict]) -> list[str]:
    if not compares:
        return []
    lines = ["## Real by training: do the planted groups pay off?", "",
             "`policygradex compare RUN --seeds S` on one run per kind, at the suite's budget (100k PPO steps per task, "
             "one policy per group trained from scratch; the run's own budget). A kind is a test of grouping only if "
             "its planted groups beat one multitask policy and random groups, resolved at 2 standard errors (paired "
             "by seed). The last column says whether the run's own groups, where they differ from the planted ones, "
             "cost anything.", "",
             "| family | kind | run | seeds | planted | multitask | random | planted - multitask | planted - random | "
             "run's groups - planted |", "|---|---|---|---|---|---|---|---|---|---|"]
    for c in sorted(compares, key=lambda c: (c["family"], c["kind"])):
        ps = c["per_seed"]
        same = sorted(map(sorted, c["policygradex_groups"])) == sorted(map(sorted, c["planted_groups"]))
        own = "the same groups" if same else paired(ps["policygradex"], ps["planted"])
        lines.append(f"| {c['family']} | {c['kind']} | `{c['run_dir']}` ({c['baseline']}) | {c['seeds']} | "
                     f"{mean_se(ps['planted'])} | "
                     f"{mean_se(ps['multitask'])} | {mean_se(ps['random'])} | {paired(ps['planted'], ps['multitask'])} "
                     f"| {paired(ps['planted'], ps['random'])} | {own} |")
    return lines + ["", "Mean ± standard error over seeds of the mean return over all tasks.", ""]


def page(rows: list[dict], commands: list[str], compares: list[dict] | None = None) -> str:
    """results/planted.md from the scored rows: recovery per family, kind and baseline, the check against issue
    22's targets, the calibration of the confidence words and of the weak-task flag."""
    lines = [
        "# The planted suite: does the pipeline recover groups that conflict by reward, actuation, observation or "
        "objective?",
        "",
        "Each family is `planted(kind=K,env=E,n=12,groups=3)` (envs/conflicts.py): 12 tasks of CartPole or "
        "LunarLander in three planted groups of unequal sizes (5 / 4 / 3), listed in a shuffled order, with variation "
        "inside each group, that conflict in one way only: what they are paid for (`reward`: each group its own cart or "
        "lander position), how their actions act (`actuation`: each group its own cyclic shift of the actions), how "
        "they see the state (`observation`: each group its own rotation), or which objectives they weight "
        "(`objective`: mo-lunar-lander-v3 preference directions). Every run is `--preset demo --k 3` (100k PPO steps "
        "per task, N = 16,384 transitions per task, d = 400, no task id). The family `planted` is the built-in "
        "planted family (10 CartPole tasks, groups by rotation of the observation, n = 10, sizes 4 / 3 / 3, in order).",
        "",
        "LunarLander's reward kind pays each group a bonus near its own position (`payment=bonus`, the default); "
        "`lunarlander-penalty` is the same kind paid by a per-step penalty for the distance instead (`payment="
        "penalty`, the default until the bonus rows were made), kept because its rows were made first: it is not a "
        "test of grouping (the section on training below).",
        "",
        "Machines: the LunarLander reward rows (bonus) and every `per_task, paired` row were made on an AMD EPYC "
        "with AVX-512, the others on the machine of the earlier sessions. Each run is byte-reproducible on its own "
        "machine; another CPU gives another theta_star (results/reproducibility.md), so the rows are samples of the same distribution, not the same "
        "bytes.",
        "",
        "NMI is against the planted groups. Gradient similarity clusters the cosine of each task's mean advantage-"
        "weighted gradient feature on the run's own features, with the same k; the difference is paired by seed. "
        "Seeds 0-2 chose the defaults; seeds 10 and up are held out (never used to choose anything). Mean ± standard "
        "error over seeds.",
        "",
        "Baselines: `policy` is theta_star's value head (the paper's; the default before results/crn-defaults.md, "
        "run unpaired), `per_task` each task's own value function (`--baseline per_task`, unpaired: "
        "`--no-common-random-numbers` today), and `per_task, target 0.9` adds `--target-reliability 0.9`, which "
        "grows N where the gradient signal is less reliable than 0.9 (run for the objective kind only: the kind the "
        "target was chosen for), and `per_task, paired` adds `--common-random-numbers`, which rolls every task out "
        "on the same environment seeds and action noise (results/common-random-numbers.md pairs each such run with "
        "its twin without it, from the same theta_star; the defaults of results/crn-defaults.md), and `per_task, "
        "paired, points 0.5+1` adds `--expansion-points 0.5,1` (run with `--surrogate newton`; the default at n = 12 is the "
        "exact fits, which Newton's step matched on six families in results/surrogate-reduction.md), which also takes the features at a policy meta-trained on half "
        "the budget and clusters the mean of both standardised affinities: the defaults today "
        "(results/expansion-defaults.md). The "
        "per_task rows' gradient reliability, which the confidence words and the target read, is measured "
        "with each half's baseline fitted on that half alone (`features.split_advantages`; "
        "results/baseline-reliability.md): the per_task runs' feature files were given those halves by "
        "experiments/add_split_advantages.py, which checks that it recollects each file's own transitions, and "
        "their cluster stage was rerun. Earlier per_task rows read the joint fit's halves, which overstated the "
        "reliability, and the target rows made on it are gone.",
        "",
        f"Package versions: {versions()}.",
        "",
        "The runs (the sweeps ran split by seed and environment in several processes; these commands are "
        "equivalent, since a finished run directory is reused), then this page:",
        "",
        "```",
        *commands,
        "```",
        "",
    ]
    header = ["| family | kind | baseline | seeds | NMI | worst seed | gradient similarity NMI | NMI - gradient "
              "similarity | groups called stable: correct / called |", "|---|---|---|---|---|---|---|---|---|"]
    for held, title in ((True, "Held-out seeds"), (False, "Tuning seeds (0-2)")):
        sel = group_rows([r for r in rows if r["held_out"] == held])
        if not sel:
            continue
        lines += [f"## {title}", "", *header]
        for (fam, kind, base), rs in sel.items():
            nmi, gs = [r["nmi"] for r in rs], [r["nmi_gradsim"] for r in rs]
            lines.append(f"| {fam} | {kind} | {base} | {', '.join(str(r['seed']) for r in rs)} | {mean_se(nmi)} | "
                         f"{min(nmi):.2f} | {mean_se(gs)} | {paired(nmi, gs)} | "
                         f"{sum(r['stable_groups_correct'] for r in rs)} / {sum(r['stable_groups'] for r in rs)} |")
        lines.append("")
    for base in CHECKED:
        held = group_rows([r for r in rows if r["held_out"] and r.get("baseline", "policy") == base])
        if not held:
            continue
        what = f"the defaults: {base}" if base == DEFAULT_VARIANT else base
        lines += [f"## Against the targets (held-out seeds, {what})", "",
                  "Issue 22 asks, on every kind: mean NMI >= 0.95, every seed >= 0.8, and ahead of gradient similarity; "
                  "a kind counts only if it is real by training (the section below: planted groups ahead of one "
                  "multitask policy and of random groups, both resolved).",
                  "", "| family | kind | seeds | real by training | mean NMI >= 0.95 | every seed >= 0.8 | ahead of "
                  "gradient similarity |", "|---|---|---|---|---|---|---|"]
        for (fam, kind, _), rs in held.items():
            nmi, gs = [r["nmi"] for r in rs], [r["nmi_gradsim"] for r in rs]
            mean_ok, min_ok, ahead = issue_bar(nmi, gs)
            lines.append(f"| {fam} | {kind} | {len(rs)} | {real_by_training(compares or [], fam, kind)} | "
                         f"{'yes' if mean_ok else 'no'} ({np.mean(nmi):.2f}) "
                         f"| {'yes' if min_ok else 'no'} ({min(nmi):.2f}) | {ahead} ({paired(nmi, gs)}) |")
        lines.append("")
    lines += compare_lines(compares or [])
    lines += ["## Calibration of the confidence words", "",
              "Per word, over every group of every run, how often the group is a planted group or one plus or minus "
              "at most one task. The target for `stable` is 95%. Runs scored after the transition bootstrap landed "
              "read the lower of the subset and the transition Jaccard (`transition` column: how many of the groups "
              "had both).", "",
              "| seeds | baseline | word | groups | match a planted group | rate | transition |",
              "|---|---|---|---|---|---|---|"]
    for is_held in (True, False):
        for base in sorted({r.get("baseline", "policy") for r in rows}):
            sel = [r for r in rows if r["held_out"] == is_held and r.get("baseline", "policy") == base]
            for word in ("stable", "pattern", "weak", "dissolves", "noise"):
                hits = [(c, bool(r.get("transition"))) for r in sel for w, c in zip(r["words"], r["correct"])
                        if w == word]
                if hits:
                    ok = sum(c for c, _ in hits)
                    lines.append(f"| {'held out' if is_held else 'tuning'} | {base} | {word} | {len(hits)} | {ok} | "
                                 f"{ok / len(hits):.0%} | {sum(t for _, t in hits)} |")
    lines += ["", "## Tasks named too weak to place", "",
              "`show` and report.md name a task whose own gradient direction does not reproduce across the two halves "
              "of its transitions (`confidence.task_signal` < 0.5). A task is misplaced when the group it lands in is "
              "mostly another planted group's. If the flag means something, flagged tasks are misplaced more often.",
              "", "| seeds | baseline | tasks | flagged weak | misplaced among flagged | misplaced among the others |",
              "|---|---|---|---|---|---|"]
    for is_held in (True, False):
        for base in sorted({r.get("baseline", "policy") for r in rows}):
            sel = [r for r in rows if r["held_out"] == is_held and r.get("baseline", "policy") == base
                   and "weak_tasks" in r]
            if not sel:
                continue
            tasks = sum(int(r.get("n", 12)) for r in sel)
            flagged = [(i in set(r["misplaced"])) for r in sel for i in r["weak_tasks"]]
            others = [(i in set(r["misplaced"])) for r in sel for i in range(int(r.get("n", 12)))
                      if i not in set(r["weak_tasks"])]
            lines.append(f"| {'held out' if is_held else 'tuning'} | {base} | {tasks} | {len(flagged)} | "
                         f"{sum(flagged)} / {len(flagged)} | {sum(others)} / {len(others)} |")
    return "\n".join(lines) + "\n"


DEFAULT_VARIANT = "per_task, paired, points 0.5+1"
"""What ``policygradex run`` does by default (results/expansion-defaults.md), as :func:`variant` names it."""
CHECKED = ("policy", "per_task", "per_task, target 0.9", "per_task, paired", DEFAULT_VARIANT)
"""Variants the page checks against issue 22's targets: the paper's value head, and each default or candidate in
the order they were tried (results/baseline-choice.md, results/adaptive-transitions.md,
results/common-random-numbers.md, results/expansion-points.md)."""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kinds", default="reward,actuation,observation,objective")
    ap.add_argument("--envs", default="cartpole,lunarlander")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--n", type=int, default=12)
    ap.add_argument("--groups", type=int, default=3)
    ap.add_argument("--preset", default="demo")
    ap.add_argument("--root", type=Path, default=Path("runs/suite"))
    ap.add_argument("--json", type=Path, default=None, help="rows are merged into this JSON (by family, kind, "
                    "baseline, seed)")
    ap.add_argument("--page", type=Path, default=None, help="write the results page from --json's rows, run nothing")
    ap.add_argument("--drop-features", type=Path, nargs="*", default=None, metavar="ROOT",
                    help="delete the per-transition feature files of the finished runs under each ROOT, keeping the "
                         "tasks' mean gradients that rescoring needs (drop_features)")
    ap.add_argument("--rescore", type=Path, nargs="*", default=None,
                    help="score every finished run directory under these roots into --json, run nothing")
    ap.add_argument("--reuse-theta", type=Path, default=None,
                    help="start each run from the theta_star of the same run under this root when the options differ "
                         "only after meta-training (e.g. --extra '--baseline per_task')")
    ap.add_argument("--extra", default="", help="further `policygradex run` options, space separated")
    ap.add_argument("--unchanged-at", type=float, default=None, metavar="R",
                    help="add a row `per_task, target R` for every per_task row whose gradient reliability already "
                         "met R: --target-reliability R leaves such a run unchanged byte for byte "
                         "(tests/pipeline/test_transitions_budget.py), so its row is the per_task run's, marked "
                         "`unchanged_from`; run nothing")
    ap.add_argument("--compare", type=Path, nargs="*", default=None,
                    help="record the `policygradex compare` of these run directories into --json (item 1 of issue "
                         "22: are the planted groups real by training?), run nothing")
    args = ap.parse_args()
    blob = json.loads(args.json.read_text()) if args.json and args.json.exists() else {}
    rows, commands = blob.get("rows", []), blob.get("commands", [])
    command = " ".join(["python", "experiments/planted_suite.py", *(shlex.quote(a) for a in sys.argv[1:])])

    def save() -> None:
        if args.json:
            if command not in commands and not args.page:
                commands.append(command)
            args.json.write_text(json.dumps({**blob, "commands": commands, "rows": sorted(rows, key=row_key)},
                                            indent=1) + "\n")

    if args.compare:
        by_run = {c["run_dir"]: c for c in blob.get("compare", [])}
        for run in args.compare:
            by_run[str(run)] = compare_row(run)
        blob["compare"] = [by_run[k] for k in sorted(by_run)]
        if args.json:
            args.json.write_text(json.dumps({**blob, "commands": commands + ([command] if command not in commands
                                                                             else []), "rows": rows}, indent=1) + "\n")
        return
    if args.unchanged_at is not None:
        label = f"per_task, target {args.unchanged_at:g}"
        have = {row_key(r) for r in rows}
        for r in list(rows):
            rel = r.get("gradient_reliability")
            if r.get("baseline") == "per_task" and rel is not None and rel >= args.unchanged_at:
                twin = {**r, "baseline": label, "unchanged_from": r["run_dir"]}
                if row_key(twin) not in have:
                    rows.append(twin)
        save()
        return
    if args.drop_features:
        for root in args.drop_features:
            freed = sum(drop_features(run) for run in sorted(p.parent for p in root.glob("*/groups.json")))
            print(f"{root}: {freed / 2**30:.1f} GiB of feature files deleted", file=sys.stderr)
        return
    if args.rescore:
        for root in args.rescore:
            for out in sorted(p.parent for p in root.glob("*/groups.json")):
                cfg = load_json(out / "config.json")["config"]
                kind, env = kind_and_env(cfg["family"])
                seed = int(cfg["seed"])
                row = {"family": env, "kind": kind, "seed": seed, "held_out": seed not in TUNING_SEEDS,
                       "run_dir": str(out), **score(out)}
                rows = [r for r in rows if row_key(r) != row_key(row)] + [row]
        save()
        return
    if args.page:
        args.page.write_text(page(rows, [*commands, command], blob.get("compare", [])))
        return
    args.root.mkdir(parents=True, exist_ok=True)
    for kind in args.kinds.split(","):
        for env in args.envs.split(","):
            if (kind, env) not in SUITE:
                continue
            for seed in (int(s) for s in args.seeds.split(",")):
                spec = family_spec(kind, env, args.n, args.groups)
                out = args.root / f"{kind}-{env}-s{seed}"
                if args.reuse_theta is not None:
                    reuse_theta(args.reuse_theta / out.name, out, spec, args.groups, seed, args.preset,
                                args.extra.split())
                secs = run_one(spec, args.groups, seed, args.preset, out, args.extra.split())
                row = {"family": env, "kind": kind, "seed": seed, "held_out": seed not in TUNING_SEEDS,
                       "run_dir": str(out), "seconds": round(secs, 1), **score(out)}
                rows = [r for r in rows if row_key(r) != row_key(row)] + [row]
                print(json.dumps(row), flush=True)
                save()


if __name__ == "__main__":
    main()
