"""Write your own router against the AEC API: per-task REINFORCE tables on digits-MTL.

Each routing decision is one PettingZoo turn; the env trains the function blocks on the
routes the agents pick, the agents learn only where to route. Ten per-task routers (one
softmax table of logits per router and depth) learn with REINFORCE and a running-mean
baseline, then route the test split greedily. Runs offline in under a minute on one CPU
core and prints about 0.95-0.98, against 0.900 for predicting the majority class.

    python examples/tutorials/own_router.py
"""

import numpy as np
import torch

import routing_env

torch.set_num_threads(1)  # one sample at a time: more threads only wait on each other

env = routing_env.env(router="per_task")    # digits-MTL (offline): 10 one-vs-rest tasks
print(env.unwrapped.training)  # the blocks' training: Adam, lr 1e-3, batch 64, /10 every 10 epochs
n_depths, n_blocks = env.unwrapped.num_decisions, env.unwrapped.num_actions

# the learner: per router, one table of logits (depth x block); REINFORCE with a baseline
logits = {agent: np.zeros((n_depths, n_blocks)) for agent in env.possible_agents}
baseline = dict.fromkeys(env.possible_agents, 0.0)
rng = np.random.default_rng(0)


def probs(agent, obs):
    z = np.where(obs["action_mask"] == 1, logits[agent][obs["depth"]], -np.inf)
    p = np.exp(z - z.max())
    return p / p.sum()


env.reset(seed=0)                            # a seed starts a new run (fresh weights)
for episode in range(8000):                  # one episode routes one training sample
    if episode:
        env.reset()                          # no seed: the next sample of the same run
    route = []                               # (agent, depth, block, probs) of this sample
    for agent in env.agent_iter():
        obs, reward, terminated, truncated, info = env.last()
        # `reward` is what this agent earned by its previous step: 0 between decisions
        # (collaboration_reward=0), the sample's +1/-1 on the terminated turn after its last one
        if terminated or truncated:          # every router gets a terminated turn at the end
            if route and route[0][0] == agent:   # the router that routed this sample
                advantage = reward - baseline[agent]
                baseline[agent] += 0.1 * advantage
                for _, depth, block, p in route:
                    grad = -p
                    grad[block] += 1.0           # d log p(block) / d logits
                    logits[agent][depth] += 2.0 * advantage * grad
            env.step(None)
            continue
        p = probs(agent, obs)
        block = int(rng.choice(n_blocks, p=p))
        route.append((agent, obs["depth"], block, p))
        env.step(block)                      # the env trains the blocks every 64 samples

# evaluation: one pass over the test split (tasks interleaved), greedy routes, no training
env.reset(options={"mode": "eval"})
while True:
    for agent in env.agent_iter():
        obs, reward, terminated, truncated, info = env.last()
        env.step(None if terminated or truncated else int(np.argmax(probs(agent, obs))))
    if env.unwrapped.eval_pass_complete:     # the last test sample has been routed
        break
    env.reset()
result = env.unwrapped.evaluation()  # {"accuracy", "accuracy_per_task", "samples", "complete"}
print(f"test accuracy {result['accuracy']:.3f} on {result['samples']} samples (majority class: 0.900)")
