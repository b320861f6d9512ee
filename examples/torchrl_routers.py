"""Train per-task routers with TorchRL (collector + PPO loss) on a routing network (digits-MTL by default).

Rosenbaum, Klinger & Riemer, "Routing Networks", ICLR 2018, with the routers learned by
a third-party library. The env is wrapped by TorchRL's own ``PettingZooWrapper`` (no
adapter of this project: ``routing_env.integrations.torchrl.torchrl_env`` only sets
``use_mask=True, categorical_actions=True``). TorchRL stacks the routers into one
``"router"`` group; each router has its own parameters (``MultiAgentMLP`` with
``share_params=False``): with no hidden layer, a linear map of the one-hot depth, i.e.
one table of logits per router, as the paper's tabular routers. The policy is a
``ProbabilisticActor`` with a ``MaskedCategorical`` over the allowed blocks; TorchRL's
``Collector`` gathers routing decisions, GAE (gamma 1, lambda 1: the Monte-Carlo return
minus a learned per-router, per-depth value) gives the advantages, and ``ClipPPOLoss``,
masked to the agent that acted at each step (``loss_mask_key = ("router", "mask")``),
trains them. The environment trains the routed network's trunk and blocks on the
routes the agents pick, as with this project's own agents; after training the test
split is routed greedily through the same env (the network lives in it).

    pip install 'routing-env[torchrl]'
    python examples/torchrl_routers.py                  # digits-MTL, about 5 minutes on 1 CPU core
    python examples/torchrl_routers.py --representation # MLP routers that also see v
    python examples/torchrl_routers.py --help

A uniformly random router stays near the 90% majority rate of digits-MTL's one-vs-rest
tasks; these routers settle on task-specific routes, on which the blocks learn each task
(97.0% on the test split after 6,000 samples; measured numbers and times in
docs/integrations.md). TorchRL's PettingZoo wrapper takes about 10 ms per frame with ten
routers here (it encodes every agent's observation on every step), so the budget is
kept small: the env trains its blocks with Adam at 1e-3 on minibatches of 16 (its
default is 64), which learns in fewer samples. Nothing is written to disk.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

import routing_env
from routing_env.datasets import load_dataset, subsample
from routing_env.experiments import DatasetName, parse_args, seed_everything
from routing_env.extras import missing_extra
from routing_env.optim import make_optimizer

GROUP = "router"


@dataclass
class Args:
    """Train per-task routers with TorchRL's collector and PPO loss on a routing network (ICLR 2018)."""

    # --- data
    dataset: DatasetName = "digits-mtl"
    """multi-task dataset; digits-mtl ships with scikit-learn (offline), the others are read from --data-root"""
    data_root: str | None = None
    """folder holding the datasets (torchvision layout); default $ROUTING_ENV_DATA, else ~/.cache/routing_env"""
    data_seed: int = 0
    """seed of the dataset's train/test construction"""
    max_test_samples: int | None = None
    """score only the first this many test samples of the (task-interleaved) evaluation pass"""

    # --- budget and block training (done by the environment)
    num_samples: int = 6000
    """training samples to route (one sample: one decision per routed layer, i.e. one TorchRL frame each)"""
    batch_size: int = 16
    """routed samples per block-training step of the env (its default: 64)"""
    optimizer: Literal["sgd", "adam"] = "adam"
    """optimizer of the trunk and function blocks (the paper: sgd)"""
    lr: float = 1e-3
    """learning rate of the trunk and function blocks (the paper: 1e-2 with sgd)"""

    # --- routers (TorchRL)
    router: Literal["per_task", "single"] = "per_task"
    """one router per task (the paper's best) or one for all tasks"""
    representation: bool = False
    """also feed the representation v to the routers (an MLP with --hidden units); default: the one-hot depth only (plus the task for a single router), i.e. a table"""
    hidden: int = 64
    """hidden units of the routers' MLPs with --representation"""
    samples_per_batch: int = 32
    """samples collected between updates (frames_per_batch = this x decisions per sample)"""
    ppo_epochs: int = 4
    """gradient steps of the PPO loss on each collected batch"""
    policy_lr: float = 0.2
    """Adam learning rate of the routers and their values (0: no learning, a control)"""
    clip_epsilon: float = 0.2
    """PPO clipping of the probability ratio"""
    entropy_coef: float = 0.0
    """weight of PPO's entropy bonus"""

    # --- machine
    seed: int = 0
    """seed of the run: network weights, data order, router initialization and sampling"""
    torch_threads: int | None = 1
    """torch intra-op threads (none: torch's default)"""

    def __post_init__(self) -> None:
        for name in ("num_samples", "samples_per_batch", "ppo_epochs", "hidden"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.policy_lr < 0:
            raise ValueError(f"--policy-lr must be >= 0, got {self.policy_lr}")


class RouterFeatures(nn.Module):
    """What each router sees: the one-hot depth (and task, for a single router; TorchRL
    one-hot encodes the env's discrete entries), and v with --representation."""

    def __init__(self, *, with_task: bool, representation: bool) -> None:
        super().__init__()
        self.with_task, self.representation = with_task, representation

    def forward(self, v: torch.Tensor, depth: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        parts = [depth.float()]
        if self.with_task:
            parts.append(task.float())
        if self.representation:
            parts.append(v.float())
        return torch.cat(parts, dim=-1)


def build_modules(args: Args, env: Any) -> tuple[Any, Any]:
    """The routers' masked categorical policy and their value network (one set of parameters per router)."""
    from tensordict.nn import TensorDictModule, TensorDictSequential
    from torchrl.modules import MaskedCategorical, MultiAgentMLP, ProbabilisticActor

    routing = env._env.unwrapped
    n_agents = len(env.group_map[GROUP])
    features = RouterFeatures(with_task=args.router == "single", representation=args.representation)
    width = routing.num_decisions + (routing.num_tasks if features.with_task else 0)
    width += routing.observation_width if args.representation else 0
    obs = (GROUP, "observation")
    features_module = TensorDictModule(
        features,
        in_keys=[(*obs, "observation"), (*obs, "depth"), (*obs, "task")],
        out_keys=[(GROUP, "features")],
    )

    def per_router(outputs: int) -> MultiAgentMLP:
        # depth 0: a linear map of the one-hot features, i.e. a table per router
        return MultiAgentMLP(
            n_agent_inputs=width,
            n_agent_outputs=outputs,
            n_agents=n_agents,
            centralized=False,
            share_params=False,
            depth=1 if args.representation else 0,
            num_cells=args.hidden,
        )

    logits = TensorDictModule(
        per_router(routing.num_actions), in_keys=[(GROUP, "features")], out_keys=[(GROUP, "logits")]
    )
    policy = ProbabilisticActor(
        module=TensorDictSequential(features_module, logits),
        in_keys={"logits": (GROUP, "logits"), "mask": (GROUP, "action_mask")},
        out_keys=[(GROUP, "action")],
        distribution_class=MaskedCategorical,
        return_log_prob=True,
        log_prob_key=(GROUP, "action_log_prob"),
    )
    value = TensorDictSequential(
        features_module,
        TensorDictModule(per_router(1), in_keys=[(GROUP, "features")], out_keys=[(GROUP, "state_value")]),
    )
    return policy, value


def build_loss(args: Args, policy: Any, value: Any) -> Any:
    """TorchRL's clipped PPO loss over the acting router's decisions, advantages by GAE."""
    from torchrl.objectives import ClipPPOLoss, ValueEstimators

    loss = ClipPPOLoss(
        actor_network=policy,
        critic_network=value,
        clip_epsilon=args.clip_epsilon,
        entropy_bonus=args.entropy_coef > 0,
        entropy_coeff=args.entropy_coef if args.entropy_coef > 0 else None,
        loss_critic_type="l2",
        normalize_advantage=False,
    )
    loss.set_keys(
        reward=(GROUP, "reward"),
        action=(GROUP, "action"),
        sample_log_prob=(GROUP, "action_log_prob"),
        value=(GROUP, "state_value"),
        done=(GROUP, "done"),
        terminated=(GROUP, "terminated"),
        advantage=(GROUP, "advantage"),
        value_target=(GROUP, "value_target"),
    )
    # one sample's decisions form an episode: the undiscounted return of the sample
    loss.make_value_estimator(ValueEstimators.GAE, gamma=1.0, lmbda=1.0)
    # in an AEC env one router acts per frame; the others' entries are placeholders
    loss.loss_mask_key = (GROUP, "mask")
    return loss


def main(args: Args) -> dict[str, Any]:
    """Train the routers and return ``{"test_accuracy", ...}`` of the greedy routes."""
    try:
        from torchrl.collectors import Collector

        from routing_env.integrations.torchrl import evaluate_policy, torchrl_env
    except ImportError:
        missing = missing_extra(feature="examples/torchrl_routers.py", extra="torchrl", package="TorchRL")
        sys.exit(str(missing))

    if args.torch_threads is not None:
        torch.set_num_threads(args.torch_threads)
    seed_everything(args.seed)  # router initialization and action sampling (global generators)
    dataset = subsample(
        load_dataset(args.dataset, root=args.data_root, seed=args.data_seed),
        max_train=None,
        max_test=None,
        seed=args.data_seed,
    )
    aec = routing_env.env(
        dataset=dataset, router=args.router, batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr
    )
    env = torchrl_env(aec)
    env.set_seed(args.seed)  # the one seeded reset: restarts the routing run from args.seed
    routing = aec.unwrapped
    policy, value = build_modules(args, env)
    loss = build_loss(args, policy, value)
    optimizer = make_optimizer(loss.parameters(), name="adam", lr=args.policy_lr)
    decisions = routing.num_decisions
    collector = Collector(
        env,
        policy,
        frames_per_batch=args.samples_per_batch * decisions,
        total_frames=args.num_samples * decisions,
        auto_register_policy_transforms=False,  # the policy needs no transform (TorchRL 0.14 asks)
    )
    print(
        f"{dataset.name}: {len(env.group_map[GROUP])} TorchRL PPO routers ({args.router}), "
        f"{args.num_samples} training samples, {len(dataset.test)} test samples",
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
            total = (
                terms["loss_objective"] + terms["loss_critic"] + terms.get("loss_entropy", torch.zeros(()))
            )
            optimizer.zero_grad()
            total.backward()
            optimizer.step()
        collector.update_policy_weights_()
    collector.shutdown()
    train_time = time.perf_counter() - start
    result = evaluate_policy(env, policy, num_samples=args.max_test_samples)
    summary = {
        "test_accuracy": result["accuracy"],
        "test_accuracy_per_task": result["accuracy_per_task"],
        "test_samples": result["samples"],
        "train_samples": routing.samples_routed,
        "train_time_s": train_time,
        "eval_time_s": time.perf_counter() - start - train_time,
    }
    print(
        f"TorchRL PPO ({args.router}): greedy test accuracy {100 * result['accuracy']:.2f}% on "
        f"{result['samples']} test samples after {routing.samples_routed} training samples "
        f"({train_time:.0f}s training, {summary['eval_time_s']:.0f}s evaluation)"
    )
    return summary


if __name__ == "__main__":
    main(parse_args(Args))
