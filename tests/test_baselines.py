"""The non-routed baselines: shapes, initialization, where gradients flow, training steps,
the batched heads and device-held data (CUDA checks skip without a GPU)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from routing_env import RoutingEnv
from routing_env.baselines import (
    ALL_BASELINE_NAMES,
    BASELINE_NAMES,
    EVAL_BATCH_SIZE_CPU,
    BaselineModel,
    CrossStitchFC,
    DeviceSplit,
    SoftMixtureFC,
    TaskSpecificFC,
    build_baseline,
    decay_lr,
    default_conv_layers,
    evaluate_model,
    model_optimizer,
    train_epoch,
)
from routing_env.datasets import MultiTaskDataset, TaskSplit, subsample

T, D, H, K = 4, 6, 5, 3


@pytest.fixture(scope="module")
def small(digits):
    return subsample(digits, max_train=640, max_test=200, seed=0)


def batch(tasks, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(len(tasks), D, generator=g), torch.tensor(tasks)


def head_of(name, *, fc_layers=3, batched=None):
    torch.manual_seed(0)
    sizes = dict(
        in_features=D, hidden_width=H, output_size=K, num_tasks=T, fc_layers=fc_layers, batched=batched
    )
    if name == "task-specific-1-fc":
        return TaskSpecificFC(**sizes, task_specific_layers=1)
    if name == "task-specific-all-fc":
        return TaskSpecificFC(**sizes, task_specific_layers=fc_layers)
    return (CrossStitchFC if name == "cross-stitch-all-fc" else SoftMixtureFC)(**sizes)


def heads(batched=None):
    return {name: head_of(name, batched=batched) for name in BASELINE_NAMES}


def grads_of(module):
    return {name: p.grad for name, p in module.named_parameters()}


# ----------------------------------------------------------------- shapes
@pytest.mark.parametrize("name", BASELINE_NAMES)
def test_models_predict_one_row_per_sample(digits, name):
    model = build_baseline(name, dataset=digits, seed=0)
    x = digits.normalize(digits.train.inputs_NCHW[:37])
    tasks = torch.arange(37) % digits.num_tasks
    logits = model(x, tasks)
    assert logits.shape == (37, max(digits.num_classes))
    assert torch.isfinite(logits).all()


def test_trunk_matches_the_routing_env(digits):
    assert default_conv_layers(digits.input_shape) == 2  # 8x8 digits: 2 conv layers, as the env
    model = build_baseline("task-specific-1-fc", dataset=digits, seed=0)
    env = RoutingEnv(dataset=digits)
    assert [type(m) for m in model.trunk.modules()] == [type(m) for m in env.network.trunk.modules()]
    x = torch.zeros(2, *digits.input_shape)
    assert model.trunk(x).shape[1:] == env.network.trunk_output_shape
    assert default_conv_layers((3, 32, 32)) == 4 and default_conv_layers((1, 28, 28)) == 4


def test_fc_widths_follow_the_paper(digits):
    model = build_baseline("task-specific-all-fc", dataset=digits, seed=0, hidden_width=128)
    linears = [m for m in model.head.columns[0].modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(128, 128), (128, 128), (128, 2)]
    assert len(model.head.columns) == digits.num_tasks


def test_build_is_seeded_and_leaves_the_global_generator_alone(digits):
    before = torch.get_rng_state()
    a = build_baseline("cross-stitch-all-fc", dataset=digits, seed=3)
    b = build_baseline("cross-stitch-all-fc", dataset=digits, seed=3)
    c = build_baseline("cross-stitch-all-fc", dataset=digits, seed=4)
    assert torch.equal(torch.get_rng_state(), before)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_bad_arguments_raise(digits):
    with pytest.raises(ValueError, match="unknown baseline"):
        build_baseline("routing-all-fc", dataset=digits)
    with pytest.raises(ValueError, match="too small"):
        build_baseline("task-specific-1-fc", dataset=digits, conv_layers=4)
    with pytest.raises(ValueError, match="task_specific_layers"):
        TaskSpecificFC(in_features=D, hidden_width=H, output_size=K, num_tasks=T, task_specific_layers=4)
    with pytest.raises(ValueError, match="self_weight"):
        CrossStitchFC(in_features=D, hidden_width=H, output_size=K, num_tasks=T, self_weight=1.5)
    with pytest.raises(ValueError, match="task ids"):
        heads()["task-specific-1-fc"](*batch([0, T]))
    regression = MultiTaskDataset(
        name="reg",
        train=TaskSplit(torch.zeros(2, 1, 8, 8), torch.tensor([0, 0]), torch.zeros(2)),
        test=TaskSplit(torch.zeros(2, 1, 8, 8), torch.tensor([0, 0]), torch.zeros(2)),
        num_classes=(0,),
        mean=(0.0,),
        std=(1.0,),
    )
    with pytest.raises(ValueError, match="regression"):
        build_baseline("task-specific-1-fc", dataset=regression)


# ----------------------------------------------------------------- initialization
def test_cross_stitch_starts_near_identity():
    head = CrossStitchFC(in_features=D, hidden_width=H, output_size=K, num_tasks=T, self_weight=0.9)
    assert len(head.stitch) == 2  # after each hidden fc layer
    for w in head.stitch:
        assert torch.allclose(torch.diagonal(w), torch.full((T,), 0.9))
        off = w[~torch.eye(T, dtype=torch.bool)]
        assert torch.allclose(off, torch.full_like(off, 0.1 / (T - 1)))
        assert torch.allclose(w.sum(dim=1), torch.ones(T))


def test_cross_stitch_with_identity_units_is_independent_columns():
    torch.manual_seed(0)
    head = CrossStitchFC(in_features=D, hidden_width=H, output_size=K, num_tasks=T, self_weight=1.0)
    x, tasks = batch([0, 1, 2, 3, 2, 1])
    out = head(x, tasks)
    for n, t in enumerate(tasks.tolist()):
        v = x[n : n + 1]
        for layer in head.layers:
            v = layer[t](v)
        assert torch.allclose(out[n : n + 1], v, atol=1e-6)


def test_soft_mixture_starts_uniform_and_mixes_every_block():
    torch.manual_seed(0)
    head = SoftMixtureFC(in_features=D, hidden_width=H, output_size=K, num_tasks=T)
    for layer in (1, 2):
        assert torch.allclose(head.mixture_weights(layer), torch.full((T,), 1 / T))
    x, tasks = batch([2, 0])
    out = head(x, tasks)
    # by hand: layer 0 blocks on x, uniform mixture, layer 1 blocks, mixture, task's classifier
    u = torch.stack([b(x) for b in head.layers[0]]).mean(0)
    u = torch.stack([b(u) for b in head.layers[1]]).mean(0)
    expected = torch.stack([head.layers[2][t](u[n]) for n, t in enumerate(tasks.tolist())])
    assert torch.allclose(out, expected, atol=1e-6)


# ----------------------------------------------------------------- gradient flow
def test_task_specific_1_fc_trains_only_the_task_head():
    head = heads()["task-specific-1-fc"]
    head(*batch([2, 2, 2])).sum().backward()
    for name, grad in grads_of(head).items():
        if name.startswith(("shared.", "columns.2.")):
            assert grad is not None and grad.abs().sum() > 0, name
        else:
            assert grad is None, name  # other tasks' heads are never touched


def test_task_specific_all_fc_trains_only_the_task_column():
    head = heads()["task-specific-all-fc"]
    head(*batch([1, 3])).sum().backward()
    touched = {name.split(".")[1] for name, grad in grads_of(head).items() if grad is not None}
    assert touched == {"1", "3"}
    assert not list(head.shared.parameters())


def test_cross_stitch_gradients():
    head = heads()["cross-stitch-all-fc"]
    head(*batch([2, 2])).sum().backward()
    g = grads_of(head)
    # the hidden columns all feed task 2's column through the stitch units
    for layer in (0, 1):
        for t in range(T):
            assert g[f"layers.{layer}.{t}.0.weight"].abs().sum() > 0
    # only task 2's classifier
    for t in range(T):
        grad = g[f"layers.2.{t}.0.weight"]
        assert (grad is not None) == (t == 2)
    # the last unit: only the row that feeds column 2 is used
    last = head.stitch[-1].grad
    assert last[2].abs().sum() > 0
    assert torch.count_nonzero(torch.cat([last[:2], last[3:]])) == 0


def test_soft_mixture_gradients():
    head = heads()["soft-mixture-all-fc"]
    head(*batch([0, 0, 0])).sum().backward()
    g = grads_of(head)
    for t in range(T):
        assert (g[f"layers.2.{t}.0.weight"] is not None) == (t == 0)
        assert g[f"layers.0.{t}.0.weight"].abs().sum() > 0  # every block is mixed in
    assert all(g[f"mixture_logits.{i}"].abs().sum() > 0 for i in (0, 1))


@pytest.mark.parametrize("name", BASELINE_NAMES)
def test_a_sample_reads_its_own_task_column(name):
    head = heads()[name]
    x, tasks = batch([0, 1, 0])
    before = head(x, tasks).detach()
    with torch.no_grad():  # change task 3's classifier: samples of tasks 0 and 1 do not see it
        last = head.columns[3] if name.startswith("task-specific") else head.layers[-1][3]
        for p in last.parameters():
            p.add_(1.0)
    assert torch.equal(head(x, tasks), before)


# ----------------------------------------------------------------- training
def test_train_epoch_counts_and_updates(small):
    model = build_baseline("task-specific-1-fc", dataset=small, seed=0)
    optimizer = model_optimizer(model, lr=1e-3, optimizer="adam")
    seen = []
    stats = train_epoch(
        model,
        optimizer,
        small,
        batch_size=64,
        rng=np.random.default_rng(0),
        callback=lambda s: seen.append(s.samples),
    )
    assert stats.samples == len(small.train) == 640
    assert stats.updates == 10 and seen == list(range(64, 641, 64))
    assert stats.total_T.tolist() == np.bincount(small.train.tasks_N.numpy(), minlength=10).tolist()
    assert 0.0 <= stats.accuracy <= 1.0 and math.isfinite(stats.loss_sum)


def test_training_is_deterministic_and_lowers_the_loss(small):
    def run():
        model = build_baseline("cross-stitch-all-fc", dataset=small, seed=1)
        optimizer = model_optimizer(model, lr=1e-3, optimizer="adam")
        rng = np.random.default_rng(0)
        return model, [
            train_epoch(model, optimizer, small, batch_size=32, rng=rng).loss_sum for _ in range(3)
        ]

    (m1, losses1), (m2, losses2) = run(), run()
    assert losses1 == losses2
    assert losses1[-1] < losses1[0]
    s1, s2 = m1.state_dict(), m2.state_dict()
    assert all(torch.equal(s1[k], s2[k]) for k in s1)


def test_evaluate_model_leaves_the_model_unchanged(small):
    model = build_baseline("soft-mixture-all-fc", dataset=small, seed=0)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    a = evaluate_model(model, small, batch_size=7)
    b = evaluate_model(model, small)
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BN stats too
    assert a.correct_T.tolist() == b.correct_T.tolist() and a.samples == len(small.test)


def test_lr_decay_follows_the_env_schedule():
    model = torch.nn.Linear(2, 2)
    optimizer = model_optimizer(model, lr=1e-2)
    lrs = []
    for epoch in range(1, 46):
        lrs.append(optimizer.param_groups[0]["lr"])  # the rate epoch `epoch` trains with
        decay_lr(optimizer, epoch=epoch, every=20, factor=0.1)
    assert lrs[0] == lrs[19] == 1e-2
    assert lrs[20] == pytest.approx(1e-3) and lrs[39] == pytest.approx(1e-3)
    assert lrs[40] == pytest.approx(1e-4)
    with pytest.raises(ValueError, match="optimizer"):
        model_optimizer(model, optimizer="rmsprop")  # type: ignore[arg-type]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["task-specific-1-fc", "task-specific-all-fc"])
def test_task_specific_baselines_learn_digits(digits, name):
    # the majority class scores 90%; a trained task-specific model gets well above it
    model = build_baseline(name, dataset=digits, seed=0)
    optimizer = model_optimizer(model, lr=1e-3, optimizer="adam")
    rng = np.random.default_rng(0)
    for _ in range(5):
        train_epoch(model, optimizer, digits, batch_size=64, rng=rng)
    assert evaluate_model(model, digits).accuracy > 0.97


# ----------------------------------------------------------------- batched heads
@pytest.mark.parametrize("fc_layers", [1, 2, 3])
@pytest.mark.parametrize("name", BASELINE_NAMES)
def test_batched_heads_match_the_per_task_loop(name, fc_layers):
    loop = head_of(name, fc_layers=fc_layers, batched=False)
    batched = head_of(name, fc_layers=fc_layers, batched=True)
    with torch.no_grad():  # a trained-looking cross-stitch / mixture, not the near-identity start
        for p in [*getattr(loop, "stitch", []), *getattr(loop, "mixture_logits", [])]:
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    batched.load_state_dict(loop.state_dict())  # the same parameters under the same keys
    x, tasks = batch([0, 2, 0, 1, 2, 2])  # task 3 is absent
    out_loop, out_batched = loop(x, tasks), batched(x, tasks)
    assert torch.allclose(out_batched, out_loop, atol=1e-6)
    weights = torch.randn(out_loop.shape, generator=torch.Generator().manual_seed(2))
    (out_loop * weights).sum().backward()
    (out_batched * weights).sum().backward()
    g_loop, g_batched = grads_of(loop), grads_of(batched)
    absent = {id(p) for p in loop.task_parameters(3)}
    assert absent and {id(p) for p in loop.parameters() if p.grad is None} == absent
    for key, grad in g_loop.items():
        if grad is None:  # task 3's own blocks: zero in the batched form (train_epoch drops them)
            assert not g_batched[key].any(), key
        else:
            assert torch.allclose(g_batched[key], grad, atol=1e-6), key


def test_heads_loop_over_tasks_on_the_cpu_unless_batched():
    x, tasks = batch([0, 1])
    for batched in (None, False, True):
        head = heads(batched)["task-specific-all-fc"]
        assert head.batched is batched
        head(x, tasks).sum().backward()
        grads = [p.grad for p in head.task_parameters(3)]
        if batched:  # every column took part in the batched matmul
            assert all(g is not None and not g.any() for g in grads)
        else:  # None picks the per-task loop on the CPU: task 3's column never ran
            assert all(g is None for g in grads)
    with pytest.raises(TypeError, match="batched must be True, False or None"):
        TaskSpecificFC(in_features=D, hidden_width=H, output_size=K, num_tasks=T, batched="yes")
    with pytest.raises(TypeError, match="batched"):
        CrossStitchFC(in_features=D, hidden_width=H, output_size=K, num_tasks=T, batched=1)


def test_state_dict_keys_are_those_of_earlier_checkpoints(digits):
    # the batched form stacks the per-task blocks' weights on the fly: the parameters, their
    # keys and the optimizer state keep the per-task layout, so older checkpoints load as they are
    expected = {
        "task-specific-1-fc": ["head.shared.0.0.weight", "head.shared.1.0.bias", "head.columns.9.0.0.weight"],
        "task-specific-all-fc": ["head.columns.0.0.0.weight", "head.columns.9.2.0.bias"],
        "cross-stitch-all-fc": ["head.layers.0.0.0.weight", "head.layers.2.9.0.bias", "head.stitch.1"],
        "soft-mixture-all-fc": ["head.layers.1.5.0.weight", "head.mixture_logits.0"],
    }
    for name in BASELINE_NAMES:
        loop = build_baseline(name, dataset=digits, seed=0, batched=False)
        batched = build_baseline(name, dataset=digits, seed=1, batched=True)
        assert list(batched.state_dict()) == list(loop.state_dict())
        assert set(expected[name]) <= set(loop.state_dict()), name
        batched.load_state_dict(loop.state_dict())
        assert all(torch.equal(v, batched.state_dict()[k]) for k, v in loop.state_dict().items())
    with pytest.raises(TypeError, match="batched"):
        build_baseline("task-specific-1-fc", dataset=digits, batched="auto")


def adam_steps(model, optimizer):
    return {
        n: int(optimizer.state[p]["step"]) if p in optimizer.state else 0 for n, p in model.named_parameters()
    }


@pytest.mark.parametrize("name", BASELINE_NAMES)
def test_a_batched_head_trains_like_the_per_task_loop(digits, name):
    # minibatches of 4 samples miss most of the 10 tasks: in both forms the optimizer skips
    # the columns of absent tasks (SGD's momentum and Adam's would otherwise move them)
    tiny = subsample(digits, max_train=80, max_test=40, seed=1)

    def run(batched, **settings):
        model = build_baseline(name, dataset=tiny, seed=0, batched=batched)
        optimizer = model_optimizer(model, **settings)
        stats = train_epoch(model, optimizer, tiny, batch_size=4, rng=np.random.default_rng(0))
        return model, optimizer, stats

    sgd = dict(optimizer="sgd", lr=1e-2, momentum=0.9)
    (loop, _, loop_stats), (batched, _, batched_stats) = run(False, **sgd), run(True, **sgd)
    for key, value in loop.state_dict().items():
        assert torch.allclose(batched.state_dict()[key], value, atol=1e-5), key
    assert batched_stats.total_T.tolist() == loop_stats.total_T.tolist()
    assert batched_stats.loss_sum == pytest.approx(loop_stats.loss_sum, rel=1e-5)
    # Adam turns rounding noise into full steps (the conv biases before batch norm have
    # none but noise), so its weights are not compared; its step counts are, exactly
    adam = dict(optimizer="adam", lr=1e-3)
    (loop, loop_opt, loop_stats), (batched, batched_opt, _) = run(False, **adam), run(True, **adam)
    steps = adam_steps(loop, loop_opt)
    assert adam_steps(batched, batched_opt) == steps
    assert min(steps.values()) < loop_stats.updates == 20  # some column did miss updates


# ----------------------------------------------------------------- data held on the device
def test_device_split_normalizes_like_the_dataset_and_shares_cpu_tensors(small):
    data = DeviceSplit(dataset=small, split=small.train)
    assert len(data) == len(small.train) and data.device == torch.device("cpu")
    assert data.inputs_NCHW.data_ptr() == small.train.inputs_NCHW.data_ptr()  # no copy on the CPU
    for index in (torch.tensor([5, 0, 17, 5]), slice(3, 9)):
        x, tasks, targets = data.batch(index)
        assert torch.equal(x, small.normalize(small.train.inputs_NCHW[index]))
        assert torch.equal(tasks, small.train.tasks_N[index])
        assert torch.equal(targets, small.train.targets_N[index])
    floats = MultiTaskDataset(
        name="floats",
        train=TaskSplit(torch.rand(4, 2, 8, 8), torch.tensor([0, 1, 0, 1]), torch.tensor([0, 1, 1, 0])),
        test=TaskSplit(torch.rand(2, 2, 8, 8), torch.tensor([0, 1]), torch.tensor([1, 0])),
        num_classes=(2, 2),
        mean=(0.5, 0.25),
        std=(0.2, 0.1),
    )
    x, _, _ = DeviceSplit(dataset=floats, split=floats.test).batch(slice(None))
    assert torch.equal(x, floats.normalize(floats.test.inputs_NCHW))


def test_held_data_trains_and_tests_exactly_as_before(small):
    def run(hold):
        model = build_baseline("cross-stitch-all-fc", dataset=small, seed=0)
        optimizer = model_optimizer(model, lr=1e-3, optimizer="adam")
        rng = np.random.default_rng(0)
        train = DeviceSplit(dataset=small, split=small.train) if hold else None
        test = DeviceSplit(dataset=small, split=small.test) if hold else None
        out = []
        for _ in range(2):
            stats = train_epoch(model, optimizer, small, batch_size=32, rng=rng, data=train)
            tested = evaluate_model(model, small, data=test)
            out.append((stats.correct_T.tolist(), stats.loss_sum, tested.correct_T.tolist()))
        return model, out

    (held, held_out), (plain, plain_out) = run(True), run(False)
    assert held_out == plain_out
    assert all(torch.equal(v, held.state_dict()[k]) for k, v in plain.state_dict().items())
    # the default evaluation batch on the CPU is the one used so far
    assert evaluate_model(held, small).correct_T.tolist() == (
        evaluate_model(held, small, batch_size=EVAL_BATCH_SIZE_CPU).correct_T.tolist()
    )
    train_counts = evaluate_model(held, small, data=DeviceSplit(dataset=small, split=small.train))
    assert train_counts.samples == len(small.train)  # data's own split when none is named


def test_held_data_must_be_of_the_split_and_device(small):
    model = build_baseline("task-specific-1-fc", dataset=small, seed=0)
    optimizer = model_optimizer(model, lr=1e-3, optimizer="adam")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    test = DeviceSplit(dataset=small, split=small.test)
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"data holds another split than dataset\.train"):
        train_epoch(model, optimizer, small, batch_size=8, rng=rng, data=test)
    with pytest.raises(ValueError, match="data is held on cpu, but device is meta"):
        evaluate_model(model, small, data=test, device="meta")
    with pytest.raises(TypeError, match="data must be a DeviceSplit"):
        evaluate_model(model, small, data=small.test)
    with pytest.raises(ValueError, match="finite_check must be"):
        train_epoch(model, optimizer, small, batch_size=8, rng=rng, finite_check="never")
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        evaluate_model(model, small, batch_size=0)
    with pytest.raises(TypeError, match="split must be a TaskSplit"):
        DeviceSplit(dataset=small, split="train")
    with pytest.raises(TypeError, match="dataset must be a MultiTaskDataset"):
        DeviceSplit(dataset=small.train, split=small.train)
    bad = TaskSplit(torch.zeros(2, 1, 8, 8, dtype=torch.uint8), torch.tensor([0, 10]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"task ids must lie in \[0, 10\), got \[0, 10\]"):
        DeviceSplit(dataset=small, split=bad)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not optimizer.state and rng.random() == np.random.default_rng(0).random()


def test_running_stats_read_every_step_change_nothing(small):
    # the counts and losses stay on the device and are read when asked: reading them after
    # every step (a progress bar) gives the same figures, bit for bit, as reading them once
    def run(callback, finite_check):
        model = build_baseline("task-specific-all-fc", dataset=small, seed=0)
        optimizer = model_optimizer(model, lr=1e-3, optimizer="adam")
        stats = train_epoch(
            model,
            optimizer,
            small,
            batch_size=64,
            rng=np.random.default_rng(0),
            callback=callback,
            finite_check=finite_check,
        )
        return model, stats

    seen = []
    read, read_stats = run(lambda s: seen.append((s.samples, s.accuracy, s.loss_sum)), "epoch")
    once, once_stats = run(None, "update")
    assert read_stats.loss_sum == once_stats.loss_sum
    assert read_stats.correct_T.tolist() == once_stats.correct_T.tolist()
    assert all(torch.equal(v, read.state_dict()[k]) for k, v in once.state_dict().items())
    assert [n for n, _, _ in seen] == list(range(64, 641, 64))
    assert seen[-1] == (once_stats.samples, once_stats.accuracy, once_stats.loss_sum)
    assert all(a[2] < b[2] for a, b in zip(seen[:-1], seen[1:], strict=True))


def poison_after(update, model, snapshot=None):
    """A callback that makes the trunk's output NaN once ``update`` updates are done."""

    def callback(stats):
        if stats.updates == update:
            with torch.no_grad():
                model.trunk.body[0].weight[0, 0, 0, 0] = float("nan")
            if snapshot is not None:
                snapshot.update({k: p.detach().clone() for k, p in model.named_parameters()})

    return callback


