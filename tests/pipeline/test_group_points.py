"""Group points (``--group-points``): theta_star fine-tuned on each group of a first clustering, the stages at each,
the U clustered, resume, and the refusals."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from policygradex.cli.main import main
from policygradex.pipeline.clustering import combine
from policygradex.pipeline.group_record import Groups
from policygradex.pipeline.rundir import RunDir

from ..helpers import assert_one_line_error, stability_against_ground_truth, tiny_run_args


@pytest.fixture(scope="module")
def group_run(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny run (expansion points 0.5 and 1) with ``--group-points 0.5`` added: every stage before the group
    points is the tiny run's. Read-only."""
    out = tmp_path_factory.mktemp("group_points") / "run"
    shutil.copytree(tiny_run, out)
    assert main(tiny_run_args(out, "cartpole", "--group-points", "0.5")) == 0
    return out


def _curve_tasks(path: Path) -> set[str]:
    with path.open() as fh:
        header = next(csv.reader(fh))
    return {c.removeprefix("return/") for c in header if c.startswith("return/")}


def test_group_points_are_the_first_clusterings_groups_and_join_the_u_clustered(tiny_run: Path, group_run: Path):
    rd, before = RunDir(group_run), RunDir(tiny_run)
    n = 10
    first = rd.group_point_tasks()
    # the first clustering is the run without group points: its groups, one point each
    assert sorted(map(sorted, first)) == sorted(sorted(g) for g in Groups.load(before.groups, n).indices)
    # one directory per point, and the first clustering cached beside them
    assert sorted(p.name for p in (group_run / "points").iterdir() if p.is_dir()) == sorted(
        ["0.5", *(f"group{j}" for j in range(len(first)))])
    assert rd.first_pass.is_file()
    # theta_star and the earlier point are untouched: their U's are the run's without group points, byte for byte
    assert rd.affinity_theta_star.read_bytes() == before.affinity_theta_star.read_bytes()
    assert rd.point(0.5).affinity.read_bytes() == before.point(0.5).affinity.read_bytes()
    theta = torch.load(rd.theta_star)["state_dict"]
    for j, tasks in enumerate(first):
        point = rd.group_point(j)
        # fine-tuned from theta_star on its group's tasks alone, for half of the budget (tiny: 512 steps a task)
        curve_tasks = _curve_tasks(point.curve)
        assert len(curve_tasks) == len(tasks)
        with point.curve.open() as fh:
            rows = list(csv.DictReader(fh))
        assert int(rows[-1]["env_steps_per_task"]) == 256
        moved = torch.load(point.theta_star)["state_dict"]
        assert any(not torch.equal(theta[k], moved[k]) for k in theta)
        assert np.load(point.affinity).shape == (n, n)
    # every task is in one group point's fine-tuning
    names = sorted(_curve_tasks(rd.curve))
    assert sorted(t for j in range(len(first)) for t in _curve_tasks(rd.group_point(j).curve)) == names
    # the U clustered: theta_star's, the earlier point's and every group point's standardised U's, equally weighted
    Us = [np.load(rd.affinity_theta_star), np.load(rd.point(0.5).affinity),
          *(np.load(rd.group_point(j).affinity) for j in range(len(first)))]
    np.testing.assert_allclose(np.load(rd.affinity), combine(Us), rtol=0, atol=1e-12)
    report = rd.report.read_text()
    assert "--group-points 0.5" in report and "group0 (theta_star fine-tuned on group 0" in report


def test_group_points_resume_and_a_new_fraction_retrains_them_alone(group_run: Path, tmp_path: Path, cli):
    out = tmp_path / "run"
    shutil.copytree(group_run, out)
    rc, _, err = cli(*tiny_run_args(out, "cartpole", "--group-points", "0.5"))
    assert rc == 0
    assert "computed" not in err  # every stage, the group points' included, loaded from disk
    theta_features = (out / "features" / "task_000.npz").read_bytes()
    old = torch.load(out / "points" / "group0" / "theta_star.pt")["state_dict"]
    rc, _, err = cli(*tiny_run_args(out, "cartpole", "--group-points", "0.25"))
    assert rc == 0
    assert "stage features: loaded" in err and "stage features at group 0's point: computed" in err
    assert (out / "features" / "task_000.npz").read_bytes() == theta_features
    new = torch.load(out / "points" / "group0" / "theta_star.pt")["state_dict"]
    assert any(not torch.equal(old[k], new[k]) for k in old)


