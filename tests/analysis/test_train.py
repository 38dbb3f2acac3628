"""From groups to policies: `policygradex train`, `load_policy(...).predict`, `policygradex evaluate`, the Python API."""

from __future__ import annotations

import json
import re
import runpy
import shutil
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from policygradex.common.errors import PolicyGradExError
from policygradex.envs.registry import load_family
from policygradex.nets.base import make_network
from policygradex.nets.config import NetworkConfig
from policygradex.rl.saved_policy import load_policy, save_policy

from ..helpers import assert_one_line_error, tiny_run_args

ROOT = Path(__file__).resolve().parents[2]
STEPS = "1024"  # steps per task: 8 rollouts of the tiny preset's 2 envs x 64 steps


def train_args(run: Path, out: Path, *extra: str) -> list[str]:
    return ["train", str(run), "--out", str(out), "--steps-per-task", STEPS, "--eval-episodes", "3",
            "--backend", "sequential", *extra]


def manual_actor(state_dict: dict[str, torch.Tensor], x: np.ndarray) -> np.ndarray:
    """The MLP actor's outputs computed by hand from the saved weights: Linear, tanh, ..., Linear."""
    layers = sorted({int(k.split(".")[1]) for k in state_dict if k.startswith("actor.")})
    h = torch.as_tensor(x, dtype=torch.float32)
    for j, i in enumerate(layers):
        h = h @ state_dict[f"actor.{i}.weight"].T + state_dict[f"actor.{i}.bias"]
        if j < len(layers) - 1:
            h = torch.tanh(h)
    return h.numpy()


