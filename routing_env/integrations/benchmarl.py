"""The routing game as BenchMARL tasks (extra ``benchmarl``, in a venv of its own).

BenchMARL runs its algorithms (MAPPO, IPPO, IQL, QMIX, ...) on tasks: a
``benchmarl.environments.TaskClass`` that builds a TorchRL env. :class:`RoutingTask`
has one member per configuration of the env, and each builds TorchRL's
``PettingZooWrapper`` around :func:`routing_env.parallel_env` with flat observations,
so no user code is needed::

    from benchmarl.algorithms import MappoConfig
    from benchmarl.models.mlp import MlpConfig
    from routing_env.integrations.benchmarl import RoutingTask, evaluate, experiment

    task = RoutingTask.PER_TASK_LAYERED.get_task()        # or get_task({"dataset": ..., ...})
    exp = experiment(task, MappoConfig.get_from_yaml(), MlpConfig.get_from_yaml(), max_n_frames=60_000)
    exp.run()
    print(evaluate(exp)["accuracy"])                       # greedy routes on the test split

What the task gives BenchMARL, and why:

- **Groups**: the routers form the group ``"router"`` (``router_0 .. router_{K-1}``) and
  the dispatcher, if any, ``"dispatcher"``. BenchMARL's ``share_policy_params=False``
  gives each router its own network, as the paper's per-task routers.
- **Observations**: one ``float32`` vector per agent (the representation, one-hot task,
  one-hot depth, the action mask and an idle flag); the action mask is also
  ``(group, "action_mask")``, which BenchMARL's policies and Q-value modules apply.
- **Idle frames**: every agent observes every step, but one decides. An idle agent's
  mask allows only action 0 and its reward is 0, so its masked policy gives that action
  probability 1: the log-probability is 0 whatever the weights, and an idle frame adds
  nothing to a policy-gradient loss (PPO's ratio is 1 with no gradient, the entropy 0).
  Critics and Q-functions do see idle frames, and learn that they are worth what the
  agent's next decision brings (the idle flag is in the observation).
- **One routing network**: the function blocks live inside the env and train as it
  steps, so the env BenchMARL collects with must be the only one: a task built here
  refuses more than one env per worker (``on_policy_n_envs_per_worker``,
  ``off_policy_n_envs_per_worker`` and ``evaluation_episodes`` must be 1), and every env
  a task builds plays the same game (BenchMARL builds a test env first; it is used for
  its specs). BenchMARL's own evaluation would step that game in the middle of a
  collection, so :func:`experiment` turns it off; :func:`evaluate` routes the test split
  greedily afterwards, through the same game.

``examples/benchmarl_routers.py`` trains routers with any of these algorithms and prints
their test accuracy.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from routing_env.extras import import_extra
from routing_env.integrations.torchrl import greedy_pass, group_map, samples_to_score
from routing_env.parallel_env import RoutingParallelEnv, parallel_env

if TYPE_CHECKING:  # pragma: no cover
    from benchmarl.experiment import Experiment
    from torchrl.envs import EnvBase

__all__ = ["CONFIGURATIONS", "RoutingTask", "RoutingTaskClass", "evaluate", "experiment", "routing_game_of"]

#: The task members and the env arguments each stands for.
CONFIGURATIONS: dict[str, dict[str, str]] = {
    "PER_TASK_LAYERED": {"router": "per_task", "routing": "layered"},
    "PER_TASK_RECURRENT": {"router": "per_task", "routing": "recurrent"},
    "SINGLE_LAYERED": {"router": "single", "routing": "layered"},
    "SINGLE_RECURRENT": {"router": "single", "routing": "recurrent"},
    "DISPATCHED_LAYERED": {"router": "dispatched", "routing": "layered"},
    "DISPATCHED_RECURRENT": {"router": "dispatched", "routing": "recurrent"},
}


def _import_benchmarl() -> Any:
    return import_extra(
        "benchmarl.environments.common",
        feature="routing_env.integrations.benchmarl",
        extra="benchmarl",
        package="benchmarl>=1.5,<1.6",
    )


_common = _import_benchmarl()


class RoutingTaskClass(_common.TaskClass):  # type: ignore[misc,name-defined]
    """A BenchMARL task that plays one routing game (see the module docstring).

    ``config`` holds the arguments of :func:`routing_env.parallel_env` (``dataset``,
    ``collaboration_reward``, ``samples_per_episode``, ...); the member's configuration
    sets ``router`` and ``routing``. Every env the task builds wraps the same game, made
    on the first call.
    """

    def __init__(self, name: str, config: dict[str, Any] | None) -> None:
        super().__init__(name=name, config=config)
        self._game: RoutingParallelEnv | None = None

    def game(self) -> RoutingParallelEnv:
        """The routing game (a :class:`~routing_env.parallel_env.RoutingParallelEnv`) of this task."""
        if self._game is None:
            config = copy.deepcopy(self.config)
            for key, value in CONFIGURATIONS[self.name].items():
                if config.setdefault(key, value) != value:
                    raise ValueError(
                        f"task {self.name} plays {key}={value!r}; its config sets {key}={config[key]!r}"
                        " (pick the member of RoutingTask with that configuration)"
                    )
            self._game = parallel_env(flat=True, **config)
        return self._game

    def get_env_fun(
        self, num_envs: int, continuous_actions: bool, seed: int | None, device: Any
    ) -> Callable[[], EnvBase]:
        if num_envs != 1:
            raise ValueError(
                f"a routing task runs one env per worker, got num_envs={num_envs}: the function blocks live "
                "in the env, so a second env would train a second network. Set on_policy_n_envs_per_worker, "
                "off_policy_n_envs_per_worker and evaluation_episodes to 1 (routing_env.integrations."
                "benchmarl.experiment does)"
            )
        from torchrl.envs import PettingZooWrapper

        def make() -> EnvBase:
            game = self.game()
            return PettingZooWrapper(
                env=game,
                categorical_actions=True,
                group_map=group_map(game.possible_agents),
                return_state=False,
                seed=seed,
                device=device,
            )

        return make

    def supports_continuous_actions(self) -> bool:
        return False

    def supports_discrete_actions(self) -> bool:
        return True

    def has_render(self, env: EnvBase) -> bool:
        return False

    def max_steps(self, env: EnvBase) -> int:
        game = self.game()
        per_sample = game.aec_env.num_decisions + (1 if game.aec_env.dispatcher is not None else 0)
        return int(game.aec_env.samples_per_episode * per_sample)

    def group_map(self, env: EnvBase) -> dict[str, list[str]]:
        return env.group_map

    def _only(self, env: EnvBase, keep: str) -> Any:
        spec = env.observation_spec.clone()
        for group in self.group_map(env):
            for key in list(spec[group].keys()):
                if key != keep:
                    del spec[group][key]
            if spec[group].is_empty():
                del spec[group]
        return None if spec.is_empty() else spec

    def observation_spec(self, env: EnvBase) -> Any:
        return self._only(env, "observation")

    def action_mask_spec(self, env: EnvBase) -> Any:
        return self._only(env, "action_mask")

    def info_spec(self, env: EnvBase) -> Any:
        return self._only(env, "info")

    def state_spec(self, env: EnvBase) -> Any:
        return None

    def action_spec(self, env: EnvBase) -> Any:
        return env.full_action_spec

    @staticmethod
    def env_name() -> str:
        return "routing_env"


class RoutingTask(_common.Task):  # type: ignore[misc,name-defined]
    """One BenchMARL task per configuration of the routing env (:data:`CONFIGURATIONS`).

    ``RoutingTask.PER_TASK_LAYERED.get_task()`` uses the env's defaults (digits-MTL);
    ``get_task({"dataset": ..., "collaboration_reward": 0.3})`` passes env arguments.
    """

    PER_TASK_LAYERED = None
    PER_TASK_RECURRENT = None
    SINGLE_LAYERED = None
    SINGLE_RECURRENT = None
    DISPATCHED_LAYERED = None
    DISPATCHED_RECURRENT = None

    @staticmethod
    def associated_class() -> type[RoutingTaskClass]:
        return RoutingTaskClass

    def get_from_yaml(self, path: str | None = None) -> RoutingTaskClass:
        """The task with the env's defaults (BenchMARL ships no yaml for it), or the yaml at ``path``."""
        if path is None:
            return self.get_task(config={})
        return super().get_from_yaml(path)

    def get_task(self, config: dict[str, Any] | None = None) -> RoutingTaskClass:
        return RoutingTaskClass(name=self.name, config={} if config is None else dict(config))


