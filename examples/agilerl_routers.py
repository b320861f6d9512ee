"""Train routers with AgileRL's IPPO on the routing game's parallel API (digits-MTL by default).

Rosenbaum, Klinger & Riemer, "Routing Networks", ICLR 2018, with the routers learned by
AgileRL (``pip install agilerl`` beside this project; it installs PettingZoo 1.26, which
the env supports). AgileRL's multi-agent algorithms take a PettingZoo ``ParallelEnv`` whose
action masks are in ``info``; ``routing_env.parallel_env(flat=True)`` is one: every agent
observes every step (one vector: representation, one-hot task, one-hot depth, action mask,
idle flag), the agent not deciding is *idle* (only action 0 allowed, reward 0), and
``info[agent]["action_mask"]`` holds the mask. No adapter and no wrapper: the loop below is
AgileRL's own on-policy loop (``agilerl.training.train_multi_agent_on_policy``) written out
without the evolutionary population, so that the routers can be evaluated on the test
split through the env afterwards.

AgileRL shares one actor and one critic among agents whose names share a prefix
(``router_0``, ``router_1``, ...); shared by the routers, that network put every task on
one route (the majority rate), so the example renames the agents for AgileRL
(``router_3`` -> ``router3``, :class:`OwnNetworks`) and each router gets its own network
(``--share-router-network`` keeps AgileRL's grouping). Each episode routes one sample; GAE with gamma 1 and lambda 1 gives each decision
the sample's return (+1/-1) minus the critic's value.

    pip install -e . agilerl
    python examples/agilerl_routers.py                 # 10,000 training samples, digits-MTL
    python examples/agilerl_routers.py --help

The env trains the trunk and blocks on the routes picked, as with this project's agents.
A uniformly random router stays near the 90% majority rate of digits-MTL's tasks. Nothing
is written to disk.
"""

from __future__ import annotations

import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

import routing_env
from routing_env.experiments import DatasetName, DatasetOptions, load_run_dataset, parse_args, seed_everything
from routing_env.extras import missing_extra


@dataclass
class Args:
    """Train routers with AgileRL's IPPO on the routing game's parallel API (ICLR 2018)."""

    dataset: DatasetName = "digits-mtl"
    """multi-task dataset; digits-mtl ships with scikit-learn (offline), the others are read from --data-root"""
    data_root: str | None = None
    """folder holding the datasets (torchvision layout); default $ROUTING_ENV_DATA, else ~/.cache/routing_env"""
    max_test_samples: int | None = None
    """evaluate on the first this many test samples only (a subsample drawn with seed 0; default: all)"""
    validation_fraction: float | None = 0.1
    """share of the training inputs set aside as a validation split (drawn with seed 0), whose greedy accuracy is reported: choose settings on it (none: no validation split)"""
    router: Literal["per_task", "single", "dispatched"] = "per_task"
    """one router per task (the paper's best), one for all tasks, or routers picked by a dispatcher"""
    routing: Literal["layered", "recurrent"] = "layered"
    """a block set per depth (the paper's layered network) or one set reused at every depth, with PASS"""
    num_samples: int = 10_000
    """training samples to route (one episode each)"""
    learn_step: int = 192
    """env steps (decisions) collected between IPPO updates"""
    lr: float = 1e-3
    """IPPO's Adam learning rate (actor and critic)"""
    update_epochs: int = 4
    """IPPO's gradient epochs per update"""
    share_router_network: bool = False
    """let AgileRL give the routers one shared network (its default for agents named router_0, router_1, ...); default: one per router"""
    block_batch_size: int = 16
    """routed samples per block-training step of the env (its default: 64)"""
    seed: int = 0
    """seed of the run: network weights, data order, router initialization and sampling"""
    torch_threads: int | None = 1
    """torch intra-op threads (none: torch's default)"""

    def __post_init__(self) -> None:
        if self.max_test_samples is not None and self.max_test_samples < 1:
            raise ValueError(f"--max-test-samples must be >= 1, got {self.max_test_samples}")
        for name in ("num_samples", "learn_step", "update_epochs", "block_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"--lr must be > 0, got {self.lr}")
        if self.validation_fraction is not None and not 0 < self.validation_fraction <= 0.5:
            raise ValueError(f"--validation-fraction must be in (0, 0.5], got {self.validation_fraction}")


class OwnNetworks:
    """The parallel env with agent names AgileRL does not group: ``router_3`` -> ``router3``.

    AgileRL gives agents whose names share a prefix before the last ``_`` one actor and one
    critic. Shared by the ten routers, that network reads the task only from its one-hot
    input, and on digits-MTL it settled on one route for every task (one classifier for
    all ten one-vs-rest tasks: the 90% majority rate); with a network per router each task
    gets its own route, as the paper's per-task routers.
    """

    def __init__(self, env: Any) -> None:
        self.env, self.aec_env = env, env.aec_env
        self.to_agile = {a: a.replace("_", "") for a in env.possible_agents}
        self.from_agile = {v: a for a, v in self.to_agile.items()}
        self.possible_agents = list(self.to_agile.values())

    def observation_space(self, agent: str) -> Any:
        return self.env.observation_space(self.from_agile[agent])

    def action_space(self, agent: str) -> Any:
        return self.env.action_space(self.from_agile[agent])

    def _renamed(self, entries: dict[str, Any]) -> dict[str, Any]:
        return {self.to_agile[a]: v for a, v in entries.items()}

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, ...]:
        return tuple(self._renamed(d) for d in self.env.reset(seed=seed, options=options))

    def step(self, actions: dict[str, int]) -> tuple[Any, ...]:
        return tuple(
            self._renamed(d) for d in self.env.step({self.from_agile[a]: v for a, v in actions.items()})
        )