def test_a_resumed_run_reads_no_feature_file_for_its_first_clustering(group_run: Path, tmp_path: Path, cli):
    """The first clustering is kept with its inputs (points/first_pass.json): a rerun of a finished run with
    reliability weights, whose weights are measured from every point's feature files, reads none of them; a changed
    clustering option clusters again."""
    from policygradex.pipeline import stages

    out = tmp_path / "run"
    shutil.copytree(group_run, out)
    args = tiny_run_args(out, "cartpole", "--group-points", "0.5", "--point-weights", "reliability")
    rc, _, err = cli(*args)
    assert rc == 0, err
    rd = RunDir(out)
    record = json.loads(rd.first_pass.read_text())
    assert record["point_weights"]["rule"] == "reliability" and record["groups"] == rd.group_point_tasks()

    def no_features(st):
        raise AssertionError(f"{st.rd.path}'s feature files read")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(stages, "gradient_signal_halves", no_features)
        rc, _, err = cli(*args)
        assert rc == 0, err
        assert "computed" not in err
    rc, _, err = cli(*tiny_run_args(out, "cartpole", "--group-points", "0.5", "--point-weights", "equal"))
    assert rc == 0, err
    assert json.loads(rd.first_pass.read_text())["point_weights"]["weights"] is None


@pytest.mark.parametrize("extra, fragment", [(("--group-points", "0"), "--group-points must be a fraction"),
                                             (("--group-points", "1.5"), "--group-points must be a fraction"),
                                             (("--group-points", "0.5", "--affinity", "per_target"), "per_target")])
def test_bad_group_points_are_one_line_errors(tmp_path: Path, cli, extra, fragment):
    rc, _, err = cli(*tiny_run_args(tmp_path / "run", "cartpole", *extra))
    assert_one_line_error(rc, err, fragment)
    assert not (tmp_path / "run" / "theta_star.pt").exists()


def test_stability_and_ground_truth_resample_the_group_points_like_any_point(group_run: Path, tmp_path: Path,
                                                                              cli):
    """``stability`` on a run with group points recollects at every point's policy, group points included (a job per
    resample and point, pinned by that policy's sha256), and each resample's U is the points' U's combined with the
    run's weights, in the pipeline's order; ``ground-truth`` names the group points and sums their surrogates'
    cost; a run whose affinity was not combined from its group points is refused with one line."""
    from policygradex.analysis.context import job_seed
    from policygradex.common.artifacts import file_sha
    from policygradex.pipeline.affinity import subset_affinity
    from policygradex.pipeline.clustering import standardized_corr
    from policygradex.pipeline.stages import recorded_point_weights
    from policygradex.pipeline.subset_table import SubsetTable

    run = tmp_path / "run"
    shutil.copytree(group_run, run)
    rd = RunDir(run)
    k = len(rd.group_point_tasks())
    places = [rd, rd.point(0.5), *(rd.group_point(j) for j in range(k))]
    shas = [file_sha(p.theta_star) for p in places]
    vs, truth, out = stability_against_ground_truth(cli, run)
    blobs = [json.loads(f.read_text()) for f in sorted((run / "jobs").glob("*.json"))]
    jobs = [b for b in blobs if b["spec"]["fn"].endswith("stability:resample_job")]
    assert sorted((j["spec"]["args"]["theta_sha"], j["spec"]["seed"]) for j in jobs) == \
        sorted((sha, job_seed("stability", 0, r)) for sha in shas for r in range(2))
    assert sorted(j["spec"]["args"]["group_point"] for j in jobs if "group_point" in j["spec"]["args"]) == \
        sorted(list(range(k)) * 2)
    record = json.loads((run / "stability" / "stability.json").read_text())
    assert [p["point"] for p in record["per_point"]] == [1.0, 0.5, *(f"group{j}" for j in range(k))]
    # each resample's U: every point's U from its job, combined in the pipeline's order with the run's weights
    subsets = SubsetTable.load(rd.subsets).subsets
    by = {(j["spec"]["args"]["theta_sha"], j["spec"]["seed"]): j["result"] for j in jobs}
    weights = recorded_point_weights(rd)
    Us = [combine([subset_affinity(subsets, np.asarray(by[sha, job_seed("stability", 0, r)]["f_hat"]), 10)
                   for sha in shas], weights) for r in range(2)]
    U_run = np.load(rd.affinity)
    assert record["corr_with_run"]["mean"] == pytest.approx(np.mean([standardized_corr(U_run, U) for U in Us]))
    assert "| group0 |" in out and "the group points group0" in out
    assert truth["group_points"] == [f"group{j}" for j in range(k)]
    assert "and of group points group0" in (run / "ground_truth" / "ground_truth.md").read_text()
    assert vs["run"]["corr_standardized_U_combined"] == pytest.approx(
        standardized_corr(U_run, np.load(run / "ground_truth" / "affinity_true.npy")))
    # a group point gone (an interrupted rerun): refused, not resampled at the points that remain
    shutil.rmtree(rd.group_point(k - 1).path)
    rc, _, err = cli("stability", run, "--resamples", "2")
    assert_one_line_error(rc, err, "group points")