def experiment(
    task: RoutingTaskClass,
    algorithm_config: Any,
    model_config: Any,
    *,
    seed: int = 0,
    critic_model_config: Any = None,
    config: Any = None,
    **overrides: Any,
) -> Experiment:
    """A BenchMARL ``Experiment`` on a routing task, set up for one routing network.

    Starts from ``config`` (default: BenchMARL's ``ExperimentConfig.get_from_yaml()``) with
    ``overrides`` applied (e.g. ``max_n_frames=60_000``, ``on_policy_collected_frames_per_batch=600``),
    then sets one env per worker, no BenchMARL evaluation (see the module docstring), CPU
    devices unless set, and no loggers unless set.

    Raises:
        TypeError: When ``task`` is not a routing task.
    """
    from benchmarl.experiment import Experiment, ExperimentConfig

    if not isinstance(task, RoutingTaskClass):
        raise TypeError(f"task must be a RoutingTask member's task (RoutingTask.X.get_task()), got {task!r}")
    cfg = copy.deepcopy(config) if config is not None else ExperimentConfig.get_from_yaml()
    defaults = {
        "sampling_device": "cpu",
        "train_device": "cpu",
        "buffer_device": "cpu",
        "loggers": [],
        "create_json": False,
        "save_folder": None,
        "checkpoint_interval": 0,
        "render": False,
    }
    for key, value in {**defaults, **overrides}.items():
        if not hasattr(cfg, key):
            raise TypeError(f"ExperimentConfig has no field {key!r}")
        setattr(cfg, key, value)
    cfg.on_policy_n_envs_per_worker = 1
    cfg.off_policy_n_envs_per_worker = 1
    cfg.evaluation = False
    cfg.evaluation_episodes = 1
    return Experiment(
        task=task,
        algorithm_config=algorithm_config,
        model_config=model_config,
        critic_model_config=critic_model_config,
        seed=seed,
        config=cfg,
    )


