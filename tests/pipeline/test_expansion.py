"""Expansion points (``--expansion-points``): snapshots of meta-training, the stages at each point, the combined U
and its confidence, resume, and the refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import policygradex.pipeline.feature_blocks as feature_blocks_mod
import policygradex.pipeline.stages as stages_mod
import policygradex.rl.ppo as ppo_mod
from policygradex.cli.main import main
from policygradex.common.artifacts import load_torch
from policygradex.pipeline.affinity import split_half_reliability
from policygradex.pipeline.clustering import combine, standardize
from policygradex.pipeline.confidence import bootstrap_groups, interaction_reliability

from ..helpers import assert_one_line_error, tiny_run_args
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


def test_expansion_points_run_resumes_byte_identical_and_leaves_theta_star_alone(tiny_run: Path, tmp_path: Path,
                                                                                monkeypatch: pytest.MonkeyPatch):
    """A tiny run with ``--expansion-points 0.5,1 --expansion-policy snapshot``, interrupted by Ctrl-C in meta-training after its checkpoint at
    iteration 2 (the point's), in the point's feature files and in the clustering, then resumed:
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
    reference = torch.load(tiny_run / "theta_star.pt")["state_dict"]
    assert all(torch.equal(theta[k], reference[k]) for k in reference)
    assert (out / "affinity_theta_star.npy").read_bytes() == (tiny_run / "affinity.npy").read_bytes()
    assert np.load(out / "features" / "task_000.npz")["features"].tobytes() == \
        np.load(tiny_run / "features" / "task_000.npz")["features"].tobytes()
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
    ("0.5,1", ("--affinity", "per_target"), "per_target"),
])
def test_bad_expansion_points_are_one_line_errors(tmp_path: Path, cli, points, extra, fragment):
    rc, _, err = cli(*tiny_run_args(tmp_path / "run", "cartpole", "--expansion-points", points, *extra))
    assert_one_line_error(rc, err, fragment)
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def points_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny cartpole run with ``--expansion-points 0.5,1 --k 2``. Read-only."""
    out = tmp_path_factory.mktemp("points") / "run"
    assert main(tiny_run_args(out, "cartpole", *POINTS, "--k", "2")) == 0
    return out


@pytest.mark.parametrize("command", ["stability", "ground-truth"])
def test_analyses_at_theta_star_alone_refuse_a_run_with_expansion_points(points_run: Path, cli, command):
    """``stability`` and ``ground-truth`` resample or refit at theta_star alone: they cannot reproduce a combined
    U, so they say so in one line instead of comparing against it."""
    rc, _, err = cli(command, points_run)
    assert_one_line_error(rc, err, "expansion points 0.5,1")


def test_the_verdict_says_where_the_signal_was_taken():
    """A noise verdict names where the gradient signal was measured: theta_star, or the expansion points whose
    combined reliability it is."""
    from policygradex.pipeline.confidence import verdict

    assert "signal at theta_star is mostly" in verdict([0.9], 0.9, 0.1)
    assert "signal at the expansion points is mostly" in verdict([0.9], 0.9, 0.1, where="at the expansion points")


def test_a_retrained_point_is_the_shorter_run_of_the_same_seed(tiny_run: Path, tmp_path: Path,
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
    assert main(tiny_run_args(half, "cartpole", "--steps-per-task", "256")) == 0
    point = out / "points" / "0.5"
    a, b = torch.load(point / "theta_star.pt")["state_dict"], torch.load(half / "theta_star.pt")["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in b)
    assert (point / "affinity.npy").read_bytes() == (half / "affinity.npy").read_bytes()
    assert (out / "affinity_theta_star.npy").read_bytes() == (tiny_run / "affinity.npy").read_bytes()
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
