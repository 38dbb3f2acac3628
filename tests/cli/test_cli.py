"""The `policygradex` command line, end to end on tiny budgets: artifacts, reproducibility, resume, errors."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from policygradex.cli.main import main
from policygradex.envs.registry import load_family
from policygradex.nets.base import flat_params
from policygradex.pipeline.config import RunConfig
from policygradex.pipeline.features import projection_for
from policygradex.pipeline.stages import make_model
from policygradex.pipeline.subset_table import SubsetTable

from ..helpers import assert_one_line_error, tiny_run_args

ARTIFACTS = [
    "config.json", "theta_star.pt", "features/task_000.npz", "subsets.npz", "affinity.npy", "affinity.csv",
    "groups.json", "affinity.png", "report.md",
]
CARTPOLE_NAMES = load_family("cartpole").task_names


def _console_script() -> str:
    script = Path(sys.executable).parent / "policygradex"
    if script.exists():
        return str(script)
    found = shutil.which("policygradex")
    if found is None:
        pytest.skip("the policygradex console script is not installed")
    return found


def _copy(run_dir: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(run_dir, dst)
    return dst


def _groups(run_dir: Path) -> dict:
    return json.loads((run_dir / "groups.json").read_text())


def _assert_partition(groups: dict, names: list[str]) -> None:
    flat = [t for g in groups["groups"] for t in g]
    assert sorted(flat) == sorted(names) and len(flat) == len(set(flat)), groups["groups"]
    assert all(groups["groups"]), "no empty group"
    assert groups["k"] == len(groups["groups"])
    assert [[names[i] for i in g] for g in groups["group_indices"]] == groups["groups"]


def _load_model(run_dir: Path):
    cfg = RunConfig.from_dict(json.loads((run_dir / "config.json").read_text())["config"])
    family = load_family(cfg.family)
    model = make_model(cfg, family)
    model.load_state_dict(torch.load(run_dir / "theta_star.pt", weights_only=False)["state_dict"])
    return cfg, model


def _check_adapted(run_dir: Path, subset: int, target: Path) -> None:
    """The adapted file is theta_star + P v_subset on the actor parameters, critic untouched."""
    cfg, model = _load_model(run_dir)
    star = model.state_dict()
    adapted = torch.load(target, weights_only=False)["state_dict"]
    assert adapted.keys() == star.keys()
    for k in star:
        assert adapted[k].shape == star[k].shape
        if k.startswith("critic"):
            assert torch.equal(adapted[k], star[k]), k
    names = model.policy_parameter_names()
    v = np.load(run_dir / "surrogate_v.npy")[subset]
    delta = torch.cat([adapted[n].reshape(-1) for n in names]) - flat_params(model, names)
    expected = projection_for(cfg, model).lift(torch.as_tensor(v, dtype=torch.float32))
    assert expected.norm() > 0
    torch.testing.assert_close(delta, expected, rtol=1e-4, atol=1e-5)
    model.load_state_dict(adapted)  # a usable state_dict for the same network


# ----------------------------------------------------------------------------------------------- a finished run
def test_run_writes_every_artifact(tiny_run):
    """A finished run holds config, theta_star, features, subsets, affinity, groups, heatmap and report."""
    for rel in ARTIFACTS:
        assert (tiny_run / rel).is_file(), rel
    assert (tiny_run / "affinity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    record = json.loads((tiny_run / "config.json").read_text())
    assert record["config"]["family"] == "cartpole"
    assert record["config"]["network"]["hidden_sizes"] == [16, 16, 16]  # the tiny preset was applied
    assert [t["name"] for t in record["family"]["tasks"]] == CARTPOLE_NAMES
    _, model = _load_model(tiny_run)  # theta_star fits the configured network
    assert model.actor[0].in_features == 4  # no task id by default (NetworkConfig.task_id)


def test_groups_partition_the_tasks(tiny_run):
    """groups.json puts every task in exactly one group, and report.md lists the same groups."""
    groups = _groups(tiny_run)
    _assert_partition(groups, CARTPOLE_NAMES)
    report = (tiny_run / "report.md").read_text()
    for gi, g in enumerate(groups["groups"]):
        assert f"group {gi + 1}: {', '.join(g)}" in report


def test_affinity_npy_and_csv_agree(tiny_run):
    """affinity.npy is a finite symmetric n x n matrix and affinity.csv holds the same numbers with task names."""
    U = np.load(tiny_run / "affinity.npy")
    assert U.shape == (10, 10) and np.isfinite(U).all()
    np.testing.assert_allclose(U, U.T)
    assert U[~np.eye(10, dtype=bool)].std() > 0  # not a constant placeholder
    with open(tiny_run / "affinity.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["task", *CARTPOLE_NAMES]
    assert [r[0] for r in rows[1:]] == CARTPOLE_NAMES
    np.testing.assert_allclose(np.array([r[1:] for r in rows[1:]], dtype=float), U, rtol=1e-5)


def test_feature_files_and_subsets(tiny_run):
    """Each task's features are N x d float32 with labels +-1 and weights >= 0; the subsets cover every pair."""
    features = json.loads((tiny_run / "config.json").read_text())["config"]["features"]
    N, d = features["transitions_per_task"], features["projection_dim"]
    for i in range(10):
        with np.load(tiny_run / "features" / f"task_{i:03d}.npz") as z:
            assert z["features"].shape == (N, d) and z["features"].dtype == np.float32
            assert set(np.unique(z["labels"]).tolist()) <= {-1.0, 1.0}
            assert z["weights"].shape == (N,) and (z["weights"] >= 0).all()
    table = SubsetTable.load(tiny_run / "subsets.npz")
    record = json.loads((tiny_run / "surrogate.json").read_text())
    members = table.subsets
    assert len(members) == record["num_subsets"] and table.tasks.dtype == np.int64
    assert np.isfinite(table.f_hat).all() and np.array_equal(table.f_hat, table.f_hat_in_sample)  # in-sample default
    assert np.isfinite(table.task_loss).all() and (table.task_loss > 0).all()
    covered = {(i, j) for s in members for i in s for j in s if i < j}
    assert len(covered) == 45  # every pair of the 10 tasks shares a subset
    assert np.load(tiny_run / "surrogate_v.npy").shape == (len(members), d)


