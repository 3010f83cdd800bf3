"""Batched sampler on the real Navigation2D vector env: layout, masks, actions, seeding."""

from __future__ import annotations

import math

import pytest
import torch

from metarl.core import get_params
from metarl.envs.batched import make_batched
from metarl.envs.navigation import Navigation2DTask
from metarl.rl.policy import GaussianMLPPolicy
from metarl.rl.sampler import BatchedSampler, Episodes, torch_threads

T, E, H = 3, 2, 12


def _setup(log_std: float = 0.0) -> tuple[GaussianMLPPolicy, BatchedSampler, dict]:
    torch.manual_seed(0)
    policy = GaussianMLPPolicy(2, 2, hidden=(8,), init_log_std=log_std).double()
    env = make_batched("Navigation2D", T * E, horizon=H, seed=0)
    sampler = BatchedSampler(env, E, "cpu")
    stacked = {k: v.detach().expand(T, *v.shape).clone() for k, v in get_params(policy).items()}
    return policy, sampler, stacked


def test_layout_masks_and_raw_actions() -> None:
    policy, sampler, params = _setup(log_std=-30.0)  # deterministic actions: the mean
    params["head.weight"].zero_()
    # Task 0 heads to (1, 1) (clipped to 0.1 per step) and reaches its goal (0.2, 0.2) at
    # step 1; task 1 drifts to (-1, 0) and never terminates; task 2 stands still.
    params["head.bias"] = torch.tensor([[1.0, 1.0], [-1.0, 0.0], [0.0, 0.0]], dtype=torch.float64)
    tasks = [Navigation2DTask(goal=(0.2, 0.2)), Navigation2DTask(goal=(0.3, 0.0)),
             Navigation2DTask(goal=(0.0, 0.4))]
    ep = sampler.sample(policy, params, tasks, seed=1)
    assert ep.obs.shape == (T, E, H, 2) and ep.actions.shape == (T, E, H, 2)
    assert ep.rewards.shape == ep.masks.shape == (T, E, H)
    torch.testing.assert_close(ep.actions[0, 0, 0], torch.tensor([1.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(ep.obs[0, :, 1], torch.full((E, 2), 0.1, dtype=torch.float64))
    assert ep.masks[0].tolist() == [[1.0, 1.0] + [0.0] * (H - 2)] * E
    assert torch.all(ep.masks[1:] == 1.0)
    torch.testing.assert_close(ep.rewards[0, 0, :2],
                               torch.tensor([-0.1 * math.sqrt(2), 0.0], dtype=torch.float64))
    assert torch.all(ep.rewards[0, :, 2:] == 0.0)  # the autoreset continuation is masked out
    # Task 1: s_t = (-0.1 t, 0) before acting; reward after step t is -||s_{t+1} - (0.3, 0)||.
    expected = torch.tensor([-(0.3 + 0.1 * (t + 1)) for t in range(H)], dtype=torch.float64)
    torch.testing.assert_close(ep.rewards[1, 1], expected)
    torch.testing.assert_close(ep.returns_per_episode()[2], torch.full((E,), -0.4 * H,
                                                                       dtype=torch.float64))
    assert ep.num_steps == (T - 1) * E * H + 2 * E


def test_each_task_acts_with_its_own_parameters() -> None:
    policy, sampler, params = _setup(log_std=-30.0)
    params["head.bias"] = params["head.bias"] + torch.tensor([[0.0], [0.05], [-0.05]],
                                                             dtype=torch.float64)
    tasks = sampler.env.sample_tasks(T)
    ep = sampler.sample(policy, params, tasks, seed=3)
    for i in range(T):
        mean, _ = policy.dist_params({k: v[i] for k, v in params.items()}, ep.obs[i])
        torch.testing.assert_close(ep.actions[i], mean, rtol=0, atol=1e-10)


def test_seeded_sampling_is_deterministic() -> None:
    policy, sampler, params = _setup()
    tasks = sampler.env.sample_tasks(T)
    a, b = (sampler.sample(policy, params, tasks, seed=7) for _ in range(2))
    c = sampler.sample(policy, params, tasks, seed=8)
    for name in ("obs", "actions", "rewards", "masks"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert not torch.equal(a.actions, c.actions)
    assert isinstance(a, Episodes)


def test_bad_arguments_name_the_field() -> None:
    policy, sampler, params = _setup()
    with pytest.raises(ValueError, match="tasks"):
        sampler.sample(policy, params, sampler.env.sample_tasks(T - 1), seed=0)
    with pytest.raises(ValueError, match="episodes_per_task"):
        BatchedSampler(sampler.env, 4, "cpu")
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="torch_threads"):
            BatchedSampler(sampler.env, E, "cpu", torch_threads=bad)  # type: ignore[arg-type]


def test_rollout_runs_on_its_torch_threads_and_restores_them() -> None:
    """The rollout's torch threads (default 1, docs/speed.md) apply inside it only, also when
    it raises; the same seed gives the same episodes whatever torch's setting outside."""
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    with pytest.raises(RuntimeError), torch_threads(1):
        raise RuntimeError
    assert torch.get_num_threads() == before
    policy, sampler, params = _setup()
    tasks = sampler.env.sample_tasks(T)
    ep = sampler.sample(policy, params, tasks, seed=3)
    assert torch.get_num_threads() == before
    torch.set_num_threads(2)
    try:
        assert _fields_equal(ep, sampler.sample(policy, params, tasks, seed=3))
    finally:
        torch.set_num_threads(before)


def _fields_equal(a: Episodes, b: Episodes) -> bool:
    return all(torch.equal(getattr(a, f), getattr(b, f))
               for f in ("obs", "actions", "rewards", "masks"))


@pytest.mark.parametrize("name", ["Navigation2D", "HalfCheetahVel"])
def test_a_slice_of_the_tasks_sampled_alone_gives_the_same_episodes(name: str) -> None:
    """The seeding convention the Ray actors rely on: a task's episodes depend only on the
    call's seed and the task's index, not on which other tasks share the env."""
    tasks_, episodes, horizon = 5, 2, 15
    env = make_batched(name, tasks_ * episodes, horizon=horizon, seed=0)
    assert env.single_observation_space.shape is not None
    assert env.single_action_space.shape is not None
    torch.manual_seed(0)
    policy = GaussianMLPPolicy(env.single_observation_space.shape[0],
                               env.single_action_space.shape[0], hidden=(8,))
    params = {k: v.detach().expand(tasks_, *v.shape) for k, v in get_params(policy).items()}
    tasks = env.sample_tasks(tasks_)
    whole = BatchedSampler(env, episodes, "cpu").sample(policy, params, tasks, seed=11)
    parts = []
    for start, stop in ((0, 2), (2, 3), (3, 5)):
        part_env = make_batched(name, (stop - start) * episodes, horizon=horizon, num_threads=1)
        sampler = BatchedSampler(part_env, episodes, "cpu")
        parts.append(sampler.sample(policy, {k: v[start:stop] for k, v in params.items()},
                                    tasks[start:stop], seed=11, first_task=start))
    joined = Episodes(*(torch.cat([getattr(p, f) for p in parts])
                        for f in ("obs", "actions", "rewards", "masks")))
    assert _fields_equal(whole, joined)
    shifted = BatchedSampler(part_env, episodes, "cpu").sample(
        policy, {k: v[3:5] for k, v in params.items()}, tasks[3:5], seed=11, first_task=0)
    assert not torch.equal(shifted.actions, joined.actions[3:5])  # the index matters
