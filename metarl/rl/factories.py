"""Typed factories: the batched env, the learner and the sampler a :class:`TrainConfig` asks
for. The one place that turns a config into objects (train, evaluate and scripts use it)."""

from __future__ import annotations

import torch

from metarl.core import resolve_device
from metarl.envs.batched import BatchedTaskEnv, make_batched
from metarl.rl.config import TrainConfig
from metarl.rl.learner import TrpoMetaLearner
from metarl.rl.policy import GaussianMLPPolicy
from metarl.rl.sampler import BatchedSampler, Sampler


def make_env(cfg: TrainConfig, num_envs: int, seed: int | None) -> BatchedTaskEnv:
    """``num_envs`` environments of ``cfg.env`` at the run's horizon, as one batched env."""
    return make_batched(cfg.env, num_envs, horizon=cfg.hp.horizon, preset=cfg.preset, seed=seed)


def build_learner(cfg: TrainConfig, env: BatchedTaskEnv) -> TrpoMetaLearner:
    """The Gaussian MLP policy and the learner ``cfg`` describes, on ``cfg.device``."""
    hp = cfg.hp
    obs_space, act_space = env.single_observation_space, env.single_action_space
    assert obs_space.shape is not None and act_space.shape is not None
    policy = GaussianMLPPolicy(int(obs_space.shape[0]), int(act_space.shape[0]),
                               hidden=hp.hidden)
    return TrpoMetaLearner(
        policy, algorithm=cfg.algorithm, inner_lr=hp.inner_lr, eval_inner_lr=hp.eval_inner_lr,
        inner_steps=hp.inner_steps, adapt_log_std=cfg.adapt_log_std, gamma=hp.gamma,
        gae_lambda=hp.gae_lambda, trpo=hp.trpo, fvp_subsample=hp.fvp_subsample,
        meta_update_path=cfg.meta_update_path, device=resolve_device(cfg.device),
        bootstrap=cfg.bootstrap, bmg_lr=cfg.bmg_lr)


def make_sampler(env: BatchedTaskEnv, episodes_per_task: int,
                 device: str | torch.device) -> BatchedSampler:
    """The batched sampler over ``env`` with the policy on ``device``."""
    return BatchedSampler(env, episodes_per_task, resolve_device(str(device)))


def make_train_sampler(cfg: TrainConfig) -> Sampler:
    """The training sampler ``cfg.sampler`` names: one local batched env of
    ``cfg.num_envs`` environments, or ``cfg.ray_actors`` Ray actors (same episodes)."""
    hp = cfg.hp
    if cfg.sampler == "ray":
        from metarl.rl.ray_sampler import RaySampler

        return RaySampler(cfg.env, hp.meta_batch, hp.episodes_per_task, hp.horizon,
                          preset=cfg.preset, actors=cfg.ray_actors, address=cfg.ray_address,
                          device=resolve_device(cfg.device))
    return make_sampler(make_env(cfg, cfg.num_envs, cfg.seed), hp.episodes_per_task, cfg.device)
