"""One short stable-baselines3 PPO run on a single HalfCheetahVel task."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest

import metarl.envs  # noqa: F401  (registers the ids)
from metarl.envs.halfcheetah import HalfCheetahVelTask


def test_ppo_trains_on_a_fixed_halfcheetah_vel_task(tmp_path, monkeypatch) -> None:
    sb3 = pytest.importorskip("stable_baselines3")
    monkeypatch.setenv("SB3_LOGDIR", str(tmp_path))  # SB3's logger folder, else one in /tmp
    env = gymnasium.make("metarl/HalfCheetahVel-v0", max_episode_steps=100)
    env.unwrapped.set_task(HalfCheetahVelTask(1.5))  # type: ignore[attr-defined]
    model = sb3.PPO("MlpPolicy", env, n_steps=512, batch_size=128, n_epochs=2, seed=0,
                    device="cpu", policy_kwargs={"net_arch": [32, 32]})
    before = [p.detach().clone() for p in model.policy.parameters()]
    model.learn(total_timesteps=2048)
    assert model.num_timesteps == 2048
    assert env.unwrapped.get_task() == HalfCheetahVelTask(1.5)  # type: ignore[attr-defined]
    changed = [not np.array_equal(b.numpy(), p.detach().numpy())
               for b, p in zip(before, model.policy.parameters(), strict=True)]
    assert all(changed)
    obs, _ = env.reset(seed=0)
    action, _ = model.predict(obs, deterministic=True)
    assert env.action_space.contains(action)
    ep_rewards = [info["r"] for info in model.ep_info_buffer]
    assert len(ep_rewards) == 20 and all(np.isfinite(ep_rewards))
    # Every step's reward is <= 0 here (-|v - 1.5| - ctrl), so every return is <= 0.
    assert max(ep_rewards) <= 0.0
