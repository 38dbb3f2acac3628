"""The multitask networks: each one checked against its definition computed by hand, routed by the task id,
usable by the gradient features (vmap), and run end to end through `run` and `compare`."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import gymnasium as gym
import pytest
import torch

from policygradex.common.errors import PolicyGradExError
from policygradex.nets.base import NETWORKS, TASK_ROUTED, make_network
from policygradex.nets.config import NetworkConfig
from policygradex.pipeline.gradients import loop_grads, per_sample_grad_fn

from ..helpers import assert_one_line_error, tiny_run_args

STATE, TASKS = 5, 3
CFG = NetworkConfig(hidden_sizes=(8, 8), activation="tanh")
SPACES = {"discrete": gym.spaces.Discrete(4), "gaussian": gym.spaces.Box(-1.0, 1.0, (2,))}


def _batch(kind: str, batch: int = 9, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    state = torch.randn(batch, STATE, generator=gen)
    task = torch.nn.functional.one_hot(torch.arange(batch) % TASKS, TASKS).float()
    if kind == "discrete":
        actions = torch.randint(0, 4, (batch,), generator=gen)
    else:
        actions = torch.randn(batch, 2, generator=gen)
    return torch.cat([state, task], dim=1), actions


def _net(name: str, kind: str = "discrete", cfg: NetworkConfig = CFG, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = make_network(STATE + TASKS, SPACES[kind], replace(cfg, name=name), TASKS)
    with torch.no_grad():  # away from the symmetric initialisation (PaCo's even mixture, near-zero output layers)
        for param in model.parameters():
            param.add_(0.3 * torch.randn_like(param))
    return model


@pytest.mark.parametrize("kind", sorted(SPACES))
@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_every_network_serves_ppo_and_the_gradient_features(name: str, kind: str) -> None:
    """The Policy interface holds, log pi agrees with the distribution PPO samples from, and the per-transition
    gradients by vmap equal a per-sample autograd loop: the features work with every network."""
    model = _net(name, kind)
    obs, actions = _batch(kind)
    action, logp, entropy, value = model.get_action_and_value(obs, actions)
    assert torch.equal(action, actions) and logp.shape == entropy.shape == value.shape == (len(obs),)
    torch.testing.assert_close(model(obs, actions), logp)
    names = model.policy_parameter_names()
    assert names and all(n.startswith("actor") for n in names)
    fn, p = per_sample_grad_fn(model)
    vmapped = fn(obs, actions)
    assert vmapped.shape == (len(obs), p)
    torch.testing.assert_close(vmapped, loop_grads(model, obs, actions), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", TASK_ROUTED)
def test_routed_networks_answer_by_task(name: str) -> None:
    """The same state under different task ids gets different policies; and the routed networks refuse to be built
    without a task id."""
    model = _net(name)
    obs, _ = _batch("discrete", batch=TASKS)
    obs[:, :STATE] = obs[0, :STATE]  # one state, each task
    logits = model.actor(obs)
    assert not torch.allclose(logits[0], logits[1]) and not torch.allclose(logits[1], logits[2])
    with pytest.raises(PolicyGradExError, match="--task-id"):
        make_network(STATE, SPACES["discrete"], replace(CFG, name=name), 0)


def _mlp_forward(x: torch.Tensor, layers: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    for i, (w, b) in enumerate(layers):
        x = x @ w + b
        if i < len(layers) - 1:
            x = torch.tanh(x)
    return x


def test_multihead_is_the_trunk_then_the_task_s_own_head() -> None:
    body = _net("multihead").actor
    obs, _ = _batch("discrete")
    h = body.trunk(obs)
    for i in range(len(obs)):
        t = i % TASKS
        torch.testing.assert_close(body(obs[i]), h[i] @ body.head_weight[t] + body.head_bias[t])


def test_paco_uses_theta_tau_equal_to_phi_times_w_tau() -> None:
    """Task tau's network is the plain MLP with parameters sum_k w_tau,k theta_k (PaCo's theta_tau = Phi w_tau)."""
    body = _net("paco").actor
    obs, _ = _batch("discrete")
    for i in range(len(obs)):
        w = body.task_weights[i % TASKS]
        layers = [(torch.einsum("k,kio->io", w, W), w @ b) for W, b in zip(body.set_weight, body.set_bias)]
        torch.testing.assert_close(body(obs[i]), _mlp_forward(obs[i, :STATE], layers))


def test_paco_masks_an_exploding_task_and_resets_its_composition() -> None:
    model = _net("paco")
    obs, actions = _batch("discrete")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    _, logp, _, value = model.get_action_and_value(obs, actions)
    (logp.sum() + value.sum()).backward()
    optimizer.step()  # Adam moments exist now
    loss = torch.ones(len(obs))
    loss[torch.arange(len(obs)) % TASKS == 1] = 2 * model.loss_threshold  # task 1's loss exploded
    keep = model.task_loss_mask(obs, loss)
    assert keep.tolist() == [0.0 if i % TASKS == 1 else 1.0 for i in range(len(obs))]
    before = {name: body.task_weights.detach().clone() for name, body in (("actor", model.actor), ("critic", model.critic))}
    model.reset_masked_tasks(optimizer)
    for name, body in (("actor", model.actor), ("critic", model.critic)):
        w0, w = before[name], body.task_weights.detach()
        torch.testing.assert_close(w[1], (w0[0] + w0[2]) / 2)  # the mean of the other tasks' vectors
        assert torch.equal(w[[0, 2]], w0[[0, 2]])
        for moment in ("exp_avg", "exp_avg_sq"):
            state = optimizer.state[body.task_weights][moment]
            assert (state[1] == 0).all() and (state[[0, 2]] != 0).any()


def test_soft_modularization_routes_with_probabilities_and_one_module_is_a_chain() -> None:
    body = _net("softmod", cfg=replace(CFG, num_modules=3, num_module_layers=3)).actor
    obs, _ = _batch("discrete")
    probs, final = body.routing(obs)
    assert len(probs) == 2 and probs[0].shape == (len(obs), 3, 3) and final.shape == (len(obs), 3)
    for p in [*probs, final]:
        torch.testing.assert_close(p.sum(-1), torch.ones(p.shape[:-1]))
    # with one module per layer every routing probability is 1: the base encoder, then the modules in a chain
    chain = _net("softmod", cfg=replace(CFG, num_modules=1, num_module_layers=2)).actor
    x = chain.base(obs[:, :STATE])
    for w, b in zip(chain.module_weight, chain.module_bias):
        x = torch.tanh(x @ w[0] + b[0])
    torch.testing.assert_close(chain(obs), chain.out(x))


def test_care_mixes_its_encoders_by_the_task_s_attention() -> None:
    body = _net("care", cfg=replace(CFG, num_encoders=3)).actor
    obs, _ = _batch("discrete")
    alpha = body.attention_weights(obs)
    torch.testing.assert_close(alpha.sum(-1), torch.ones(len(obs)))
    assert not torch.allclose(alpha[0], alpha[1])
    # by hand: each encoder on the state, mixed by alpha, beside the task's context, into the head
    state, task = obs[:, :STATE], obs[:, STATE:]
    encoded = torch.stack([torch.tanh(state @ body.encoder_weight[0][e] + body.encoder_bias[0][e]) for e in range(3)], 1)
    mixed = (alpha.unsqueeze(-1) * encoded).sum(1)
    torch.testing.assert_close(body(obs), body.head(torch.cat([mixed, body.context(task)], dim=1)))


@pytest.mark.parametrize("name", TASK_ROUTED)
def test_each_network_runs_through_run_and_compare(name: str, tmp_path: Path, cli) -> None:
    """`run --network NAME` meta-trains with it (the task id turned on for it) and `compare --group-network NAME
    --network-rows NAME` trains the groupings and the all-tasks row with it."""
    out = tmp_path / "run"
    rc, _, err = cli(*tiny_run_args(out), "--network", name)
    assert rc == 0, err
    record = json.loads((out / "config.json").read_text())["config"]["network"]
    assert record["name"] == name and record["task_id"] is True
    rc, stdout, err = cli("compare", out, "--seeds", "1", "--steps-per-task", "128", "--eval-episodes", "1",
                          "--backend", "sequential", "--group-network", name, "--network-rows", name)
    assert rc == 0, err
    result = json.loads((out / "compare" / "compare.json").read_text())
    assert result["group_network"] == name
    assert f"all tasks ({name})" in result["methods"] and f"| all tasks ({name}) |" in stdout


def test_a_routed_network_without_the_task_id_is_one_line(tmp_path: Path, cli) -> None:
    rc, _, err = cli(*tiny_run_args(tmp_path / "run"), "--network", "softmod", "--no-task-id")
    assert_one_line_error(rc, err, "softmod", "task id")
    rc, _, err = cli(*tiny_run_args(tmp_path / "run2"), "--network", "transformer")
    assert_one_line_error(rc, err, "unknown network 'transformer'")
    assert not (tmp_path / "run2").exists() or not any((tmp_path / "run2").iterdir())


def test_ppo_leaves_the_network_alone_when_every_task_is_masked() -> None:
    """PPO with PaCo's masking: a threshold below every loss masks every task, so no transition is in any loss
    and training changes nothing; with the default threshold the same run does change the network."""
    from policygradex.envs.registry import load_family
    from policygradex.rl.config import PPOConfig
    from policygradex.rl.ppo import network_for, train_ppo

    family = load_family("tests.plugin_families:good_family")
    ppo = PPOConfig(steps_per_task=128, envs_per_task=2, num_steps=32, num_minibatches=2, update_epochs=1)
    for threshold, moves in ((-1e9, False), (1e9, True)):
        net = replace(CFG, name="paco", task_id=True, paco_loss_threshold=threshold)
        torch.manual_seed(0)
        start = {k: v.clone() for k, v in network_for(family, net).state_dict().items()}
        end = train_ppo(family, [0, 1, 2], net, ppo, seed=0, init_state=start).model.state_dict()
        assert any(not torch.equal(start[k], end[k]) for k in start) == moves
