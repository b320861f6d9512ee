"""Train per-task routers with TorchRL's PPO loss on the batched routing game (digits-MTL by default).

Rosenbaum, Klinger & Riemer, "Routing Networks", ICLR 2018, with the routers learned by
TorchRL through ``routing_env.integrations.torchrl_batched.BatchedTorchRLEnv``: a TorchRL
``EnvBase`` with ``batch_size=[64]`` whose step decides one depth for a whole minibatch,
so TorchRL's ``Collector`` gathers 64 routing decisions per env step. Each router is a
table of logits per depth (the paper's tabular routers), indexed by the ``"agent"`` entry
of each row; the policy is a ``ProbabilisticActor`` with a ``MaskedCategorical`` over
the allowed blocks; GAE (gamma 1, lambda 1: the Monte-Carlo return of the sample minus a
learned per-router, per-depth value) gives the advantages and ``ClipPPOLoss`` (masked
with ``"valid"``, which is False only on padding rows) trains them. The env trains the
trunk and blocks on the routes picked, as with this project's own agents; after training
the test split is routed greedily through the same env.

    pip install 'routing-env[torchrl]'
    python examples/torchrl_batched_routers.py           # digits-MTL, 10,000 samples, under a minute on 1 core
    python examples/torchrl_batched_routers.py --help

A uniformly random router stays near the 90% majority rate of digits-MTL's one-vs-rest
tasks. Nothing is written to disk.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from routing_env.datasets import load_dataset, split_validation
from routing_env.experiments import DatasetName, parse_args, seed_everything
from routing_env.extras import missing_extra


@dataclass
class Args:
    """Train per-task routers with TorchRL's PPO loss on the batched routing game (ICLR 2018)."""

    dataset: DatasetName = "digits-mtl"
    """multi-task dataset; digits-mtl ships with scikit-learn (offline), the others are read from --data-root"""
    data_root: str | None = None
    """folder holding the datasets (torchvision layout); default $ROUTING_ENV_DATA, else ~/.cache/routing_env"""
    validation_fraction: float | None = 0.1
    """share of the training inputs set aside as a validation split (drawn with seed 0), whose greedy accuracy is reported: choose settings on it, never on the test split (none: no validation split)"""
    router: Literal["per_task", "single"] = "per_task"
    """one router per task (the paper's best) or one for all tasks"""
    num_samples: int = 10_000
    """training samples to route (rounded up to whole collected batches)"""
    batch_size: int = 64
    """samples per minibatch: the env's batch size and the block-training step's"""
    minibatches_per_update: int = 1
    """minibatches collected between PPO updates"""
    ppo_epochs: int = 4
    """gradient steps of the PPO loss on each collected batch"""
    policy_lr: float = 3.0
    """Adam learning rate of the routers' tables and values (0: no learning, a control)"""
    clip_epsilon: float = 0.2
    """PPO clipping of the probability ratio"""
    seed: int = 0
    """seed of the run: network weights, data order, router initialization and sampling"""
    torch_threads: int | None = 1
    """torch intra-op threads (none: torch's default)"""

    def __post_init__(self) -> None:
        for name in ("num_samples", "batch_size", "minibatches_per_update", "ppo_epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if not self.policy_lr >= 0:
            raise ValueError(f"--policy-lr must be >= 0, got {self.policy_lr}")
        if self.validation_fraction is not None and not 0 < self.validation_fraction <= 0.5:
            raise ValueError(f"--validation-fraction must be in (0, 0.5], got {self.validation_fraction}")


class RouterTable(nn.Module):
    """One row of ``outputs`` numbers per (agent, depth): a tabular router per agent."""

    def __init__(self, agents: int, depths: int, outputs: int) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.zeros(agents, depths, outputs))

    def forward(self, agent: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
        return self.table[agent, depth]


def build_modules(env: Any) -> tuple[Any, Any]:
    """The routers' masked categorical policy and their values, one table each per agent."""
    from tensordict.nn import TensorDictModule
    from torchrl.modules import MaskedCategorical, ProbabilisticActor

    depths = env.routing.num_decisions
    logits = TensorDictModule(
        RouterTable(env.num_agents, depths, env.num_choices), in_keys=["agent", "depth"], out_keys=["logits"]
    )
    policy = ProbabilisticActor(
        module=logits,
        in_keys={"logits": "logits", "mask": "action_mask"},
        out_keys=["action"],
        distribution_class=MaskedCategorical,
        return_log_prob=True,
    )
    value = TensorDictModule(
        RouterTable(env.num_agents, depths, 1), in_keys=["agent", "depth"], out_keys=["state_value"]
    )
    return policy, value


def build_loss(args: Args, policy: Any, value: Any) -> Any:
    """TorchRL's clipped PPO loss over the valid rows, advantages by GAE (gamma = lambda = 1)."""
    from torchrl.objectives import ClipPPOLoss, ValueEstimators

    loss = ClipPPOLoss(
        actor_network=policy,
        critic_network=value,
        clip_epsilon=args.clip_epsilon,
        entropy_bonus=False,
        loss_critic_type="l2",
        normalize_advantage=False,
    )
    loss.make_value_estimator(ValueEstimators.GAE, gamma=1.0, lmbda=1.0)
    loss.loss_mask_key = "valid"  # padding rows (a short last minibatch) do not train
    return loss


def main(args: Args) -> dict[str, Any]:
    """Train the routers and return ``{"test_accuracy", ...}`` of the greedy routes."""
    try:
        from torchrl.collectors import Collector

        from routing_env.integrations.torchrl_batched import BatchedTorchRLEnv, evaluate_batched_policy
    except ImportError:
        missing = missing_extra(
            feature="examples/torchrl_batched_routers.py", extra="torchrl", package="TorchRL"
        )
        sys.exit(str(missing))

    if args.torch_threads is not None:
        torch.set_num_threads(args.torch_threads)
    seed_everything(args.seed)
    dataset = load_dataset(args.dataset, root=args.data_root)
    if args.validation_fraction is not None:
        dataset = split_validation(dataset, args.validation_fraction, seed=0)
    # the tables read only the agent and depth: no representation v in the observations
    env = BatchedTorchRLEnv(
        dataset=dataset, router=args.router, batch_size=args.batch_size, representation=False
    )
    env.set_seed(args.seed)  # the next reset starts the routing run from args.seed
    policy, value = build_modules(env)
    loss = build_loss(args, policy, value)
    optimizer = torch.optim.Adam(loss.parameters(), lr=args.policy_lr)
    steps = env.routing.num_decisions + (1 if env.routing.dispatcher else 0)
    frames_per_batch = env.rows * steps * args.minibatches_per_update
    batches = -(-args.num_samples // (env.rows * args.minibatches_per_update))
    collector = Collector(
        env,
        policy,
        frames_per_batch=frames_per_batch,
        total_frames=frames_per_batch * batches,
        auto_register_policy_transforms=False,
    )
    print(
        f"{dataset.name}: TorchRL PPO routers ({args.router}) on the batched game, "
        f"{batches * env.rows * args.minibatches_per_update} training samples, {len(dataset.test)} test samples",
        file=sys.stderr,
    )
    start = time.perf_counter()
    for data in collector:
        with torch.no_grad():
            loss.value_estimator(
                data, params=loss.critic_network_params, target_params=loss.target_critic_network_params
            )
        for _ in range(args.ppo_epochs):
            terms = loss(data)
            optimizer.zero_grad()
            (terms["loss_objective"] + terms["loss_critic"]).backward()
            optimizer.step()
        collector.update_policy_weights_()
    collector.shutdown()
    train_time = time.perf_counter() - start
    routing = env.routing.aec_env
    samples = routing.samples_routed
    validation = None
    if dataset.validation is not None:
        validation = evaluate_batched_policy(env, policy, split="validation")["accuracy"]
    result = evaluate_batched_policy(env, policy)
    summary = {
        "validation_accuracy": validation,
        "test_accuracy": result["accuracy"],
        "test_accuracy_per_task": result["accuracy_per_task"],
        "test_samples": result["samples"],
        "train_samples": samples,
        "train_time_s": train_time,
        "samples_per_s": samples / train_time,
    }
    if validation is not None:
        print(f"greedy validation accuracy {100 * validation:.2f}%")
    print(
        f"TorchRL PPO ({args.router}, batched): greedy test accuracy {100 * result['accuracy']:.2f}% on "
        f"{result['samples']} test samples after {samples} training samples "
        f"({train_time:.1f}s training, {samples / train_time:.0f} samples/s; majority class: 90.00%)"
    )
    return summary


if __name__ == "__main__":
    main(parse_args(Args))
