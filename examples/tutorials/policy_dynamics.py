"""Study the routers as players of a game: record their policies, draw them, measure NashConv.

Per-task WPL routers on digits-MTL, trained through a :class:`~routing_env.recording.PolicyRecorder`
(a PettingZoo wrapper that records every agent's action probabilities, choices and rewards,
changing nothing of the training). Then:

1. the paper's Fig. 9 view: one agent's depth-0 policy over its first samples, as a heat map
   (``policy_heatmap.png`` in the current folder);
2. purity: how many agents ended (near) pure (largest probability >= 0.99 at every depth);
3. the routing game at the end of training (:func:`routing_env.game.analyze_game`): with the
   blocks frozen, each agent's best-response gain and NashConv, the sum of the gains.

Offline, about a minute on one CPU core:

    python examples/tutorials/policy_dynamics.py
"""

import torch

import routing_env
from agents import MultiAgentRouter, train
from routing_env.extras import import_extra
from routing_env.game import analyze_game
from routing_env.recording import PolicyRecorder

# matplotlib comes with the `plots` extra (pip install 'routing-env[plots]'), which says so if missing
Figure = import_extra("matplotlib.figure", feature=__file__, extra="plots", package="matplotlib").Figure

torch.set_num_threads(1)
env = routing_env.env(router="per_task")  # digits-MTL, one WPL router per task (the default learner)
router = MultiAgentRouter.from_env(env, seed=0)
recorder = PolicyRecorder(env, policies=router, every=1, max_rows=200_000)
train(recorder, router, num_samples=5_000, seed=0)  # drive the wrapper, not env

# 1. Fig. 9: router_3's depth-0 policy over its own samples
samples, probs = recorder.recording.policy("router_3", depth=0)  # one row per recorded decision
fig = Figure(figsize=(6, 2.5), layout="constrained")
ax = fig.subplots()
image = ax.imshow(
    probs.T, aspect="auto", origin="lower", extent=(samples[0], samples[-1], -0.5, probs.shape[1] - 0.5)
)
ax.set_xlabel("samples of task 3 routed")
ax.set_ylabel("block at depth 0")
fig.colorbar(image, label="probability")
fig.savefig("policy_heatmap.png", dpi=90)

# 2. purity: the paper's WPL weighting makes the boundary of the simplex absorbing
pure = [agent for agent, learner in router.items() if learner.is_pure(0.99)]
print(f"{len(pure)}/{len(router)} agents pure (largest probability >= 0.99 at every depth)")

# 3. the game with the blocks frozen: how far is each agent from a best response?
game = analyze_game(env, router, max_samples_per_task=100)
print(f"NashConv {game.nash_conv:.3f} (standard error {game.nash_conv_se:.3f})")
for row in game.rows()[:3]:
    print({k: row[k] for k in ("agent", "value", "best_response_value", "gain")})
