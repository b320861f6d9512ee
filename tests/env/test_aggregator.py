"""Block training with a torchjd aggregator of the per-task losses (``TrainingConfig.aggregator``).

"mean" is the mean-loss path, bit-identical; the rows of the task Jacobian sum to the
mean path's gradient; on a block two tasks share and whose gradients conflict, PCGrad's
and UPGrad's update has no negative inner product with either task's gradient; a block
of one task gets that task's gradient; runs resume bit-identically; bad names and a
missing torchjd are refused with the choices and the extra to install.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import pickle
import sys

import numpy as np
import pytest
import torch

import routing_env
import routing_env.engine as engine_module
from routing_env import RoutingEnv, TrainingConfig
from routing_env.aggregation import AGGREGATORS, make_aggregator
from routing_env.datasets import MultiTaskDataset, TaskSplit, subsample

from .helpers import run_episodes
from .test_batched import (
    CONFIGS,
    FixedRoutes,
    advance,
    aec_rewards,
    differing,
    drive_batched,
    resume_across_paths,
    weights,
)

needs_torchjd = pytest.mark.skipif(
    importlib.util.find_spec("torchjd") is None, reason="needs torchjd: pip install 'routing-env[mtl]'"
)
needs_quadprog = pytest.mark.skipif(
    importlib.util.find_spec("torchjd") is None or importlib.util.find_spec("quadprog") is None,
    reason="upgrad needs torchjd's quadprog projector: pip install 'routing-env[mtl]'",
)


@pytest.fixture(scope="module")
def small(digits):
    return subsample(digits, max_train=320, max_test=100, seed=0)


@pytest.fixture(scope="module")
def conflict(digits):
    """Two tasks that disagree: task 1 labels 32 images the opposite way task 0 does, and
    task 0 has them twice, besides 32 others. On a block both tasks use, their gradients
    conflict, and the mean loss's gradient (dominated by task 0) conflicts with task 1's."""
    x = digits.train.inputs_NCHW[:64]
    y = torch.arange(64) % 2
    split = TaskSplit(
        torch.cat([x[:32], x[:32], x[32:], x[:32]]),
        torch.cat([torch.zeros(96), torch.ones(32)]).long(),
        torch.cat([y[:32], y[:32], y[32:], 1 - y[:32]]),
    )
    return MultiTaskDataset(
        name="conflict", train=split, test=split, num_classes=(2, 2), mean=digits.mean, std=digits.std
    )


def capture_jacobians(monkeypatch):
    """Record every TaskJacobian the engine computes."""
    captured = []
    real = engine_module.task_jacobian

    def spy(**kwargs):
        captured.append(real(**kwargs))
        return captured[-1]

    monkeypatch.setattr(engine_module, "task_jacobian", spy)
    return captured


def one_step(dataset, aggregator, actions, **kwargs):
    """Route the whole training split as one minibatch (SGD, so the update is -lr x grad)."""
    benv = routing_env.batched_env(
        dataset=dataset, batch_size=len(dataset.train), preset="paper", aggregator=aggregator, **kwargs
    )
    obs = benv.reset(seed=0)
    done = False
    while not done:
        obs_actions = actions(np.asarray(obs["task"]), int(benv.batch.depth))
        obs, _, done, _ = benv.step(obs_actions)
    assert benv.engine.updates == 1
    return benv


# ------------------------------------------------------------------------------- mean
def test_mean_is_the_default_path_bit_identical_on_both_paths(small):
    policy = FixedRoutes(small.num_tasks, 3, 10, 10)
    n = 5 * 16  # five minibatches
    config = TrainingConfig.paper(batch_size=16, momentum=0.9, aggregator="mean")
    assert TrainingConfig.paper(batch_size=16, momentum=0.9) == config  # mean is the default
    default_aec = RoutingEnv(dataset=small, preset="paper", batch_size=16, momentum=0.9)
    mean_aec = RoutingEnv(dataset=small, training=config)
    for env in (default_aec, mean_aec):
        run_episodes(env, n, policy.aec, seed=4)
    default_b = routing_env.batched_env(dataset=small, preset="paper", batch_size=16, momentum=0.9)
    mean_b = routing_env.batched_env(dataset=small, training=config)
    for benv in (default_b, mean_b):
        drive_batched(benv, policy, n, seed=4)
    assert mean_aec.engine.updates == mean_b.engine.updates == 5
    reference = weights(default_aec)
    for env in (mean_aec, default_b, mean_b):
        assert differing(reference, weights(env)) == []
    assert "aggregator_rng" not in mean_b.state_dict()["engine"]  # the mean path's checkpoint is as before


@needs_torchjd
def test_task_rows_sum_to_the_mean_gradient(small, monkeypatch):
    """L_t = (n_t/B) x mean loss of task t: the rows add up to the mean path's gradient."""
    captured = capture_jacobians(monkeypatch)
    tasks_routes = FixedRoutes(small.num_tasks, 3, 10, 10)
    sub = subsample(small, max_train=48, max_test=20, seed=1)

    def actions(task_B, depth):
        return np.array([tasks_routes.route(int(t), depth, np.ones(10)) for t in task_B])

    mean = one_step(sub, "mean", actions)
    pcgrad = one_step(sub, "pcgrad", actions)
    (jac,) = captured
    assert len(jac.tasks) >= 3
    mean_grads = [p.grad for p in mean.engine.network.parameters()]
    position = {id(p): i for i, p in enumerate(pcgrad.engine.network.parameters())}
    for k, p in enumerate(jac.params):
        total = sum(jac.grads[r][k] for r in range(len(jac.tasks)))
        torch.testing.assert_close(total, mean_grads[position[id(p)]], rtol=1e-5, atol=1e-7)
    # a block nobody used has no gradient on either path
    unused = [i for i, p in enumerate(pcgrad.engine.network.parameters()) if p.grad is None]
    assert unused and all(mean_grads[i] is None for i in unused)
    assert len(unused) + len(jac.params) == len(mean_grads)


