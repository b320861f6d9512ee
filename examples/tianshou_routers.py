"""Train per-task routers with Tianshou (REINFORCE or DQN) on a routing network (digits-MTL by default).

Rosenbaum, Klinger & Riemer, "Routing Networks", ICLR 2018, with the routers learned by
a third-party library: one Tianshou 2.x algorithm per router agent, dispatched by
Tianshou's ``MultiAgentOnPolicyAlgorithm`` (REINFORCE, the default) or
``MultiAgentOffPolicyAlgorithm`` (DQN) through Tianshou's own ``PettingZooEnv`` adapter
(``routing_env.integrations.tianshou``). The environment trains the routed network's
trunk and blocks on the routes the agents pick, exactly as with this project's own
agents (``examples/train_wpl.py``); only the router learning is Tianshou's. After
training, the test split is routed greedily through the same env (the network lives in
it) and its accuracy printed.

    pip install 'routing-env[tianshou]'
    python examples/tianshou_routers.py                      # digits-MTL, REINFORCE, under a minute on 2 CPU cores
    python examples/tianshou_routers.py --representation     # MLP routers that also see v
    python examples/tianshou_routers.py --algorithm dqn      # runs; see docs/integrations.md on what it learns
    python examples/tianshou_routers.py --help

A uniformly random router stays near the ~90% majority rate of digits-MTL's
one-vs-rest tasks (its routes carry no task information); per-task REINFORCE routers
concentrate on task-specific routes, on which the blocks learn each task (94-99% test
accuracy after 8000 samples over seeds 0-3; 91% with ``--policy-lr 0``, i.e. without
learning). The env defaults here (Adam at 1e-3, minibatches of 16) train the blocks fast
enough for a short run; the paper's are ``--optimizer sgd --lr 1e-2 --batch-size 64``.
Nothing is written to disk.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass
from typing import Any, Literal

import torch

import routing_env
from routing_env.datasets import load_dataset, subsample
from routing_env.experiments import DatasetName, parse_args, seed_everything
from routing_env.extras import missing_extra
from routing_env.integrations.tianshou import (
    evaluate_policy,
    masked_actor,
    tianshou_env,
    training_step_for_each_agent,
)

ALGORITHM_NAMES = {"reinforce": "REINFORCE", "dqn": "DQN"}


@dataclass
class Args:
    """Train per-task routers with Tianshou (REINFORCE or DQN) on a routing network (routing-all-fc, ICLR 2018)."""

    # --- data
    dataset: DatasetName = "digits-mtl"
    """multi-task dataset; digits-mtl ships with scikit-learn (offline), the others are read from --data-root"""
    data_root: str | None = None
    """folder holding the datasets (torchvision layout); default $ROUTING_ENV_DATA, else ~/.cache/routing_env"""
    data_seed: int = 0
    """seed of the dataset's train/test construction"""
    max_test_samples: int | None = None
    """evaluate on a per-task stratified subset of at most this many test samples"""

    # --- budget and block training (done by the environment)
    num_samples: int = 10_000
    """training samples to route (one sample: one decision per routed layer)"""
    batch_size: int = 16
    """routed samples per block-training step of the env"""
    optimizer: Literal["sgd", "adam"] = "adam"
    """optimizer of the trunk and function blocks (the paper: sgd)"""
    lr: float = 1e-3
    """learning rate of the trunk and function blocks (the paper: 1e-2 with sgd)"""
    rho: float = 0.0
    """collaboration reward rho in [0, 1]"""
    hidden_width: int = 128
    """units of the routed hidden fc blocks"""

    # --- routers (one Tianshou algorithm per agent)
    algorithm: Literal["reinforce", "dqn"] = "reinforce"
    """Tianshou's REINFORCE (discrete policy gradient, masked actor) or DQN (epsilon-greedy)"""
    router: Literal["per_task", "single"] = "per_task"
    """one router per task (the paper's best) or one for all tasks"""
    representation: bool = False
    """also feed the representation v to the routers (MLP); default: depth and task only (tabular-like)"""
    hidden_sizes: int = 0
    """hidden units of each policy / Q-network (0: linear on the one-hot features, i.e. a table); 64 is used with --representation when 0"""
    policy_lr: float | None = None
    """Adam learning rate of each router's network (none: 0.3 for reinforce, 1e-2 for dqn)"""
    gamma: float = 1.0
    """discount of the rewards within a route"""
    collect_samples: int | None = None
    """samples routed per collection step, i.e. between updates (none: 50 for reinforce, 10 for dqn)"""
    # REINFORCE
    return_standardization: bool = True
    """REINFORCE: standardize returns with their running mean and std (the mean acts as a baseline)"""
    update_repetitions: int = 5
    """REINFORCE: gradient steps on each collected batch"""
    # DQN
    eps_start: float = 1.0
    """DQN: epsilon-greedy exploration at the start of training"""
    eps_end: float = 0.02
    """DQN: epsilon after the decay"""
    eps_fraction: float = 0.2
    """DQN: fraction of the budget over which epsilon decays linearly"""
    updates_per_step: float = 0.05
    """DQN: gradient steps per collected environment step"""
    dqn_batch_size: int = 256
    """DQN: transitions per gradient step (split among the agents by Tianshou)"""
    buffer_size: int = 20_000
    """DQN: replay buffer size in transitions"""
    target_update_freq: int = 0
    """DQN: gradient steps between target-network syncs (0: no target network)"""

    # --- machine
    seed: int = 0
    """seed of the run: network weights, data order, Q-networks, exploration"""
    progress: bool = False
    """show Tianshou's progress bars"""
    torch_threads: int | None = 1
    """torch intra-op threads (none: torch's default)"""

    def __post_init__(self) -> None:
        if self.num_samples < 1:
            raise ValueError(f"--num-samples must be >= 1, got {self.num_samples}")
        if not 0.0 < self.eps_fraction <= 1.0:
            raise ValueError(f"--eps-fraction must be in (0, 1], got {self.eps_fraction}")
        if self.collect_samples is not None and self.collect_samples < 1:
            raise ValueError(f"--collect-samples must be >= 1 or none, got {self.collect_samples}")
        if self.policy_lr is not None and self.policy_lr < 0:
            raise ValueError(f"--policy-lr must be >= 0, got {self.policy_lr}")

    @property
    def learning_rate(self) -> float:
        return (
            self.policy_lr if self.policy_lr is not None else {"reinforce": 0.3, "dqn": 1e-2}[self.algorithm]
        )

    @property
    def samples_per_collect(self) -> int:
        return self.collect_samples or {"reinforce": 50, "dqn": 10}[self.algorithm]


