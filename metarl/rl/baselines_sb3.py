"""``metarl baseline``: is the inner loop needed? stable-baselines3 PPO baselines for meta-RL.

Two baselines a reviewer asks for beside MAML and ANIL (Finn et al., 2017, sec. 5.3 compare
with "pretrained + fine-tuning" and an "oracle"):

* ``finetune``: PPO (Schulman et al., 2017; the SB3 implementation of Raffin et al., 2021)
  pre-trained on the training tasks with the task *not* observed (each rollout draws a fresh
  meta-batch of training tasks, ``episodes_per_task`` environments each, as MAML's
  iterations do), then fine-tuned on each held-out task with exactly the episodes a
  meta-learner adapts with: ``episodes_per_task`` episodes per step, ``K`` PPO updates.
* ``oracle``: the same, with the task's parameters appended to the observation (an upper
  bound that needs no adaptation; it is fine-tuned the same way for the same table).

The evaluation protocol is the meta-learners' (:mod:`metarl.rl.evaluate`): the first
``eval_tasks`` tasks of the test split, evaluation seeds ``EVAL_SEED_BASE + s``, for each the
mean return of ``episodes_per_task`` stochastic episodes before fine-tuning (step 0) and
after each of ``K`` updates (each on the episodes of the step before), as an
:class:`~metarl.rl.evaluate.EvalResult` written by :func:`~metarl.rl.evaluate.write_eval`
(``eval.json`` + ``eval.png``), so rows sit in ``scripts/rl_results.py``'s table.

Every environment runs exactly one episode per ``horizon`` steps (:class:`EpisodeLockedVecEnv`):
after an early termination it stays absorbed with zero reward until the horizon, as the
meta-learners' sampler masks those steps, so "``E`` episodes" means the same for both.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import gymnasium
import numpy as np
import torch
import tyro

from metarl.envs.core import Task
from metarl.envs.interface import BatchedTaskEnv
from metarl.envs.sb3_vec import to_sb3
from metarl.logging import Logger, write_json
from metarl.options import Device, OptInt, choices
from metarl.rl.config import TrainConfig
from metarl.rl.evaluate import EvalResult, format_table, held_out_tasks, write_eval
from metarl.rl.factories import make_env
from metarl.rl.presets import ENV_NAMES, PRESET_NAMES
from metarl.runs import make_run_dir
from metarl.utils import EVAL_SEED_BASE, SEED_BOUND, check_seed, seed_everything

KINDS = ("finetune", "oracle")


@dataclass(frozen=True)
class BaselineConfig:
    """PPO baselines: multi-task pre-training, then fine-tuning on held-out tasks."""

    env: Annotated[str, tyro.conf.arg(metavar=choices(ENV_NAMES))] = "Navigation2D"
    """Task distribution."""
    baseline: Annotated[str, tyro.conf.arg(metavar=choices(KINDS))] = "finetune"
    """finetune (task not observed) or oracle (task appended to the observation)."""
    preset: Annotated[str, tyro.conf.arg(metavar=choices(PRESET_NAMES))] = "fast"
    """The meta-learners' preset whose horizon, meta-batch, episodes and evaluation it uses."""
    seed: int = 0
    """Seed of PPO, the training-task sequence and the environments."""
    pretrain_steps: OptInt = None
    """Pre-training env steps (default: the env steps of the preset's meta-training run,
    iterations x meta_batch x episodes x horizon x (inner steps + 1))."""
    iterations: OptInt = None
    """Meta-iterations of the meta-learner run it mirrors (sets the default pre-training
    budget; default: the preset's)."""
    meta_batch: OptInt = None
    """Training tasks per rollout (default: the preset's meta-batch)."""
    episodes_per_task: OptInt = None
    """Environments per training task, and fine-tuning episodes per step (preset's)."""
    horizon: OptInt = None
    """Steps per episode (preset's)."""
    eval_tasks: OptInt = None
    """Held-out test-split tasks (preset's)."""
    eval_seeds: OptInt = None
    """Evaluation seeds (preset's)."""
    eval_inner_steps: OptInt = None
    """Fine-tuning updates K: returns after 0..K (preset's, paper: 3)."""
    eval_every: OptInt = None
    """Unused (a baseline is evaluated once, at the end); recorded so that its resolved
    hyper-parameters equal those of the meta-learner runs of the same table."""
    learning_rate: float = 3e-4
    """PPO pre-training learning rate (Adam)."""
    n_epochs: int = 10
    """PPO epochs per pre-training rollout."""
    minibatches: int = 8
    """PPO minibatches per epoch (pre-training and fine-tuning)."""
    finetune_lr: float = 1e-3
    """Fine-tuning learning rate (Adam, fresh per task)."""
    finetune_epochs: int = 5
    """PPO epochs per fine-tuning update."""
    hidden: tuple[int, ...] = (64, 64)
    """Hidden sizes of PPO's policy and value MLPs (tanh, as the meta-learners' policy)."""
    device: Device = "cpu"
    """cpu, cuda, cuda:N or auto."""
    threads: int = 0
    """Torch CPU threads (0: torch's default)."""
    run_root: str = "runs"
    """Folder holding run folders (runs/<env>__ppo-<kind>__<seed>__<time>)."""
    progress: bool = False
    """Show SB3's progress bar during pre-training."""

    def __post_init__(self) -> None:
        if self.baseline not in KINDS:
            raise ValueError(f"baseline must be one of {KINDS}, got {self.baseline!r}")
        check_seed("seed", self.seed)
        self.train_config  # noqa: B018  (validates env, preset and the overrides)
        for name in ("pretrain_steps", "n_epochs", "minibatches", "finetune_epochs"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or value < 1):
                raise ValueError(f"{name} must be an int >= 1, got {value}")
        for name in ("learning_rate", "finetune_lr"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value}")
        if not self.hidden or any(h < 1 for h in self.hidden):
            raise ValueError(f"hidden must be one or more layer sizes >= 1, got {self.hidden}")
        if not 0 <= self.threads <= 1024:
            raise ValueError(f"threads must be an int in [0, 1024], got {self.threads}")
        if self.num_envs * self.hp.horizon < self.minibatches:
            raise ValueError(f"minibatches must be <= the rollout size "
                             f"{self.num_envs * self.hp.horizon}, got {self.minibatches}")

    @property
    def train_config(self) -> TrainConfig:
        """The meta-learners' config this baseline mirrors (its preset and overrides)."""
        return TrainConfig(env=self.env, preset=self.preset, seed=self.seed,
                           iterations=self.iterations, eval_every=self.eval_every,
                           meta_batch=self.meta_batch, episodes_per_task=self.episodes_per_task,
                           horizon=self.horizon, eval_tasks=self.eval_tasks,
                           eval_seeds=self.eval_seeds, eval_inner_steps=self.eval_inner_steps,
                           device=self.device, run_root=self.run_root)

    @property
    def hp(self) -> Any:
        return self.train_config.hp

    @property
    def num_envs(self) -> int:
        return int(self.hp.meta_batch * self.hp.episodes_per_task)

    @property
    def total_pretrain_steps(self) -> int:
        """``pretrain_steps``, or the preset's meta-training env steps."""
        if self.pretrain_steps is not None:
            return self.pretrain_steps
        hp = self.hp
        return int(hp.iterations * self.num_envs * hp.horizon * (hp.inner_steps + 1))

    @property
    def algo(self) -> str:
        return f"ppo-{self.baseline}"


