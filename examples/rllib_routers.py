"""Train per-task routers with RLlib's PPO on a routing network (digits-MTL by default).

Rosenbaum, Klinger & Riemer, "Routing Networks", ICLR 2018, with the routers learned by
RLlib's multi-agent API (new API stack): the routing env reaches RLlib through RLlib's
own ``PettingZooEnv`` adapter, each router agent ``router_t`` is mapped to an RLModule of
its own (``ActionMaskingTorchRLModule``, RLlib's PPO module that masks invalid blocks),
and PPO trains them. The environment trains the routed network's trunk and blocks on the
routes the agents pick, exactly as with this project's own agents; only the router
learning is RLlib's. Everything runs in this process (``num_env_runners=0``, one learner
on the local CPU); after training the test split is routed greedily through the same env
(the network lives in it) and its accuracy printed.

    pip install 'routing-env[rllib]'
    python examples/rllib_routers.py                   # digits-MTL, about a minute on 2 CPU cores
    python examples/rllib_routers.py --help

A uniformly random router stays at the ~90% majority rate of digits-MTL's
one-vs-rest tasks (its routes carry no task information). PPO's stochastic routers must
concentrate on task-specific routes before the blocks can learn each task, so they need
more samples than an epsilon-greedy learner; KL-regularised PPO (RLlib's default
``use_kl_loss``) concentrates more slowly still, hence ``--kl-loss`` off by default. The
env defaults here (Adam at 1e-3, minibatches of 16) train the blocks fast enough for a
short run; the paper's are ``--optimizer sgd --lr 1e-2 --batch-size 64``. Ray writes its
session logs under /tmp/ray; the empty run folder RLlib makes under ~/ray_results is
removed again; nothing else is written.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

import routing_env
from routing_env.datasets import load_dataset, subsample
from routing_env.experiments import DatasetName, parse_args, seed_everything
from routing_env.extras import missing_extra


@dataclass
class Args:
    """Train per-task routers with RLlib's PPO on a routing network (routing-all-fc, ICLR 2018)."""

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
    """training samples to route (one sample: one decision per routed layer); rounded up to whole iterations"""
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

    # --- routers (RLlib PPO, one RLModule per agent)
    router: Literal["per_task", "single"] = "per_task"
    """one router per task (the paper's best) or one for all tasks"""
    representation: bool = False
    """also feed the representation v to the routers; default: depth and task only"""
    hidden: int = 16
    """hidden units of each module's policy and value MLPs"""
    ppo_lr: float = 0.1
    """PPO learning rate"""
    samples_per_iteration: int = 200
    """samples routed per PPO iteration (train batch: this x decisions env steps)"""
    minibatch_size: int = 64
    """PPO minibatch size (env steps)"""
    num_epochs: int = 10
    """PPO epochs over each train batch"""
    kl_loss: bool = False
    """use PPO's adaptive KL penalty besides clipping (RLlib's default; slows the routers' concentration)"""
    entropy_coeff: float = 0.0
    """PPO entropy bonus"""

    # --- machine
    seed: int = 0
    """seed of the run: network weights, data order, modules, sampling"""
    torch_threads: int | None = 1
    """torch intra-op threads (none: torch's default)"""

    def __post_init__(self) -> None:
        if self.num_samples < 1:
            raise ValueError(f"--num-samples must be >= 1, got {self.num_samples}")
        if self.samples_per_iteration < 1:
            raise ValueError(f"--samples-per-iteration must be >= 1, got {self.samples_per_iteration}")


ENV_NAME = "routing_env_rllib"