def test_console_script_run_is_reproducible(tiny_run, tmp_path):
    """The installed `policygradex` command, same seed into another directory: identical affinity and groups."""
    out = tmp_path / "again"
    proc = subprocess.run([_console_script(), *tiny_run_args(out)], capture_output=True, text=True, timeout=400,
                          cwd=tmp_path, env={**os.environ, "COLUMNS": "240"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    np.testing.assert_array_equal(np.load(out / "affinity.npy"), np.load(tiny_run / "affinity.npy"))
    assert _groups(out)["groups"] == _groups(tiny_run)["groups"]
    a = torch.load(out / "theta_star.pt", weights_only=False)["state_dict"]
    b = torch.load(tiny_run / "theta_star.pt", weights_only=False)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in b)
    groups = _groups(out)["groups"]
    expected = [f"cartpole: {len(groups)} groups -> {out}/groups.json"]
    expected += [f"  group {gi + 1}: {', '.join(g)}" for gi, g in enumerate(groups)]
    assert proc.stdout.splitlines() == expected  # the result alone on stdout; progress and logs on stderr
    assert "stage meta_train" in proc.stderr


def test_console_script_user_error_is_one_line(tmp_path):
    """The installed command reports a bad family as one error line and exit status 2."""
    proc = subprocess.run([_console_script(), "run", "no-such-family", "--out", str(tmp_path / "x")],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert_one_line_error(proc.returncode, proc.stderr, "unknown family 'no-such-family'")
    assert not (tmp_path / "x").exists()


# ----------------------------------------------------------------------------------------------- resume
def test_resume_recomputes_only_missing_stages(tiny_run, tmp_path, cli):
    """Rerunning into a run directory keeps theta_star and features, and recreates a deleted affinity exactly."""
    run_dir = _copy(tiny_run, tmp_path)
    kept = [run_dir / "theta_star.pt", run_dir / "features" / "task_000.npz", run_dir / "subsets.npz"]
    mtimes = [p.stat().st_mtime_ns for p in kept]
    (run_dir / "affinity.npy").unlink()
    rc, _, err = cli(*tiny_run_args(run_dir))
    assert rc == 0, err
    assert [p.stat().st_mtime_ns for p in kept] == mtimes  # not retrained, not recomputed
    assert (run_dir / "affinity.npy").is_file()
    np.testing.assert_array_equal(np.load(run_dir / "affinity.npy"), np.load(tiny_run / "affinity.npy"))
    assert _groups(run_dir)["groups"] == _groups(tiny_run)["groups"]


def test_resume_with_different_options_is_refused(tiny_run, tmp_path, cli):
    """A run directory is pinned to its configuration: options other than clustering ones are an error, and
    nothing is touched."""
    run_dir = _copy(tiny_run, tmp_path)
    before = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*")}
    rc, _, err = cli(*tiny_run_args(run_dir), "--transitions", "64")
    assert_one_line_error(rc, err, "different configuration", "features.transitions_per_task")
    assert {p: p.stat().st_mtime_ns for p in run_dir.rglob("*")} == before


def test_out_dir_that_is_not_a_run_is_refused(tmp_path, cli):
    """--out pointing at a non-empty directory without config.json is refused (user files are not mixed in)."""
    (tmp_path / "mine.txt").write_text("keep me")
    rc, _, err = cli(*tiny_run_args(tmp_path))
    assert_one_line_error(rc, err, "not a policygradex run directory")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]


# ----------------------------------------------------------------------------------------------- other commands
def test_families_lists_builtins(cli, monkeypatch):
    """`policygradex families` lists the built-in families and the MO-Gymnasium adapter, also without the extras
    that some of them need (nothing is imported until an environment is made)."""
    import builtins

    real_import = builtins.__import__

    def no_extras(name, *args, **kwargs):
        if name.split(".")[0] in ("highway_env", "metaworld", "mo_gymnasium", "mujoco"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_extras)
    rc, out, _ = cli("families")
    assert rc == 0
    for name in ("cartpole", "lunarlander", "pendulum", "planted", "highway", "mt10", "mo:ENV_ID"):
        assert name in out


def test_show_prints_groups(tiny_run, cli):
    """`policygradex show DIR` prints k and one line per group, as in groups.json."""
    rc, out, err = cli("show", tiny_run)
    assert rc == 0, err
    groups = _groups(tiny_run)
    assert f"k = {groups['k']}" in out
    for gi, g in enumerate(groups["groups"]):
        assert f"group {gi + 1}: {', '.join(g)}" in out
    for name in CARTPOLE_NAMES:
        assert name in out
    assert "How sure:" in out and "stays together in" in out
    assert max(len(line) for line in out.splitlines()) <= 80  # fits a terminal: wrapped, never truncated
    from policygradex.pipeline.clustering import standardize

    U = standardize(np.load(tiny_run / "affinity.npy"))
    assert all(f"{x:.2f}" in out for x in U.ravel())  # every entry is printed
    assert "…" not in out and "..." not in out


def test_adapt_writes_theta_star_plus_P_v(tiny_run, tmp_path, cli):
    """`adapt DIR --subset j` writes theta_star + P v_j for the actor and leaves the critic unchanged."""
    target = tmp_path / "adapted.pt"
    rc, _, err = cli("adapt", tiny_run, "--subset", "3", "--output", target)
    assert rc == 0, err
    _check_adapted(tiny_run, 3, target)


def test_adapt_rejects_subset_out_of_range(tiny_run, tmp_path, cli):
    """An out-of-range --subset is a one-line error and writes nothing."""
    m = len(np.load(tiny_run / "surrogate_v.npy"))
    rc, _, err = cli("adapt", tiny_run, "--subset", str(m), "--output", tmp_path / "x.pt")
    assert_one_line_error(rc, err, "out of range")
    assert not (tmp_path / "x.pt").exists()


def test_user_family_end_to_end(tmp_path, cli):
    """A user family given as package.module:function runs through every stage and can be shown."""
    out = tmp_path / "plugin"
    rc, _, err = cli(*tiny_run_args(out, "tests.plugin_families:good_family"))
    assert rc == 0, err
    for rel in ARTIFACTS:
        assert (out / rel).is_file(), rel
    names = ["pole0.25", "pole0.5", "pole1.0"]
    _assert_partition(_groups(out), names)
    assert np.load(out / "affinity.npy").shape == (3, 3)
    rc, shown, err = cli("show", out)
    assert rc == 0, err
    assert all(n in shown for n in names)


def test_continuous_family_end_to_end(tmp_path, cli):
    """A Gaussian-policy family (pendulum) runs through every stage, and adapt handles the log-std parameter."""
    out = tmp_path / "pendulum"
    rc, _, err = cli(*tiny_run_args(out, "pendulum"))
    assert rc == 0, err
    _assert_partition(_groups(out), load_family("pendulum").task_names)
    assert np.isfinite(np.load(out / "affinity.npy")).all()
    _, model = _load_model(out)
    assert model.policy_parameter_names()[0] == "actor_logstd"
    target = tmp_path / "adapted.pt"
    rc, _, err = cli("adapt", out, "--subset", "0", "--output", target)
    assert rc == 0, err
    _check_adapted(out, 0, target)


# ----------------------------------------------------------------------------------------------- user errors
@pytest.mark.parametrize(
    "argv, fragments",
    [
        (["run", "no-such-family"], ["unknown family 'no-such-family'"]),
        (["run", "cartpole", "--k", "0"], ["--k"]),
        (["run", "cartpole", "--k", "11"], ["--k 11", "10"]),
        (["run", "nosuchmod.x:f"], ["cannot import module 'nosuchmod.x'"]),
        (["run", "tests.plugin_families:no_such_function"], ["no callable 'no_such_function'"]),
        (["run", "tests.plugin_families:bad_family"], ["'acrobot'", "'cartpole'"]),
        (["run", "cartpole", "--preset", "huge"], ["huge"]),
        (["run", "cartpole", "--k", "two"], ["two"]),
        (["show"], []),
        (["frobnicate"], ["frobnicate"]),
        (["run", "tests.plugin_raises_on_import:f"], ["RuntimeError", "broken at import time"]),
        (["run", "tests.plugin_families:make_env_raises"], ["'broken'", "ValueError", "no such simulator"]),
        (["run", "planted(n=3,groups=5)"], ["groups=5"]),
        (["run", "planted(n=abc)"], ["planted(n=abc)", "a number"]),
        (["run", "planted(colour=3)"], ["colour"]),
        (["run", "cartpole", "--threads", "0"], ["--threads"]),
        (["run", "cartpole", "--surrogate", "closed_form", "--affinity", "per_target"], ["per_target", "--surrogate"]),
        (["run", "cartpole", "--curvature-rows", "0"], ["--curvature-rows"]),
        (["run", "cartpole", "--tasks-per-iteration", "-1"], ["--tasks-per-iteration"]),
        (["run", "planted(n=20,groups=2)", "--bootstrap-method", "exact"], ["--bootstrap-method", "12"]),
        (["run", "planted(n=6,groups=2,orthogonal=2)"], ["orthogonal"]),
        (["run", "cartpole", "--network", "softmod", "--projection", "factorised"], ["nn.Linear", "--projection dense"]),
        (["run", "cartpole", "--task-block", "0"], ["--task-block"]),
    ],
    ids=["unknown-family", "k-0", "k-too-big", "no-module", "no-function", "mismatched-spaces", "bad-preset",
         "k-not-int", "show-no-dir", "bad-command", "plugin-import-raises", "make-env-raises", "planted-bad-groups",
         "planted-not-a-number", "planted-unknown-parameter", "zero-threads", "closed-form-per-target",
         "zero-curvature-rows", "negative-tasks-per-iteration", "exact-bootstrap-too-big",
         "planted-bad-orthogonal", "factorised-softmod", "zero-task-block"],
)
def test_bad_input_is_one_error_line(argv, fragments, tmp_path, cli):
    """Bad input exits 2 with exactly one `policygradex: error:` line, and creates no run directory."""
    out = tmp_path / "out"
    rc, _, err = cli(*argv, *(["--out", out] if argv[:1] == ["run"] else []))
    assert_one_line_error(rc, err, *fragments)
    assert not out.exists()


def test_mismatched_wide_spaces_error_is_one_line(tmp_path, cli):
    """Mismatched spaces whose Box has many dimensions still give a single error line."""
    rc, _, err = cli(*tiny_run_args(tmp_path / "out", "tests.plugin_families:bad_family_wide"))
    assert_one_line_error(rc, err, "'lander'", "'cartpole'")


def test_show_on_missing_dir(tmp_path, cli):
    """`show` on a directory that does not exist is a one-line error."""
    rc, _, err = cli("show", tmp_path / "nope")
    assert_one_line_error(rc, err, "nope")


def test_corrupt_config_is_reported(tiny_run, tmp_path, cli):
    """Garbage in config.json: `show` and `run` both fail with one line naming the file."""
    run_dir = _copy(tiny_run, tmp_path)
    (run_dir / "config.json").write_text("{ this is not json")
    rc, _, err = cli("show", run_dir)
    assert_one_line_error(rc, err, "config.json")
    rc, _, err = cli(*tiny_run_args(run_dir))
    assert_one_line_error(rc, err, "config.json")


def test_corrupt_groups_is_reported(tiny_run, tmp_path, cli):
    """Garbage in groups.json: `show` fails with one line naming the file."""
    run_dir = _copy(tiny_run, tmp_path)
    (run_dir / "groups.json").write_bytes(b"\x00\x01garbage")
    rc, _, err = cli("show", run_dir)
    assert_one_line_error(rc, err, "groups.json")


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_theta_star_is_reported_on_resume(tiny_run, tmp_path, cli, damage):
    """A damaged theta_star.pt is reported (not silently retrained over) when a resumed run needs it."""
    run_dir = _copy(tiny_run, tmp_path)
    path = run_dir / "theta_star.pt"
    data = path.read_bytes()
    path.write_bytes(b"not a torch file" * 10 if damage == "garbage" else data[: len(data) // 2])
    (run_dir / "affinity.npy").unlink()
    rc, _, err = cli(*tiny_run_args(run_dir))
    assert_one_line_error(rc, err, "theta_star.pt")


def test_a_damaged_file_is_named_in_one_short_line(tmp_path):
    """torch explains a damaged zip checkpoint in a paragraph; the error keeps one line of it, cut short."""
    import torch

    from policygradex.common.artifacts import load_torch
    from policygradex.common.errors import PolicyGradExError

    path = tmp_path / "theta_star.pt"
    torch.save({"w": torch.zeros(3)}, path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(PolicyGradExError) as info:
        load_torch(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and "delete it" in message
    assert len(message) <= len(str(path)) + 160 + 100, message


def test_subset_runs_bootstrap_the_transitions_too(tiny_run, cli):
    """A run that fits subsets also resamples each task's transitions (through the closed form): groups.json has a
    Jaccard per group for both bootstraps, the word reads the lower, and `show` prints both."""
    from policygradex.pipeline.group_record import Groups

    blob = json.loads((tiny_run / "groups.json").read_text())
    groups = Groups.load(tiny_run / "groups.json", sum(len(g) for g in blob["group_indices"]))
    conf = groups.confidence
    assert conf is not None and conf.resampled == "subsets"
    assert conf.transition_reps == conf.reps > 0 and len(conf.transition_jaccard) == groups.k
    assert all(0.0 < j <= 1.0 for j in conf.transition_jaccard)
    assert [conf.jaccard(g) for g in range(groups.k)] == [min(a, b) for a, b in zip(conf.group_jaccard,
                                                                                   conf.transition_jaccard)]
    rc, out, _ = cli("show", tiny_run)
    assert rc == 0 and " ".join(out.split()).count("of the transitions):") == groups.k


def test_show_names_tasks_too_weak_to_place(tiny_run, tmp_path, cli):
    """A task whose own gradient signal is below the threshold is named by `show`, with its signal."""
    run_dir = _copy(tiny_run, tmp_path)
    path = run_dir / "groups.json"
    blob = json.loads(path.read_text())
    n = sum(len(g) for g in blob["group_indices"])
    blob["confidence"]["task_signal"] = [0.9] * n
    blob["confidence"]["task_signal"][2] = 0.12
    path.write_text(json.dumps(blob))
    rc, out, _ = cli("show", run_dir)
    assert rc == 0
    names = [name for g in blob["groups"] for name in g]
    index_name = {i: name for g, gi in zip(blob["groups"], blob["group_indices"]) for name, i in zip(g, gi)}
    weak_line = next(line for line in out.splitlines() if line.startswith("Too weak to place"))
    assert f"{index_name[2]} (0.12)" in weak_line
    assert all(f"{name} (" not in weak_line for name in names if name != index_name[2])


def test_unfinished_run_is_reported_by_show(tiny_run, tmp_path, cli):
    """`show` on a run whose groups.json is missing says the run is unfinished."""
    run_dir = _copy(tiny_run, tmp_path)
    (run_dir / "groups.json").unlink()
    rc, _, err = cli("show", run_dir)
    assert_one_line_error(rc, err, "unfinished")


# ----------------------------------------------------------------------------------------------- known src bugs
@pytest.mark.parametrize("edit", ["fields", "partition"])
def test_malformed_groups_json_is_reported(tiny_run, tmp_path, cli, edit):
    """A groups.json that is valid JSON but lacks fields, or whose groups leave a task out, is a one-line error
    naming the file, from `show` and from the analyses that read it (`compare`)."""
    run_dir = _copy(tiny_run, tmp_path)
    path = run_dir / "groups.json"
    if edit == "fields":
        path.write_text(json.dumps({"groups": [["len=0.20"]]}))
    else:
        blob = json.loads(path.read_text())
        blob["groups"][0], blob["group_indices"][0] = blob["groups"][0][1:], blob["group_indices"][0][1:]
        path.write_text(json.dumps(blob))
    for command in (("show", run_dir), ("compare", run_dir, "--seeds", "1", "--steps-per-task", "64")):
        rc, _, err = cli(*command)
        assert_one_line_error(rc, err, "groups.json")


def test_negative_learning_rate_is_a_user_error(tmp_path, cli):
    """A negative --lr is a one-line user error."""
    rc, _, err = cli(*tiny_run_args(tmp_path / "out", "tests.plugin_families:good_family"), "--lr", "-1")
    assert_one_line_error(rc, err, "--lr")


@pytest.mark.parametrize("bad", [["--lam", "-1"], ["--lam", "nan"], ["--lam", "inf"], ["--seed", "-1"]],
                         ids=["negative-lam", "nan-lam", "inf-lam", "negative-seed"])
def test_invalid_cluster_options_fail_before_training(tmp_path, cli, bad):
    """Clustering options that can never work are rejected before any training is spent."""
    out = tmp_path / "out"
    rc, _, err = cli(*tiny_run_args(out, "tests.plugin_families:good_family"), *bad)
    assert not (out / "theta_star.pt").exists()
    assert_one_line_error(rc, err)


def test_progress_is_printed_line_by_line_when_stderr_is_not_a_terminal(tmp_path, cli):
    """Captured stderr is not a terminal: live bars would show nothing until the end, so each stage prints plain
    progress lines (tiny: 4 PPO iterations, 10 feature files), and stdout holds only the groups."""
    rc, out, err = cli(*tiny_run_args(tmp_path / "out", "cartpole", "--k", "2"))
    assert rc == 0, err
    assert "meta-train PPO: 4/4" in err and "gradient features: 10/10" in err
    assert "meta-train PPO: 1/4" in err  # lines come while the stage runs, not only at its end
    assert "fitting" in err and "done in" in err
    assert out.startswith("cartpole: 2 groups") and "meta-train" not in out


def test_recluster_reuses_every_earlier_stage(tiny_run, tmp_path, cli):
    """Changing only clustering options on a finished run recomputes only what depends on them: --k reclusters
    (affinity loaded), --interaction recomputes the affinity too; training, features and fits are loaded."""
    run_dir = _copy(tiny_run, tmp_path)
    args = tiny_run_args(run_dir)
    before = {p.name: p.stat().st_mtime_ns for p in [run_dir / "theta_star.pt", run_dir / "subsets.npz"]}
    rc, out, err = cli(*args, "--k", "3")
    assert rc == 0, err
    assert "stage meta_train: loaded" in err and "stage surrogate: loaded" in err
    assert "stage affinity: loaded" in err and "stage cluster: computed" in err
    assert _groups(run_dir)["k"] == 3 and out.startswith("cartpole: 3 groups")
    rc, _, err = cli(*args, "--k", "2", "--interaction", "matrix")
    assert rc == 0, err
    assert "stage affinity: computed" in err and "stage cluster: computed" in err and "stage features: loaded" in err
    assert _groups(run_dir)["k"] == 2
    assert {p: (run_dir / p).stat().st_mtime_ns for p in before} == before
    rc, _, err = cli(*args, "--k", "2", "--interaction", "matrix")  # same options again: nothing recomputed
    assert rc == 0 and "computed" not in err
    rc, _, err = cli(*args, "--k", "2", "--l2", "0.5")  # a surrogate option is not a clustering option
    assert_one_line_error(rc, err, "different configuration", "l2")


def test_interaction_matrix_describes_the_u_it_clusters(tiny_run, tmp_path, cli, monkeypatch):
    """Under --interaction matrix the split-half reliability is that of eq. 5 on f^ itself (the U clustered), not
    of the interaction residuals; and the heatmap's first panel does not claim the per-task part was removed."""
    from policygradex.common.artifacts import load_json
    from policygradex.pipeline import report
    from policygradex.pipeline.affinity import split_half_reliability
    from policygradex.pipeline.subset_table import SubsetTable

    titles: list[str] = []
    real = report.plot_heatmaps
    monkeypatch.setattr(report, "plot_heatmaps", lambda panels, *a, **k: (titles.extend(p[1] for p in panels),
                                                                           real(panels, *a, **k)))
    run_dir = _copy(tiny_run, tmp_path)
    rc, _, err = cli(*tiny_run_args(run_dir), "--interaction", "matrix")
    assert rc == 0, err
    table = SubsetTable.load(run_dir / "subsets.npz")
    point = SubsetTable.load(run_dir / "points" / "0.5" / "subsets.npz")  # the default's expansion point
    n = len(json.loads((run_dir / "config.json").read_text())["family"]["tasks"])
    subsets, f_hats, loss = table.subsets, [table.f_hat, point.f_hat], table.task_loss_matrix(n)
    want = split_half_reliability(subsets, f_hats, n, "subset", loss, seed=0, interaction=False)
    residuals = split_half_reliability(subsets, f_hats, n, "subset", loss, seed=0, interaction=True)
    got = load_json(run_dir / "affinity_stats.json")["split_half"]
    assert got["interaction"] == "matrix" and got["reliability"] == pytest.approx(want["reliability"])
    assert abs(want["reliability"] - residuals["reliability"]) > 1e-3  # the two really differ on this run
    assert titles and "per-task part of f^ removed" not in titles[0]


def test_unwritable_out_is_one_line(tmp_path, cli):
    """--out under a regular file cannot be created: one error line, exit 2, no traceback."""
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a directory")
    rc, _, err = cli(*tiny_run_args(blocker / "run"))
    assert_one_line_error(rc, err)
    assert blocker.read_text() == "not a directory"


def test_adapt_output_to_a_directory_is_one_line(tiny_run, tmp_path, cli):
    rc, _, err = cli("adapt", tiny_run, "--subset", "0", "--output", tmp_path)
    assert_one_line_error(rc, err, "--output", "directory")


def test_artifacts_honour_the_umask(tmp_path):
    """Artifacts get 0666 less the umask, as any file the user's tools write (mkstemp alone gives 0600)."""
    import os

    from policygradex.common.artifacts import atomic_write_json

    old = os.umask(0o027)
    try:
        atomic_write_json(tmp_path / "a.json", {"x": 1})
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o640
    os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "b.json", {"x": 1})
    finally:
        os.umask(old)
    assert (tmp_path / "b.json").stat().st_mode & 0o777 == 0o644


def test_second_run_into_a_busy_directory_is_refused(tiny_run, tmp_path, cli):
    """While one run holds the directory's lock, a second run into it fails at once with one line."""
    from policygradex.pipeline.rundir import RunDir, run_lock

    run_dir = _copy(tiny_run, tmp_path)
    with run_lock(RunDir(run_dir)):
        rc, _, err = cli(*tiny_run_args(run_dir))
    assert_one_line_error(rc, err, "in use by another policygradex run", "pid")
    rc, _, err = cli(*tiny_run_args(run_dir))  # released: the same command now resumes
    assert rc == 0, err


def test_help_shows_defaults_and_preset_budgets(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--help"])
    assert exit_info.value.code == 0
    flat = " ".join(capsys.readouterr().out.split())
    for fragment in ("(default: 16,384)", "(default: 400)", "(default: 0.001)", "demo: 100,000 steps/task",
                     "paper: 1,000,000 steps/task, N = 2,048", "(default: 1:", "(default: auto)"):
        assert fragment in flat, fragment


def test_planted_family_is_recovered_at_a_tiny_budget(tmp_path, cli):
    """The built-in planted family (3 groups of rotated CartPole) is listed, and a tiny-budget run recovers its
    groups exactly; the report and groups.json score the groups against the planted ones."""
    rc, out, _ = cli("families")
    assert rc == 0 and "planted" in out
    run_dir = tmp_path / "planted"
    rc, out, err = cli("run", "planted", "--preset", "tiny", "--transitions", "2048", "--k", "3", "--out", run_dir)
    assert rc == 0, err
    groups = _groups(run_dir)
    assert groups["group_indices"] == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]] and groups["nmi_planted"] == 1.0
    assert "NMI with the family's planted groups: 1.00" in (run_dir / "report.md").read_text()


def test_sigterm_ends_a_forked_subprocess_quietly(monkeypatch: pytest.MonkeyPatch) -> None:
    """A process forked from the command (a vector env's subprocess) inherits its SIGTERM handler. When a scheduler
    or `pkill -f` signals every process of the command, such a process must end as SIGTERM's default does, not raise
    the command's Terminated and print a traceback (exit code 1); the command itself still raises Terminated."""
    import multiprocessing as mp
    import os
    import signal
    import time

    from policygradex.cli import main as cli_main

    if "fork" not in mp.get_all_start_methods():
        pytest.skip("needs the fork start method")
    monkeypatch.setattr(cli_main, "_MAIN_PID", os.getpid())
    previous = signal.signal(signal.SIGTERM, cli_main._terminate)
    try:
        child = mp.get_context("fork").Process(target=time.sleep, args=(60,))
        child.start()
        time.sleep(0.5)
        os.kill(child.pid, signal.SIGTERM)
        child.join(timeout=20)
        assert child.exitcode == -signal.SIGTERM
        with pytest.raises(cli_main.Terminated):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_closed_form_end_to_end(tmp_path, cli):
    """--surrogate closed_form (the default above 40 tasks): no subsets, per-task statistics written by the feature
    stage (--store statistics, auto with the closed form: no per-transition features), confidence from blocks of
    transitions. A 24-task planted family at a tiny budget recovers its four groups; show and the report say what
    was resampled; a rerun loads every stage; commands that need subsets say why they cannot run; --store
    features gives the same groups and an affinity equal to float rounding; --store statistics where it cannot
    serve is refused in one line."""
    run_dir = tmp_path / "planted24"
    argv = ["run", "planted(n=24,groups=4)", "--preset", "tiny", "--transitions", "1024", "--k", "4",
            "--surrogate", "closed_form", "--out", run_dir]
    rc, out, err = cli(*argv)
    assert rc == 0, err
    assert not (run_dir / "subsets.npz").exists() and (run_dir / "statistics.npz").exists()
    assert sorted(f.name for f in (run_dir / "features").glob("*.npz")) == ["statistics_0000.npz"]
    assert json.loads((run_dir / "features" / "meta.json").read_text())["store"] == "statistics"
    record = json.loads((run_dir / "surrogate.json").read_text())
    assert record["method"] == "closed_form" and record["blocks"] == 32 and record["curvature"] == "shared"
    groups = _groups(run_dir)
    assert groups["nmi_planted"] == 1.0
    conf = groups["confidence"]
    assert conf["resampled"] == "transitions" and conf["reps"] == 50 and len(conf["group_jaccard"]) == 4
    report = (run_dir / "report.md").read_text()
    assert "Closed-form surrogate (no subsets)" in report and "reliability of the affinity over transitions" in report
    rc, out, err = cli("show", run_dir)
    assert rc == 0 and "resamples of the transitions" in out
    rc, _, err = cli(*argv)
    assert rc == 0 and err.count("loaded from disk") == 8, err  # 5 stages, 3 of them at the point 0.5 too
    rc, _, err = cli("adapt", run_dir, "--subset", "0", "--output", tmp_path / "a.pt")
    assert_one_line_error(rc, err, "closed-form surrogate", "--surrogate exact or newton")
    features_dir = tmp_path / "features24"
    rc, _, err = cli(*argv[:-1], features_dir, "--store", "features")
    assert rc == 0, err
    assert len(list((features_dir / "features").glob("task_*.npz"))) == 24
    assert _groups(features_dir)["group_indices"] == groups["group_indices"]
    np.testing.assert_allclose(np.load(features_dir / "affinity.npy"), np.load(run_dir / "affinity.npy"), atol=1e-4)
    rc, _, err = cli("run", "planted(n=24,groups=4)", "--preset", "tiny", "--store", "statistics",
                     "--surrogate", "exact", "--out", tmp_path / "refused")
    assert_one_line_error(rc, err, "--store statistics needs the closed-form surrogate")
    assert not (tmp_path / "refused").exists()


def test_many_tasks_end_to_end_summarise_instead_of_printing_the_matrix(tmp_path, cli):
    """36 tasks (above MATRIX_MAX_N), meta-trained in batches of 8 tasks: show and report.md summarise U (per-group
    affinity, strongest pairs) instead of printing 36 x 36 numbers; the heatmap keeps a bounded size; the
    meta-training curve holds every task's column; the bootstrap reclusters with the fast method."""
    import matplotlib.image

    run_dir = tmp_path / "planted36"
    rc, out, err = cli("run", "planted(n=36,groups=4,orthogonal=1)", "--preset", "tiny", "--transitions", "1024",
                       "--k", "4", "--tasks-per-iteration", "8", "--out", run_dir)
    assert rc == 0, err
    groups = _groups(run_dir)
    assert groups["nmi_planted"] > 0.8 and groups["cluster_config"]["bootstrap_method"] == "auto"
    rc, out, err = cli("show", run_dir)
    assert rc == 0, err
    assert "strongest pairs" in out and "group 4:" in out and "hold the whole matrix" in out
    assert "T36" not in out  # the 36 x 36 text matrix is not printed
    report = (run_dir / "report.md").read_text()
    assert "strongest pairs that the groups split" in report and "| **g0" not in report
    height, width = matplotlib.image.imread(run_dir / "affinity.png").shape[:2]
    assert height < 1000 and width < 1800, (height, width)
    header = (run_dir / "meta_train_curve.csv").read_text().splitlines()[0]
    assert header.count("return/") == 36


@pytest.mark.parametrize("surrogate", ["exact", "closed_form"])
def test_factorised_projection_end_to_end(tmp_path, cli, surrogate):
    """--projection factorised through every stage and both kinds of surrogate: the features have the factorised
    projection's d (31 of the asked 32 for tiny's 16-16-16 MLP), and adapt lifts a subset's v with it."""
    run_dir = tmp_path / surrogate
    rc, out, err = cli(*tiny_run_args(run_dir, "planted(n=8,groups=2)", "--k", "2", "--projection", "factorised",
                                      "--surrogate", surrogate))
    assert rc == 0, err
    meta = json.loads((run_dir / "features" / "meta.json").read_text())
    if surrogate == "exact":
        assert meta["d"] == 31 and np.load(run_dir / "features" / "task_000.npz")["features"].shape[1] == 31
    else:  # --store statistics: the block sums of the factorised features
        assert meta["d"] == 31 and np.load(run_dir / "features" / "statistics_0000.npz")["b"].shape == (8, 31)
    if surrogate == "exact":
        rc, out, err = cli("adapt", run_dir, "--subset", "0", "--output", tmp_path / "a.pt")
        assert rc == 0, err


def test_newton_surrogate_end_to_end_matches_the_exact_groups(tiny_run, tmp_path, cli):
    """--surrogate newton on the tiny cartpole run's own features: the same subsets, f^ from one Newton step per
    subset, recorded as such; its f^ ranks the subsets as the exact fits do."""
    from scipy.stats import spearmanr

    out = tmp_path / "newton"
    shutil.copytree(tiny_run, out)
    for name in ("subsets.npz", "surrogate.json", "surrogate_v.npy"):
        (out / name).unlink()
    record = json.loads((out / "config.json").read_text())
    record["config"]["surrogate"]["method"] = "newton"
    (out / "config.json").write_text(json.dumps(record))
    rc, _, err = cli(*tiny_run_args(out, "cartpole", "--surrogate", "newton"))
    assert rc == 0, err
    exact, newton = SubsetTable.load(tiny_run / "subsets.npz"), SubsetTable.load(out / "subsets.npz")
    assert json.loads((out / "surrogate.json").read_text())["method"] == "newton"
    assert np.array_equal(newton.tasks, exact.tasks)
    rho = spearmanr(exact.f_hat, newton.f_hat)[0]
    assert rho > 0.99