def test_a_non_finite_loss_is_refused_before_its_update(small):
    model = build_baseline("task-specific-1-fc", dataset=small, seed=0)
    optimizer = model_optimizer(model, lr=1e-3, optimizer="adam")
    snapshot = {}
    # the default on the CPU, where checking each loss costs nothing
    with pytest.raises(
        FloatingPointError,
        match=r"non-finite training loss \(nan\) at update 3; it was not applied "
        r"\(the parameters are as after update 2\)",
    ):
        train_epoch(
            model,
            optimizer,
            small,
            batch_size=64,
            rng=np.random.default_rng(0),
            callback=poison_after(2, model, snapshot),
        )
    for key, p in model.named_parameters():
        assert torch.allclose(p, snapshot[key], rtol=0, atol=0, equal_nan=True), key
    assert {int(state["step"]) for state in optimizer.state.values()} == {2}


def test_a_non_finite_loss_found_at_the_end_of_the_epoch_names_its_update(small):
    model = build_baseline("soft-mixture-all-fc", dataset=small, seed=0)
    optimizer = model_optimizer(model, lr=1e-3, optimizer="adam")
    # what a GPU run does by default: no wait on the device per step, one check per epoch
    with pytest.raises(
        FloatingPointError,
        match=r"non-finite training loss \(nan\) at update 3 of 10, found when the epoch ended "
        r"\(finite_check='epoch'\): the updates from 3 on were applied.*reload the last checkpoint",
    ):
        train_epoch(
            model,
            optimizer,
            small,
            batch_size=64,
            rng=np.random.default_rng(0),
            callback=poison_after(2, model),
            finite_check="epoch",
        )


