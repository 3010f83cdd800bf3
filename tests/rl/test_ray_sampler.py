"""The Ray sampler back-end: the local sampler's episodes from 2 actors, a killed actor
replaced, the options validated; the learner and the run unchanged."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from metarl.core import get_params
from metarl.envs.batched import make_batched
from metarl.rl.config import TrainConfig
from metarl.rl.policy import GaussianMLPPolicy
from metarl.rl.ray_sampler import RaySampler, ray_installed, task_slices
from metarl.rl.sampler import BatchedSampler, Episodes

FIELDS = ("obs", "actions", "rewards", "masks")
needs_ray = pytest.mark.skipif(not ray_installed(),
                               reason="needs the optional extra ray (pip install 'metarl[ray]')")
# One Ray runtime per xdist worker: the group keeps these tests on one (make test uses
# --dist loadgroup).
ray_group = pytest.mark.xdist_group("ray")


@pytest.fixture(scope="module")
def ray_runtime() -> Iterator[None]:
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _setup(name: str, tasks: int, episodes: int, horizon: int
           ) -> tuple[GaussianMLPPolicy, dict[str, torch.Tensor], list[Any], Episodes]:
    """A policy in float64 (see :func:`_same`) with per-task parameters, and the local
    sampler's episodes of seed 5."""
    env = make_batched(name, tasks * episodes, horizon=horizon, seed=0)
    assert env.single_observation_space.shape and env.single_action_space.shape
    torch.manual_seed(0)
    policy = GaussianMLPPolicy(env.single_observation_space.shape[0],
                               env.single_action_space.shape[0], hidden=(16,)).double()
    params = {k: v.detach().expand(tasks, *v.shape).clone() for k, v in get_params(policy).items()}
    # each task acts with its own params
    params["head.bias"] += 0.1 * torch.randn(tasks, 1, dtype=torch.float64)
    task_list = env.sample_tasks(tasks)
    local = BatchedSampler(env, episodes, "cpu").sample(policy, params, task_list, seed=5)
    env.close()
    return policy, params, task_list, local


def _same(a: Episodes, b: Episodes) -> bool:
    """The same episodes up to float64 rounding.

    Not bit for bit: on this CPU the BLAS kernels behind the policy's batched matmul pick
    their accumulation order by the operands' memory alignment, so a slice of the
    meta-batch computed in another process (fresh tensors) can differ in the last bit, and
    MuJoCo's chaotic contacts amplify that over a rollout (float32: up to 0.1 in HalfCheetah
    actions within 15 steps; float64: about 1e-10). A different seed differs by O(1)."""
    return all(getattr(a, f).dtype == getattr(b, f).dtype
               and torch.allclose(getattr(a, f), getattr(b, f), rtol=0, atol=1e-7)
               for f in FIELDS)


def test_task_slices_are_whole_contiguous_and_balanced() -> None:
    assert task_slices(5, 2) == [(0, 3), (3, 5)]
    assert task_slices(40, 3) == [(0, 14), (14, 27), (27, 40)]
    assert task_slices(4, 4) == [(0, 1), (1, 2), (2, 3), (3, 4)]
    with pytest.raises(ValueError, match="ray_actors"):
        task_slices(3, 4)


