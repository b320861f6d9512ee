"""Train per-task WPL routers, choose their policy learning rate on validation, test once.

The paper's routing-all-fc (MARL:WPL): one tabular Weighted Policy Learner per task
(Algorithm 3) routes that task's samples through the shared function blocks, which the
env trains on the routes taken. This plays the game on the batched path (one minibatch
per step; the same game, rewards and block training as the AEC env) and shows the
protocol every result of this project follows: hyper-parameters are chosen on a
validation split carved from the training data, and the test split is read once, for
the chosen setting. Offline (digits-MTL), a few minutes on one CPU core.

    python examples/tutorials/wpl_routers.py

``examples/train_wpl.py`` is the same learner as a script with run folders, resume,
metrics and a validation split by default (``--validation-fraction``).
"""

import torch

import routing_env
from agents import WPL, MultiAgentRouter, evaluate_batched, train_batched
from routing_env.datasets import digits_mtl, split_validation

torch.set_num_threads(1)  # small per-minibatch work: more threads only wait on each other
SAMPLES = 10_000  # training samples routed per setting (about 0.8 epochs of digits-MTL)

# a tenth of the training images set aside, stratified per task and class, fixed by its seed
dataset = split_validation(digits_mtl(), 0.1, seed=0)
print(f"{len(dataset.train)} training, {len(dataset.validation)} validation, {len(dataset.test)} test samples")


def train(policy_lr: float) -> tuple[routing_env.BatchedRoutingEnv, MultiAgentRouter]:
    """Per-task WPL routers (Algorithm 3's weighting, the default) trained on SAMPLES samples."""
    benv = routing_env.batched_env(dataset=dataset, router="per_task")
    router = MultiAgentRouter.from_env(benv, router_factory=lambda **kw: WPL(lr=policy_lr, **kw), seed=0)
    train_batched(benv, router, num_samples=SAMPLES, seed=0)
    return benv, router


# 1. choose the policy learning rate on the validation split
scores = {}
for policy_lr in (0.03, 0.1, 0.3):
    benv, router = train(policy_lr)
    scores[policy_lr] = evaluate_batched(benv, router, options={"mode": "eval", "split": "validation"}).accuracy
    print(f"policy lr {policy_lr}: validation accuracy {scores[policy_lr]:.4f}")
best = max(scores, key=scores.get)

# 2. read the test split once, for the chosen setting
benv, router = train(best)
test = evaluate_batched(benv, router).accuracy  # {"mode": "eval"}: the test split
pure = sum(learner.is_pure() for learner in router.values())
routes = {agent: learner.policy.argmax(axis=1).tolist() for agent, learner in router.items()}
print(f"chosen policy lr {best}: test accuracy {test:.4f} (majority class: 0.900); {pure}/10 agents pure")
print("greedy routes (block per depth):", routes)