@needs_torchjd
@pytest.mark.parametrize("router, routing", CONFIGS, ids=[f"{r}-{g}" for r, g in CONFIGS])
def test_pcgrad_trains_every_configuration_the_same_on_both_paths(small, router, routing):
    kwargs = dict(dataset=small, router=router, routing=routing, batch_size=16, aggregator="pcgrad")
    aec = RoutingEnv(**kwargs)
    policy = FixedRoutes(small.num_tasks, aec.num_decisions, aec.num_actions, len(aec.routers))
    n = 3 * 16
    log = run_episodes(aec, n, policy.aec, seed=5)
    benv = routing_env.batched_env(**kwargs)
    assert drive_batched(benv, policy, n, seed=5) == aec_rewards(log)
    assert aec.engine.updates == benv.engine.updates == 3
    assert differing(weights(aec), weights(benv)) == []
    mean = routing_env.batched_env(**{**kwargs, "aggregator": "mean"})
    drive_batched(mean, policy, n, seed=5)
    assert differing(weights(mean), weights(benv)) != []  # the aggregator was applied


# ------------------------------------------------------------------------------- conflicts
def shared_update(benv, jac):
    """The rows over the shared parameters and the applied gradient there."""
    rows, matrix = jac.shared_rows()
    assert matrix is not None and len(rows) == 2
    update = torch.cat([jac.params[k].grad.reshape(-1) for k in jac.shared])
    return matrix, update


@pytest.mark.parametrize(
    "aggregator", [pytest.param("pcgrad", marks=needs_torchjd), pytest.param("upgrad", marks=needs_quadprog)]
)
def test_the_update_does_not_conflict_with_either_task_on_a_shared_block(conflict, monkeypatch, aggregator):
    captured = capture_jacobians(monkeypatch)
    # one block per layer: both tasks share the trunk and every block
    benv = one_step(
        conflict, aggregator, lambda task_B, depth: np.zeros(len(task_B), dtype=np.int64), blocks_per_layer=1
    )
    (jac,) = captured
    matrix, update = shared_update(benv, jac)
    assert len(jac.shared) == len(jac.params)  # the trunk and both blocks are shared
    # the conflict is real: the tasks' gradients point against each other, and the mean
    # path's update (their sum) has a negative inner product with one of them
    assert float(matrix[0] @ matrix[1]) < 0
    assert float((matrix.sum(0) @ matrix.T).min()) < 0
    inner = matrix @ update
    scale = matrix.norm(dim=1) * update.norm()
    assert update.norm() > 1e-3 * matrix.norm(dim=1).min()  # a real step, not zero
    assert (inner >= -1e-5 * scale).all(), inner


@needs_torchjd
def test_a_block_of_one_task_gets_that_tasks_gradient(conflict, monkeypatch):
    captured = capture_jacobians(monkeypatch)
    # task t always takes block t: the blocks are private, only the trunk is shared
    benv = one_step(conflict, "pcgrad", lambda task_B, depth: task_B.astype(np.int64), blocks_per_layer=2)
    (jac,) = captured
    net = benv.engine.network
    trunk = {id(p) for p in net.trunk.parameters()}
    assert {id(jac.params[k]) for k in jac.shared} == trunk
    for b, block in enumerate(net.blocks):
        depth, task = divmod(b, 2)  # layers of 2 blocks; block t of a layer is task t's
        for p in block.parameters():
            k = next(i for i, q in enumerate(jac.params) if q is p)
            assert jac.users[k] == frozenset({task})
            assert p.grad is jac.grads[task][k]
            assert torch.count_nonzero(jac.grads[1 - task][k]) == 0
    _, update = shared_update(benv, jac)
    assert update.norm() > 0


