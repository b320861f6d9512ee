"""The non-routed baselines: shapes, initialization, where gradients flow, training steps."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from routing_env import RoutingEnv
from routing_env.baselines import (
    BASELINE_NAMES,
    CrossStitchFC,
    SoftMixtureFC,
    TaskSpecificFC,
    build_baseline,
    decay_lr,
    default_conv_layers,
    evaluate_model,
    make_optimizer,
    train_epoch,
)
from routing_env.datasets import MultiTaskDataset, TaskSplit
from routing_env.training import subsample

T, D, H, K = 4, 6, 5, 3


@pytest.fixture(scope="module")
def small(digits):
    return subsample(digits, max_train=640, max_test=200, seed=0)


def batch(tasks, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(len(tasks), D, generator=g), torch.tensor(tasks)


def heads():
    torch.manual_seed(0)
    return {
        "task-specific-1-fc": TaskSpecificFC(
            in_features=D, hidden_width=H, output_size=K, num_tasks=T, task_specific_layers=1
        ),
        "task-specific-all-fc": TaskSpecificFC(
            in_features=D, hidden_width=H, output_size=K, num_tasks=T, task_specific_layers=3
        ),
        "cross-stitch-all-fc": CrossStitchFC(in_features=D, hidden_width=H, output_size=K, num_tasks=T),
        "soft-mixture-all-fc": SoftMixtureFC(in_features=D, hidden_width=H, output_size=K, num_tasks=T),
    }


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
    optimizer = make_optimizer(model, lr=1e-3, optimizer="adam")
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
        optimizer = make_optimizer(model, lr=1e-3, optimizer="adam")
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
    optimizer = make_optimizer(model, lr=1e-2)
    lrs = []
    for epoch in range(1, 46):
        lrs.append(optimizer.param_groups[0]["lr"])  # the rate epoch `epoch` trains with
        decay_lr(optimizer, epoch=epoch, every=20, factor=0.1)
    assert lrs[0] == lrs[19] == 1e-2
    assert lrs[20] == pytest.approx(1e-3) and lrs[39] == pytest.approx(1e-3)
    assert lrs[40] == pytest.approx(1e-4)
    with pytest.raises(ValueError, match="optimizer"):
        make_optimizer(model, optimizer="rmsprop")  # type: ignore[arg-type]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["task-specific-1-fc", "task-specific-all-fc"])
def test_task_specific_baselines_learn_digits(digits, name):
    # the majority class scores 90%; a trained task-specific model gets well above it
    model = build_baseline(name, dataset=digits, seed=0)
    optimizer = make_optimizer(model, lr=1e-3, optimizer="adam")
    rng = np.random.default_rng(0)
    for _ in range(5):
        train_epoch(model, optimizer, digits, batch_size=64, rng=rng)
    assert evaluate_model(model, digits).accuracy > 0.97
