"""The routing network as a PettingZoo AEC environment (the adapter; the game is in engine.py)."""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Mapping
from typing import Any, Literal

import gymnasium
import numpy as np
from pettingzoo import AECEnv
from pettingzoo.utils import wrappers

from routing_env.datasets.base import MultiTaskDataset
from routing_env.engine import RoutingEngine, TrainingConfig
from routing_env.network import RoutingNetwork, build_default_network

__all__ = ["RoutingEnv", "env", "raw_env"]

RouterConfig = Literal["per_task", "single", "dispatched"]
_FLOAT32_MAX = float(np.finfo(np.float32).max)


class RoutingEnv(AECEnv[str, dict[str, Any], int]):
    """A routing network (Rosenbaum, Klinger & Riemer, ICLR 2018) as an AEC game.

    ## Description
    A routing network is a shared trunk (SimpleConvNet by default) followed by routed
    layers of function blocks. For a sample ``(x, t)`` the router picks one function
    block per depth (or PASS, in the recurrent variant); the blocks compose and the
    last one classifies. Each routing decision is one ``step`` of the agent responsible
    for the sample. The environment owns the data, the network, the loss and the block
    optimizer: it trains the trunk and the chosen blocks itself, one optimizer step per
    ``batch_size`` routed training samples, backpropagating only through the blocks each
    sample used. The agents learn only the routing.

    ## Agents
    - ``router="per_task"`` (default, paper Fig. 3b): ``router_0 .. router_{T-1}``; the
      agent of task ``t`` routes task ``t``'s samples.
    - ``router="single"`` (Fig. 3a): one agent, ``router_0``, routes every sample.
    - ``router="dispatched"`` (Fig. 3c): ``dispatcher_0`` acts first on each sample and
      picks which of ``router_0 .. router_{K-1}`` routes it (``K = num_routers``,
      default ``T``).

    A router agent joins the episode (``env.agents``) when it first acts in it; in the
    dispatched configuration the dispatcher and every router are present from reset,
    since the dispatcher's choice decides who acts.

    ## Action Space
    ``Discrete(A)`` for every router agent. With ``routing="layered"`` action ``a`` at
    depth ``i`` is block ``a`` of routed layer ``i`` (``A`` = most blocks in a layer).
    With ``routing="recurrent"`` (appendix 7.2) depths ``0..n-2`` may pick any block of
    layers ``0..n-2`` (numbered layer by layer) or PASS, which is action ``A - 1``
    (``env.unwrapped.pass_action``); the last depth picks a classifier of the last
    layer. Blocks whose input shape does not fit the current representation, and moves
    from which no route can reach a classifier, are masked. The dispatcher's action
    space is ``Discrete(K)``.

    ## Observation Space
    A ``Dict``, the same object for every router agent:

    - ``"observation"``: ``Box(float32, (D,))``: the current representation v
      flattened and zero-padded to ``D``, the widest representation any depth can
      see (``env.unwrapped.observation_width``). At depth 0 it is the trunk output.
    - ``"task"``: ``Discrete(T)``: the task id t of the sample.
    - ``"depth"``: ``Discrete(n)``: the 0-based decision index.
    - ``"action_mask"``: ``Box(0, 1, (A,), int8)``: 1 where an action is valid.

    The dispatcher sees the same keys, with depth 0 and a mask over the ``K`` routers.

    ## Rewards
    Each router step: ``rho`` x the historical selection frequency of the chosen block
    at that depth (over all agents' past training decisions; section 3.1.1), plus, on
    the last decision of a sample, the final reward: +1 if the prediction is correct,
    -1 if not (``-loss`` for regression). The dispatcher receives the final reward of
    each sample it dispatched. The terms are in ``infos[agent]``:
    ``collaboration_reward``, ``final_reward``, ``correct``, ``sample_done``, ``task``,
    ``depth``, ``action``, ``sample_index``, ``mode``.

    ## Episode End
    By default one episode routes one sample: ``reset()`` draws the next sample; its
    agent acts at depths ``0..n-1`` and then every agent of the episode terminates.
    With ``samples_per_episode=k`` an episode routes ``k`` samples one after another;
    ``info["sample_done"]`` (read by an agent on its turn after the last decision of a
    sample) marks where each sample's trace ends. There is no truncation.

    ``reset(seed=s)`` with a seed starts a new run: the network's weights (re-drawn from
    ``s``, or restored to a user-supplied network's initial weights), the optimizer,
    the selection counts and the data order. ``reset()`` without a seed goes on to the
    next sample of the same run: call it once per episode and pass a seed only to start
    over. ``reset(options={"mode": "eval"})`` starts a pass over the test split (also when
    already evaluating: the counts start again): the test samples are routed once each,
    in order, nothing is trained, and ``env.unwrapped.evaluation()`` reports the accuracy
    per task (a dict: ``accuracy``, ``accuracy_per_task``, ``samples`` scored and
    ``complete``; ``loss``/``loss_per_task`` for regression). When the last test sample
    is routed the episode ends; a further ``reset()`` in eval mode raises
    ``RuntimeError`` rather than wrapping around and counting samples twice.
    ``{"mode": "train"}`` switches back. ``reset`` refuses options that are not a dict
    and keys that look like a misspelt ``"mode"``, and warns about other unknown keys.

    ## Copies and checkpoints
    ``copy.deepcopy(env)`` and ``pickle`` work at any point and the copy continues
    exactly as the original would (a pending training minibatch recomputes its trunk
    output, with the same weights and random state, before training). ``state_dict()``
    (between training minibatches) and ``load_state_dict()`` save and continue a run; a
    load that does not fit (another configuration, network, optimizer or dataset)
    raises ``ValueError`` and changes nothing.

    ## Arguments
    - ``dataset``: a :class:`~routing_env.datasets.MultiTaskDataset` (default digits-MTL).
    - ``network``: a :class:`~routing_env.network.RoutingNetwork` with any trunk and
      blocks; default: the paper's routed SimpleConvNet with ``conv_layers`` conv
      layers of ``filters`` filters (default 4, fewer for images under 16x16: 2 for
      8x8), then ``routed_layers`` fully connected routed layers of ``hidden_width``
      units with ``blocks_per_layer`` blocks each (default one per task).
    - ``router``, ``num_routers``: the agent configuration (above).
    - ``routing``: ``"layered"`` or ``"recurrent"`` (PASS), for the default network.
    - ``samples_per_episode``: samples routed per episode (default 1).
    - ``collaboration_reward``: ``rho`` in [0, 1] (default 0).
    - ``batch_size``, ``lr``, ``optimizer`` (``"sgd"``/``"adam"``), ``momentum``,
      ``weight_decay``, ``lr_decay_every`` (epochs), ``lr_decay_factor``: block training
      (defaults follow the paper: SGD, lr 1e-2, /10 every 20 epochs).
    - ``on_nonfinite``: ``"raise"`` (default) or ``"skip"`` a minibatch with a
      non-finite loss.
    - ``device``: torch device of the network.
    - ``render_mode``: None or ``"ansi"`` (``render()`` returns a text line).

    ## Version History
    - v0: initial release.
    """

    metadata = {"name": "routing_v0", "render_modes": ["ansi"], "is_parallelizable": False}

    def __init__(
        self,
        *,
        dataset: MultiTaskDataset | None = None,
        network: RoutingNetwork | None = None,
        router: RouterConfig = "per_task",
        num_routers: int | None = None,
        routing: Literal["layered", "recurrent"] = "layered",
        samples_per_episode: int = 1,
        collaboration_reward: float = 0.0,
        batch_size: int = 64,
        lr: float = 1e-2,
        optimizer: Literal["sgd", "adam"] = "sgd",
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        lr_decay_every: int | None = 20,
        lr_decay_factor: float = 0.1,
        on_nonfinite: Literal["raise", "skip"] = "raise",
        conv_layers: int | None = None,
        filters: int = 32,
        hidden_width: int = 128,
        routed_layers: int = 3,
        blocks_per_layer: int | None = None,
        device: str = "cpu",
        render_mode: str | None = None,
    ) -> None:
        super().__init__()
        if router not in ("per_task", "single", "dispatched"):
            raise ValueError(f"router must be 'per_task', 'single' or 'dispatched', got {router!r}")
        if not isinstance(samples_per_episode, int) or samples_per_episode < 1:
            raise ValueError(f"samples_per_episode must be a positive int, got {samples_per_episode!r}")
        if render_mode is not None and render_mode != "ansi":
            raise ValueError(f"render_mode must be None or 'ansi', got {render_mode!r}")
        if dataset is None:
            from routing_env.datasets import digits_mtl

            dataset = digits_mtl()
        if not isinstance(dataset, MultiTaskDataset):
            raise TypeError(
                f"dataset must be a routing_env.datasets.MultiTaskDataset, got {type(dataset).__name__}"
            )
        output_size = 1 if dataset.is_regression else max(dataset.num_classes)
        if network is None:
            _, h, w = dataset.input_shape
            if conv_layers is None:
                conv_layers = 4 if min(h, w) >= 16 else max(1, int(np.log2(min(h, w))) - 1)
            network = build_default_network(
                input_shape=dataset.input_shape,
                num_tasks=dataset.num_tasks,
                output_size=output_size,
                conv_layers=conv_layers,
                filters=filters,
                hidden_width=hidden_width,
                routed_layers=routed_layers,
                blocks_per_layer=blocks_per_layer,
                routing=routing,
            )
            reinitialize = True
        else:
            if not isinstance(network, RoutingNetwork):
                raise TypeError(f"network must be a RoutingNetwork, got {type(network).__name__}")
            reinitialize = False
        training = TrainingConfig(
            batch_size=batch_size,
            lr=lr,
            optimizer=optimizer,
            momentum=momentum,
            weight_decay=weight_decay,
            lr_decay_every=lr_decay_every,
            lr_decay_factor=lr_decay_factor,
            on_nonfinite=on_nonfinite,
        )
        self.engine = RoutingEngine(
            dataset=dataset,
            network=network,
            training=training,
            rho=collaboration_reward,
            device=device,
            reinitialize=reinitialize,
        )
        self.dataset = dataset
        self.network = network
        self.router_config: RouterConfig = router
        self.samples_per_episode = samples_per_episode
        self.render_mode = render_mode
        self.num_tasks = dataset.num_tasks
        self.num_decisions = network.num_decisions
        self.num_actions = network.num_actions
        self.observation_width = network.observation_width
        self.pass_action: int | None = self.num_actions - 1 if network.routing == "recurrent" else None

        if router == "per_task":
            self.routers = [f"router_{t}" for t in range(self.num_tasks)]
        elif router == "single":
            self.routers = ["router_0"]
        else:
            k = self.num_tasks if num_routers is None else num_routers
            if not isinstance(k, int) or k < 1:
                raise ValueError(f"num_routers must be a positive int, got {num_routers!r}")
            self.routers = [f"router_{i}" for i in range(k)]
        self.dispatcher = "dispatcher_0" if router == "dispatched" else None
        self.possible_agents = ([self.dispatcher] if self.dispatcher else []) + list(self.routers)

        router_obs = self._observation_space(self.num_actions)
        router_act: gymnasium.spaces.Discrete = gymnasium.spaces.Discrete(self.num_actions)
        self.observation_spaces = {a: router_obs for a in self.routers}
        self.action_spaces = {a: router_act for a in self.routers}
        if self.dispatcher:
            self.observation_spaces[self.dispatcher] = self._observation_space(len(self.routers))
            self.action_spaces[self.dispatcher] = gymnasium.spaces.Discrete(len(self.routers))
        self._dispatch_mask = np.ones(len(self.routers), dtype=np.int8)
        self.agents: list[str] = []
        self._episode_over = True

    def _observation_space(self, num_actions: int) -> gymnasium.spaces.Dict:
        return gymnasium.spaces.Dict(
            {
                "observation": gymnasium.spaces.Box(
                    -_FLOAT32_MAX, _FLOAT32_MAX, shape=(self.observation_width,), dtype=np.float32
                ),
                "task": gymnasium.spaces.Discrete(self.num_tasks),
                "depth": gymnasium.spaces.Discrete(self.num_decisions),
                "action_mask": gymnasium.spaces.Box(0, 1, shape=(num_actions,), dtype=np.int8),
            }
        )

    def observation_space(self, agent: str) -> gymnasium.spaces.Space:
        return self.observation_spaces[agent]

    def action_space(self, agent: str) -> gymnasium.spaces.Space:
        return self.action_spaces[agent]

    # ----------------------------------------------------------------- reset
    RESET_OPTIONS = ("mode",)
    """The keys ``reset(options=...)`` understands."""

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None) -> None:
        if options is not None and not isinstance(options, Mapping):
            raise TypeError(
                f"options must be a dict such as {{'mode': 'eval'}} or None, got {type(options).__name__} "
                f"{options!r}"
            )
        self._check_option_keys(options or {})
        mode = (options or {}).get("mode")
        if mode is not None and mode not in ("train", "eval"):
            raise ValueError(f"options['mode'] must be 'train' or 'eval', got {mode!r}")
        if seed is not None:
            if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
                raise TypeError(f"seed must be a non-negative int or None, got {seed!r}")
            self.engine.restart(int(seed))
        elif not self.engine.started:
            self.engine.restart(int(np.random.SeedSequence().generate_state(1)[0]))
        else:
            self.engine.abandon_sample()  # an unfinished sample of the last episode
        if mode == "eval" or (mode is not None and mode != self.engine.mode):
            self.engine.set_mode(mode)  # {"mode": "eval"} always starts a new pass over the test split
        self.agents = []
        self.rewards: dict[str, float] = {}
        self._cumulative_rewards: dict[str, float] = {}
        self.terminations: dict[str, bool] = {}
        self.truncations: dict[str, bool] = {}
        self.infos: dict[str, dict[str, Any]] = {}
        self._last_obs: dict[str, dict[str, Any]] = {}
        self._samples_left = self.samples_per_episode
        self._episode_over = False
        self._skip_agent_selection = None
        if self.dispatcher:
            for agent in self.possible_agents:
                self._join(agent)
        self._begin_sample()

    def _check_option_keys(self, options: Mapping[Any, Any]) -> None:
        """Refuse a key that looks like a misspelt known option ("Mode"), which would
        otherwise be ignored silently; warn about any other unknown key.

        Other keys are not refused outright because PettingZoo's ``api_test`` checks that
        ``reset`` accepts arbitrary options (it passes ``{"options": 1}``).
        """
        unknown = [k for k in options if k not in self.RESET_OPTIONS]
        if not unknown:
            return
        known = {k.lower(): k for k in self.RESET_OPTIONS}
        typos = [
            k
            for k in unknown
            if not isinstance(k, str)
            or k.lower() in known
            or difflib.get_close_matches(k.lower(), list(known), n=1, cutoff=0.6)
        ]
        if typos:
            raise ValueError(
                f"unknown reset option(s) {typos}; this env understands {list(self.RESET_OPTIONS)} "
                "(e.g. options={'mode': 'eval'})"
            )
        warnings.warn(
            f"reset options {unknown} are not used by this env and were ignored; it understands "
            f"{list(self.RESET_OPTIONS)}",
            stacklevel=3,
        )

    def _join(self, agent: str) -> None:
        if agent not in self.rewards:
            self.agents.append(agent)
            self.rewards[agent] = 0.0
            self._cumulative_rewards[agent] = 0.0
            self.terminations[agent] = False
            self.truncations[agent] = False
            self.infos[agent] = {}

    def _begin_sample(self) -> None:
        self.engine.begin_sample()
        self._samples_left -= 1
        self._decision_obs: dict[str, Any] | None = None
        if self.dispatcher:
            self._router = None
            self._join(self.dispatcher)
            self.agent_selection = self.dispatcher
        else:
            self._router = self.routers[self.engine.task] if self.router_config == "per_task" else "router_0"
            self._join(self._router)
            self.agent_selection = self._router

    # ------------------------------------------------------------- observing
    def observe(self, agent: str) -> dict[str, Any]:
        if agent not in self.observation_spaces:
            raise ValueError(f"unknown agent {agent!r}; this env's agents are {self.possible_agents}")
        if agent == self.agent_selection and not self._episode_over and self.engine.routing:
            if self._decision_obs is None:
                self._decision_obs = self._make_obs(agent)
                self._last_obs[agent] = self._decision_obs
            return self._decision_obs
        if agent in self._last_obs:
            return self._last_obs[agent]
        space = self.observation_spaces[agent]
        return {
            "observation": np.zeros(self.observation_width, dtype=np.float32),
            "task": 0,
            "depth": 0,
            "action_mask": np.zeros(space["action_mask"].shape, dtype=np.int8),
        }

    def _make_obs(self, agent: str) -> dict[str, Any]:
        engine = self.engine
        flat = engine.representation_array()
        v = np.zeros(self.observation_width, dtype=np.float32)
        v[: flat.size] = flat
        mask = self._dispatch_mask if agent == self.dispatcher else engine.action_mask()
        return {
            "observation": v,
            "task": engine.task,
            "depth": 0 if agent == self.dispatcher else engine.depth,
            "action_mask": mask.copy(),
        }

    # ------------------------------------------------------------------ step
    def step(self, action: int | None) -> None:
        if self._episode_over and not self.agents:
            raise RuntimeError("the episode is over (every agent has terminated); call reset()")
        agent = self.agent_selection
        if self.terminations[agent] or self.truncations[agent]:
            self._was_dead_step(action)
            return
        action = self._validate_action(agent, action)
        self._cumulative_rewards[agent] = 0.0
        for a in self.rewards:
            self.rewards[a] = 0.0
        if agent == self.dispatcher:
            self._router = self.routers[action]
            self._join(self._router)
            self.infos[agent] = {"task": self.engine.task, "action": action, "sample_done": False}
            self.agent_selection = self._router
            self._decision_obs = None
            self._accumulate_rewards()
            return

        engine = self.engine
        depth, task, index = engine.depth, engine.task, engine.sample_index
        outcome = engine.act(action, checked=True)  # _validate_action ran check_action
        self._decision_obs = None
        self.rewards[agent] = outcome.collaboration_reward + outcome.final_reward
        self.infos[agent] = {
            "task": task,
            "depth": depth,
            "action": action,
            "collaboration_reward": outcome.collaboration_reward,
            "final_reward": outcome.final_reward,
            "correct": outcome.correct,
            "sample_done": outcome.sample_done,
            "sample_index": index,
            "mode": engine.mode,
        }
        if outcome.sample_done:
            if self.dispatcher:
                self.rewards[self.dispatcher] += outcome.final_reward
                self.infos[self.dispatcher] = {**self.infos[self.dispatcher], "sample_done": True}
            if self._samples_left > 0 and self.engine.has_next_sample:
                self._begin_sample()
            else:
                self._episode_over = True
                for a in self.agents:
                    self.terminations[a] = True
        self._accumulate_rewards()

    def _validate_action(self, agent: str, action: Any) -> int:
        space = self.action_spaces[agent]
        if action is None:
            raise ValueError(f"{agent} is live: its action must be an int in [0, {space.n}), not None")
        if isinstance(action, np.ndarray) and action.shape == ():
            action = action.item()
        if isinstance(action, (bool, np.bool_)) or not isinstance(action, (int, np.integer)):
            raise TypeError(
                f"{agent}'s action must be an int in [0, {space.n}) (a block index), "
                f"got {type(action).__name__} {action!r}"
            )
        action = int(action)
        if agent == self.dispatcher:
            if not 0 <= action < space.n:
                raise ValueError(
                    f"dispatcher action {action} is out of range; expected a router index in [0, {space.n})"
                )
        else:
            self.engine.check_action(action)
        return action

    # -------------------------------------------------------------- extras
    def set_mode(self, mode: Literal["train", "eval"]) -> None:
        """Switch between training and evaluation (ends the current episode)."""
        self.engine.set_mode(mode)
        self._episode_over = True
        self.agents = []

    def evaluation(self) -> dict[str, Any]:
        """Accuracy (or loss) per task of the test samples routed since eval mode began."""
        return self.engine.evaluation()

    def state_dict(self) -> dict[str, Any]:
        """The run's state (network, optimizer, counters, data order, RNG) for a checkpoint.

        Call it between episodes at a minibatch boundary, e.g. at the end of an epoch
        (``engine.epoch_progress == 0``) in train mode. Save it with ``torch.save``;
        it loads with ``torch.load(..., weights_only=True)``.
        """
        return {"engine": self.engine.state_dict(), "config": self._config()}

    def _config(self) -> dict[str, Any]:
        """What a checkpoint must agree on with the env that loads it."""
        return {
            "router": self.router_config,
            "routers": len(self.routers),
            "routing": self.network.routing,
            "num_decisions": self.num_decisions,
            "num_actions": self.num_actions,
            "num_tasks": self.num_tasks,
            "dataset": self.dataset.name,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue the run saved by :meth:`state_dict`; call ``reset()`` (no seed) next.

        The whole state is checked before anything is applied: on any error (a checkpoint
        of another configuration, network, optimizer or dataset) the env is unchanged.

        Raises:
            ValueError: Naming what differs between the checkpoint and this env.
        """
        if not isinstance(state, Mapping) or "engine" not in state:
            raise ValueError("not a RoutingEnv state: expected a dict with 'engine' and 'config'")
        saved = state.get("config", {})
        if not isinstance(saved, Mapping):
            raise ValueError("not a RoutingEnv state: 'config' is not a dict")
        ours = self._config()
        # checkpoints of earlier versions hold only "router"
        differ = [
            f"{k}={saved[k]!r} (this env: {ours[k]!r})" for k in ours if k in saved and saved[k] != ours[k]
        ]
        if "router" not in saved:
            differ.append(f"router missing (this env: {self.router_config!r})")
        if differ:
            raise ValueError(f"the checkpoint is of another env configuration: {'; '.join(differ)}")
        self.engine.load_state_dict(state["engine"])
        self.agents = []
        self._episode_over = True

    def render(self) -> str | None:
        if self.render_mode is None:
            return None
        e = self.engine
        if not e.routing:
            return f"epoch {e.epoch}, {e.updates} block updates; no sample is being routed"
        return (
            f"[{e.mode}] sample {e.sample_index} task {e.task} depth {e.depth}/{self.num_decisions} "
            f"agent {self.agent_selection}; epoch {e.epoch}, {e.updates} block updates"
        )

    def close(self) -> None:
        pass


def raw_env(**kwargs: Any) -> RoutingEnv:
    """The unwrapped :class:`RoutingEnv` (it validates its own inputs)."""
    return RoutingEnv(**kwargs)


def env(**kwargs: Any) -> AECEnv:
    """A :class:`RoutingEnv` wrapped in PettingZoo's ``OrderEnforcingWrapper``."""
    return wrappers.OrderEnforcingWrapper(RoutingEnv(**kwargs))