def test_aggregators_are_on_the_scale_of_the_sum():
    """m identical rows (no conflict): every aggregator returns their sum, the mean path's gradient."""
    if importlib.util.find_spec("torchjd") is None:
        pytest.skip("needs torchjd")
    row = torch.linspace(-1.0, 2.0, 7)
    for name in AGGREGATORS[1:]:
        if name in ("upgrad", "dualproj") and importlib.util.find_spec("quadprog") is None:
            continue
        aggregator = make_aggregator(name)
        assert aggregator is not None
        for m in (2, 3):
            torch.testing.assert_close(aggregator(row.repeat(m, 1)), m * row, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------- resume
@needs_torchjd
@pytest.mark.parametrize("writer, reader", [("batched", "batched"), ("aec", "batched")])
def test_a_pcgrad_run_resumes_bit_identically(small, tmp_path, writer, reader):
    kwargs = dict(dataset=small, batch_size=16, aggregator="pcgrad")
    straight, resumed = resume_across_paths(tmp_path, kwargs, writer, reader, 48)
    assert differing(straight, weights(resumed)) == []
    # a copy taken mid-run goes on exactly like the original
    clone = pickle.loads(pickle.dumps(resumed))
    for e in (resumed, clone):
        advance(e, reader, 32)
    assert differing(weights(resumed), weights(clone)) == []
    # and the aggregator changed the run: a mean run from the same seed ends elsewhere
    mean = routing_env.batched_env(**{**kwargs, "aggregator": "mean"})
    advance(mean, "batched", 96, seed=2)
    assert differing(straight, weights(mean)) != []


# ------------------------------------------------------------------------------- refusals
def test_unknown_aggregators_are_refused_with_the_choices(small):
    for bad in ("PCGrad", "cagrad", "", None):
        with pytest.raises(ValueError, match=r"aggregator must be one of \['mean', 'pcgrad', 'upgrad'"):
            TrainingConfig(aggregator=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="aggregator must be one of"):
        RoutingEnv(dataset=small, aggregator="nash-mtl")
    with pytest.raises(ValueError, match="aggregator must be one of"):
        dataclasses.replace(TrainingConfig(), aggregator="sum")


def test_a_missing_torchjd_names_the_extra(small, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchjd", None)  # import torchjd raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'routing-env\[mtl\]'"):
        RoutingEnv(dataset=small, aggregator="pcgrad")
    RoutingEnv(dataset=small, aggregator="mean")  # the mean path needs no torchjd


@needs_torchjd
def test_a_missing_solver_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "quadprog", None)  # find_spec("quadprog") is None
    for name in ("upgrad", "dualproj"):
        with pytest.raises(ImportError, match=r"quadprog.*pip install 'routing-env\[mtl\]'"):
            make_aggregator(name)
    assert make_aggregator("pcgrad") is not None  # PCGrad needs no solver


# ------------------------------------------------------------------------------- CUDA
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize(
    "aggregator", [pytest.param("pcgrad", marks=needs_torchjd), pytest.param("upgrad", marks=needs_quadprog)]
)
def test_an_aggregator_on_cuda_gives_the_cpu_run_and_resumes(small, aggregator, tmp_path):
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False  # float32 as on CPU
    try:
        policy = FixedRoutes(small.num_tasks, 3, 10, 10)
        runs = {}
        for device in ("cpu", "cuda"):
            benv = routing_env.batched_env(dataset=small, batch_size=16, aggregator=aggregator, device=device)
            drive_batched(benv, policy, 48, seed=6)
            runs[device] = benv
        cpu, gpu = weights(runs["cpu"]), weights(runs["cuda"])
        for key in cpu:
            torch.testing.assert_close(gpu[key].cpu(), cpu[key], rtol=1e-4, atol=1e-5)
        path = tmp_path / "ckpt.pt"
        torch.save(runs["cuda"].state_dict(), path)
        drive_batched(runs["cuda"], policy, 32)
        resumed = routing_env.batched_env(dataset=small, batch_size=16, aggregator=aggregator, device="cuda")
        resumed.load_state_dict(torch.load(path, weights_only=True))
        drive_batched(resumed, policy, 32)
        assert differing(weights(runs["cuda"]), weights(resumed)) == []
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
