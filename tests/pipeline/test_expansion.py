"""Expansion points (``--expansion-points``): snapshots of meta-training, the stages at each point, the combined U
and its confidence, resume, the refusals, and the analyses that resample (``stability``) or refit (``ground-truth``)
a run with points."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from sklearn.metrics import normalized_mutual_info_score

import policygradex.pipeline.feature_blocks as feature_blocks_mod
import policygradex.pipeline.stages as stages_mod
import policygradex.rl.ppo as ppo_mod
from policygradex.analysis.context import job_seed
from policygradex.cli.main import main
from policygradex.common.artifacts import file_sha, load_torch
from policygradex.pipeline.affinity import split_half_reliability, subset_affinity
from policygradex.pipeline.clustering import combine, standardize, standardized_corr
from policygradex.pipeline.confidence import bootstrap_groups, interaction_reliability
from policygradex.pipeline.subset_table import SubsetTable

from ..helpers import assert_one_line_error, stability_against_ground_truth, tiny_run_args
from .test_confidence import BLOCKS, N_TASKS, _f
from .test_determinism import _Counter, _same_bytes

POINTS = ("--expansion-points", "0.5,1")


def test_combined_affinity_weighs_points_alike_whatever_their_scale():
    """Every point's U is standardised before the mean: a point whose f^ is 1000 times another's carries the same
    weight, so the same structure at two scales gives the groups, split halves and bootstrap of one point."""
    subsets, f = _f(noise=1.0, seed=0)
    U = np.random.default_rng(0).normal(size=(N_TASKS, N_TASKS))
    assert np.allclose(combine([U, 1000 * U]), standardize(U))
    one = split_half_reliability(subsets, f, N_TASKS, seed=3)
    two = split_half_reliability(subsets, [f, 1000 * f], N_TASKS, seed=3)
    assert one is not None and two is not None and two["reliability"] == pytest.approx(one["reliability"], abs=1e-9)
    a = bootstrap_groups(subsets, f, N_TASKS, BLOCKS, reps=20, seed=0)
    b = bootstrap_groups(subsets, [f, 1000 * f], N_TASKS, BLOCKS, reps=20, seed=0)
    assert a["group_jaccard"] == pytest.approx(b["group_jaccard"])
    G1, G2 = np.random.default_rng(1).normal(size=(2, N_TASKS, 5))
    assert interaction_reliability([G1, 3 * G1], [G2, 3 * G2]) == pytest.approx(interaction_reliability(G1, G2))


@pytest.fixture(scope="module")
def one_point_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny run at theta_star alone (``--expansion-points 1``, the paper's; the default has a point at 0.5)."""
    out = tmp_path_factory.mktemp("one_point") / "run"
    assert main(tiny_run_args(out, "cartpole", "--expansion-points", "1")) == 0
    return out


