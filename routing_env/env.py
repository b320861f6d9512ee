"""The routing network as a PettingZoo AEC environment (the adapter; the game is in engine.py)."""

from __future__ import annotations

import dataclasses
import difflib
import warnings
from collections.abc import Mapping
from typing import Any, Literal

import gymnasium
import numpy as np
from pettingzoo import AECEnv
from pettingzoo.utils import wrappers

from routing_env.aggregation import AggregatorName
from routing_env.datasets.base import MultiTaskDataset
from routing_env.engine import BlockTrainingStatus, RoutingEngine, TrainingConfig, deepcopy_sharing
from routing_env.network import RoutingNetwork, build_default_network
from routing_env.policy import router_observation

__all__ = ["MAX_SEED", "RoutingEnv", "env", "raw_env"]

#: The largest seed a run takes (``reset(seed=...)``, the scripts' ``--seed``): seeds are ints
#: in ``[0, MAX_SEED]``, which every generator seeded from them (numpy, torch, Python) accepts.
MAX_SEED = 2**63 - 1

RouterConfig = Literal["per_task", "single", "dispatched"]
_FLOAT32_MAX = float(np.finfo(np.float32).max)


class _FromPreset:
    """The default of the block-training arguments: take the value from ``preset``."""

    def __repr__(self) -> str:
        return "<from preset>"


FROM_PRESET: Any = _FromPreset()


