"""BenchMARL's algorithms on the routing tasks (extra ``benchmarl``; its own venv in CI,
since BenchMARL needs torchrl<0.12 where the ``torchrl`` extra needs 0.14)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.extras
pytest.importorskip("benchmarl", reason="needs the 'benchmarl' extra: pip install 'routing-env[benchmarl]'")

import torch  # noqa: E402

from .helpers import load_example  # noqa: E402


@pytest.fixture(scope="module")
def example():
    return load_example("benchmarl_routers")


TASKS = [f"{r}_{g}" for r in ("per_task", "single", "dispatched") for g in ("layered", "recurrent")]


def _tiny(example, **kwargs):
    options = dict(
        frames=60,
        frames_per_batch=60,
        minibatch_size=30,
        update_epochs=1,
        optimizer_steps=2,
        max_test_samples=20,
        validation_fraction=None,
    )
    return example.Args(**{**options, **kwargs})


@pytest.mark.parametrize("task", TASKS)
def test_mappo_trains_and_evaluates_every_configuration(example, task):
    """A tiny budget end to end, no user code: BenchMARL's experiment, then greedy routes."""
    summary = example.main(_tiny(example, task=task))
    assert summary["train_samples"] >= 60 // 4  # at most 3 decisions (+ a dispatcher's) per sample
    assert 0.0 <= summary["test_accuracy"] <= 1.0 and summary["test_samples"] == 20
    assert summary["validation_accuracy"] is None


@pytest.mark.parametrize("algorithm", ["ippo", "iql", "qmix"])
def test_other_algorithms_run(example, algorithm):
    summary = example.main(_tiny(example, algorithm=algorithm, validation_fraction=0.1))
    assert 0.0 <= summary["test_accuracy"] <= 1.0
    assert summary["validation_accuracy"] is not None


def test_idle_frames_add_nothing_to_the_policy_gradient(tmp_path):
    """An idle router's mask allows one action: its log-probability is 0 with no gradient."""
    from benchmarl.algorithms import MappoConfig
    from benchmarl.models.mlp import MlpConfig

    from routing_env.integrations.benchmarl import RoutingTask, experiment

    exp = experiment(
        RoutingTask.PER_TASK_LAYERED.get_task({"samples_per_episode": 2}),
        MappoConfig.get_from_yaml(),
        MlpConfig.get_from_yaml(),
        save_folder=str(tmp_path),
        max_n_frames=30,
        on_policy_collected_frames_per_batch=30,
        on_policy_minibatch_size=30,
    )
    batch = next(iter(exp.collector))
    idle = batch["router", "info", "idle"].bool()
    assert idle.any() and (~idle).any()
    assert bool((batch["router", "action_mask"][idle].sum(-1) == 1).all())
    actor = exp.group_policies["router"]  # the ProbabilisticActor PPO's loss reads
    dist = actor.get_dist(batch)
    log_prob = dist.log_prob(batch["router", "action"])
    assert torch.allclose(log_prob[idle], torch.zeros(()))
    assert not torch.allclose(log_prob[~idle], torch.zeros(()))
    log_prob[idle].sum().backward()
    grads = [p.grad for p in actor.parameters() if p.grad is not None]
    assert grads and all(float(g.abs().max()) == 0.0 for g in grads)
    exp.collector.shutdown()


def test_more_than_one_env_per_worker_is_refused():
    from routing_env.integrations.benchmarl import RoutingTask

    task = RoutingTask.SINGLE_LAYERED.get_task()
    with pytest.raises(ValueError, match="one env per worker"):
        task.get_env_fun(num_envs=2, continuous_actions=False, seed=0, device="cpu")


def test_a_config_that_contradicts_the_member_is_refused():
    from routing_env.integrations.benchmarl import RoutingTask

    task = RoutingTask.SINGLE_LAYERED.get_task({"router": "per_task"})
    with pytest.raises(ValueError, match="plays router='single'"):
        task.game()