def routing_game_of(exp: Experiment) -> RoutingParallelEnv:
    """The routing game an experiment on a :class:`RoutingTaskClass` plays."""
    if not isinstance(exp.task, RoutingTaskClass):
        raise TypeError(f"the experiment's task is not a routing task: {exp.task!r}")
    return exp.task.game()


def evaluate(
    exp: Experiment, *, split: Literal["test", "validation"] = "test", num_samples: int | None = None
) -> dict[str, Any]:
    """Route a split greedily with an experiment's policy; the env's evaluation.

    The policy acts with TorchRL's deterministic exploration type (the most probable
    allowed block), without gradients, through a fresh TorchRL wrapper of the
    experiment's routing game (so its blocks are the trained ones). The game starts a
    pass over the split (nothing is trained) and goes back to training afterwards;
    BenchMARL's collector resets it before it collects again.

    Args:
        exp: A BenchMARL experiment made by :func:`experiment` (after ``exp.run()``).
        split: ``"test"``, or ``"validation"`` when the dataset has one (choose settings on it).
        num_samples: Samples to score (default: the whole split).

    Returns:
        ``evaluation()`` of the routing env: ``{"accuracy", "accuracy_per_task",
        "samples", "complete"}``.

    Raises:
        ValueError: When ``num_samples`` is not a positive int, or the split is unknown or empty.
        TypeError: When the experiment's task is not a routing task.
    """
    from torchrl.envs import PettingZooWrapper

    game = routing_game_of(exp)
    num_samples = samples_to_score(game.aec_env, split, num_samples)  # before the wrapper resets the game
    env = PettingZooWrapper(
        env=game, categorical_actions=True, group_map=group_map(game.possible_agents), return_state=False
    )
    return greedy_pass(env, exp.policy, game.aec_env, split=split, num_samples=num_samples)