class RoutingEnv(BlockTrainingStatus, AECEnv[str, dict[str, Any], int]):
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

    Every agent of the configuration is in ``env.agents`` (``== possible_agents``) from
    ``reset()`` on, with an entry in ``rewards``, ``terminations``, ``truncations`` and
    ``infos``, whether or not it acts in the episode (multi-agent libraries such as
    TorchRL read every agent's entries on every step). Only the agent responsible for
    the sample gets turns while it is routed; when the episode ends every agent
    terminates, so PettingZoo's ``agent_iter()`` loop gives each one a last turn (read its
    reward with ``last()``, then ``step(None)``): with ``T`` per-task routers an episode of
    one sample is ``n`` decisions plus ``T`` such turns. (Before this release a per-task or
    single router joined ``env.agents`` only when it first acted.)

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
    each sample it dispatched.

    As in every AEC env, the reward of a step is credited to the agent that took it and
    reaches that agent at its next turn: ``last()`` on the agent's next decision returns
    the reward of its previous one, and the +1/-1 of a sample's last decision arrives on
    the agent's next turn after it, which for one sample per episode is its terminated
    turn at the end of the episode.

    ## Infos
    ``infos[agent]`` always holds the same keys, with numbers or bools only (so
    libraries can stack them into tensors). A router's are those of its last decision:
    ``task``, ``depth``, ``action``, ``sample_index`` (index in the split),
    ``collaboration_reward``, ``final_reward`` (0 before the sample's last decision),
    ``sample_done`` (the decision ended a sample), ``eval`` (an evaluation pass), and
    ``correct``: 1 or 0 on the last decision of a sample, -1 where no prediction was
    judged (for a regression dataset the key is ``loss`` instead: the squared error on
    the last decision, -1.0 before it). The dispatcher's: ``task``, ``action``,
    ``sample_index``, ``sample_done``, ``eval`` (its reward is the sample's final
    reward). An agent that has not acted in the episode has these keys with -1 for
    ``task``, ``depth``, ``action``, ``sample_index``, ``correct``/``loss``.

    ## State
    ``state()`` is the global state of the sample being routed, a float32 vector in
    ``state_space``: the observation's ``v`` (padded to ``observation_width``), then
    ``one_hot(task)`` and ``one_hot(depth)``; all zeros when no sample is being routed.

    ## Episode End
    By default one episode routes one sample: ``reset()`` draws the next sample; its
    agent acts at depths ``0..n-1`` and then every agent terminates. With
    ``samples_per_episode=k`` an episode routes ``k`` samples one after another;
    ``info["sample_done"]`` (read by an agent on its turn after the last decision of a
    sample) marks where each sample's trace ends. There is no truncation.

    ``reset(seed=s)`` with a seed starts a new run: the network's weights (re-drawn from
    ``s``, or restored to a user-supplied network's initial weights), the optimizer,
    the selection counts and the data order. ``reset()`` without a seed goes on to the
    next sample of the same run: call it once per episode and pass a seed only to start
    over. ``{"mode": "train"}`` switches back from evaluation. ``reset`` refuses options
    that are not a dict and keys that look like a misspelt ``"mode"``, and warns about
    other unknown keys.

    ## Evaluation
    ``reset(options={"mode": "eval"})`` starts a pass over the test split (also when
    already evaluating: the counts start again). Each test sample is routed once, nothing
    is trained and no selection is counted. The pass interleaves the tasks (the split is
    stored task by task; ``env.unwrapped.eval_order`` is the fixed order), so any
    prefix of a pass scores every task in proportion. When the last test sample is routed
    the episode ends and ``env.unwrapped.eval_pass_complete`` is True; a further
    ``reset()`` in eval mode raises ``RuntimeError`` instead of wrapping around and
    counting samples twice (start another pass with ``{"mode": "eval"}``). The split has
    ``len(env.unwrapped.dataset.test)`` samples. ``env.unwrapped.evaluation()`` returns,
    for the samples scored since the pass began::

        {"accuracy": float,               # correct / scored, over all tasks
         "accuracy_per_task": [float],    # per task id; NaN for a task not scored yet
         "samples": int,                  # samples scored so far in this pass
         "complete": bool}                # the whole test split has been routed

    (``"loss"``/``"loss_per_task"``, mean squared error, for regression).

    ``reset(options={"mode": "eval", "split": "validation"})`` routes the dataset's
    validation split instead (a dataset from
    :func:`~routing_env.datasets.split_validation`), the same way: hyper-parameters are
    chosen on it, and the test split is read once, for the chosen ones.

    ## Block training
    The env trains the trunk and the function blocks itself (Algorithm 2, step 3). What a
    training script logs is read from documented properties of ``env.unwrapped`` (the
    same on :class:`~routing_env.batched_env.BatchedRoutingEnv`): ``block_lr`` (the
    rate the blocks train with now), ``block_updates``, ``skipped_updates``,
    ``samples_routed`` (training samples routed to the end), ``epochs_completed``,
    ``epoch_progress``, ``eval_order`` and ``block_optimizer`` (the torch optimizer, for a
    schedule of one's own); see :class:`~routing_env.engine.BlockTrainingStatus`.

    ## Copies and checkpoints
    ``copy.deepcopy(env)`` and ``pickle`` work at any point and the copy continues
    exactly as the original would (a pending training minibatch recomputes its trunk
    output, with the same weights and random state, before training). A deep copy shares
    the dataset (read-only) and copies everything trained. A pickle holds the trained
    state too, but a dataset from :func:`~routing_env.datasets.load_dataset` (and its
    ``subsample``) only by reference: its name, data root, seed, options and subsets, and
    a fingerprint of its tensors. Unpickling rebuilds it from its files, once per process
    (every env unpickled there shares it), and raises
    :class:`~routing_env.datasets.source.DatasetMismatchError` if the rebuilt data differ
    (e.g. the files changed on disk). So a subprocess vector env copies kilobytes, not the
    data (MNIST-MTL: 83 MB before). A dataset built otherwise pickles with its tensors
    (``dataset.self_contained()`` makes a named one do so too). ``state_dict()``
    (between training minibatches) and ``load_state_dict()`` save and continue a run; a
    load that does not fit (another configuration, network, optimizer or dataset)
    raises ``ValueError`` and changes nothing.

    ## Arguments
    - ``dataset``: a :class:`~routing_env.datasets.MultiTaskDataset` (default digits-MTL,
      ``load_dataset("digits-mtl")``).
    - ``network``: a :class:`~routing_env.network.RoutingNetwork` with any trunk and
      blocks; default: the paper's routed SimpleConvNet with ``conv_layers`` conv
      layers of ``filters`` filters (default 4, fewer for images under 16x16: 2 for
      8x8), then ``routed_layers`` fully connected routed layers of ``hidden_width``
      units with ``blocks_per_layer`` blocks each (default one per task).
    - ``router``, ``num_routers``: the agent configuration (above).
    - ``routing``: ``"layered"`` or ``"recurrent"`` (PASS), for the default network.
    - ``samples_per_episode``: samples routed per episode (default 1).
    - ``collaboration_reward``: ``rho`` in [0, 1] (default 0).
    - ``preset``: the block training's defaults: ``"default"`` (Adam at 1e-3 on
      minibatches of 64, divided by 10 every 10 epochs: the setting ``examples/train_wpl.py``
      uses, with which routers learn on every dataset here) or ``"paper"`` (the paper's
      SGD at 1e-2, divided by 10 every 20 epochs, batch 64). ``env.unwrapped.training``
      is the resulting :class:`~routing_env.engine.TrainingConfig`.
    - ``training``: a whole :class:`~routing_env.engine.TrainingConfig` instead of a preset
      (e.g. ``TrainingConfig.paper(lr=5e-3)``); the keywords below, when given, still
      replace its fields.
    - ``batch_size``, ``lr``, ``optimizer`` (``"adam"``/``"sgd"``), ``momentum`` (SGD only),
      ``weight_decay``, ``lr_decay_every`` (epochs; None: constant), ``lr_decay_factor``:
      block training; each one given replaces the preset's value.
    - ``on_nonfinite``: ``"raise"`` (default) or ``"skip"`` a minibatch with a
      non-finite loss.
    - ``eval_batch_size``: test samples drawn at a time in evaluation (default 512); the
      results do not depend on it, except which draws a sampled route takes on the
      batched path.
    - ``merge_duplicate_inputs``: evaluation runs the trunk once per distinct input of a
      test minibatch (default True; exact for the trunks this package builds); False for
      a trunk that samples or mixes rows in eval mode.
    - ``aggregator``: ``"mean"`` (default: the minibatch's mean loss) or a torchjd aggregator
      of its per-task losses on the parameters shared by several tasks (``"pcgrad"``,
      ``"upgrad"``, ...; :data:`routing_env.aggregation.AGGREGATORS`, needs
      ``pip install 'routing-env[mtl]'``); see :mod:`routing_env.aggregation`.
    - ``device``: torch device of the network.
    - ``render_mode``: None, ``"ansi"`` (``render()`` returns a text line on the sample
      being routed) or ``"human"`` (``render()`` prints that line).

    ## Version History
    - v0: initial release. Since then, within v0: every agent is listed from reset
      (routers used to join when they first acted); infos have a fixed set of numeric
      keys (``correct`` is -1 instead of None where nothing was judged, ``eval`` replaces
      the string ``mode``); ``state()``; ``render_mode="human"``; evaluation interleaves
      the tasks and ends with the test split; the default block training is Adam 1e-3
      (the paper's SGD is ``preset="paper"``); a dataset from ``load_dataset`` pickles by
      reference (see Copies and checkpoints).
    """

    metadata = {"name": "routing_v0", "render_modes": ["ansi", "human"], "is_parallelizable": False}

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
        preset: Literal["default", "paper"] = "default",
        training: TrainingConfig | None = None,
        batch_size: int = FROM_PRESET,
        lr: float = FROM_PRESET,
        optimizer: Literal["sgd", "adam"] = FROM_PRESET,
        momentum: float = FROM_PRESET,
        weight_decay: float = FROM_PRESET,
        lr_decay_every: int | None = FROM_PRESET,
        lr_decay_factor: float = FROM_PRESET,
        on_nonfinite: Literal["raise", "skip"] = FROM_PRESET,
        eval_batch_size: int = FROM_PRESET,
        aggregator: AggregatorName = FROM_PRESET,
        merge_duplicate_inputs: bool = FROM_PRESET,
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
        if render_mode is not None and render_mode not in ("ansi", "human"):
            raise ValueError(f"render_mode must be None, 'ansi' or 'human', got {render_mode!r}")
        if dataset is None:
            from routing_env.datasets import load_dataset

            dataset = load_dataset("digits-mtl")
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
        if not isinstance(preset, str) or preset not in TrainingConfig.PRESETS:
            raise ValueError(f"preset must be one of {list(TrainingConfig.PRESETS)}, got {preset!r}")
        if training is not None and not isinstance(training, TrainingConfig):
            raise TypeError(f"training must be a TrainingConfig or None, got {type(training).__name__}")
        if training is not None and preset != "default":
            raise ValueError(
                f"pass either training=TrainingConfig(...) or preset={preset!r}, not both "
                "(TrainingConfig.preset(name, ...) builds a preset's config)"
            )
        given = {
            "batch_size": batch_size,
            "lr": lr,
            "optimizer": optimizer,
            "momentum": momentum,
            "weight_decay": weight_decay,
            "lr_decay_every": lr_decay_every,
            "lr_decay_factor": lr_decay_factor,
            "on_nonfinite": on_nonfinite,
            "eval_batch_size": eval_batch_size,
            "aggregator": aggregator,
            "merge_duplicate_inputs": merge_duplicate_inputs,
        }
        changes: dict[str, Any] = {k: v for k, v in given.items() if v is not FROM_PRESET}
        if training is None:
            training = TrainingConfig.preset(preset, **changes)
        elif changes:  # keywords given with a config replace its fields
            training = dataclasses.replace(training, **changes)
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
        self.training = training
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
        self._judgement_key = "loss" if self.engine.regression else "correct"
        width = self.observation_width + self.num_tasks + self.num_decisions
        self.state_space = gymnasium.spaces.Box(-_FLOAT32_MAX, _FLOAT32_MAX, shape=(width,), dtype=np.float32)
        # what an agent that has not acted in the episode observes: zeros, shared and read-only
        idle_router_obs = self._zero_observation(self.num_actions)
        self._idle_obs = {a: idle_router_obs for a in self.routers}
        if self.dispatcher:
            self._idle_obs[self.dispatcher] = self._zero_observation(len(self.routers))
        self.agents: list[str] = []
        self._episode_over = True

    def __deepcopy__(self, memo: dict[int, Any]) -> RoutingEnv:
        # shares the read-only dataset; the engine's copy does the same
        return deepcopy_sharing(self, memo, (self.dataset,))  # type: ignore[no-any-return]

    def _zero_observation(self, num_actions: int) -> dict[str, Any]:
        obs = {
            "observation": np.zeros(self.observation_width, dtype=np.float32),
            "task": 0,
            "depth": 0,
            "action_mask": np.zeros(num_actions, dtype=np.int8),
        }
        for value in obs.values():
            if isinstance(value, np.ndarray):
                value.flags.writeable = False
        return obs

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
    RESET_OPTIONS = ("mode", "split")
    """The keys ``reset(options=...)`` understands."""

    def _start_reset(self, seed: int | None, options: Mapping[str, Any] | None) -> None:
        """What ``reset`` does on the engine, shared with :class:`~routing_env.batched_env.BatchedRoutingEnv`:
        check the seed and options, start a new run on a seed (or at the first reset), drop an
        unfinished sample, and switch mode as ``options`` ask."""
        if options is not None and not isinstance(options, Mapping):
            raise TypeError(
                f"options must be a dict such as {{'mode': 'eval'}} or None, got {type(options).__name__} "
                f"{options!r}"
            )
        self._check_option_keys(options or {})
        mode = (options or {}).get("mode")
        if mode is not None and mode not in ("train", "eval"):
            raise ValueError(f"options['mode'] must be 'train' or 'eval', got {mode!r}")
        split = (options or {}).get("split", "test")
        if split != "test" and mode != "eval":
            raise ValueError(
                f"options['split'] names the split an evaluation pass routes; pass it with 'mode': 'eval' "
                f"(got {dict(options or {})!r})"
            )
        self.engine.check_eval_split(split)  # before a seed restarts anything
        if seed is not None:
            if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
                raise TypeError(f"seed must be an int in [0, {MAX_SEED}] or None, got {seed!r}")
            if not 0 <= seed <= MAX_SEED:
                raise ValueError(f"seed must be in [0, {MAX_SEED}] (2**63 - 1) or None, got {seed}")
            self.engine.restart(int(seed))
        elif not self.engine.started:
            self.engine.restart(int(np.random.SeedSequence().generate_state(1)[0]))
        else:
            self.engine.abandon_sample()  # an unfinished sample of the last episode
        if mode == "eval" or (mode is not None and mode != self.engine.mode):
            self.engine.set_mode(mode, split)  # {"mode": "eval"} always starts a new pass

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None) -> None:
        self._start_reset(seed, options)
        # every agent is listed from reset on (TorchRL reads every agent's reward and info)
        agents = self.possible_agents
        self.agents = list(agents)
        self.rewards: dict[str, float] = dict.fromkeys(agents, 0.0)
        self._cumulative_rewards: dict[str, float] = dict.fromkeys(agents, 0.0)
        self.terminations: dict[str, bool] = dict.fromkeys(agents, False)
        self.truncations: dict[str, bool] = dict.fromkeys(agents, False)
        evaluating = self.engine.mode == "eval"
        self.infos: dict[str, dict[str, Any]] = {a: self._idle_info(a, evaluating=evaluating) for a in agents}
        self._last_obs: dict[str, dict[str, Any]] = {}
        self._samples_left = self.samples_per_episode
        self._episode_over = False
        self._skip_agent_selection: str | None = None
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

    def _idle_info(self, agent: str, *, evaluating: bool) -> dict[str, Any]:
        """The info of an agent that has not acted in this episode: the keys of its
        decisions' infos, with -1 for what it has not done yet."""
        if agent == self.dispatcher:
            return {"task": -1, "action": -1, "sample_index": -1, "sample_done": False, "eval": evaluating}
        info: dict[str, Any] = {
            "task": -1,
            "depth": -1,
            "action": -1,
            "sample_index": -1,
            "collaboration_reward": 0.0,
            "final_reward": 0.0,
            "sample_done": False,
            "eval": evaluating,
        }
        info[self._judgement_key] = -1.0 if self.engine.regression else -1
        return info

    def _begin_sample(self) -> None:
        self.engine.begin_sample()
        self._samples_left -= 1
        self._decision_obs: dict[str, Any] | None = None
        if self.dispatcher:
            self._router = None
            self.agent_selection = self.dispatcher
        else:
            router = self.router_of_task(self.engine.task)
            assert router is not None  # not dispatched: the task names its router
            self._router = self.agent_selection = router

    def router_of_task(self, task: int) -> str | None:
        """The router that routes every sample of ``task``: ``router_<task>`` (``per_task``),
        ``router_0`` (``single``), or None (``dispatched``: the dispatcher picks one per sample)."""
        if self.router_config == "per_task":
            return self.routers[task]
        if self.router_config == "single":
            return self.routers[0]
        return None

    # ------------------------------------------------------------- observing
    def observe(self, agent: str) -> dict[str, Any]:
        if agent not in self.observation_spaces:
            raise ValueError(f"unknown agent {agent!r}; this env's agents are {self.possible_agents}")
        if agent == self.agent_selection and not self._episode_over and self.engine.sample_in_flight:
            if self._decision_obs is None:
                self._decision_obs = self._make_obs(agent)
                self._last_obs[agent] = self._decision_obs
            return self._decision_obs
        if agent in self._last_obs:
            return self._last_obs[agent]
        return self._idle_obs[agent]

    def _make_obs(self, agent: str) -> dict[str, Any]:
        engine = self.engine
        dispatching = agent == self.dispatcher
        return router_observation(
            engine.representation_array(),
            width=self.observation_width,
            task=engine.task,
            depth=0 if dispatching else engine.depth,
            action_mask_A=self._dispatch_mask if dispatching else engine.action_mask(),
        )

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
        engine = self.engine
        if agent == self.dispatcher:
            self._router = self.routers[action]
            self.infos[agent] = {
                "task": engine.task,
                "action": action,
                "sample_index": engine.sample_index,
                "sample_done": False,
                "eval": engine.mode == "eval",
            }
            self.agent_selection = self._router
            self._decision_obs = None
            self._accumulate_rewards()
            return

        depth, task, index = engine.depth, engine.task, engine.sample_index
        outcome = engine.act(action, checked=True)  # _validate_action ran check_action
        self._decision_obs = None
        self.rewards[agent] = outcome.collaboration_reward + outcome.final_reward
        info: dict[str, Any] = {
            "task": task,
            "depth": depth,
            "action": action,
            "sample_index": index,
            "collaboration_reward": outcome.collaboration_reward,
            "final_reward": outcome.final_reward,
            "sample_done": outcome.sample_done,
            "eval": engine.mode == "eval",
        }
        if engine.regression:
            info["loss"] = -1.0 if outcome.loss is None else outcome.loss
        else:
            info["correct"] = -1 if outcome.correct is None else int(outcome.correct)
        self.infos[agent] = info
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

    def _was_dead_step(self, action: int | None) -> None:
        """Remove the selected (terminated) agent: PettingZoo's ``_was_dead_step``, with the
        same result, for this env where every agent terminates at once when the episode
        ends (so every agent left is dead and the next one is simply the first)."""
        if action is not None:
            raise ValueError("when an agent is dead, the only valid action is None")
        agent = self.agent_selection
        del self.terminations[agent], self.truncations[agent], self.rewards[agent]
        del self._cumulative_rewards[agent], self.infos[agent]
        self.agents.remove(agent)
        if self.agents:
            if self._skip_agent_selection is None:
                self._skip_agent_selection = agent  # restored once the last agent is gone
            self.agent_selection = self.agents[0]
        else:
            if self._skip_agent_selection is not None:
                self.agent_selection = self._skip_agent_selection
            self._skip_agent_selection = None
        for a in self.rewards:
            self.rewards[a] = 0.0

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
        """Accuracy (or loss) per task of the test samples scored in this evaluation pass.

        Returns:
            ``{"accuracy", "accuracy_per_task", "samples", "complete"}`` (``"loss"``,
            ``"loss_per_task"`` for regression); see the class docstring, Evaluation.
        """
        return self.engine.evaluation()

    @property
    def eval_pass_complete(self) -> bool:
        """True in eval mode once every test sample of this pass has been routed."""
        return self.engine.eval_pass_complete

    @property
    def mode(self) -> Literal["train", "eval"]:
        """``"train"`` or ``"eval"`` (set by ``reset(options={"mode": ...})``)."""
        return self.engine.mode

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
        """``"ansi"``: a text line on the sample being routed; ``"human"``: print that line."""
        if self.render_mode is None:
            return None
        e = self.engine
        if not e.started:
            text = "no run started; call reset()"
        elif not e.sample_in_flight:
            text = f"epoch {e.epoch}, {e.updates} block updates; no sample is being routed"
        else:
            text = (
                f"[{e.mode}] sample {e.sample_index} task {e.task} depth {e.depth}/{self.num_decisions} "
                f"agent {self.agent_selection}; epoch {e.epoch}, {e.updates} block updates"
            )
        if self.render_mode == "human":
            print(text)
            return None
        return text

    # ----------------------------------------------------------------- state
    def state(self) -> np.ndarray:
        """The global state of the sample being routed (PettingZoo's ``state()``).

        A float32 vector in :attr:`state_space`: the current representation v zero-padded
        to ``observation_width``, then ``one_hot(task)`` (``num_tasks``) and
        ``one_hot(depth)`` (``num_decisions``). All zeros when no sample is being routed
        (before the first reset and once the episode's last sample is routed).
        """
        state = np.zeros(self.state_space.shape, dtype=np.float32)
        e = self.engine
        if not e.started or not e.sample_in_flight:
            return state
        flat = e.representation_array()
        state[: flat.size] = flat
        state[self.observation_width + e.task] = 1.0
        state[self.observation_width + self.num_tasks + e.depth] = 1.0
        return state

    def close(self) -> None:
        pass


def raw_env(**kwargs: Any) -> RoutingEnv:
    """The unwrapped :class:`RoutingEnv` (it validates its own inputs)."""
    return RoutingEnv(**kwargs)


class _OrderEnforcingWrapper(wrappers.OrderEnforcingWrapper[str, dict[str, Any], int]):
    """PettingZoo's ``OrderEnforcingWrapper`` whose ``last()`` asks the env once.

    The inherited ``last()`` reads ``agent_selection``, ``observe``, the cumulative
    rewards, terminations, truncations and infos each through the wrapper's
    ``__getattr__``; ``last()`` runs on every turn, including each agent's terminated
    turn at the end of an episode, so that is a large part of an AEC loop's own cost.
    """

    def last(self, observe: bool = True) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        if not self._has_reset:
            raise AttributeError("agent_selection cannot be accessed before reset")
        return self.env.last(observe)

    def __str__(self) -> str:
        return str(self.env)


def env(**kwargs: Any) -> AECEnv:
    """A :class:`RoutingEnv` wrapped in PettingZoo's ``OrderEnforcingWrapper``."""
    return _OrderEnforcingWrapper(RoutingEnv(**kwargs))