def masks_as_lists(infos: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The infos with each action mask as a list of ints: AgileRL 2.58's IPPO tests ``None in
    masks``, which a NumPy array makes ambiguous."""
    return {a: {**info, "action_mask": np.asarray(info["action_mask"]).tolist()} for a, info in infos.items()}


def greedy_actions(agent: Any, obs: dict[str, np.ndarray], infos: dict[str, Any]) -> dict[str, np.ndarray]:
    """The most probable allowed action of every agent (AgileRL's actors sample; this takes the mode)."""
    actions = {}
    for agent_id, agent_obs in obs.items():
        if infos[agent_id].get("idle"):  # an idle agent's only allowed action, which the env ignores
            actions[agent_id] = np.zeros(1, dtype=np.int64)
            continue
        group = agent.get_group_id(agent_id) if agent.has_grouped_agents() else agent_id
        actor = agent.actors[group]
        with torch.no_grad():
            x = torch.as_tensor(np.asarray(agent_obs), dtype=torch.float32).reshape(1, -1)
            mask = torch.as_tensor(np.asarray(infos[agent_id]["action_mask"]), dtype=torch.bool).reshape(
                1, -1
            )
            logits = actor.head_net.wrapped(actor.extract_features(x))
            actions[agent_id] = logits.masked_fill(~mask, -torch.inf).argmax(-1).numpy()
    return actions


def evaluate(
    agent: Any, env: Any, split: Literal["test", "validation"]
) -> tuple[dict[str, Any], dict[str, tuple[int, ...]]]:
    """Route the whole split with every agent's most probable allowed action.

    Returns the env's evaluation and each router's route: its most frequent greedy block
    at each depth over the split (a router reading v may route samples differently).
    """
    routing = env.aec_env
    names = getattr(env, "to_agile", {a: a for a in routing.possible_agents})
    counts: dict[tuple[str, int], Counter[int]] = defaultdict(Counter)
    obs, infos = env.reset(options={"mode": "eval", "split": split})
    while True:
        acting = routing.agent_selection
        actions = {a: int(v[0]) for a, v in greedy_actions(agent, obs, infos).items()}
        counts[acting, int(routing.observe(acting)["depth"])][actions[names[acting]]] += 1
        obs, _, terminations, _, infos = env.step(actions)
        if all(terminations.values()):
            if routing.eval_pass_complete:
                break
            obs, infos = env.reset()
    result = routing.evaluation()
    env.reset(options={"mode": "train"})
    routes = {
        a: tuple(counts[a, d].most_common(1)[0][0] for d in range(routing.num_decisions))
        for a in routing.routers
        if all((a, d) in counts for d in range(routing.num_decisions))
    }
    return result, routes


def main(args: Args) -> dict[str, Any]:
    """Train the routers and return ``{"test_accuracy", ...}`` of the greedy routes."""
    try:
        from agilerl.algorithms import IPPO
    except ImportError:
        sys.exit(
            str(missing_extra(feature="examples/agilerl_routers.py", extra="agilerl", package="AgileRL"))
        )

    if args.torch_threads is not None:
        torch.set_num_threads(args.torch_threads)
    seed_everything(args.seed)
    dataset = load_run_dataset(
        DatasetOptions(
            dataset=args.dataset,
            data_root=args.data_root,
            max_test_samples=args.max_test_samples,
            validation_fraction=args.validation_fraction,
        )
    )
    env = routing_env.parallel_env(
        dataset=dataset, router=args.router, routing=args.routing, flat=True, batch_size=args.block_batch_size
    )
    if not args.share_router_network:
        env = OwnNetworks(env)
    agents = env.possible_agents
    agent = IPPO(
        observation_spaces=[env.observation_space(a) for a in agents],
        action_spaces=[env.action_space(a) for a in agents],
        agent_ids=list(agents),
        lr=args.lr,
        learn_step=args.learn_step,
        gamma=1.0,
        gae_lambda=1.0,
        ent_coef=0.0,
        update_epochs=args.update_epochs,
        batch_size=args.learn_step,
    )
    obs, info = env.reset(seed=args.seed)
    print(
        f"{dataset.name}: AgileRL IPPO routers ({args.router}, {args.routing}), {args.num_samples} training samples, "
        f"{len(dataset.test)} test samples",
        file=sys.stderr,
    )
    routing = env.aec_env
    start = time.perf_counter()
    agent.set_training_mode(True)
    while routing.samples_routed < args.num_samples:
        fields: tuple[dict[str, list[Any]], ...] = tuple({a: [] for a in agents} for _ in range(6))
        states, actions, log_probs, rewards, dones, values = fields
        done = {a: 0.0 for a in agents}
        for _ in range(args.learn_step):
            action, log_prob, _, value = agent.get_action(obs=obs, infos=masks_as_lists(info))
            next_obs, reward, termination, truncation, info = env.step(
                {a: int(np.asarray(v).reshape(-1)[0]) for a, v in action.items()}
            )
            if all(termination.values()):  # the sample is routed: the next episode
                next_obs, info = env.reset()
            for a in obs:
                states[a].append(obs[a])
                rewards[a].append(reward[a])
                actions[a].append(action[a])
                log_probs[a].append(log_prob[a])
                values[a].append(value[a])
                dones[a].append(done[a])
            done = {a: float(termination[a] or truncation[a]) for a in termination}
            obs = next_obs
        agent.learn((states, actions, log_probs, rewards, dones, values, next_obs, done))
    train_time = time.perf_counter() - start
    samples = routing.samples_routed
    agent.set_training_mode(False)
    validation = evaluate(agent, env, "validation")[0]["accuracy"] if dataset.validation is not None else None
    result, routes = evaluate(agent, env, "test")
    shared: dict[tuple[int, ...], list[str]] = defaultdict(list)
    for router, route in routes.items():
        shared[route].append(router)
    summary = {
        "validation_accuracy": validation,
        "test_accuracy": result["accuracy"],
        "test_accuracy_per_task": result["accuracy_per_task"],
        "test_samples": result["samples"],
        "train_samples": samples,
        "train_time_s": train_time,
        "routes": routes,
        "shared_routes": [r for r in shared.values() if len(r) > 1],
    }
    print(
        "routes (most frequent greedy block per depth): " + "; ".join(f"{a} {r}" for a, r in routes.items())
    )
    print(
        f"routers sharing a whole route (one classifier for their tasks): {summary['shared_routes'] or 'none'}"
    )
    if validation is not None:
        print(f"greedy validation accuracy {100 * validation:.2f}%")
    print(
        f"AgileRL IPPO ({args.router}, {args.routing}): greedy test accuracy {100 * result['accuracy']:.2f}% on "
        f"{result['samples']} test samples after {samples} training samples "
        f"({train_time:.0f}s training; majority class: 90.00%)"
    )
    return summary


if __name__ == "__main__":
    main(parse_args(Args))