def test_the_default_run_is_the_one_point_run_plus_its_point(tiny_run: Path, one_point_run: Path):
    """The default run (tiny_run: expansion points 0.5 and 1) keeps theta_star, its features and its own U byte for
    byte those of the run at theta_star alone, and clusters the mean of its points' standardised U's."""
    a = torch.load(tiny_run / "theta_star.pt")["state_dict"]
    b = torch.load(one_point_run / "theta_star.pt")["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in b)
    assert (tiny_run / "affinity_theta_star.npy").read_bytes() == (one_point_run / "affinity.npy").read_bytes()
    assert not (one_point_run / "points").exists() and not (one_point_run / "affinity_theta_star.npy").exists()
    U = np.load(tiny_run / "affinity.npy")
    assert np.allclose(U, combine([np.load(one_point_run / "affinity.npy"),
                                   np.load(tiny_run / "points" / "0.5" / "affinity.npy")]))


def test_expansion_points_run_resumes_byte_identical_and_leaves_theta_star_alone(
        one_point_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A tiny run with ``--expansion-points 0.5,1 --expansion-policy snapshot``, interrupted by Ctrl-C in
    meta-training after its checkpoint at iteration 2 (the point's), in the point's feature files and in the
    clustering, then resumed:
    - the snapshot is the policy of meta-training's own checkpoint at that iteration;
    - theta_star, its features and its own U equal the run without points (keeping snapshots changes nothing);
    - the point's features differ from theta_star's, and affinity.npy is the mean of the standardised U's;
    - the resumed directory equals an uninterrupted one byte for byte, the point's files included."""
    out = tmp_path / "run"
    args = tiny_run_args(out, "cartpole", *POINTS, "--expansion-policy", "snapshot")
    with monkeypatch.context() as m:
        m.setattr(ppo_mod, "ppo_update", _Counter(ppo_mod.ppo_update, 3))  # 4 iterations, a checkpoint every 2
        assert main(args) == 130
    snapshot = torch.load(out / "points" / "0.5" / "theta_star.pt")["state_dict"]
    checkpoint = load_torch(out / "theta_star.checkpoint.pt")["model"]
    assert all(torch.equal(snapshot[k], checkpoint[k]) for k in checkpoint)
    for module, name, n in [(feature_blocks_mod, "atomic_save_npz", 13), (stages_mod, "cluster", 1)]:
        with monkeypatch.context() as m:  # 10 task files at theta_star, then the point's third
            m.setattr(module, name, _Counter(getattr(module, name), n))
            assert main(args) == 130, name
    assert main(args) == 0
    theta = torch.load(out / "theta_star.pt")["state_dict"]
    reference = torch.load(one_point_run / "theta_star.pt")["state_dict"]
    assert all(torch.equal(theta[k], reference[k]) for k in reference)
    assert (out / "affinity_theta_star.npy").read_bytes() == (one_point_run / "affinity.npy").read_bytes()
    assert np.load(out / "features" / "task_000.npz")["features"].tobytes() == \
        np.load(one_point_run / "features" / "task_000.npz")["features"].tobytes()
    point = out / "points" / "0.5"
    assert not np.array_equal(np.load(point / "features" / "task_000.npz")["features"],
                              np.load(out / "features" / "task_000.npz")["features"])
    U = np.load(out / "affinity.npy")
    assert np.allclose(U, combine([np.load(out / "affinity_theta_star.npy"), np.load(point / "affinity.npy")]))
    assert "Expansion points" in (out / "report.md").read_text()
    clean = tmp_path / "clean"
    assert main(tiny_run_args(clean, "cartpole", *POINTS, "--expansion-policy", "snapshot")) == 0
    _same_bytes(clean, out)
    for name in ("affinity.npy", "surrogate.json", "surrogate_v.npy"):  # the curve holds seconds
        assert (clean / "points" / "0.5" / name).read_bytes() == (point / name).read_bytes(), name
    for f in [point / "subsets.npz", *sorted((point / "features").glob("*.npz"))]:
        za, zb = np.load(f), np.load(clean / f.relative_to(out))
        assert za.files == zb.files and all(za[k].tobytes() == zb[k].tobytes() for k in za.files), f.name


def test_expansion_points_with_the_closed_form(tmp_path: Path, cli):
    """The closed form's confidence (split halves and bootstrap over transitions) resamples every point."""
    out = tmp_path / "run"
    rc, stdout, err = cli(*tiny_run_args(out, "cartpole", "--surrogate", "closed_form", "--k", "2",
                                         "--expansion-points", "0.25,0.5,1"))
    assert rc == 0, err
    assert sorted(p.name for p in (out / "points").iterdir()) == ["0.25", "0.5"]
    assert (out / "groups.json").exists() and "at point 0.25" in (out / "report.md").read_text()


@pytest.mark.parametrize("points, extra, fragment", [
    ("0.5", (), "ending at 1"),
    ("1,0.5", (), "increasing"),
    ("0,1", (), "(0, 1]"),
    ("0.4,0.5,1", ("--expansion-policy", "snapshot"), "after 2, 2, 4 PPO iterations"),
    ("0.5,0.6,1", (), "same"),  # retrain: 256 and 307 steps per task are both 2 iterations of 128
    ("0.25,1", ("--affinity", "per_target"), "per_target"),  # the default (0.5,1) resolves to 1 instead
])
def test_bad_expansion_points_are_one_line_errors(tmp_path: Path, cli, points, extra, fragment):
    rc, _, err = cli(*tiny_run_args(tmp_path / "run", "cartpole", "--expansion-points", points, *extra))
    assert_one_line_error(rc, err, fragment)
    assert not (tmp_path / "run").exists()


def test_the_default_points_resolve_to_theta_star_where_a_point_cannot_be_had_or_used(tmp_path: Path, cli):
    """Left at the default (0.5, 1), the points become theta_star alone where a half-way policy does not exist (a
    meta-training of one PPO iteration) or cannot be combined (``--affinity per_target``); config.json records it."""
    from dataclasses import replace

    from policygradex.envs.registry import load_family
    from policygradex.pipeline.config import RunConfig, apply_preset
    from policygradex.pipeline.runner import with_family_defaults

    family, tiny = load_family("cartpole"), apply_preset(RunConfig(), "tiny")
    assert with_family_defaults(tiny, family).features.expansion_points == (0.5, 1.0)
    per_target = replace(tiny, cluster=replace(tiny.cluster, affinity="per_target"))
    assert with_family_defaults(per_target, family).features.expansion_points == (1.0,)
    out = tmp_path / "run"
    rc, _, err = cli(*tiny_run_args(out, "cartpole", "--steps-per-task", "128"))  # 2 envs x 64 steps: 1 iteration
    assert rc == 0, err
    assert json.loads((out / "config.json").read_text())["config"]["features"]["expansion_points"] == [1.0]
    assert not (out / "points").exists() and (out / "groups.json").exists()


@pytest.fixture(scope="module")
def points_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny cartpole run with ``--expansion-points 0.5,1 --k 2``. Read-only."""
    out = tmp_path_factory.mktemp("points") / "run"
    assert main(tiny_run_args(out, "cartpole", *POINTS, "--k", "2")) == 0
    return out


def _resample_jobs(run: Path) -> list[dict]:
    """The stability command's cached resample jobs in ``run/jobs``: spec and result of each."""
    blobs = [json.loads(f.read_text()) for f in sorted((run / "jobs").glob("*.json"))]
    return [b for b in blobs if b["spec"]["fn"].endswith("stability:resample_job")]


def test_a_resample_job_at_an_earlier_point_is_that_points_computation(points_run: Path):
    """The earlier point's resample job (its context: its policy, sha and configuration) with the feature stage's
    seed gives that point's own f^, not theta_star's."""
    from policygradex.analysis.context import load_context, point_contexts
    from policygradex.analysis.stability import resample_job

    ctx = load_context(points_run)
    star, point = point_contexts(ctx, need=("subsets", "affinity"))
    assert star is ctx and point.fraction == 0.5 and point.rd.path == points_run / "points" / "0.5"
    assert point.theta_sha == file_sha(points_run / "points" / "0.5" / "theta_star.pt") != ctx.theta_sha
    table = SubsetTable.load(point.rd.subsets)
    args = {"run_dir": str(point.rd.path), "config": point.cfg.to_dict(), "theta_sha": point.theta_sha,
            "subsets": table.subsets, "transitions_per_task": point.cfg.features.transitions_per_task}
    same = resample_job(args, point.cfg.feature_seed)
    assert np.allclose(same["f_hat"], table.f_hat, rtol=1e-5, atol=1e-7)
    assert not np.allclose(same["f_hat"], SubsetTable.load(ctx.rd.subsets).f_hat, rtol=1e-3, atol=1e-6)


def test_stability_resamples_every_expansion_point_and_combines_them(points_run: Path, tmp_path: Path, cli):
    """``stability`` on a run with expansion points: each resample recollects at theta_star and at the point (a job
    each, pinned by that policy's sha256, on the resample's seed), and its U is the points' U combined as
    affinity.npy is, which the record's correlations are of; the co-clustering is well formed; ``--transitions``
    changes N at every point. With a ground truth, each estimate also scores the combined U."""
    run = tmp_path / "run"
    shutil.copytree(points_run, run)
    rc, out, err = cli("stability", run, "--resamples", "2", "--backend", "sequential")
    assert rc == 0, err
    record = json.loads((run / "stability" / "stability.json").read_text())
    shas = {1.0: file_sha(run / "theta_star.pt"), 0.5: file_sha(run / "points" / "0.5" / "theta_star.pt")}
    jobs = _resample_jobs(run)
    assert len(jobs) == 4
    assert sorted((j["spec"]["args"]["theta_sha"], j["spec"]["seed"]) for j in jobs) == \
        sorted((sha, job_seed("stability", 0, r)) for sha in shas.values() for r in range(2))
    assert all(("expansion_point" in j["spec"]["args"]) == (j["spec"]["args"]["theta_sha"] == shas[0.5])
               for j in jobs)
    # the combined U of each resample, rebuilt from the jobs: the record's correlation with the run's U is of it
    table = SubsetTable.load(run / "subsets.npz")
    by = {(j["spec"]["args"]["theta_sha"], j["spec"]["seed"]): j["result"] for j in jobs}
    Us, Us_alone = [], []
    for r in range(2):
        own = [subset_affinity(table.subsets, np.asarray(by[shas[f], job_seed("stability", 0, r)]["f_hat"]), 10)
               for f in (1.0, 0.5)]
        assert not np.allclose(standardize(own[0]), standardize(own[1]))
        Us.append(combine(own))
        Us_alone.append(own[0])
    U_run = np.load(run / "affinity.npy")
    corr = [standardized_corr(U_run, U) for U in Us]
    assert record["corr_with_run"]["mean"] == pytest.approx(np.mean(corr))
    assert record["corr_with_run"]["mean"] != pytest.approx(np.mean([standardized_corr(U_run, U) for U in Us_alone]))
    assert [p["fraction"] for p in record["per_point"]] == [1.0, 0.5]
    assert record["per_point"][0]["corr_with_run"]["mean"] == pytest.approx(np.mean(
        [standardized_corr(np.load(run / "affinity_theta_star.npy"), U) for U in Us_alone]))
    C = np.array(record["coclustering"])
    assert np.allclose(C, C.T) and np.allclose(np.diag(C), 1.0)
    assert set(np.round(C.ravel() * 3).astype(int)) <= {0, 1, 2, 3}
    assert sorted(i for g in record["group_indices_pooled"] for i in g) == list(range(10))
    assert record["pooled_includes_run"] and "correlation of the standardised combined U" in out
    assert "then the points combined" in out and "| 0.5 |" in out
    # a second call finds every job cached
    rc, _, err = cli("stability", run, "--resamples", "2", "--backend", "sequential")
    assert rc == 0, err
    assert len(_resample_jobs(run)) == 4
    # --transitions: every point recollects at that N, and the run's own estimates leave the pool
    rc, _, err = cli("stability", run, "--resamples", "1", "--transitions", "64", "--backend", "sequential")
    assert rc == 0, err
    other = json.loads((run / "stability" / "stability.json").read_text())
    at_64 = [j for j in _resample_jobs(run) if j["spec"]["args"]["transitions_per_task"] == 64]
    assert sorted(j["spec"]["args"]["theta_sha"] for j in at_64) == sorted(shas.values())
    assert not other["pooled_includes_run"] and [p["transitions_per_task"] for p in other["per_point"]] == [64, 64]
    # against a ground truth: f^ is theta_star's own, the groups and the extra column the combined U's
    vs, truth, out = stability_against_ground_truth(cli, run)
    assert vs["run"]["spearman"] == pytest.approx(truth["spearman"]) and vs["run"]["nmi"] == pytest.approx(truth["nmi"])
    U_true = np.load(run / "ground_truth" / "affinity_true.npy")
    assert vs["run"]["corr_standardized_U_combined"] == pytest.approx(standardized_corr(U_run, U_true))
    assert "corr(std combined U, std U_true)" in out


def test_ground_truth_of_a_run_with_expansion_points_reports_theta_star_and_the_combined_u(points_run: Path,
                                                                                          tmp_path: Path, cli):
    """``ground-truth`` on a run with expansion points fine-tunes theta_star: the run's groups (the combined U's)
    are compared with the true groups, Spearman and the relative error are theta_star's own (subsets.npz,
    affinity_theta_star.npy), and the combined U's relative error and theta_star's own groups are reported too."""
    from policygradex.analysis.scores import relative_error
    from policygradex.pipeline.clustering import cluster
    from policygradex.pipeline.partitions import labels_from_groups

    run = tmp_path / "run"
    shutil.copytree(points_run, run)
    rc, out, err = cli("ground-truth", run, "--steps-per-task", "128", "--max-subsets", "40", "--eval-episodes", "1",
                       "--backend", "sequential")
    assert rc == 0, err
    record = json.loads((run / "ground_truth" / "ground_truth.json").read_text())
    U_true = np.load(run / "ground_truth" / "affinity_true.npy")
    U_own, U_combined = np.load(run / "affinity_theta_star.npy"), np.load(run / "affinity.npy")
    assert record["relative_error"] == pytest.approx(relative_error(U_own, U_true))
    assert record["relative_error_combined"] == pytest.approx(relative_error(U_combined, U_true))
    assert record["relative_error"] != pytest.approx(record["relative_error_combined"])
    f_hat = SubsetTable.load(run / "subsets.npz").f_hat[:40]
    assert [s["f_hat"] for s in record["subsets"]] == pytest.approx(f_hat.tolist())
    assert record["spearman"] == pytest.approx(spearmanr(f_hat, [s["f_return"] for s in record["subsets"]]).statistic)
    true = labels_from_groups(json.loads((run / "ground_truth" / "groups_true.json").read_text())["group_indices"], 10)
    run_groups = labels_from_groups(json.loads((run / "groups.json").read_text())["group_indices"], 10)
    assert record["nmi"] == pytest.approx(normalized_mutual_info_score(true, run_groups))
    own = cluster(U_own, k=record["k"], exhaustive_check=False).labels
    assert record["nmi_theta_star"] == pytest.approx(normalized_mutual_info_score(true, own))
    assert record["expansion_points"] == [0.5, 1.0] and len(record["groups_theta_star"]) == record["k"]
    md = (run / "ground_truth" / "ground_truth.md").read_text()
    assert "relative error of the combined U" in md and "NMI of the groups of theta_star's own U" in md
    assert "Spearman(theta_star's own f^, f)" in md and "Groups of theta_star's own U" in md


def test_the_verdict_says_where_the_signal_was_taken():
    """A noise verdict names where the gradient signal was measured: theta_star, or the expansion points whose
    combined reliability it is."""
    from policygradex.pipeline.confidence import verdict

    assert "signal at theta_star is mostly" in verdict([0.9], 0.9, 0.1)
    assert "signal at the expansion points is mostly" in verdict([0.9], 0.9, 0.1, where="at the expansion points")


def test_a_retrained_point_is_the_shorter_run_of_the_same_seed(one_point_run: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch):
    """``--expansion-policy retrain`` (the default): the earlier point's policy, features and U are those of a
    separate run on that fraction of the budget (tiny: 512 steps per task, so 256), byte for byte, also when
    Ctrl-C stops the point's own meta-training and the command is rerun; theta_star's are the run without
    points'."""
    out, half = tmp_path / "run", tmp_path / "half"
    args = tiny_run_args(out, "cartpole", *POINTS)
    with monkeypatch.context() as m:  # theta_star's 4 iterations, then the point's second of 2
        m.setattr(ppo_mod, "ppo_update", _Counter(ppo_mod.ppo_update, 6))
        assert main(args) == 130
    assert (out / "theta_star.pt").exists() and not (out / "points" / "0.5" / "theta_star.pt").exists()
    assert main(args) == 0
    assert main(tiny_run_args(half, "cartpole", "--steps-per-task", "256", "--expansion-points", "1")) == 0
    point = out / "points" / "0.5"
    a, b = torch.load(point / "theta_star.pt")["state_dict"], torch.load(half / "theta_star.pt")["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in b)
    assert (point / "affinity.npy").read_bytes() == (half / "affinity.npy").read_bytes()
    assert (out / "affinity_theta_star.npy").read_bytes() == (one_point_run / "affinity.npy").read_bytes()
    assert not (out / "theta_star.checkpoint.pt").exists() and not (point / "theta_star.checkpoint.pt").exists()


def test_the_policy_source_is_idle_without_earlier_points():
    """Two configurations that differ only in ``expansion_policy`` are the same run when there is one expansion
    point (a run directory made under either resumes under the other), and different runs when there are more."""
    from dataclasses import replace

    from policygradex.pipeline.config import RunConfig
    from policygradex.pipeline.rundir import config_diff, without_idle_options

    def diff(points: tuple[float, ...]) -> list[str]:
        a, b = (RunConfig(features=replace(RunConfig().features, expansion_points=points, expansion_policy=p))
                for p in ("snapshot", "retrain"))
        return config_diff(without_idle_options(a.to_dict()), without_idle_options(b.to_dict()))

    assert diff((1.0,)) == []
    assert diff((0.5, 1.0)) == ["features.expansion_policy: 'snapshot' -> 'retrain'"]


def test_weighted_combine_is_the_weighted_mean_of_the_standardised_us():
    rng = np.random.default_rng(4)
    A, B = rng.normal(size=(2, 6, 6))
    assert np.allclose(combine([A, B], [1.0, 3.0]), (standardize(A) + 3 * standardize(B)) / 4)
    assert np.allclose(combine([A, B], [2.0, 2.0]), combine([A, B]))
    assert np.allclose(combine([A, B], [0.0, 5.0]), standardize(B))
    for bad in ([1.0], [-1.0, 2.0], [0.0, 0.0]):
        with pytest.raises(ValueError):
            combine([A, B], bad)


def test_point_weights_reliability_weighs_each_point_by_its_own_gradient_signal(points_run: Path, tmp_path: Path,
                                                                                 cli):
    """``--point-weights reliability`` on a finished run redoes the affinity and what follows, nothing before it:
    each point's weight is max(r, 0) of its gradient signal's split-half reliability, r recomputed here from that
    point's feature files alone; affinity.npy is the points' U's combined with those weights, the confidence's
    split halves and gradient reliability use them, and the report and stability say so. Back to ``equal``, the run
    is byte for byte what it was."""
    from policygradex.pipeline.confidence import task_fitting_halves
    from policygradex.pipeline.statistics import rows_of_files

    run = tmp_path / "run"
    shutil.copytree(points_run, run)
    before = {p: p.read_bytes() for p in (run / "affinity.npy", run / "groups.json")}
    features = {p: p.stat().st_mtime_ns for p in run.rglob("task_*.npz")}
    assert features
    rc, _, err = cli("run", "cartpole", "--preset", "tiny", "--seed", "0", "--out", run, *POINTS, "--k", "2",
                     "--point-weights", "reliability")
    assert rc == 0, err
    assert {p: p.stat().st_mtime_ns for p in run.rglob("task_*.npz")} == features
    record = json.loads((run / "affinity_stats.json").read_text())["point_weights"]
    assert record["rule"] == "reliability" and record["points"] == [1.0, 0.5]
    cfg = json.loads((run / "config.json").read_text())["config"]
    rel = []
    for where in (run, run / "points" / "0.5"):  # the per-task baseline: each half's advantages fitted apart
        halves = [task_fitting_halves(F.numpy(), y.numpy(), w.numpy(), cfg["features"]["holdout_fraction"])
                  for F, y, w in rows_of_files(sorted((where / "features").glob("task_*.npz")), split=True)]
        rel.append(interaction_reliability(np.stack([h[0] for h in halves]), np.stack([h[1] for h in halves])))
    assert record["reliability"] == pytest.approx(rel, abs=1e-12)
    weights = [max(r, 0.0) for r in rel]
    assert record["weights"] == pytest.approx(weights, abs=1e-12) and len(set(weights)) == 2
    U = combine([np.load(run / "affinity_theta_star.npy"), np.load(run / "points" / "0.5" / "affinity.npy")], weights)
    assert np.array_equal(np.load(run / "affinity.npy"), U)
    table, point = SubsetTable.load(run / "subsets.npz"), SubsetTable.load(run / "points" / "0.5" / "subsets.npz")
    split = split_half_reliability(table.subsets, [table.f_hat, point.f_hat], 10, seed=0, weights=weights)
    assert json.loads((run / "affinity_stats.json").read_text())["split_half"] == pytest.approx(split)
    assert "weighted by each point's gradient reliability" in (run / "report.md").read_text()
    rc, _, err = cli("stability", run, "--resamples", "1", "--backend", "sequential")
    assert rc == 0, err
    jobs = {j["spec"]["args"]["theta_sha"]: j["result"] for j in _resample_jobs(run)}
    own = [subset_affinity(table.subsets, np.asarray(jobs[file_sha(where / "theta_star.pt")]["f_hat"]), 10)
           for where in (run, run / "points" / "0.5")]
    stab = json.loads((run / "stability" / "stability.json").read_text())
    assert stab["corr_with_run"]["mean"] == pytest.approx(standardized_corr(U, combine(own, weights)))
    assert stab["corr_with_run"]["mean"] != pytest.approx(standardized_corr(U, combine(own)))
    # back to equal weights: the files of the run before, byte for byte
    rc, _, err = cli("run", "cartpole", "--preset", "tiny", "--seed", "0", "--out", run, *POINTS, "--k", "2")
    assert rc == 0, err
    assert {p: p.read_bytes() for p in before} == before