def build_algorithm(args: Args, env: Any) -> Any:
    """One algorithm per router agent, in the adapter's agent order, under Tianshou's MARL dispatcher."""
    from tianshou.algorithm import DQN, Reinforce
    from tianshou.algorithm.modelfree.dqn import DiscreteQLearningPolicy
    from tianshou.algorithm.modelfree.reinforce import DiscreteActorPolicy
    from tianshou.algorithm.multiagent.marl import MultiAgentOffPolicyAlgorithm, MultiAgentOnPolicyAlgorithm
    from tianshou.algorithm.optim import AdamOptimizerFactory
    from tianshou.utils.net.common import Net

    obs_space = env.observation_space["observation"]
    hidden = args.hidden_sizes or (64 if args.representation else 0)
    optim = AdamOptimizerFactory(lr=args.learning_rate)
    algorithms: list[Any] = []
    for _ in env.agents:
        net = Net(
            state_shape=obs_space.shape,
            action_shape=env.action_space.n,
            hidden_sizes=[hidden] if hidden else [],
        )
        if args.algorithm == "reinforce":
            # Tianshou's actor policies sample from the actor's logits as they are: mask them
            actor_policy = DiscreteActorPolicy(
                actor=masked_actor(net),
                action_space=env.action_space,
                observation_space=obs_space,
                deterministic_eval=True,  # greedy routes when evaluating
            )
            algorithms.append(
                Reinforce(
                    policy=actor_policy,
                    optim=optim,
                    gamma=args.gamma,
                    return_standardization=args.return_standardization,
                )
            )
        else:
            q_policy = DiscreteQLearningPolicy(  # masks Q-values with obs.mask itself
                model=net,
                action_space=env.action_space,
                observation_space=obs_space,
                eps_training=args.eps_start,
            )
            algorithms.append(
                DQN(
                    policy=q_policy, optim=optim, gamma=args.gamma, target_update_freq=args.target_update_freq
                )
            )
    if args.algorithm == "reinforce":
        return MultiAgentOnPolicyAlgorithm(algorithms=algorithms, env=env)
    return MultiAgentOffPolicyAlgorithm(algorithms=algorithms, env=env)


