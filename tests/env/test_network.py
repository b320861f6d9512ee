"""The routed network: shape inference, masks, batched forward along routes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from routing_env.network import PASS, RoutingNetwork, SimpleConvNet, build_default_network, fc_block


def small_network(routing="layered", hidden=16, trunk_width=16, blocks=3, classes=2):
    trunk = nn.Sequential(nn.Flatten(), nn.Linear(4, trunk_width))
    layers = [
        [fc_block(trunk_width, hidden) for _ in range(blocks)],
        [fc_block(hidden, hidden) for _ in range(blocks)],
        [fc_block(hidden, classes, activation=False) for _ in range(blocks)],
    ]
    return RoutingNetwork(
        trunk=trunk, layers=layers, input_shape=(1, 2, 2), output_size=classes, routing=routing
    )


def test_simple_conv_net_matches_paper_shape():
    trunk = SimpleConvNet(in_channels=3)  # 4 x [conv3x3 32, BN, ReLU, pool]
    convs = [m for m in trunk.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 4 and all(c.out_channels == 32 and c.kernel_size == (3, 3) for c in convs)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in trunk.modules()) == 4
    assert trunk(torch.zeros(2, 3, 32, 32)).shape == (2, 128)


def test_default_network_rejects_too_small_images():
    with pytest.raises(ValueError, match="too small for 4 conv layers"):
        build_default_network(input_shape=(1, 8, 8), num_tasks=2, output_size=2)


def test_trunk_that_does_not_fit_the_input_is_reported():
    trunk = nn.Sequential(nn.Flatten(), nn.Linear(10, 4))
    with pytest.raises(ValueError, match="trunk does not accept inputs of shape"):
        RoutingNetwork(trunk=trunk, layers=[[nn.Linear(4, 2)]], input_shape=(1, 2, 2), output_size=2)


def test_blocks_that_cannot_chain_are_reported():
    trunk = nn.Flatten()
    with pytest.raises(ValueError, match="no route"):
        RoutingNetwork(
            trunk=trunk, layers=[[nn.Linear(4, 8)], [nn.Linear(7, 2)]], input_shape=(1, 2, 2), output_size=2
        )


def test_layered_masks_follow_layer_sizes():
    trunk = nn.Flatten()
    layers = [[nn.Linear(4, 6) for _ in range(3)], [nn.Linear(6, 2)]]
    net = RoutingNetwork(trunk=trunk, layers=layers, input_shape=(1, 2, 2), output_size=2)
    assert net.num_actions == 3
    assert net.action_mask(0, (4,)).tolist() == [1, 1, 1]
    assert net.action_mask(1, (6,)).tolist() == [1, 0, 0]
    assert net.observation_width == 6


def test_incompatible_block_is_masked():
    trunk = nn.Flatten()
    layers = [[nn.Linear(4, 6), nn.Linear(5, 6)], [nn.Linear(6, 2)]]  # block 1 does not fit width 4
    net = RoutingNetwork(trunk=trunk, layers=layers, input_shape=(1, 2, 2), output_size=2)
    assert net.action_mask(0, (4,)).tolist() == [1, 0]


def test_recurrent_pass_and_width_masks():
    net = small_network("recurrent", hidden=16, trunk_width=16)
    # pool = 6 blocks (layers 0 and 1) + PASS; the classifiers are the last decision
    assert net.num_actions == 7
    assert net.action_target(0, 6) == PASS
    assert net.action_mask(0, (16,)).tolist() == [1] * 7
    assert net.action_mask(2, (16,)).tolist() == [1, 1, 1, 0, 0, 0, 0]
    # trunk width 8 != hidden 16: PASS at depth 1 would leave width 8 for the classifier
    net = small_network("recurrent", hidden=16, trunk_width=8)
    assert net.action_mask(0, (8,)).tolist() == [1, 1, 1, 0, 0, 0, 1]
    assert net.action_mask(1, (8,)).tolist() == [1, 1, 1, 0, 0, 0, 0]
    assert net.action_mask(1, (16,)).tolist() == [0, 0, 0, 1, 1, 1, 1]


@pytest.mark.parametrize("routing", ["layered", "recurrent"])
def test_batched_forward_equals_per_sample_forward(routing):
    torch.manual_seed(0)
    net = small_network(routing).eval()
    x = torch.randn(12, 1, 2, 2)
    gen = torch.Generator().manual_seed(1)
    routes = []
    for _ in range(12):
        v, route = net.trunk(x[:1]), []
        for depth in range(net.num_decisions):
            allowed = net.action_mask(depth, tuple(v.shape[1:])).nonzero()[0]
            a = int(allowed[torch.randint(len(allowed), (1,), generator=gen)])
            route.append(a)
            v = net.apply_action(depth, a, v)
        routes.append(route)
    routes = torch.tensor(routes)
    batched = net(x, routes)
    for i in range(12):
        v = net.trunk(x[i : i + 1])
        for depth in range(net.num_decisions):
            v = net.apply_action(depth, int(routes[i, depth]), v)
        torch.testing.assert_close(batched[i : i + 1], v)


def test_gradients_reach_only_blocks_on_a_route():
    net = small_network()
    x = torch.randn(5, 1, 2, 2)
    routes = torch.tensor([[0, 1, 2]] * 3 + [[0, 0, 2]] * 2)
    net(x, routes).sum().backward()
    used = {0, 3 + 0, 3 + 1, 6 + 2}  # global block ids: layer * 3 + action
    for i, block in enumerate(net.blocks):
        grads = [p.grad for p in block.parameters()]
        if i in used:
            assert all(g is not None and g.abs().sum() > 0 for g in grads), i
        else:
            assert all(g is None for g in grads), i


def test_one_block_call_per_used_block(monkeypatch):
    net = small_network(blocks=3)
    calls = []
    for i, block in enumerate(net.blocks):
        block.register_forward_hook(lambda m, inp, out, i=i: calls.append((i, inp[0].shape[0])))
    routes = torch.tensor([[0, 0, 0], [1, 0, 0], [0, 2, 1], [1, 2, 1], [0, 0, 0]])
    net(torch.randn(5, 1, 2, 2), routes)
    assert sorted(calls) == sorted([(0, 3), (1, 2), (3, 3), (5, 2), (6, 3), (7, 2)])


def conv_block(channels_in: int, channels_out: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(channels_in, channels_out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))


def test_routed_conv_layers_in_the_env(digits):
    """Any blocks can be routed: here two conv layers and a classifier layer."""
    from routing_env import RoutingEnv

    trunk = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())  # 1x8x8 -> 4x8x8
    layers = [
        [conv_block(4, 8) for _ in range(3)],  # -> 8x4x4
        [conv_block(8, 8) for _ in range(3)],  # -> 8x2x2
        [nn.Sequential(nn.Flatten(), nn.Linear(32, 2)) for _ in range(2)],
    ]
    net = RoutingNetwork(trunk=trunk, layers=layers, input_shape=(1, 8, 8), output_size=2)
    assert net.observation_width == 4 * 8 * 8
    env = RoutingEnv(dataset=digits, network=net, batch_size=4)
    env.reset(seed=0)
    decisions = 0
    acting = env.agent_selection
    for agent in env.agent_iter():
        obs, reward, terminated, truncated, info = env.last()
        if terminated:
            if agent == acting:
                final_obs, final_info = obs, info
            env.step(None)
            continue
        decisions += 1
        assert obs["observation"].shape == (256,)
        env.step(int(np.flatnonzero(obs["action_mask"])[-1]))
    assert final_info["sample_done"] and decisions == 3
    assert (
        final_obs["action_mask"].tolist()[:2] == [1, 1] and final_obs["action_mask"][2] == 0
    )  # 2 classifiers of 3 actions


# ------------------------------------------------ NumPy path of the observations
def _torch_apply(net, depth, action, v_D):
    with torch.no_grad():
        return net.apply_action(depth, action, torch.from_numpy(v_D).view(1, -1))[0].numpy()


@pytest.mark.parametrize("routing", ["layered", "recurrent"])
def test_array_path_matches_torch_on_every_allowed_move(routing):
    net = small_network(routing)
    net.refresh_array_path()
    rng = np.random.default_rng(0)
    shape = net.trunk_output_shape
    for depth in range(net.num_decisions):
        v = rng.normal(size=shape).astype(np.float32)
        for action in np.flatnonzero(net.action_mask(depth, shape)):
            out = net.apply_action_array(depth, int(action), v)
            assert out is not None
            np.testing.assert_allclose(out, _torch_apply(net, depth, int(action), v), rtol=1e-5, atol=1e-6)
        shape = (16,)


def test_array_path_sees_in_place_updates_and_replaced_parameters():
    net = small_network()
    net.refresh_array_path()
    v = np.ones(16, dtype=np.float32)
    first = net.apply_action_array(0, 0, v)
    with torch.no_grad():
        net.blocks[0][0].weight.mul_(2.0)  # in place, as an optimizer step: seen at once
    np.testing.assert_allclose(net.apply_action_array(0, 0, v), _torch_apply(net, 0, 0, v), rtol=1e-5)
    net.blocks[0][0].weight = nn.Parameter(torch.zeros(16, 16))  # new storage: seen after a refresh
    net.refresh_array_path()
    np.testing.assert_allclose(net.apply_action_array(0, 0, v), _torch_apply(net, 0, 0, v), rtol=1e-5)
    assert not np.allclose(first, net.apply_action_array(0, 0, v))


def test_array_path_declines_hooks_and_other_layers():
    net = small_network()
    net.refresh_array_path()
    v = np.ones(16, dtype=np.float32)
    assert net.apply_action_array(0, 1, v) is not None
    handle = net.blocks[1].register_forward_hook(lambda *_: None)
    net.refresh_array_path()
    assert net.apply_action_array(0, 1, v) is None  # hooks must run: torch path
    handle.remove()
    net.refresh_array_path()
    assert net.apply_action_array(0, 1, v) is not None
    handle = nn.modules.module.register_module_forward_hook(lambda *_: None)
    try:
        net.refresh_array_path()
        assert net.apply_action_array(0, 1, v) is None
    finally:
        handle.remove()

    trunk = nn.Sequential(nn.Flatten(), nn.Linear(4, 8))
    odd = RoutingNetwork(
        trunk=trunk,
        layers=[
            [nn.Sequential(nn.Linear(8, 8), nn.BatchNorm1d(8)), nn.Sequential(nn.Linear(8, 8), nn.Tanh())],
            [nn.Linear(8, 2)],
        ],
        input_shape=(1, 2, 2),
        output_size=2,
    )
    odd.refresh_array_path()
    v8 = np.ones(8, dtype=np.float32)
    assert odd.apply_action_array(0, 0, v8) is None and odd.apply_action_array(0, 1, v8) is None
    assert odd.apply_action_array(1, 0, v8) is not None  # a bare Linear


def test_env_observations_and_rewards_do_not_depend_on_the_array_path(digits, monkeypatch):
    import routing_env

    def episode_log(env):
        env.reset(seed=3)
        log = []
        for sample in range(150):  # more than two minibatches: blocks are trained in between
            if sample:
                env.reset()
            for _agent in env.agent_iter():
                obs, reward, term, trunc, info = env.last()
                if term or trunc:
                    env.step(None)
                    continue
                log.append((obs["observation"].copy(), reward))
                env.step(int(np.flatnonzero(obs["action_mask"])[sample % 3]))
        return log

    kwargs = dict(dataset=digits, batch_size=64, lr=0.1)
    fast = episode_log(routing_env.raw_env(**kwargs))
    monkeypatch.setattr(RoutingNetwork, "apply_action_array", lambda self, depth, action, v: None)
    slow = episode_log(routing_env.raw_env(**kwargs))
    assert len(fast) == len(slow)
    for (obs_f, r_f), (obs_s, r_s) in zip(fast, slow, strict=True):
        np.testing.assert_allclose(obs_f, obs_s, rtol=1e-4, atol=1e-5)
        assert r_f == r_s


def test_array_path_works_before_any_refresh():
    net = small_network()
    v = np.ones(16, dtype=np.float32)
    np.testing.assert_allclose(
        net.apply_action_array(0, 0, v), _torch_apply(net, 0, 0, v), rtol=1e-5, atol=1e-6
    )
