"""Multi-objective families: weights spread over the simplex, weights from a CSV into config.json, and (with the
mo extra) the scalarised tasks themselves."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from policygradex.envs.mo import simplex_lattice, spread_weights
from policygradex.envs.registry import parse_call

from ..helpers import assert_one_line_error, tiny_run_args


@pytest.mark.parametrize("r,h", [(2, 4), (3, 3), (4, 2)])
def test_the_simplex_lattice_is_every_composition(r: int, h: int) -> None:
    lattice = simplex_lattice(r, h)
    assert len(lattice) == math.comb(h + r - 1, r - 1) == len({tuple(p) for p in lattice})
    np.testing.assert_allclose(lattice.sum(axis=1), 1.0)
    assert ((lattice * h).round() == lattice * h).all() and (lattice >= 0).all()


def test_spread_weights_start_with_the_single_objectives_and_stay_apart() -> None:
    W = spread_weights(3, 3)
    assert sorted(map(tuple, W)) == [(0, 0, 1), (0, 1, 0), (1, 0, 0)]
    W = spread_weights(4, 10)
    np.testing.assert_allclose(W.sum(axis=1), 1.0)
    gaps = [np.linalg.norm(a - b) for i, a in enumerate(W) for b in W[i + 1:]]
    assert min(gaps) > 0.3  # no two tasks near each other
    assert np.array_equal(W, spread_weights(4, 10))  # deterministic


def test_family_calls_take_lists_and_refuse_what_is_not_a_literal() -> None:
    assert parse_call("mo-lunar-lander-v3(weights=[[1,0],[0.5,0.5]])") == (
        "mo-lunar-lander-v3", {"weights": [[1, 0], [0.5, 0.5]]})
    assert parse_call("planted(n=12,conflict=0.5)") == ("planted", {"n": 12, "conflict": 0.5})
    for bad in ("planted(n=nan)", "planted(n=__import__('os'))", "planted(12)", "planted(n=[1,'a'])"):
        with pytest.raises(Exception, match="expected name"):
            parse_call(bad)


def test_weights_csv_goes_into_the_family_name(tmp_path: Path, cli) -> None:
    """--weights is read into the family spec before anything runs; bad files are one line."""
    from policygradex.cli.options import family_with_weights

    csv = tmp_path / "w.csv"
    csv.write_text("# one weight vector per row\n1,0,0,0\n0.5,0.5,0,0\n")
    assert family_with_weights("mo:mo-lunar-lander-v3", csv) == \
        "mo:mo-lunar-lander-v3(weights=[[1.0,0.0,0.0,0.0],[0.5,0.5,0.0,0.0]])"
    bad = tmp_path / "bad.csv"
    bad.write_text("1,a\n")
    rc, _, err = cli(*tiny_run_args(tmp_path / "r1", "mo:mo-lunar-lander-v3"), "--weights", bad)
    assert_one_line_error(rc, err, "--weights")
    rc, _, err = cli(*tiny_run_args(tmp_path / "r2", "cartpole"), "--weights", csv)
    assert_one_line_error(rc, err, "mo:ENV_ID")


def test_weights_csv_with_a_header_row(tmp_path: Path, capsys) -> None:
    """A header row is read as column names: numeric columns become the weights, a name column is skipped, and
    stderr says which columns were read. A header whose data rows are not all numbers is still refused."""
    from policygradex.cli.options import family_with_weights
    from policygradex.common.errors import PolicyGradExError

    csv = tmp_path / "w.csv"
    csv.write_text("name,landing,shaping,main_fuel,side_fuel\nland,0.5,0.5,0,0\nsave,0.1,0.3,0.6,0\n")
    assert family_with_weights("mo:mo-lunar-lander-v3", csv) == \
        "mo:mo-lunar-lander-v3(weights=[[0.5,0.5,0.0,0.0],[0.1,0.3,0.6,0.0]])"
    err = capsys.readouterr().err
    assert "landing, shaping, main_fuel, side_fuel" in err and "skipped: name" in err
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("a,b\n1,2\n3\n")
    with pytest.raises(PolicyGradExError, match="--weights"):
        family_with_weights("mo:mo-lunar-lander-v3", ragged)


def test_an_mo_family_without_the_extra_is_one_line(tmp_path: Path, cli, monkeypatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_mo(name, *args, **kwargs):
        if name.startswith("mo_gymnasium"):
            raise ImportError("No module named 'mo_gymnasium'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_mo)
    for name in [m for m in sys.modules if m.split(".")[0] == "mo_gymnasium"]:  # imported by an earlier test
        monkeypatch.delitem(sys.modules, name)
    rc, _, err = cli(*tiny_run_args(tmp_path / "run", "mo:mo-lunar-lander-v3(weights=3)"))
    assert_one_line_error(rc, err, "MO-Gymnasium", "pip install --no-deps")


def test_mo_lunar_lander_tasks_are_its_weights(tmp_path: Path, cli) -> None:
    pytest.importorskip("mo_gymnasium")
    from policygradex.envs.registry import load_family

    family = load_family("mo:mo-lunar-lander-v3(weights=[[1,0,0,0],[0,1,1,0]])")
    assert family.n == 2 and [t.params["w1"] for t in family.tasks] == [0.0, 0.5]  # rows normalised
    env = family.tasks[1].make_env()
    env.reset(seed=0)
    _, reward, _, _, info = env.step(0)
    assert reward == pytest.approx(float(np.dot(info["vector_reward"], [0, 0.5, 0.5, 0])))
    env.close()
    rc, _, err = cli(*tiny_run_args(tmp_path / "bad", "mo:mo-lunar-lander-v3(weights=[[1,0,0]])"))
    assert_one_line_error(rc, err, "4 objectives", "3 columns")
    out = tmp_path / "run"
    rc, _, err = cli(*tiny_run_args(out, "mo:mo-lunar-lander-v3(weights=3)"), "--k", "1")
    assert rc == 0, err
    record = json.loads((out / "config.json").read_text())
    assert record["config"]["family"] == "mo:mo-lunar-lander-v3(weights=3)" and len(record["family"]["tasks"]) == 3
    # compare reports each weight's vector return (one entry per objective) beside the scalarised one
    rc, stdout, err = cli("compare", out, "--seeds", "1", "--steps-per-task", "64", "--eval-episodes", "1",
                          "--backend", "sequential")
    assert rc == 0, err
    result = json.loads((out / "compare" / "compare.json").read_text())
    assert result["vector_metrics"] == ["vector_return"]
    for row in result["methods"].values():
        assert len(row["per_task_vector_return"]) == 3 and all(len(v) == 4 for v in row["per_task_vector_return"])
    assert "| grouping | mean return |" in stdout and "Mean vector_return per task" in stdout


def test_unseen_weights_are_on_the_simplex() -> None:
    pytest.importorskip("mo_gymnasium")
    from policygradex.envs.base import unseen_tasks
    from policygradex.envs.registry import load_family

    unseen = unseen_tasks(load_family("mo:mo-lunar-lander-v3(weights=3)"), 30, seed=0)
    W = np.array([[t.params[f"w{k}"] for k in range(4)] for t in unseen.tasks])
    assert (W >= 0).all() and np.allclose(W.sum(axis=1), 1.0, atol=1e-3)
    assert W.std(axis=0).min() > 0.1  # spread over the simplex, every objective varies