def trainer_params(
    args: Args, algorithm: Any, env: Any, collector: Any, total_steps: int, decisions: int
) -> Any:
    """Tianshou's trainer settings: one epoch over the whole budget, no test collector."""
    from tianshou.trainer import OffPolicyTrainerParams, OnPolicyTrainerParams

    common = {
        "training_collector": collector,
        "max_epochs": 1,
        "epoch_num_steps": total_steps,
        "verbose": False,
        "show_progress": args.progress,
    }
    if args.algorithm == "reinforce":
        return OnPolicyTrainerParams(
            **common,
            collection_step_num_env_steps=None,
            collection_step_num_episodes=args.samples_per_collect,
            batch_size=None,  # one gradient step on all that was collected
            update_step_num_repetitions=args.update_repetitions,
        )

    def set_epsilon(epoch: int, env_step: int) -> None:
        progress = min(1.0, env_step / (args.eps_fraction * total_steps))
        eps = args.eps_start + progress * (args.eps_end - args.eps_start)
        for agent in env.agents:
            algorithm.get_algorithm(agent).policy.set_eps_training(eps)

    return OffPolicyTrainerParams(
        **common,
        collection_step_num_env_steps=args.samples_per_collect * decisions,
        update_step_num_gradient_steps_per_sample=args.updates_per_step,
        batch_size=args.dqn_batch_size,
        training_fn=set_epsilon,
    )


def main(args: Args) -> dict[str, Any]:
    """Train the routers and return ``{"test_accuracy", ...}`` of the greedy routes."""
    try:
        from tianshou.data import Collector, VectorReplayBuffer
        from tianshou.env import DummyVectorEnv
    except ImportError:
        missing = missing_extra(
            feature="examples/tianshou_routers.py", extra="tianshou", package="Tianshou 2.x"
        )
        sys.exit(str(missing))

    if args.torch_threads is not None:
        torch.set_num_threads(args.torch_threads)
    # Tianshou logs a warning on every collect for multi-agent (episodes x agents) returns
    logging.getLogger("tianshou.data.stats").setLevel(logging.ERROR)
    seed_everything(args.seed)  # network init, action sampling and epsilon-greedy draws (global generators)

    dataset = subsample(
        load_dataset(args.dataset, root=args.data_root, seed=args.data_seed),
        max_train=None,
        max_test=args.max_test_samples,
        seed=args.data_seed,
    )
    aec = routing_env.env(
        dataset=dataset,
        router=args.router,
        collaboration_reward=args.rho,
        batch_size=args.batch_size,
        optimizer=args.optimizer,
        lr=args.lr,
        hidden_width=args.hidden_width,
    )
    env = tianshou_env(aec, representation=args.representation)
    venv = DummyVectorEnv([lambda: env])
    venv.seed(args.seed)  # the one seeded reset: restarts the routing run from args.seed
    algorithm = build_algorithm(args, env)
    decisions = aec.unwrapped.num_decisions
    total_steps = args.num_samples * decisions
    # on-policy: the buffer holds one collection step, and is emptied after each update
    buffer_size = args.buffer_size if args.algorithm == "dqn" else 2 * args.samples_per_collect * decisions
    collector = Collector(algorithm, venv, VectorReplayBuffer(buffer_size, 1), exploration_noise=True)

    print(
        f"{dataset.name}: {len(env.agents)} Tianshou {ALGORITHM_NAMES[args.algorithm]} routers ({args.router}), "
        f"{args.num_samples} training samples, {len(dataset.test)} test samples",
        file=sys.stderr,
    )
    start = time.perf_counter()
    # Tianshou 2.0.1 flags only the multi-agent policy as training; without this the
    # per-agent policies would collect greedily (no epsilon, no sampling)
    with training_step_for_each_agent(algorithm):
        algorithm.run_training(trainer_params(args, algorithm, env, collector, total_steps, decisions))
    train_time = time.perf_counter() - start
    result = evaluate_policy(algorithm.policy, env)
    summary = {
        "test_accuracy": result["accuracy"],
        "test_accuracy_per_task": result["accuracy_per_task"],
        "test_samples": result["samples"],
        "train_samples": aec.unwrapped.samples_routed,
        "train_time_s": train_time,
        "eval_time_s": time.perf_counter() - start - train_time,
    }
    print(
        f"Tianshou {ALGORITHM_NAMES[args.algorithm]} ({args.router}): greedy test accuracy {100 * result['accuracy']:.2f}% "
        f"on {result['samples']} test samples after {aec.unwrapped.samples_routed} training samples "
        f"({train_time:.0f}s training)"
    )
    return summary


if __name__ == "__main__":
    main(parse_args(Args))
