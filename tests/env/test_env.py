"""Episode semantics, rewards, block training, evaluation and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import routing_env
from routing_env import RoutingEnv, RoutingNetwork, TrainingConfig, fc_block
from routing_env.datasets import MultiTaskDataset, TaskSplit, digits_mtl

from .helpers import fixed_routes, random_choice, run_episodes


def weights(env):
    return {k: v.clone() for k, v in env.network.state_dict().items()}


def test_one_sample_per_episode(digits):
    env = RoutingEnv(dataset=digits, batch_size=4)
    log = run_episodes(env, 3, random_choice(0), seed=0)
    # each episode: its task's router acts at depths 0, 1, 2, then every router has its
    # terminated turn, the acting one first
    turns_per_episode = 3 + digits.num_tasks
    assert len(log) == 3 * turns_per_episode
    for episode in range(3):
        turns = log[episode * turns_per_episode : (episode + 1) * turns_per_episode]
        task = turns[0][5]["task"]
        acting = f"router_{task}"
        assert [t[0] for t in turns[:4]] == [acting] * 4
        assert [t[5]["depth"] for t in turns[:3]] == [0, 1, 2]
        assert [t[2] for t in turns] == [False] * 3 + [True] * digits.num_tasks
        last_info = turns[3][3]
        assert last_info["sample_done"] and last_info["final_reward"] in (1.0, -1.0)
        assert last_info["correct"] == (last_info["final_reward"] == 1.0)
        assert turns[3][1] == last_info["final_reward"] + last_info["collaboration_reward"]
        idle = turns[4:]
        assert sorted(t[0] for t in idle) == sorted(set(env.possible_agents) - {acting})
        assert all(t[1] == 0.0 and t[3]["sample_index"] == -1 and t[3]["correct"] == -1 for t in idle)


def test_every_agent_is_listed_from_reset_with_stable_numeric_infos(digits):
    for router in ("per_task", "single", "dispatched"):
        env = RoutingEnv(dataset=digits, router=router, batch_size=4)
        env.reset(seed=0)
        assert env.agents == env.possible_agents
        keys = {a: set(info) for a, info in env.infos.items()}
        assert set(env.rewards) == set(env.terminations) == set(env.truncations) == set(env.possible_agents)
        log = run_episodes(env, 4, random_choice(0))
        for agent, _, _, info, *_ in log:
            assert set(info) == keys[agent], (router, agent)
            assert all(isinstance(v, (bool, int, float)) for v in info.values()), info
        routers = [a for a in env.possible_agents if a.startswith("router_")]
        assert keys[routers[0]] == {
            "task", "depth", "action", "sample_index", "collaboration_reward",
            "final_reward", "sample_done", "correct", "eval",
        }  # fmt: skip
        if env.dispatcher:
            assert keys[env.dispatcher] == {"task", "action", "sample_index", "sample_done", "eval"}


def test_mid_route_infos_say_nothing_was_judged(digits):
    env = RoutingEnv(dataset=digits, batch_size=4)
    log = run_episodes(env, 2, random_choice(0), seed=0)
    decided = [t[3] for t in log if t[3]["depth"] >= 0]
    assert [i["correct"] for i in decided if not i["sample_done"]] == [-1, -1] * 2
    assert all(i["correct"] in (0, 1) for i in decided if i["sample_done"])
    assert not any(i["eval"] for i in decided)
    log = run_episodes(env, 1, random_choice(0), options={"mode": "eval"})
    assert all(t[3]["eval"] for t in log)


def test_several_samples_per_episode_mark_trace_ends(digits):
    env = RoutingEnv(dataset=digits, router="single", samples_per_episode=5)
    log = run_episodes(env, 1, random_choice(1), seed=0)
    live = [t for t in log if t[4] is not None]
    assert len(live) == 15
    ends = [t[3].get("sample_done", False) for t in log[1:]]
    assert sum(ends) == 5  # read after each sample's last decision (the last one at the dead step)


def test_dispatcher_chooses_the_router_and_gets_the_final_reward(digits):
    env = RoutingEnv(dataset=digits, router="dispatched", num_routers=3)
    env.reset(seed=0)
    assert env.agent_selection == "dispatcher_0"
    obs, *_ = env.last()
    assert obs["action_mask"].tolist() == [1, 1, 1]
    env.step(2)
    assert env.agent_selection == "router_2"
    for _ in range(3):
        obs, *_ = env.last()
        env.step(int(np.flatnonzero(obs["action_mask"])[0]))
    final = env.infos["router_2"]["final_reward"]
    assert env.terminations["dispatcher_0"] and env._cumulative_rewards["dispatcher_0"] == final


def test_collaboration_reward_is_rho_times_selection_frequency(digits):
    rho = 0.5
    env = RoutingEnv(dataset=digits, collaboration_reward=rho)
    counts = np.zeros((3, env.num_actions))
    choose = random_choice(3)
    env.reset(seed=0)
    for episode in range(40):
        if episode:
            env.reset()
        for agent in env.agent_iter():
            obs, reward, terminated, truncated, info = env.last()
            if terminated:
                env.step(None)
                continue
            depth, action = obs["depth"], choose(agent, obs)
            total = counts[depth].sum()
            expected = 0.0 if total == 0 else rho * counts[depth, action] / total
            env.step(action)
            assert env.infos[agent]["collaboration_reward"] == pytest.approx(expected)
            counts[depth, action] += 1


def test_blocks_train_once_per_minibatch_along_routes_only(digits):
    env = RoutingEnv(dataset=digits, batch_size=8, lr=0.1)
    env.reset(seed=0)
    before = weights(env)
    run_episodes(env, 7, lambda agent, obs: 0, seed=0)
    assert env.engine.updates == 0
    assert all(torch.equal(before[k], v) for k, v in weights(env).items())
    run_episodes(env, 1, lambda agent, obs: 0)
    assert env.engine.updates == 1
    after = weights(env)
    # block 0 of each layer was used; the other blocks are untouched
    for name, value in after.items():
        if name.startswith("blocks."):
            block = int(name.split(".")[1])
            used = block % digits.num_tasks == 0
            assert torch.equal(before[name], value) != used, name
        elif name.startswith("trunk.") and "weight" in name:
            assert not torch.equal(before[name], value), name


def test_random_fixed_routes_train_blocks_above_majority_rate(digits):
    """A random policy (one random route per task) over the whole training set learns."""
    env = RoutingEnv(dataset=digits, batch_size=32, lr=0.05, preset="paper", momentum=0.9)
    policy = fixed_routes(digits.num_tasks, env.num_decisions, env.num_actions, seed=0)
    run_episodes(env, len(digits.train), policy, seed=0)
    assert env.engine.epoch == 0 and env.engine.samples_routed == len(digits.train)
    run_episodes(env, len(digits.test), policy, options={"mode": "eval"})
    result = env.evaluation()
    majority = 1.0 - digits.test.targets_N.float().mean().item()
    assert result["samples"] == len(digits.test)
    assert result["accuracy"] > majority + 0.05, (result["accuracy"], majority)
    assert env.engine.updates == -(-len(digits.train) // 32)


def test_eval_mode_does_not_train_or_count(digits):
    env = RoutingEnv(dataset=digits, batch_size=4, collaboration_reward=0.3)
    run_episodes(env, 10, random_choice(0), seed=0)
    env.set_mode("eval")  # trains on the routed samples of the pending minibatch first
    assert env.engine.updates == 3
    before, counts, updates = weights(env), env.engine.selections_nA.copy(), env.engine.updates
    log = run_episodes(env, 20, random_choice(1))
    assert all(torch.equal(before[k], v) for k, v in weights(env).items())
    assert (env.engine.selections_nA == counts).all() and env.engine.updates == updates
    assert all(t[3].get("collaboration_reward", 0.0) == 0.0 for t in log)
    done = [t[3]["sample_index"] for t in log if t[3].get("sample_done")]
    assert done[:5] == env.engine.eval_order[:5].tolist()  # a pass interleaves the tasks


def test_same_seed_is_bit_identical_and_other_seed_differs(digits):
    def run(seed):
        env = RoutingEnv(dataset=digits, batch_size=8, collaboration_reward=0.2, preset="paper", momentum=0.9)
        log = run_episodes(env, 120, random_choice(7), seed=seed)
        return log, weights(env)

    (log1, w1), (log2, w2), (_, w3) = run(5), run(5), run(6)
    assert [(a, r, i.get("sample_index")) for a, r, _, i, *_ in log1] == [
        (a, r, i.get("sample_index")) for a, r, _, i, *_ in log2
    ]
    assert all(
        np.array_equal(x[5]["observation"], y[5]["observation"]) for x, y in zip(log1, log2, strict=True)
    )
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    assert not all(torch.equal(w1[k], w3[k]) for k in w1)


def test_reset_with_seed_restarts_the_run(digits):
    env = RoutingEnv(dataset=digits, batch_size=4)
    env.reset(seed=3)
    initial = weights(env)
    run_episodes(env, 12, random_choice(0))
    assert env.engine.updates > 0
    env.reset(seed=3)
    assert env.engine.updates == 0
    assert all(torch.equal(initial[k], v) for k, v in weights(env).items())


# ----------------------------------------------------------------- bad input
def snapshot(env):
    e = env.engine
    return (
        weights(env),
        e.selections_nA.copy(),
        e.depth,
        e.updates,
        env.agent_selection,
        dict(env._cumulative_rewards),
        torch.get_rng_state(),
    )


def assert_unchanged(env, snap):
    w, sel, depth, updates, selection, cum, rng = snap
    now = snapshot(env)
    assert all(torch.equal(w[k], now[0][k]) for k in w)
    assert (sel == now[1]).all() and depth == now[2] and updates == now[3] and selection == now[4]
    assert cum == now[5] and torch.equal(rng, now[6])


@pytest.mark.parametrize(
    "action, error, message",
    [
        (99, ValueError, "out of range"),
        (-1, ValueError, "out of range"),
        (1.0, TypeError, "must be an int"),
        ("0", TypeError, "must be an int"),
        (True, TypeError, "must be an int"),
        (None, ValueError, "not None"),
        (np.array([0, 1]), TypeError, "must be an int"),
    ],
)
def test_bad_actions_are_refused_without_side_effects(digits, action, error, message):
    env = RoutingEnv(dataset=digits, batch_size=2)
    env.reset(seed=0)
    env.step(0)
    snap = snapshot(env)
    with pytest.raises(error, match=message):
        env.step(action)
    assert_unchanged(env, snap)
    env.step(0)  # still usable


def test_masked_action_is_refused(digits):
    env = RoutingEnv(dataset=digits, routing="recurrent", hidden_width=64)
    env.reset(seed=0)
    env.step(env.pass_action)  # width stays 128: layer-2 blocks (64 -> 64) no longer fit
    snap = snapshot(env)
    with pytest.raises(ValueError, match="is masked at depth 1"):
        env.step(12)
    assert_unchanged(env, snap)


def test_step_after_the_episode_is_refused(digits):
    env = RoutingEnv(dataset=digits)
    run_episodes(env, 1, lambda agent, obs: 0, seed=0)
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(0)


def test_wrapped_env_refuses_step_before_reset(digits):
    env = routing_env.env(dataset=digits)
    with pytest.raises(Exception, match="reset"):
        env.step(0)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(router="nobody"), ValueError, "router must be"),
        (dict(samples_per_episode=0), ValueError, "samples_per_episode"),
        (dict(collaboration_reward=2.0), ValueError, "rho must be in"),
        (dict(batch_size=0), ValueError, "batch_size"),
        (dict(lr=-1.0), ValueError, "lr must be"),
        (dict(optimizer="rmsprop"), ValueError, "optimizer"),
        (dict(conv_layers=4), ValueError, "too small for 4 conv layers"),
        (dict(dataset="digits"), TypeError, "MultiTaskDataset"),
        (dict(routing="sideways"), ValueError, "routing must be"),
        (dict(router="dispatched", num_routers=0), ValueError, "num_routers"),
        (dict(preset="fast"), ValueError, r"preset must be one of \['default', 'paper'\]"),
        (dict(momentum=0.9), ValueError, "applies to optimizer='sgd' only"),
    ],
)
def test_bad_configs_are_refused(digits, kwargs, error, message):
    kwargs = {"dataset": digits, **kwargs}
    with pytest.raises(error, match=message):
        RoutingEnv(**kwargs)


def test_dataset_that_does_not_fit_the_network_is_refused(digits):
    net = routing_env.build_default_network(input_shape=(3, 32, 32), num_tasks=10, output_size=2)
    with pytest.raises(ValueError, match="inputs of shape"):
        RoutingEnv(dataset=digits, network=net)


def test_malformed_datasets_are_refused(digits):
    x, t, y = digits.train.inputs_NCHW, digits.train.tasks_N, digits.train.targets_N
    good = dict(name="bad", test=digits.test, num_classes=(2,) * 10, mean=(0.5,), std=(0.2,))
    with pytest.raises(ValueError, match="has label 2"):
        MultiTaskDataset(train=TaskSplit(x, t, torch.where(y == 1, 2, y)), **good)
    with pytest.raises(ValueError, match="tasks with no samples"):
        MultiTaskDataset(train=TaskSplit(x[t != 3], t[t != 3], y[t != 3]), **good)
    with pytest.raises(ValueError, match="4-d tensor"):
        MultiTaskDataset(train=TaskSplit(x[:, 0], t, y), **good)
    with pytest.raises(ValueError, match="the same number"):
        MultiTaskDataset(train=TaskSplit(x, t[:-1], y), **good)
    with pytest.raises(ValueError, match="task ids span"):
        MultiTaskDataset(train=TaskSplit(x, t + 1, y), **good)


class Exploding(nn.Module):
    def forward(self, v):
        return v * float("inf")


def custom_network(digits, last_block):
    trunk = nn.Sequential(nn.Flatten(), nn.Linear(64, 8))
    layers = [[fc_block(8, 8), fc_block(8, 8)], [last_block, fc_block(8, 2, activation=False)]]
    return RoutingNetwork(trunk=trunk, layers=layers, input_shape=(1, 8, 8), output_size=2)


def test_non_finite_loss_stops_training_and_names_the_blocks(digits):
    last = nn.Sequential(nn.Linear(8, 2), Exploding())
    env = RoutingEnv(dataset=digits, network=custom_network(digits, last), batch_size=2)
    env.reset(seed=0)
    before = weights(env)
    env.step(0)
    env.step(1)
    env.step(None)
    env.reset()
    env.step(0)
    with pytest.raises(
        FloatingPointError,
        match=r"block update 1 .*the output of block 2 \(depth 1, action 0\) is non-finite",
    ):
        env.step(0)
    assert all(torch.equal(before[k], v) for k, v in weights(env).items())
    env.reset()  # the env can go on after the refused minibatch
    assert env.engine.updates == 0


def test_non_finite_loss_can_be_skipped(digits):
    last = nn.Sequential(nn.Linear(8, 2), Exploding())
    env = RoutingEnv(dataset=digits, network=custom_network(digits, last), batch_size=1, on_nonfinite="skip")
    env.reset(seed=0)
    with pytest.warns(UserWarning, match="Skipping"):
        env.step(0)
        env.step(0)
    assert env.engine.skipped_updates == 1 and env.engine.updates == 0


def test_user_network_is_restored_not_redrawn_on_seeded_reset(digits):
    net = custom_network(digits, fc_block(8, 2, activation=False))
    given = {k: v.clone() for k, v in net.state_dict().items()}
    env = RoutingEnv(dataset=digits, network=net, batch_size=2, lr=0.5)
    run_episodes(env, 6, lambda agent, obs: 0, seed=1)
    assert not all(torch.equal(given[k], v) for k, v in weights(env).items())
    env.reset(seed=2)
    assert all(torch.equal(given[k], v) for k, v in weights(env).items())


def test_regression_final_reward_is_minus_loss():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(40, 1, 4, 4, generator=g)

    def split():
        return TaskSplit(x, torch.arange(40) % 2, x.mean(dim=(1, 2, 3)))

    data = MultiTaskDataset(
        name="reg", train=split(), test=split(), num_classes=(0, 0), mean=(0.5,), std=(0.3,)
    )
    env = RoutingEnv(dataset=data, conv_layers=1, hidden_width=8)
    log = run_episodes(env, 3, lambda agent, obs: 0, seed=0)
    finals = [t[3]["final_reward"] for t in log if t[3].get("sample_done")]
    assert len(finals) == 3 and all(f <= 0 for f in finals)
    assert all("correct" not in t[3] for t in log)  # regression infos carry the loss instead
    assert [-t[3]["loss"] for t in log if t[3].get("sample_done")] == finals
    assert all(t[3]["loss"] == -1.0 for t in log if not t[3].get("sample_done"))


def test_checkpoint_resume_is_bit_identical(tmp_path):
    digits = digits_mtl(test_fraction=0.9)  # a small training split keeps this fast

    def make():
        return RoutingEnv(
            dataset=digits, batch_size=16, preset="paper", momentum=0.9, collaboration_reward=0.1
        )

    # one epoch, a checkpoint at its end, then half an epoch: straight vs resumed
    env = make()
    half = 3 * len(digits.train) // 2  # spans an epoch boundary
    run_episodes(env, len(digits.train), random_choice(0), seed=4)
    assert env.engine.epoch == 0 and env.engine.epoch_progress == 1.0
    path = tmp_path / "ckpt.pt"
    torch.save(env.state_dict(), path)
    tail = run_episodes(env, half - len(digits.train), random_choice(1))
    straight = weights(env)

    resumed = make()
    resumed.reset(seed=99)  # a different run, overwritten by the checkpoint
    resumed.load_state_dict(torch.load(path, weights_only=True))
    tail2 = run_episodes(resumed, half - len(digits.train), random_choice(1))
    assert [(t[0], t[1], t[3].get("sample_index")) for t in tail] == [
        (t[0], t[1], t[3].get("sample_index")) for t in tail2
    ]
    assert all(torch.equal(straight[k], v) for k, v in weights(resumed).items())
    assert resumed.engine.epoch == 1


def test_checkpoint_mid_minibatch_is_refused(digits):
    env = RoutingEnv(dataset=digits, batch_size=16)
    run_episodes(env, 3, random_choice(0), seed=0)
    with pytest.raises(RuntimeError, match="between training minibatches"):
        env.state_dict()


def test_default_block_training_is_train_wpls_and_the_papers_is_a_preset(digits):
    default = RoutingEnv(dataset=digits).training
    assert (default.optimizer, default.lr, default.batch_size) == ("adam", 1e-3, 64)
    assert (default.lr_decay_every, default.lr_decay_factor) == (10, 0.1)
    paper = RoutingEnv(dataset=digits, preset="paper")
    assert paper.training == TrainingConfig.paper() == TrainingConfig.preset("paper")
    assert (paper.training.optimizer, paper.training.lr, paper.training.lr_decay_every) == ("sgd", 1e-2, 20)
    paper.reset(seed=0)
    assert isinstance(paper.engine.optimizer, torch.optim.SGD) and paper.engine.current_lr() == 1e-2
    # an argument given replaces the preset's value, the others stay the preset's
    mixed = RoutingEnv(dataset=digits, preset="paper", batch_size=16, lr_decay_every=None).training
    assert mixed == TrainingConfig.paper(batch_size=16, lr_decay_every=None)
    assert RoutingEnv(dataset=digits, lr=3e-3).training == TrainingConfig(lr=3e-3)
    with pytest.raises(TypeError, match=r"no field\(s\) \['learning_rate'\]"):
        TrainingConfig.paper(learning_rate=0.1)


def test_a_whole_training_config_is_accepted_and_keywords_still_replace_its_fields(digits):
    config = TrainingConfig.paper(lr=5e-3, eval_batch_size=128)
    env = RoutingEnv(dataset=digits, training=config)
    assert env.training == config
    env.reset(seed=0)
    assert isinstance(env.block_optimizer, torch.optim.SGD) and env.block_lr == 5e-3
    assert RoutingEnv(dataset=digits, training=config, batch_size=16).training == TrainingConfig.paper(
        lr=5e-3, eval_batch_size=128, batch_size=16
    )
    # the same run as the keywords that spell the config out
    spelled = RoutingEnv(dataset=digits, preset="paper", lr=5e-3, eval_batch_size=128)
    assert spelled.training == env.training
    with pytest.raises(ValueError, match="not both"):
        RoutingEnv(dataset=digits, training=config, preset="paper")
    with pytest.raises(TypeError, match="TrainingConfig"):
        RoutingEnv(dataset=digits, training={"lr": 0.1})  # type: ignore[arg-type]


def test_blocks_train_when_the_caller_steps_under_no_grad(digits):
    """TorchRL's collectors step envs under torch.no_grad(); the env trains its blocks anyway."""
    envs = {}
    for no_grad in (False, True):
        env = RoutingEnv(dataset=digits, batch_size=8)
        with torch.no_grad() if no_grad else torch.enable_grad():
            run_episodes(env, 16, random_choice(0), seed=0)
        assert env.engine.updates == 2
        envs[no_grad] = env
    a, b = weights(envs[False]), weights(envs[True])
    assert all(torch.equal(a[k], b[k]) for k in a)