# ----------------------------------------------------------------- CUDA (skipped without a GPU)
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture
def full_float32_on_cuda():
    """No TF32 on the GPU, so that it differs from the CPU only in the order of sums."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@needs_cuda
@pytest.mark.parametrize("name", BASELINE_NAMES)
def test_cuda_step_matches_the_cpu(small, full_float32_on_cuda, name):
    # one minibatch: the batched head on the GPU gives the per-task loop's logits and gradients
    x = small.normalize(small.train.inputs_NCHW[:64])
    tasks, targets = small.train.tasks_N[:64], small.train.targets_N[:64]
    grads = {}
    for device in ("cpu", "cuda"):
        model = build_baseline(name, dataset=small, seed=0).to(device)
        logits = model(x.to(device), tasks.to(device))
        torch.nn.functional.cross_entropy(logits, targets.to(device)).backward()
        grads[device] = (logits.detach().cpu(), {k: p.grad for k, p in model.named_parameters()})
    (cpu_logits, cpu_grads), (gpu_logits, gpu_grads) = grads["cpu"], grads["cuda"]
    assert torch.allclose(gpu_logits, cpu_logits, rtol=1e-4, atol=1e-5)
    for key, grad in cpu_grads.items():
        if grad is None:  # a task absent from the minibatch: zero in the batched form
            assert not gpu_grads[key].any(), key
        else:
            assert torch.allclose(gpu_grads[key].cpu(), grad, rtol=1e-3, atol=1e-5), key


@needs_cuda
@pytest.mark.parametrize("name", BASELINE_NAMES)
def test_cuda_epoch_matches_the_cpu(small, full_float32_on_cuda, name):
    results = {}
    for device in ("cpu", "cuda"):
        model = build_baseline(name, dataset=small, seed=0).to(device)
        optimizer = model_optimizer(model, lr=1e-3, optimizer="adam")
        train = DeviceSplit(dataset=small, split=small.train, device=device)
        test = DeviceSplit(dataset=small, split=small.test, device=device)
        rng = np.random.default_rng(0)
        stats = train_epoch(model, optimizer, small, batch_size=64, rng=rng, device=device, data=train)
        results[device] = (stats, evaluate_model(model, small, device=device, data=test))
    (cpu, cpu_test), (gpu, gpu_test) = results["cpu"], results["cuda"]
    assert gpu.updates == cpu.updates == 10 and gpu.total_T.tolist() == cpu.total_T.tolist()
    assert gpu.loss_sum == pytest.approx(cpu.loss_sum, rel=1e-3)
    assert np.abs(gpu.correct_T - cpu.correct_T).sum() <= 3  # of 640 training predictions
    assert gpu_test.total_T.tolist() == cpu_test.total_T.tolist()
    assert np.abs(gpu_test.correct_T - cpu_test.correct_T).sum() <= 2  # of 200 test samples


@needs_cuda
@pytest.mark.parametrize("name", BASELINE_NAMES)
def test_cuda_steps_never_wait_on_the_device(small, name):
    model = build_baseline(name, dataset=small, seed=0).cuda()
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
    # per epoch: the data order's copy to the device and the counts and losses read once;
    # per evaluation: the counts read once. A wait per step would give at least 40.
    assert stats.updates == 40
    assert 1 <= len(syncs) <= 6, syncs


# ------------------------------------------- the trunk runs once per distinct test input
@pytest.mark.parametrize("name", ALL_BASELINE_NAMES)
def test_evaluation_runs_the_trunk_once_per_distinct_image_and_scores_as_before(digits, small, name):
    """Digits-MTL's test split holds each image once per task: evaluate_model runs the
    trunk on each distinct image once and gives the logits of running it on every row."""
    model = build_baseline(name, dataset=digits, seed=0)
    optimizer = model_optimizer(model, lr=1e-3, optimizer="adam")
    train_epoch(model, optimizer, small, batch_size=64, rng=np.random.default_rng(0))  # BN stats move

    def evaluate(merge):
        rows, logits = [], []
        hooks = [
            model.trunk.register_forward_hook(lambda m, i, o: rows.append(len(o))),
            model.head.register_forward_hook(lambda m, i, o: logits.append(o)),
        ]
        stats = evaluate_model(model, digits, batch_size=500, merge_duplicates=merge)
        for hook in hooks:
            hook.remove()
        return stats, sum(rows), torch.cat(logits)

    merged, merged_rows, merged_logits = evaluate(True)
    every_row, all_rows, all_logits = evaluate(False)
    assert torch.equal(merged_logits, all_logits)  # every sample's logits, bit for bit
    assert merged.correct_T.tolist() == every_row.correct_T.tolist()
    assert merged.samples == every_row.samples == len(digits.test) == all_rows
    assert merged_rows == len(digits.test) // 10  # 359 images x 10 tasks


def test_a_model_with_its_own_forward_runs_the_trunk_on_every_row(digits):
    class Doubled(BaselineModel):
        def forward(self, x_NCHW, tasks_N, *, check_tasks=True):
            return 2 * super().forward(x_NCHW, tasks_N, check_tasks=check_tasks)

    base = build_baseline("task-specific-1-fc", dataset=digits, seed=0)
    model = Doubled(trunk=base.trunk, head=base.head, name="doubled")
    rows = []
    model.trunk.register_forward_hook(lambda m, i, o: rows.append(len(o)))
    evaluate_model(model, digits)
    assert sum(rows) == len(digits.test)