def build_config(args: Args, env_config: dict[str, Any], agents: list[str], decisions: int) -> Any:
    """PPO on the new API stack: one ``ActionMaskingTorchRLModule`` per router, mapped by agent id."""
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.multi_rl_module import MultiRLModuleSpec
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec
    from ray.rllib.examples.rl_modules.classes.action_masking_rlm import ActionMaskingTorchRLModule

    steps = args.samples_per_iteration * decisions
    module = RLModuleSpec(
        module_class=ActionMaskingTorchRLModule,
        model_config={"fcnet_hiddens": [args.hidden], "vf_share_layers": False},
    )
    return (
        PPOConfig()
        .environment(ENV_NAME, env_config=env_config)
        .env_runners(num_env_runners=0, num_envs_per_env_runner=1, rollout_fragment_length=steps)
        .learners(num_learners=0)
        .multi_agent(policies=set(agents), policy_mapping_fn=lambda agent_id, *_, **__: agent_id)
        .rl_module(rl_module_spec=MultiRLModuleSpec(rl_module_specs=dict.fromkeys(agents, module)))
        .training(
            train_batch_size_per_learner=steps,
            minibatch_size=args.minibatch_size,
            num_epochs=args.num_epochs,
            lr=args.ppo_lr,
            gamma=1.0,
            lambda_=1.0,
            use_kl_loss=args.kl_loss,
            entropy_coeff=args.entropy_coeff,
        )
        .debugging(seed=args.seed)
    )


def main(args: Args) -> dict[str, Any]:
    """Train the routers and return ``{"test_accuracy", ...}`` of the greedy routes."""
    try:
        import ray
        from ray.tune.registry import register_env

        from routing_env.integrations.rllib import evaluate_modules, rllib_env, routing_env_of
    except ImportError:
        missing = missing_extra(feature="examples/rllib_routers.py", extra="rllib", package="RLlib")
        sys.exit(str(missing))

    if args.torch_threads is not None:
        torch.set_num_threads(args.torch_threads)
    seed_everything(args.seed)
    dataset = subsample(
        load_dataset(args.dataset, root=args.data_root, seed=args.data_seed),
        max_train=None,
        max_test=args.max_test_samples,
        seed=args.data_seed,
    )
    env_config = {
        "dataset": dataset,
        "router": args.router,
        "collaboration_reward": args.rho,
        "batch_size": args.batch_size,
        "optimizer": args.optimizer,
        "lr": args.lr,
        "hidden_width": args.hidden_width,
    }
    representation = args.representation

    def make_env(config: dict[str, Any]) -> Any:
        return rllib_env(routing_env.env(**config), representation=representation)

    probe = routing_env.raw_env(**env_config)
    agents, decisions = list(probe.possible_agents), probe.num_decisions
    del probe

    started_ray = not ray.is_initialized()
    if started_ray:
        ray.init(num_cpus=1, include_dashboard=False)
    try:
        register_env(ENV_NAME, make_env)
        algo = build_config(args, env_config, agents, decisions).build_algo()
        env = routing_env_of(algo)
        routing = env.env.unwrapped  # the RoutingEnv: its samples_routed counts the training samples
        print(
            f"{dataset.name}: {len(agents)} RLlib PPO routers ({args.router}), {args.num_samples} training samples, "
            f"{len(dataset.test)} test samples",
            file=sys.stderr,
        )
        start = time.perf_counter()
        iterations = 0
        while routing.samples_routed < args.num_samples:
            algo.train()
            iterations += 1
        train_time = time.perf_counter() - start
        result = evaluate_modules(env, algo.get_module)
        algo.stop()
        # Ray's Trainable makes a run folder under ~/ray_results even outside Tune; this
        # script logs nothing there, so remove it again when it stayed empty
        logdir = Path(algo.logdir)
        if logdir.is_dir() and not any(logdir.iterdir()):
            logdir.rmdir()
    finally:
        if started_ray:
            ray.shutdown()
    summary = {
        "test_accuracy": result["accuracy"],
        "test_accuracy_per_task": result["accuracy_per_task"],
        "test_samples": result["samples"],
        "train_samples": routing.samples_routed,
        "iterations": iterations,
        "train_time_s": train_time,
    }
    print(
        f"RLlib PPO ({args.router}): greedy test accuracy {100 * result['accuracy']:.2f}% "
        f"on {result['samples']} test samples after {routing.samples_routed} training samples "
        f"({iterations} iterations, {train_time:.0f}s training)"
    )
    return summary


if __name__ == "__main__":
    main(parse_args(Args))