@pytest.fixture(scope="module")
def trained(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`policygradex train` on the tiny cartpole run, policies outside the (read-only) run directory."""
    from policygradex.cli.main import main

    out = tmp_path_factory.mktemp("policies") / "policies"
    assert main(train_args(tiny_run, out)) == 0
    return out


def test_train_saves_one_policy_per_group_with_its_card(tiny_run: Path, trained: Path) -> None:
    groups = json.loads((tiny_run / "groups.json").read_text())["group_indices"]
    index = json.loads((trained / "policies.json").read_text())
    assert [p["task_ids"] for p in index["policies"]] == groups
    for g, p in enumerate(index["policies"]):
        directory = trained / f"group-{g + 1}" / "seed-0"
        assert Path(p["path"]) == directory / "policy.pt"
        card = json.loads((directory / "card.json").read_text())
        assert card["task_ids"] == groups[g] and card["network"]["name"] == "mlp"
        # the budget that ran, whole rollouts of 2 envs x 64 steps: 1,024 is 8 of them
        assert card["steps_per_task"] == 1024 and card["steps_per_task_asked"] == 1024
        assert card["policygradex"] and "commit" in card and card["torch"].startswith(torch.__version__[:4])
        assert set(card["evaluation"]["per_task"]) == set(card["tasks"])
        for m in card["evaluation"]["per_task"].values():
            assert m["return"] > 0 and m["return_std"] >= 0
        curve = (directory / "curve.csv").read_text().splitlines()
        assert len(curve) == 1 + 8 and "nan" not in (directory / "curve.csv").read_text()
        assert (directory / "curve.png").stat().st_size > 0 and "Policy card" in (directory / "card.md").read_text()
    assert "| group | tasks |" in (trained / "train.md").read_text()


def test_a_policy_loads_and_acts_without_the_run_directory(trained: Path, tmp_path: Path) -> None:
    moved = tmp_path / "elsewhere.pt"
    shutil.copy(trained / "group-1" / "seed-0" / "policy.pt", moved)
    policy = load_policy(moved)
    env = policy.make_env()
    obs, _ = env.reset(seed=3)
    batch = np.stack([obs, obs + 0.01, obs - 0.02])
    actions = policy.predict(batch)
    assert actions.shape == (3,) and all(policy.action_space.contains(int(a)) for a in actions)
    # deterministic predict is the argmax of the actor's logits, computed here by hand from the saved weights
    blob = torch.load(moved, weights_only=True)
    assert np.array_equal(actions, manual_actor(blob["state_dict"], batch).argmax(-1))
    assert policy.predict(obs) == actions[0]  # one observation: one action, as the environment takes it
    done, steps = False, 0
    while not done:
        obs, _, terminated, truncated, _ = env.step(policy.predict(obs))
        done, steps = terminated or truncated, steps + 1
    assert steps > 1
    with pytest.raises(PolicyGradExError, match=r"shape \(4,\)"):
        policy.predict(np.zeros(5))


def test_evaluate_reproduces_the_card_from_the_file(trained: Path, cli) -> None:
    directory = trained / "group-1" / "seed-0"
    card = json.loads((directory / "card.json").read_text())
    # the card scored the policy in memory with seed + 1; evaluate reads only the file
    rc, out, err = cli("evaluate", directory, "--episodes", "3", "--seed", str(card["seed"] + 1))
    assert rc == 0, err
    for name, m in card["evaluation"]["per_task"].items():
        assert f"| {name} | {m['return']:.1f} ± {m['return_std']:.1f} |" in out
    rc, out, err = cli("evaluate", directory / "policy.pt", "--tasks", f"{card['tasks'][0]},9", "--episodes", "2",
                       "--stochastic")
    assert rc == 0, err
    names = load_family("cartpole").task_names
    assert f"| {card['tasks'][0]} |" in out and f"| {names[9]} |" in out and "sampled" in out


def test_train_resumes_from_the_cache_and_retrains_a_deleted_policy(tiny_run: Path, trained: Path,
                                                                    tmp_path: Path, cli) -> None:
    out = tmp_path / "policies"
    shutil.copytree(trained, out)
    index = json.loads((out / "policies.json").read_text())
    for p in index["policies"]:  # the copy's index points into the copy
        p["path"] = p["path"].replace(str(trained), str(out))
    first = {p.parent.parent.name: p.read_bytes() for p in out.glob("group-*/seed-0/policy.pt")}
    before = torch.load(out / "group-2" / "seed-0" / "policy.pt", weights_only=True)["state_dict"]
    (out / "group-2" / "seed-0" / "policy.pt").unlink()
    rc, _, err = cli(*train_args(tiny_run, out))
    assert rc == 0, err
    assert "train group 2 (seed 0): 100%" in err and "train group 1" not in err  # only the missing one trained
    assert (out / "group-1" / "seed-0" / "policy.pt").read_bytes() == first["group-1"]
    after = torch.load(out / "group-2" / "seed-0" / "policy.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(before[k], after[k]) for k in before)  # same seed, same policy


def test_train_with_given_groups_and_a_task_routed_network(tiny_run: Path, tmp_path: Path, cli) -> None:
    groups = tmp_path / "groups.json"
    groups.write_text(json.dumps([[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]))
    out = tmp_path / "policies"
    rc, stdout, err = cli(*train_args(tiny_run, out, "--groups", str(groups), "--network", "multihead",
                                      "--seeds", "2"))
    assert rc == 0, err
    index = json.loads((out / "policies.json").read_text())
    assert [(p["group"], p["seed_index"]) for p in index["policies"]] == [(1, 0), (1, 1), (2, 0), (2, 1)]
    assert index["policies"][0]["seed"] != index["policies"][1]["seed"]
    policy = load_policy(out / "group-2" / "seed-1")
    assert policy.network.name == "multihead" and policy.task_dim == 10 and policy.tasks == policy.family_task_names[5:]
    obs, _ = policy.make_env().reset(seed=0)
    with pytest.raises(PolicyGradExError, match="reads the task id"):
        policy.predict(obs)
    by_name, by_index = policy.predict(obs, task="len=5.00"), policy.predict(obs, task=9)
    assert by_name == by_index
    assert "| 2 |" in stdout and " ± " in stdout  # two seeds: mean ± std per group


def test_box_actions_are_the_clipped_gaussian_mean(tmp_path: Path) -> None:
    family = load_family("pendulum")
    space = family.tasks[0].make_env().action_space
    net = NetworkConfig(hidden_sizes=(8,))
    model = make_network(3, space, net, 0)
    with torch.no_grad():
        model.actor[-1].weight.zero_()
        model.actor[-1].bias.fill_(10.0)  # a mean far beyond Pendulum's torque bound of 2
    save_policy(tmp_path / "p.pt", model, net, "pendulum", family, [0], 3, space, {})
    policy = load_policy(tmp_path / "p.pt")
    action = policy.predict(np.zeros(3, dtype=np.float32))
    assert action.shape == (1,) and action[0] == pytest.approx(float(space.high[0]))
    torch.manual_seed(0)
    sampled = policy.predict(np.zeros((50, 3), dtype=np.float32), deterministic=False)
    assert sampled.shape == (50, 1) and (sampled <= space.high).all()


@pytest.mark.parametrize("argv, fragments", [
    (["--seeds", "0"], ["--seeds must be >= 1"]),
    (["--network", "bogus"], ["unknown network 'bogus'"]),
    (["--steps-per-task", "0"], ["--steps-per-task must be >= 1"]),
])
def test_bad_train_options_are_one_line(tiny_run: Path, tmp_path: Path, cli, argv, fragments) -> None:
    rc, _, err = cli(*train_args(tiny_run, tmp_path / "p", *argv))
    assert_one_line_error(rc, err, *fragments)
    assert not (tmp_path / "p").exists()  # nothing written


def test_bad_evaluate_input_is_one_line(trained: Path, tmp_path: Path, cli) -> None:
    rc, _, err = cli("evaluate", tmp_path / "nothing")
    assert_one_line_error(rc, err, "is not a policy file")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    rc, _, err = cli("evaluate", tmp_path / "junk.pt")
    assert_one_line_error(rc, err, "is not a readable policy file")
    rc, _, err = cli("evaluate", trained / "group-1" / "seed-0", "--tasks", "bogus")
    assert_one_line_error(rc, err, "unknown task 'bogus'")


def test_video_records_episodes_or_says_how_to_install(trained: Path, tmp_path: Path, cli) -> None:
    try:
        import moviepy  # noqa: F401
    except ImportError:
        rc, _, err = cli("evaluate", trained / "group-1" / "seed-0", "--video", tmp_path / "v")
        assert_one_line_error(rc, err, "--video needs moviepy", "pip install 'policygradex[video]'")
        return
    rc, out, err = cli("evaluate", trained / "group-1" / "seed-0", "--episodes", "1", "--video", tmp_path / "v")
    assert rc == 0, err
    videos = sorted((tmp_path / "v").glob("*.mp4"))
    assert len(videos) == len(load_policy(trained / "group-1" / "seed-0").tasks)
    assert all(v.stat().st_size > 1000 for v in videos) and str(videos[0]) in out


def test_mo_family_from_run_to_evaluate(tmp_path: Path, cli) -> None:
    pytest.importorskip("mo_gymnasium")
    run = tmp_path / "run"
    rc, _, err = cli(*tiny_run_args(run, "mo:mo-lunar-lander-v3(weights=3)"), "--k", "2")
    assert rc == 0, err
    rc, _, err = cli("train", run, "--steps-per-task", "256", "--eval-episodes", "2", "--backend", "sequential")
    assert rc == 0, err
    card = json.loads((run / "policies" / "group-1" / "seed-0" / "card.json").read_text())
    for m in card["evaluation"]["per_task"].values():
        assert len(m["vector_return"]) == 4  # each objective's return, beside the scalarised one
    policy = load_policy(run / "policies" / "group-1" / "seed-0" / "policy.pt")
    obs, _ = policy.make_env().reset(seed=0)
    assert policy.action_space.contains(int(policy.predict(obs)))
    rc, out, err = cli("evaluate", run / "policies" / "group-1" / "seed-0", "--episodes", "2")
    assert rc == 0, err
    assert "vector_return (mean per objective)" in out


def python_api_example() -> str:
    """The README's "Python API" code block."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_python_api_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    script = tmp_path / "example.py"
    script.write_text(python_api_example())
    runpy.run_path(str(script), run_name="__main__")
    out = capsys.readouterr().out
    assert "group 1:" in out and "return" in out
    assert (tmp_path / "runs" / "cartpole" / "policies" / "group-1" / "seed-0" / "policy.pt").exists()


def test_python_api_rejects_unknown_options() -> None:
    import policygradex

    with pytest.raises(TypeError, match="bogus"):
        policygradex.run("cartpole", bogus=1)
    assert policygradex.load_policy is load_policy
