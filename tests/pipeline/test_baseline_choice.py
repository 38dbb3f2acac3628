"""--baseline auto: the run keeps the baseline whose gradient signal reproduces better, and is then that run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from policygradex.cli.main import main
from policygradex.pipeline.baseline_choice import choose
from policygradex.pipeline.group_record import Groups
from tests.helpers import tiny_run_args


def test_choose_keeps_per_task_only_where_it_is_more_reliable():
    assert choose({"policy": 0.2, "per_task": 0.9}) == "per_task"
    assert choose({"policy": 0.9, "per_task": 0.2}) == "policy"
    assert choose({"policy": 0.5, "per_task": 0.5}) == "policy"
    assert choose({"policy": None, "per_task": 0.9}) == "policy"
    assert choose({"policy": 0.1, "per_task": None}) == "policy"


def runs_per_baseline(tmp_path: Path, family: str, *extra: str) -> dict[str, Path]:
    """Tiny runs of ``family`` with --baseline policy, per_task and auto, all from the policy run's theta_star."""
    runs = {b: tmp_path / b for b in ("policy", "per_task", "auto")}
    for baseline, out in runs.items():
        if baseline != "policy":
            out.mkdir()
            for name in ("theta_star.pt", "meta_train_curve.csv", "config.json"):
                shutil.copy2(runs["policy"] / name, out / name)
            record = json.loads((out / "config.json").read_text())
            record["config"]["features"]["baseline"] = baseline
            (out / "config.json").write_text(json.dumps(record))
        assert main(tiny_run_args(out, family, "--k", "3", "--baseline", baseline, *extra)) == 0
    return runs


STORES = {"features": ("--expansion-points", "1"),
          "statistics": ("--surrogate", "closed_form", "--store", "statistics", "--expansion-points", "1")}
"""At theta_star alone: with earlier expansion points each point's feature stage keeps its own baseline by the same
rule (test_auto_chooses_its_baseline_at_each_expansion_point), and the run's reliability is the points' combined one,
not the one meta.json records for theta_star."""


@pytest.mark.parametrize("n,kind,kept,store", [(12, "reward", "policy", "statistics"),
                                                (9, "actuation", "per_task", "statistics"),
                                                (9, "actuation", "per_task", "features")])
def test_auto_is_the_run_of_the_baseline_it_keeps(tmp_path: Path, n: int, kind: str, kept: str, store: str):
    """From the same theta_star, --baseline auto writes the affinity and groups of the run with the baseline it
    keeps, byte for byte, and keeps the one whose own run reports the higher gradient signal reliability (per_task's
    measured with each half's baseline fitted apart), with feature files and with the statistics store. A rerun
    recomputes nothing. (Feature files keeping policy: test_auto_chooses_its_baseline_at_each_expansion_point, whose
    theta_star keeps it on the same family.)"""
    family = f"planted(kind={kind},env=cartpole,n={n},groups=3)"
    extra = STORES[store]
    runs = runs_per_baseline(tmp_path, family, *extra)
    meta = json.loads((runs["auto"] / "features" / "meta.json").read_text())["baseline"]
    assert meta["chosen"] == kept
    reliability = {b: Groups.load(runs[b] / "groups.json", n).confidence.gradient_reliability
                   for b in ("policy", "per_task")}
    assert meta["reliability"] == pytest.approx(reliability, abs=1e-9)
    assert (reliability["per_task"] > reliability["policy"]) == (kept == "per_task")
    assert (runs["auto"] / "affinity.npy").read_bytes() == (runs[kept] / "affinity.npy").read_bytes()
    groups = {b: Groups.load(runs[b] / "groups.json", n) for b in ("auto", kept)}
    assert groups["auto"].indices == groups[kept].indices
    assert groups["auto"].confidence.gradient_reliability == pytest.approx(reliability[kept], abs=1e-12)
    before = {p.name: p.stat().st_mtime_ns for p in (runs["auto"] / "features").glob("*.npz")}
    assert before
    assert main(tiny_run_args(runs["auto"], family, "--k", "3", "--baseline", "auto", *extra)) == 0
    assert {p.name: p.stat().st_mtime_ns for p in (runs["auto"] / "features").glob("*.npz")} == before
    files = [np.load(p) for p in sorted((runs["auto"] / "features").glob("*.npz"))]
    marker = "per_task_labels" if store == "features" else "per_task_c"
    assert all((marker in z.files) == (kept == "policy") for z in files)