def baseline_config(train: TrainConfig, kind: str, **kw: Any) -> BaselineConfig:
    """The baseline mirroring a meta-learner's config (``scripts/rl_results.py``'s cells)."""
    hp = train.hp
    return BaselineConfig(env=train.env, baseline=kind, preset=train.preset, seed=train.seed,
                          iterations=hp.iterations, eval_every=hp.eval_every,
                          meta_batch=hp.meta_batch, episodes_per_task=hp.episodes_per_task,
                          horizon=hp.horizon, eval_tasks=hp.eval_tasks,
                          eval_seeds=hp.eval_seeds, eval_inner_steps=hp.eval_inner_steps,
                          device=train.device, threads=train.threads, run_root=train.run_root,
                          **kw)


# --------------------------------------------------------------------------------------------
# The VecEnv: one episode per horizon, tasks per environment, optionally observed
# --------------------------------------------------------------------------------------------


def task_features(tasks: Sequence[Task]) -> np.ndarray:
    """``[N, d]``: each task's numeric fields (:meth:`Task.as_array`), the oracle's input."""
    return np.stack([t.as_array() for t in tasks])


def _locked_class() -> type:
    from stable_baselines3.common.vec_env import VecEnvWrapper

    class EpisodeLockedVecEnv(VecEnvWrapper):  # type: ignore[misc]
        """Every env runs exactly one episode per ``horizon`` steps, then all reset together.

        An env that terminates early is absorbed (its terminal observation, reward 0, no
        ``done``) until the horizon, when every env reports ``done``. At each boundary
        ``next_tasks()`` (when given) sets new tasks; the per-env returns of the episodes
        that just ended are in ``last_returns`` and ``episodes`` counts every episode run.

        Args:
            vec: The batched env (its horizon is the episode length).
            tasks: Tasks of the first episodes, one per env.
            observe_task: Append :func:`task_features` to the observation (the oracle).
            next_tasks: Called at each boundary for the next episodes' tasks (None: keep).
        """

        def __init__(self, vec: BatchedTaskEnv, tasks: Sequence[Task], *, observe_task: bool,
                     next_tasks: Callable[[], Sequence[Task]] | None = None) -> None:
            venv = to_sb3(vec)
            self.vec, self.horizon = vec, int(vec.horizon)
            self.observe_task, self.next_tasks = observe_task, next_tasks
            self.tasks = list(tasks)
            self.features = task_features(self.tasks)
            space = venv.observation_space
            if observe_task:
                d = self.features.shape[1]
                low = np.concatenate([space.low, np.full(d, -np.inf)]).astype(space.dtype)
                high = np.concatenate([space.high, np.full(d, np.inf)]).astype(space.dtype)
                space = gymnasium.spaces.Box(low, high, dtype=space.dtype)  # type: ignore
            super().__init__(venv, observation_space=space)
            self.episodes = 0
            self.last_returns = np.zeros(self.num_envs)
            self._start()

        def _start(self) -> None:
            self.t = 0
            self.alive = np.ones(self.num_envs, dtype=bool)
            self.truncated = np.ones(self.num_envs, dtype=bool)  # ended by the time limit
            self.frozen = np.zeros((self.num_envs, *self.vec.single_observation_space.shape))
            self.returns = np.zeros(self.num_envs)

        def _obs(self, obs: np.ndarray) -> np.ndarray:
            if not self.observe_task:
                return obs
            return np.concatenate([obs, self.features.astype(obs.dtype)], axis=1)

        def _set_tasks(self, tasks: Sequence[Task]) -> None:
            self.tasks = list(tasks)
            self.features = task_features(self.tasks)
            self.vec.set_tasks(self.tasks)

        def reset(self) -> np.ndarray:
            self._set_tasks(self.tasks)
            self._start()
            return self._obs(np.asarray(self.venv.reset()))

        def step_wait(self) -> Any:
            raw, rewards, dones, infos = self.venv.step_wait()
            obs = np.array(raw)  # a Box space: one array (a copy: frozen rows are written)
            self.t += 1
            rewards = np.where(self.alive, rewards, 0.0).astype(np.float32)
            obs[~self.alive] = self.frozen[~self.alive]
            self.returns += rewards
            ended = self.alive & dones
            for i in np.flatnonzero(ended):
                obs_i = infos[i].get("terminal_observation", obs[i])
                self.frozen[i] = obs_i
                obs[i] = obs_i
                self.truncated[i] = bool(infos[i].get("TimeLimit.truncated", False))
            self.alive &= ~ended
            if self.t < self.horizon:
                return self._obs(obs), rewards, np.zeros(self.num_envs, dtype=bool), \
                    [{} for _ in range(self.num_envs)]
            return self._boundary(obs, rewards)

        def _boundary(self, obs: np.ndarray, rewards: np.ndarray) -> Any:
            final = self._obs(obs)
            infos = [{"terminal_observation": final[i], "TimeLimit.truncated": bool(trunc)}
                     for i, trunc in enumerate(self.truncated)]
            self.last_returns = self.returns.copy()
            self.episodes += self.num_envs
            if self.next_tasks is not None:
                self.tasks = list(self.next_tasks())
            new_obs = self.reset()
            return new_obs, rewards, np.ones(self.num_envs, dtype=bool), infos

    return EpisodeLockedVecEnv