@pytest.mark.parametrize(("kw", "field"), [
    ({"sampler": "dask"}, "sampler"), ({"ray_actors": 0}, "ray_actors"),
    ({"sampler": "ray", "ray_actors": 3, "meta_batch": 2}, "ray_actors"),
    ({"ray_address": "auto"}, "ray_address"),  # without --sampler ray
    ({"sampler": "ray", "ray_address": ""}, "ray_address"),
    ({"max_nonfinite_updates": 0}, "max_nonfinite_updates"),
])
def test_bad_sampler_options_name_the_field(kw: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        TrainConfig(**kw)


def test_sampler_ray_without_ray_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import metarl.rl.ray_sampler as module

    monkeypatch.setattr(module, "ray_installed", lambda: False)
    with pytest.raises(ValueError, match=r"sampler 'ray' needs .*metarl\[ray\]"):
        TrainConfig(sampler="ray")


@needs_ray
@ray_group
@pytest.mark.parametrize(("name", "horizon"), [("Navigation2D", 20), ("HalfCheetahVel", 15)])
def test_two_actors_give_the_local_samplers_episodes(ray_runtime: None, name: str,
                                                     horizon: int) -> None:
    policy, params, tasks, local = _setup(name, 5, 3, horizon)  # slices of 3 and 2 tasks
    sampler = RaySampler(name, 5, 3, horizon, actors=2)
    try:
        assert sampler.num_envs == 15
        assert _same(sampler.sample(policy, params, tasks, seed=5), local)
        assert not _same(sampler.sample(policy, params, tasks, seed=6), local)
    finally:
        sampler.close()


class KillingSampler(RaySampler):
    """Kills slice 0's actor right after its sampling call was sent (fault injection)."""

    killed: list[Any]

    def _submit(self, i: int, call: Any) -> Any:
        import ray

        ref = super()._submit(i, call)
        if i == 0 and not getattr(self, "killed", None):
            self.killed = [self.workers[0]]
            ray.kill(self.workers[0])
        return ref


@needs_ray
@ray_group
def test_a_killed_actor_is_replaced_and_its_tasks_sampled_again(
        ray_runtime: None, capsys: pytest.CaptureFixture[str]) -> None:
    import ray

    policy, params, tasks, local = _setup("Navigation2D", 4, 2, 12)
    sampler = KillingSampler("Navigation2D", 4, 2, 12, actors=2)
    try:
        episodes = sampler.sample(policy, params, tasks, seed=5)
        assert sampler.replaced == 1 and sampler.workers[0] is not sampler.killed[0]
        assert episodes.rewards.shape == (4, 2, 12)  # every task's episodes, once
        assert _same(episodes, local)
        assert "actor of tasks 0..1 died" in capsys.readouterr().err
        with pytest.raises(ray.exceptions.RayActorError):
            ray.get(sampler.killed[0].sample.remote(policy, {}, [], 0, 0))
    finally:
        sampler.close()


@needs_ray
@ray_group
@pytest.mark.slow
def test_training_on_ray_actors_equals_training_locally(tmp_path: Path) -> None:
    """The learner is unchanged: 2 iterations of metarl train give the same parameters (to
    float32 rounding, see :func:`_same`) with --sampler ray (a subprocess starting and
    stopping its own Ray runtime, 2 actors) and --sampler local."""
    import subprocess
    import sys

    from metarl.rl.train import main
    from metarl.runs import latest_checkpoint, load_checkpoint

    def learner_params(run_dir: Path) -> dict[str, torch.Tensor]:
        path = latest_checkpoint(run_dir)
        assert path is not None
        return dict(load_checkpoint(path)["learner"]["policy"])

    common: dict[str, Any] = dict(
        env="Navigation2D", meta_batch=3, episodes_per_task=2, horizon=10, iterations=2,
        eval_tasks=2, eval_seeds=1, eval_inner_steps=1, eval_every=0, threads=1,
        meta_update_path="batched")
    local = main(TrainConfig(**common, progress=False, run_root=str(tmp_path / "a")))
    argv = [sys.executable, "-m", "metarl.cli", "train", "--no-progress", "--run-root",
            str(tmp_path / "b"), "--sampler", "ray", "--ray-actors", "2"]
    for k, v in common.items():
        argv += [f"--{k.replace('_', '-')}", str(v)]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=300,
                       cwd=Path(__file__).resolve().parents[2])
    assert r.returncode == 0, r.stderr
    (remote,) = (tmp_path / "b").iterdir()
    a, b = learner_params(local), learner_params(remote)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