@pytest.mark.parametrize("store", sorted(STORES))
def test_keeping_the_value_head_resumes_an_interrupted_rewrite(tmp_path: Path, store: str):
    """Files rewritten for the value head hold what the surrogate reads from its advantages (feature files: labels,
    weights and advantages; statistics files: c, b, block sums, curvature sums, held-out statistics), with
    per_task's kept beside them (a statistics file's split sums too, out of the way of the halves); a rewrite cut
    short after the first file is finished on resume, and no file is rewritten twice."""
    from policygradex.common.artifacts import atomic_save_npz
    from policygradex.pipeline.baseline_choice import SWAPPED, choose_baseline, keep_value_head

    rng = np.random.default_rng(0)
    N, paths, original = 40, [], []
    shapes = ({"advantages": (N,), "labels": (N,), "weights": (N,)} if store == "features" else
              {"c": (2,), "b": (2, 4), "block_sums": (2, 8, 4), "curvature_sum": (4, 4), "held_c": (2,),
               "held_b": (2, 4), "held_curvature_sum": (4, 4)})
    assert set(shapes) == set(SWAPPED[store])
    for i in range(3):
        a = {"features": rng.standard_normal((N, 4)).astype(np.float32)} if store == "features" else {
            "split_sums": rng.standard_normal((2, 2, 4))}
        for prefix in ("", "value_head_") + (("split_",) if store == "features" else ()):
            a.update({f"{prefix}{k}": rng.standard_normal(shape) for k, shape in shapes.items()})
        paths.append(tmp_path / f"file_{i:03d}.npz")
        atomic_save_npz(paths[-1], **a)
        original.append(a)
    keep_value_head(paths[:1], store)  # interrupted after the first file
    first = paths[0].stat().st_mtime_ns
    prior = {"N": N, "baseline": {"chosen": "policy", "reliability": {"policy": 0.5, "per_task": 0.1}, "N": N}}
    assert choose_baseline(paths, 0.25, prior, store) == prior["baseline"]
    assert paths[0].stat().st_mtime_ns == first
    for p, a in zip(paths, original):
        z = np.load(p)
        for key in shapes:
            np.testing.assert_array_equal(z[key], a[f"value_head_{key}"])
            np.testing.assert_array_equal(z[f"per_task_{key}"], a[key])
        if store == "statistics":
            assert "split_sums" not in z.files
            np.testing.assert_array_equal(z["per_task_split_sums"], a["split_sums"])


def test_auto_chooses_its_baseline_at_each_expansion_point(tmp_path: Path):
    """With the default expansion points, --baseline auto chooses at each point by the same rule from that point's
    own reliabilities: each point's U is, byte for byte, that point's U in the run of the baseline it keeps there,
    and the run clusters those U's combined. On this family the two points keep different baselines, so the run is
    neither baseline's run."""
    from policygradex.pipeline.clustering import combine

    family, n = "planted(kind=reward,env=cartpole,n=12,groups=3)", 12
    runs = runs_per_baseline(tmp_path, family)  # each half-budget point retrains the same
    points = json.loads((runs["auto"] / "config.json").read_text())["config"]["features"]["expansion_points"]
    assert points == [0.5, 1.0]
    where = {0.5: ("points/0.5/features/meta.json", "points/0.5/affinity.npy"),
             1.0: ("features/meta.json", "affinity_theta_star.npy")}
    chosen_Us, kept_at = [], []
    for point, (meta_path, u_path) in where.items():
        meta = json.loads((runs["auto"] / meta_path).read_text())["baseline"]
        assert set(meta["reliability"]) == {"policy", "per_task"}
        assert meta["chosen"] == choose(meta["reliability"]), point
        kept = runs[meta["chosen"]] / u_path
        assert (runs["auto"] / u_path).read_bytes() == kept.read_bytes(), point
        chosen_Us.append(np.load(kept))
        kept_at.append(meta["chosen"])
    assert kept_at == ["per_task", "policy"]
    assert np.array_equal(np.load(runs["auto"] / "affinity.npy"), combine(chosen_Us))
    # a point that keeps the policy's value head holds per_task's advantages beside it; a rerun recomputes nothing
    files = {point: sorted((runs["auto"] / ("features" if point == 1.0 else "points/0.5/features")).glob("*.npz"))
             for point in where}
    for point, kept in zip(where, kept_at):
        assert files[point] and all(("per_task_labels" in np.load(p).files) == (kept == "policy")
                                    for p in files[point]), point
    before = {p: p.stat().st_mtime_ns for ps in files.values() for p in ps}
    assert main(tiny_run_args(runs["auto"], family, "--k", "3", "--baseline", "auto")) == 0
    assert {p: p.stat().st_mtime_ns for p in before} == before