def episode_locked(vec: BatchedTaskEnv, tasks: Sequence[Task], *, observe_task: bool,
                   next_tasks: Callable[[], Sequence[Task]] | None = None) -> Any:
    """An ``EpisodeLockedVecEnv`` (see :func:`_locked_class`) over ``vec``."""
    cls = _locked_class()
    return cls(vec, tasks, observe_task=observe_task, next_tasks=next_tasks)


# --------------------------------------------------------------------------------------------
# Pre-training and fine-tuning
# --------------------------------------------------------------------------------------------


def _ppo(cfg: BaselineConfig, env: Any, *, n_envs: int, lr: float, epochs: int,
         seed: int) -> Any:
    from stable_baselines3 import PPO

    rollout = n_envs * cfg.hp.horizon
    return PPO("MlpPolicy", env, learning_rate=lr, n_steps=cfg.hp.horizon,
               batch_size=max(1, rollout // cfg.minibatches), n_epochs=epochs,
               gamma=cfg.hp.gamma, gae_lambda=0.95, seed=seed, device=cfg.device, verbose=0,
               policy_kwargs={"net_arch": list(cfg.hidden), "activation_fn": torch.nn.Tanh})


def pretrain(cfg: BaselineConfig, logger: Logger | None = None) -> tuple[Any, int]:
    """Multi-task PPO on training tasks: each rollout a fresh meta-batch, ``E`` envs per task.

    Returns:
        The PPO model and the env steps it took.
    """
    hp, tc = cfg.hp, cfg.train_config
    task_env = make_env(tc, 1, cfg.seed)  # the task sequence's own generator, as in train
    task_env.reset(seed=cfg.seed)

    def draw() -> list[Task]:
        tasks = task_env.sample_tasks(hp.meta_batch, "train")
        return [t for t in tasks for _ in range(hp.episodes_per_task)]

    env = episode_locked(make_env(tc, cfg.num_envs, cfg.seed), draw(),
                         observe_task=cfg.baseline == "oracle", next_tasks=draw)
    model = _ppo(cfg, env, n_envs=cfg.num_envs, lr=cfg.learning_rate, epochs=cfg.n_epochs,
                 seed=cfg.seed)
    callback = _log_callback(env, logger) if logger is not None else None
    model.learn(total_timesteps=cfg.total_pretrain_steps, callback=callback,
                progress_bar=cfg.progress)
    task_env.close()
    return model, int(model.num_timesteps)


def _log_callback(env: Any, logger: Logger) -> Any:
    """An SB3 callback writing ``pretrain/return`` (training tasks) after each rollout."""
    from stable_baselines3.common.callbacks import BaseCallback

    class LogReturns(BaseCallback):  # type: ignore[misc]
        def _on_step(self) -> bool:
            return True

        def _on_rollout_end(self) -> None:
            logger.record("pretrain/return", float(env.last_returns.mean()))
            logger.record("time/total_env_steps", self.model.num_timesteps)
            logger.dump(self.model.num_timesteps)

    return LogReturns()


def finetune(cfg: BaselineConfig, pretrained: Any, task: Task, seed: int,
             updates: int) -> tuple[np.ndarray, Any, Any]:
    """Fine-tune a copy of ``pretrained`` on one task: ``updates`` PPO updates, each on the
    ``E`` episodes sampled just before it, then ``E`` more episodes.

    Returns:
        Mean return of the ``E`` episodes before each update and after the last, ``[K+1]``;
        the fine-tuned model; its env (``env.episodes`` counts the episodes used).
    """
    e_ = cfg.hp.episodes_per_task
    vec = make_env(cfg.train_config, e_, seed)
    env = episode_locked(vec, [task] * e_, observe_task=cfg.baseline == "oracle")
    model = _ppo(cfg, env, n_envs=e_, lr=cfg.finetune_lr, epochs=cfg.finetune_epochs, seed=seed)
    model.policy.load_state_dict(pretrained.policy.state_dict())
    returns = []
    for _ in range(updates):  # one rollout of E episodes, then one PPO update
        model.learn(total_timesteps=e_ * cfg.hp.horizon, reset_num_timesteps=False)
        returns.append(float(env.last_returns.mean()))
    returns.append(_rollout_return(model, env))
    return np.asarray(returns), model, env


def _rollout_return(model: Any, env: Any) -> float:
    """Mean return of one more episode per env with the stochastic policy (no update)."""
    obs = model._last_obs if model._last_obs is not None else env.reset()
    for _ in range(env.horizon):
        actions, _ = model.predict(obs, deterministic=False)
        obs, _, _, _ = env.step(actions)
    return float(env.last_returns.mean())


def task_seed(seed: int, task_index: int) -> int:
    """The fine-tuning seed of held-out task ``task_index`` under evaluation seed ``seed``."""
    state = np.random.SeedSequence([int(seed), int(task_index)]).generate_state(1)[0]
    return int(state) % SEED_BOUND


def evaluate_baseline(cfg: BaselineConfig, pretrained: Any, updates: int) -> EvalResult:
    """The meta-learners' protocol: test-split tasks x evaluation seeds, returns ``[S, K+1, T]``."""
    hp = cfg.hp
    tasks = held_out_tasks(cfg.train_config, hp.eval_tasks)
    seeds = tuple(EVAL_SEED_BASE + s for s in range(hp.eval_seeds))
    returns = np.zeros((len(seeds), hp.eval_inner_steps + 1, len(tasks)))
    for s, seed in enumerate(seeds):
        for t, task in enumerate(tasks):
            returns[s, :, t] = finetune(cfg, pretrained, task, task_seed(seed, t),
                                        hp.eval_inner_steps)[0]
    return EvalResult(cfg.env, cfg.algo, tasks, seeds, cfg.finetune_lr, hp.episodes_per_task,
                      returns, updates)


def config_json(cfg: BaselineConfig) -> dict[str, Any]:
    """``config.json``: the baseline's options and, as ``resolved``, the preset it mirrors."""
    return {"kind": "sb3-baseline", **dataclasses.asdict(cfg),
            "resolved": dataclasses.asdict(cfg.hp),
            "total_pretrain_steps": cfg.total_pretrain_steps}


def main(cfg: BaselineConfig) -> Path:
    """Pre-train, save ``model.zip``, fine-tune and evaluate; write ``eval.json|.png``."""
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    run_dir = make_run_dir(cfg.run_root, cfg.env, cfg.algo, cfg.seed)
    write_json(run_dir / "config.json", config_json(cfg))
    logger = Logger(run_dir, console=False)
    try:
        start = time.perf_counter()
        model, env_steps = pretrain(cfg, logger)
        wall = time.perf_counter() - start
        model.save(run_dir / "model.zip")
        updates = int(model._n_updates)
        result = evaluate_baseline(cfg, model, updates)
        write_eval(result, run_dir, logger=logger, step=env_steps)
    finally:
        logger.close()
    path = run_dir / "eval.json"
    data = json.loads(path.read_text())
    write_json(path, {**data, "env_steps": env_steps, "wall_s": wall, "pretrain_updates":
                      updates, "finetune": {"lr": cfg.finetune_lr, "epochs":
                                            cfg.finetune_epochs, "updates":
                                            cfg.hp.eval_inner_steps}})
    print(f"{cfg.env} {cfg.algo}: {env_steps:,} pre-training env steps in {wall / 60:.1f} min; "
          f"held-out fine-tuning ({len(result.tasks)} test tasks x {len(result.seeds)} seeds, "
          f"{cfg.hp.episodes_per_task} episodes per step):\n{format_table(result)}\n"
          f"run folder: {run_dir}")
    return run_dir


__all__ = ["KINDS", "BaselineConfig", "baseline_config", "episode_locked", "evaluate_baseline",
           "finetune", "main", "pretrain", "task_features", "task_seed"]
