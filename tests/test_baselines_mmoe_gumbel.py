"""The baselines beyond the paper (issue 17): mmoe-all-fc's per-task gates and
gumbel-router-all-fc's routes, straight-through choices and temperature schedule
(CUDA checks skip without a GPU; resuming runs: tests/examples/test_train_baseline.py)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from routing_env.baselines import (
    ALL_BASELINE_NAMES,
    BASELINE_NAMES,
    EXTRA_BASELINE_NAMES,
    DeviceSplit,
    GumbelRouterFC,
    MMoEFC,
    build_baseline,
    evaluate_model,
    gumbel_temperature,
    model_optimizer,
    train_epoch,
)
from routing_env.datasets import subsample

T, D, H, K = 4, 6, 5, 3


@pytest.fixture(scope="module")
def small(digits):
    return subsample(digits, max_train=640, max_test=200, seed=0)


def batch(tasks, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(len(tasks), D, generator=g), torch.tensor(tasks)


def mmoe(**kwargs):
    torch.manual_seed(0)
    return MMoEFC(in_features=D, hidden_width=H, output_size=K, num_tasks=T, **kwargs)


def router(**kwargs):
    torch.manual_seed(0)
    head = GumbelRouterFC(in_features=D, hidden_width=H, output_size=K, num_tasks=T, **kwargs)
    with torch.no_grad():  # trained-looking logits: distinct routes per task
        for t, logits in enumerate(head.route_logits):
            logits.copy_(3.0 * torch.randn(logits.shape, generator=torch.Generator().manual_seed(7 + t)))
    return head


def along(head, x, choices_NL):
    """The routed composition by hand: each sample through its chosen block at each depth."""
    rows = []
    for n in range(x.shape[0]):
        v = x[n : n + 1]
        for depth, layer in enumerate(head.layers):
            v = layer[int(choices_NL[n, depth])](v)
        rows.append(v)
    return torch.cat(rows)


def test_the_names_and_what_they_build(digits):
    assert ALL_BASELINE_NAMES == BASELINE_NAMES + EXTRA_BASELINE_NAMES
    assert EXTRA_BASELINE_NAMES == ("mmoe-all-fc", "gumbel-router-all-fc")
    a = build_baseline("mmoe-all-fc", dataset=digits, seed=0)
    b = build_baseline("gumbel-router-all-fc", dataset=digits, seed=0)
    assert isinstance(a.head, MMoEFC) and isinstance(b.head, GumbelRouterFC)
    # the blocks per layer of routing-all-fc (one per task) unless set
    assert [len(layer) for layer in a.head.experts] == [10, 10]
    assert [len(layer) for layer in b.head.layers] == [10, 10, 10]
    assert len(a.head.classifiers) == 10
    c = build_baseline("gumbel-router-all-fc", dataset=digits, seed=0, blocks_per_layer=3)
    assert [len(layer) for layer in c.head.layers] == [3, 3, 3]
    assert c.head.route_logits[0].shape == (3, 3)
    with pytest.raises(ValueError, match="blocks_per_layer applies to"):
        build_baseline("soft-mixture-all-fc", dataset=digits, blocks_per_layer=3)
    with pytest.raises(ValueError, match="temperatures must be > 0"):
        build_baseline("gumbel-router-all-fc", dataset=digits, gumbel_tau_end=0.0)
    with pytest.raises(ValueError, match="anneal_steps"):
        build_baseline("gumbel-router-all-fc", dataset=digits, gumbel_anneal_steps=0)
    x = digits.normalize(digits.train.inputs_NCHW[:19])
    tasks = torch.arange(19) % 10
    for model in (a, b):
        assert model(x, tasks).shape == (19, 2)


# ----------------------------------------------------------------- mmoe-all-fc
def test_mmoe_forward_is_each_tasks_own_gated_mixture():
    head = mmoe()
    with torch.no_grad():  # gates that differ by task and input
        for gate in head.gates.modules():
            if isinstance(gate, torch.nn.Linear):
                gate.weight.normal_()
                gate.bias.normal_()
    x, tasks = batch([0, 3, 1, 3, 2])
    out = head(x, tasks)
    for n, t in enumerate(tasks.tolist()):
        h = x[n : n + 1]
        for layer in range(len(head.experts)):
            g = torch.softmax(head.gates[layer][t](h), dim=1)  # task t's gate on this input
            h = sum(g[0, e] * expert(h) for e, expert in enumerate(head.experts[layer]))
        assert torch.allclose(out[n : n + 1], head.classifiers[t](h), atol=1e-6)


def test_mmoe_gates_are_per_task_and_sum_to_one(small):
    model = build_baseline("mmoe-all-fc", dataset=small, seed=0)
    x = small.normalize(small.test.inputs_NCHW[:50])
    model.eval()
    h = model.trunk(x)
    start = model.head.gate_weights(0, h)
    assert start.shape == (50, 10, 10)
    assert torch.allclose(start, torch.full_like(start, 0.1))  # zero gates: uniform, the same for all tasks
    optimizer = model_optimizer(model, optimizer="adam", lr=1e-2)
    stats = train_epoch(model, optimizer, small, batch_size=320, rng=np.random.default_rng(0))
    assert stats.updates == 2
    model.eval()
    with torch.no_grad():
        h0 = model.trunk(x)
        h1 = model.head.experts[0][0](h0)  # an input of layer 1's gates
        g0, g1 = model.head.gate_weights(0, h0), model.head.gate_weights(1, h1)
    for g in (g0, g1):
        assert torch.allclose(g.sum(dim=2), torch.ones(50, 10), atol=1e-6)
        assert (g >= 0).all()
        for t in range(10):  # after training, every pair of tasks weighs the experts differently
            for u in range(t + 1, 10):
                assert (g[:, t] - g[:, u]).abs().max() > 1e-4, (t, u)


def test_mmoe_gates_and_classifier_of_a_task_are_its_own(digits):
    # minibatches of 4 samples miss most tasks: a task's gates and classifier take an
    # optimizer step only in the minibatches that hold the task
    tiny = subsample(digits, max_train=80, max_test=40, seed=1)
    model = build_baseline("mmoe-all-fc", dataset=tiny, seed=0)
    optimizer = model_optimizer(model, optimizer="adam", lr=1e-3)
    rng = np.random.default_rng(0)
    order = np.random.default_rng(0).permutation(len(tiny.train))  # what train_epoch draws
    train_epoch(model, optimizer, tiny, batch_size=4, rng=rng)
    tasks = tiny.train.tasks_N.numpy()[order]
    for t in range(10):
        holding = sum(t in tasks[i : i + 4] for i in range(0, len(tasks), 4))
        for p in model.task_parameters(t):
            steps = int(optimizer.state[p]["step"]) if p in optimizer.state else 0
            assert steps == holding, t
    assert len(model.task_parameters(0)) == 2 * 2 + 2  # two gates (weight, bias), a classifier
    for p in model.head.experts.parameters():  # the experts are shared: a step every minibatch
        assert int(optimizer.state[p]["step"]) == 20


@pytest.mark.parametrize("fc_layers", [1, 2, 3])
def test_mmoe_batched_matches_the_per_task_loop(fc_layers):
    loop, batched = mmoe(fc_layers=fc_layers, batched=False), mmoe(fc_layers=fc_layers, batched=True)
    batched.load_state_dict(loop.state_dict())
    x, tasks = batch([0, 2, 0, 1, 2, 2])
    assert torch.allclose(batched(x, tasks), loop(x, tasks), atol=1e-6)


# ----------------------------------------------------------------- gumbel-router-all-fc
def test_greedy_routes_are_the_argmax_of_the_logits():
    head = router()
    expected = torch.stack([logits.argmax(dim=1) for logits in head.route_logits])
    assert torch.equal(head.routes(), expected)
    assert head.routes().shape == (T, 3)
    assert len({tuple(r) for r in head.routes().tolist()}) > 1  # the tasks do route differently
    for t, route in enumerate(head.routes().tolist()):
        assert f"task {t}: {route}" in repr(head)
    zeros = GumbelRouterFC(in_features=D, hidden_width=H, output_size=K, num_tasks=T)
    assert zeros.routes().tolist() == [[0, 0, 0]] * T  # untrained: ties go to the lowest block


@pytest.mark.parametrize("batched", [False, True])
def test_eval_forward_runs_the_greedy_route_and_nothing_else(batched):
    head = router(batched=batched).eval()
    x, tasks = batch([0, 3, 1, 3, 2, 0])
    routes_NL = head.routes()[tasks]
    out = head(x, tasks)
    assert torch.allclose(out, along(head, x, routes_NL), atol=1e-6)
    assert head.steps == 0  # evaluation does not advance the temperature schedule
    for y in head.route_weights(tasks):
        assert torch.equal(y.sum(dim=1), torch.ones(6))
    # a block off every route changes nothing
    used = {(d, int(b)) for d in range(3) for b in routes_NL[:, d]}
    d, b = next((d, b) for d in range(3) for b in range(T) if (d, b) not in used)
    with torch.no_grad():
        for p in head.layers[d][b].parameters():
            p.add_(1.0)
    assert torch.equal(head(x, tasks), out)


def test_training_forward_is_a_hard_choice_with_gradient_to_the_logits():
    head = router(tau_start=0.7, tau_end=0.7).train()
    x, tasks = batch([0, 3, 1, 3, 0, 1, 1])  # task 2 is absent
    torch.manual_seed(5)
    y_LNB = head.route_weights(tasks)
    for y in y_LNB:  # one-hot in value
        assert torch.allclose(y, (y > 0.5).float(), atol=1e-6)
        assert torch.equal((y > 0.5).sum(dim=1), torch.ones(len(tasks), dtype=torch.int64))
    choices_NL = torch.stack([y.argmax(dim=1) for y in y_LNB], dim=1)
    torch.manual_seed(5)  # the same noise: the same choices
    out = head(x, tasks)
    assert head.steps == 1
    assert torch.allclose(out, along(head, x, choices_NL), atol=1e-6)
    # samples choose independently: with noise at tau 0.7 not every sample of a task agrees
    torch.manual_seed(0)
    many = torch.zeros(200, dtype=torch.int64)
    draws = head.route_weights(many)[0].argmax(dim=1)
    assert len(set(draws.tolist())) > 1
    # straight through: the hard forward, the soft sample's gradient on every present task's logits
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(2))
    (out * weights).sum().backward()
    for t in range(T):
        grad = head.route_logits[t].grad
        if t == 2:
            assert not grad.any()  # train_epoch sets it to None: the optimizer skips it
        else:
            assert grad.abs().sum() > 0 and torch.isfinite(grad).all(), t
            assert (grad.abs().sum(dim=1) > 0).all(), t  # at every depth
    assert head.task_parameters(2) == [head.route_logits[2]]


def test_training_forward_is_the_same_batched_or_not():
    loop, batched = router(batched=False).train(), router(batched=True).train()
    x, tasks = batch([0, 3, 1, 3, 2, 0])
    torch.manual_seed(3)
    a = loop(x, tasks)
    torch.manual_seed(3)
    assert torch.equal(batched(x, tasks), a)


def test_temperature_schedule():
    assert gumbel_temperature(0, start=1.0, end=0.1, steps=100) == 1.0
    assert gumbel_temperature(99, start=1.0, end=0.1, steps=100) == pytest.approx(0.1, rel=1e-12)
    assert gumbel_temperature(500, start=1.0, end=0.1, steps=100) == pytest.approx(0.1, rel=1e-12)
    # exponential: halfway, the geometric mean; each step the same factor
    assert gumbel_temperature(50, start=2.0, end=0.02, steps=101) == pytest.approx(0.2, rel=1e-12)
    taus = [gumbel_temperature(s, start=1.0, end=0.1, steps=10) for s in range(10)]
    ratios = [b / a for a, b in zip(taus, taus[1:], strict=False)]
    assert ratios == pytest.approx([0.1 ** (1 / 9)] * 9, rel=1e-12)
    assert gumbel_temperature(7, start=0.5, end=0.1, steps=None) == 0.5
    with pytest.raises(ValueError, match="> 0"):
        gumbel_temperature(0, start=-1.0, end=0.1, steps=10)
    # the head reads it at its count of training passes, which its state dict carries
    head = router(tau_start=1.0, tau_end=0.1, anneal_steps=4).train()
    x, tasks = batch([0, 1])
    seen = []
    for _ in range(6):
        seen.append(head.temperature())
        head(x, tasks)
    assert seen == pytest.approx([1.0, 0.1 ** (1 / 3), 0.1 ** (2 / 3), 0.1, 0.1, 0.1])
    other = router(tau_start=1.0, tau_end=0.1, anneal_steps=4)
    other.load_state_dict(head.state_dict())
    assert other.steps == 6 and other.temperature() == pytest.approx(0.1)


def test_train_epoch_counts_steps_and_moves_the_routes(small):
    model = build_baseline("gumbel-router-all-fc", dataset=small, seed=0, gumbel_anneal_steps=20)
    optimizer = model_optimizer(model, optimizer="adam", lr=1e-2)
    rng = np.random.default_rng(0)
    for _ in range(2):
        train_epoch(model, optimizer, small, batch_size=64, rng=rng)
    assert model.head.steps == 20 and model.head.temperature() == pytest.approx(0.1)
    assert model.head.routes().tolist() != [[0, 0, 0]] * 10  # the logits were trained
    before = model.head.steps
    test = evaluate_model(model, small)
    assert model.head.steps == before and 0.0 <= test.accuracy <= 1.0


# ----------------------------------------------------------------- CUDA (skipped without a GPU)
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@needs_cuda
@pytest.mark.parametrize("name", EXTRA_BASELINE_NAMES)
def test_cuda_eval_matches_the_cpu(small, name):
    model = build_baseline(name, dataset=small, seed=0)
    if name == "gumbel-router-all-fc":
        with torch.no_grad():
            for t, logits in enumerate(model.head.route_logits):
                logits[:, t % 10] = 1.0
    x = small.normalize(small.test.inputs_NCHW[:64])
    tasks = small.test.tasks_N[:64]
    model.eval()
    cpu = model(x, tasks)
    gpu = model.cuda()(x.cuda(), tasks.cuda()).cpu()
    assert torch.allclose(gpu, cpu, rtol=1e-3, atol=1e-4)


@needs_cuda
@pytest.mark.parametrize("name", EXTRA_BASELINE_NAMES)
def test_cuda_steps_never_wait_on_the_device(small, name):
    model = build_baseline(name, dataset=small, seed=0, gumbel_anneal_steps=80).cuda()
    optimizer = model_optimizer(model, lr=1e-3, optimizer="adam")
    train = DeviceSplit(dataset=small, split=small.train, device="cuda")
    test = DeviceSplit(dataset=small, split=small.test, device="cuda")
    rng = np.random.default_rng(0)
    train_epoch(model, optimizer, small, batch_size=16, rng=rng, device="cuda", data=train)  # warm-up
    previous = torch.cuda.get_sync_debug_mode()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            stats = train_epoch(model, optimizer, small, batch_size=16, rng=rng, device="cuda", data=train)
            evaluate_model(model, small, device="cuda", data=test)
        finally:
            torch.cuda.set_sync_debug_mode(previous)
    syncs = [str(w.message) for w in caught if "synchroniz" in str(w.message).lower()]
    assert stats.updates == 40
    assert 1 <= len(syncs) <= 6, syncs  # as the paper's baselines: none per step


def test_the_route_logits_may_have_a_learning_rate_of_their_own(small):
    model = build_baseline("gumbel-router-all-fc", dataset=small, seed=0)
    assert model.routing_parameters() == list(model.head.route_logits)
    plain = model_optimizer(model, optimizer="adam", lr=1e-3)
    assert len(plain.param_groups) == 1  # the default: one group, as every other baseline
    optimizer = model_optimizer(model, optimizer="adam", lr=1e-3, routing_lr=0.1)
    blocks, logits = optimizer.param_groups
    assert logits["lr"] == 0.1 and blocks["lr"] == 1e-3
    assert {id(p) for p in logits["params"]} == {id(p) for p in model.head.route_logits}
    assert len(blocks["params"]) + len(logits["params"]) == len(list(model.parameters()))
    before = torch.stack(list(model.head.route_logits)).detach().clone()
    train_epoch(model, optimizer, small, batch_size=64, rng=np.random.default_rng(0))
    moved = (torch.stack(list(model.head.route_logits)).detach() - before).abs().max()
    assert moved > 0.3  # ten Adam steps of 0.1 (at 1e-3 they would stay under 0.01)
    with pytest.raises(ValueError, match="routing parameters"):
        model_optimizer(build_baseline("mmoe-all-fc", dataset=small), routing_lr=0.1)
    with pytest.raises(ValueError, match="routing_lr"):
        model_optimizer(model, routing_lr=0.0)


def test_bad_block_counts_are_named():
    with pytest.raises(ValueError, match="experts_per_layer must be a positive int"):
        mmoe(experts_per_layer=0)
    with pytest.raises(ValueError, match="blocks_per_layer must be a positive int"):
        GumbelRouterFC(in_features=D, hidden_width=H, output_size=K, num_tasks=T, blocks_per_layer=0)
    assert mmoe(experts_per_layer=2).gate_weights(0, torch.zeros(3, D)).shape == (3, T, 2)
