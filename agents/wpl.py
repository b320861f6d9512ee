"""Weighted Policy Learner (WPL), Algorithm 3 of the paper (Abdallah & Lesser, 2006).

A tabular policy ``pi[depth, action]`` per agent. The agent is indexed by the task
(one agent per task), so the only part of the state it uses is the depth (Table 3
of the paper: MARL:WPL uses ``t, d``). For each decision ``a_i`` of a trace:

1. ``R_i = r_final + sum_{j>=i} gamma^(j-i) r_j`` (:func:`agents.base.compute_returns`);
2. the historical average return ``TR_i`` is moved towards it,
   ``TR_i <- (1 - beta) TR_i + beta R_i`` (``beta = lr`` in the paper);
3. the gradient ``Delta = R_i - TR_i`` is weighted,
   ``Delta <- Delta * (1 - pi(a_i))`` if ``Delta < 0`` else ``Delta * pi(a_i)``
   (the paper's rule; ``weighting="abdallah-lesser"`` swaps the two weights);
4. ``pi <- simplex_projection(pi + lr * Delta * e_{a_i})`` with
   ``simplex_projection(pi) = clip(pi, 0, 1) / sum(clip(pi, 0, 1))``.

The sign of the weighting
-------------------------
The paper states the rule three times, and not always the same way:

* section 3.1.2: "scaling the gradient of the expected return for an action a
  according the probability of taking that action pi(a) (if the gradient is positive)
  or 1 - pi(a) (if the gradient is negative)";
* Algorithm 3: ``if Delta(a_i) < 0 then Delta(a_i) <- Delta(a_i)(1 - pi(a_i)) else
  Delta(a_i) <- Delta(a_i)(pi(a_i))``;
* appendix 7.4: "If the gradient is positive then it is scaled by 1 - pi(a_i) [...]
  If the gradient is negative then it is scaled by pi(a_i)".

``weighting="paper"`` (the default) is the rule of section 3.1.2 and Algorithm 3: a
positive ``Delta`` weighted by ``pi(a)``, a negative one by ``1 - pi(a)``. The simplex
boundary then attracts: a probability near 0 falls at full speed and rises at speed
``pi(a) ~ 0``, so every agent becomes pure within a few hundred samples per task, as the
paper's Fig. 9 shows, and the routing results of its Figs. 4-8 are those of pure
routes. ``weighting="abdallah-lesser"`` is appendix 7.4's rule, which is WPL as Abdallah
& Lesser (2006; JAIR 2008) define it: a probability pushed down slows down as it
approaches 0 and one pushed up slows down as it approaches 1, which damps the
oscillation of plain policy gradient around a mixed equilibrium (matching pennies)
but leaves the routing agents mixed: none becomes pure, so it does not reproduce
Fig. 9. ``tests/agents/test_wpl.py`` pins each sign on one update;
``tests/agents/test_wpl_games.py`` checks both rules' dynamics on small games.

Which historical average
------------------------
Algorithm 3 keeps "the historical average return ``TR_i`` for each action ``a_i``",
where ``i`` indexes the decisions of the trace. Two readings exist, both offered by
``baseline=``:

* ``"depth"`` (default): one average per decision index (depth), over whatever
  action was taken there, i.e. the value ``V`` of the current policy at that depth.
  Then ``E[Delta | a] = Q(a) - V``, the gradient Abdallah & Lesser's WPL follows.
* ``"action"``: one average per ``(depth, action)``, updated only when that action is
  taken. Each action's average then tracks that action's own return, so in a
  stationary problem ``E[Delta | a] -> 0`` for every action and only transients
  carry a signal: on a stationary routing bandit this variant does not find the best
  route (the policy drifts towards the interior of the simplex, since WPL's weights
  favour that direction for zero-mean noise), while ``"depth"`` does.

Masks
-----
A row's allowed actions are learned from the observations: the row of a depth is
initialized uniform over the actions allowed the first time the depth is seen, and an
action allowed later is added to the row (the row is rescaled so that the new action
gets the probability it would have under a uniform policy over the enlarged set).
Actions never seen allowed keep probability 0 (the projection zeroes them). When
acting, the row is renormalized over the observation's own mask, so a masked action is
never taken.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import gymnasium
import numpy as np

from agents.base import (
    Observation,
    RouterAgent,
    SeedLike,
    Trace,
    TraceBatch,
    check_probability,
    check_rate,
    check_state_array,
    masked_argmax,
)
from agents.networks import batch_inputs, trace_inputs

__all__ = ["WPL", "WPL_WEIGHTINGS", "WPLWeighting", "floor_projection", "simplex_projection"]

#: The two signs of WPL's weighting: the paper's (section 3.1.2, Algorithm 3) and
#: Abdallah & Lesser's (appendix 7.4); see the module docstring.
WPLWeighting = Literal["paper", "abdallah-lesser"]
WPL_WEIGHTINGS: tuple[str, ...] = ("paper", "abdallah-lesser")


def simplex_projection(pi: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """The paper's projection onto the probability simplex: ``clip(pi, 0, 1) / sum(clip(pi, 0, 1))``.

    Args:
        pi: Unnormalized policy values, shape ``(A,)``.
        mask: Allowed actions (bool, shape ``(A,)``); masked entries are set to 0.
            None allows every action.

    Returns:
        A probability vector. When every allowed entry clips to 0 (the sum vanishes)
        the uniform distribution over the allowed actions is returned instead of
        dividing by zero.
    """
    clipped = np.clip(np.asarray(pi, dtype=np.float64), 0.0, 1.0)
    allowed = np.ones(clipped.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    clipped = np.where(allowed, clipped, 0.0)
    total = clipped.sum()
    if total <= 0.0:
        return allowed / allowed.sum()
    return clipped / total


def floor_projection(pi: np.ndarray, min_prob: float, mask: np.ndarray | None = None) -> np.ndarray:
    """Euclidean projection of a distribution onto ``{p : p_a >= min_prob on allowed a, sum p = 1}``.

    The identity on distributions that already respect the floor. Used by
    :class:`WPL` (``min_prob > 0``) to keep every allowed block explored.

    Args:
        pi: A probability vector (e.g. the output of :func:`simplex_projection`).
        min_prob: The floor; ``min_prob * (number of allowed actions)`` must be <= 1.
        mask: Allowed actions; masked entries are 0 in the result.

    Raises:
        ValueError: When the floor cannot be met by the allowed actions.
    """
    allowed = np.ones(np.shape(pi), dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    k = int(allowed.sum())
    mass = 1.0 - k * min_prob
    if mass < -1e-12:
        raise ValueError(
            f"min_prob={min_prob} is too large for {k} allowed actions (needs min_prob <= 1/{k})"
        )
    q = np.asarray(pi, dtype=np.float64)[allowed] - min_prob
    # projection of q onto the simplex of total `mass` (Duchi et al., 2008)
    u = np.sort(q)[::-1]
    css = np.cumsum(u) - max(mass, 0.0)
    ranks = np.arange(1, k + 1)
    rho = int(np.flatnonzero(u - css / ranks > 0)[-1]) if np.any(u - css / ranks > 0) else 0
    theta = css[rho] / (rho + 1)
    out = np.zeros(np.shape(pi), dtype=np.float64)
    out[allowed] = np.maximum(q - theta, 0.0) + min_prob
    return out


class WPL(RouterAgent):
    """Weighted Policy Learner, Algorithm 3 of the paper (see the module docstring).

    Args:
        observation_space: The router's observation space.
        action_space: The router's ``Discrete(A)`` action space.
        lr: The policy learning rate ``lambda_pi`` (> 0). The paper gives no value;
            on digits-MTL 0.1 to 0.3 find task-specific routes within a few epochs.
        gamma: Discount of the immediate rewards, in ``[0, 1]``.
        return_average_rate: Rate ``beta`` of the historical average return, in
            ``(0, 1]``; None uses ``lr`` as the paper does. At 1 the average equals the
            last return, so ``R - TR`` is 0 for every decision and the policy never
            moves (a warning says so): with ``lr = 1`` pass a smaller rate.
        baseline: ``"depth"`` (default): one historical average return per depth,
            over all actions, so ``R - TR`` estimates ``Q(a) - V`` as in Abdallah &
            Lesser's WPL. ``"action"``: one average per ``(depth, action)``, updated
            when the action is taken (see the module docstring for why it is not
            the default).
        min_prob: After the projection, keep every allowed action's probability at
            least this (0 disables it, the paper's choice); at most ``1/A``.
        weighted: False drops the ``pi``/``1 - pi`` weights, leaving the plain
            projected policy gradient (an ablation for policy-dynamics studies).
        weighting: ``"paper"`` (default): section 3.1.2 and Algorithm 3 of the paper, a
            positive ``Delta`` weighted by ``pi(a)``, a negative one by ``1 - pi(a)``;
            agents become pure, as in the paper's Fig. 9. ``"abdallah-lesser"``:
            appendix 7.4 and Abdallah & Lesser's WPL, the other way round; agents stay
            mixed (see the module docstring).
        seed: Seed or Generator for sampling actions.
        num_depths: Overrides the number of depths read from the observation space.

    Raises:
        ValueError: On a non-positive ``lr``, ``gamma`` or a rate outside its range, an
            unknown ``baseline``, a ``min_prob`` outside ``[0, 1/A]`` or mismatched spaces.
    """

    def __init__(
        self,
        *,
        observation_space: gymnasium.Space,
        action_space: gymnasium.Space,
        lr: float = 0.1,
        gamma: float = 1.0,
        return_average_rate: float | None = None,
        baseline: Literal["depth", "action"] = "depth",
        min_prob: float = 0.0,
        weighted: bool = True,
        weighting: WPLWeighting = "paper",
        seed: SeedLike = None,
        num_depths: int | None = None,
    ) -> None:
        super().__init__(
            observation_space=observation_space,
            action_space=action_space,
            gamma=gamma,
            seed=seed,
            num_depths=num_depths,
        )
        self.lr = check_rate("lr", lr)
        beta = self.lr if return_average_rate is None else return_average_rate
        self.return_average_rate = check_probability("return_average_rate", beta)
        if self.return_average_rate == 0.0:
            raise ValueError("return_average_rate must be > 0")
        if self.return_average_rate == 1.0:
            warnings.warn(
                "WPL with return_average_rate 1 (the default when lr = 1: the paper sets beta = lr) "
                "never learns: the historical average return equals the last return, so "
                "R - TR = 0 for every decision; pass return_average_rate < 1 (e.g. 0.1)",
                UserWarning,
                stacklevel=2,
            )
        if baseline not in ("depth", "action"):
            raise ValueError(f"baseline must be 'depth' or 'action', got {baseline!r}")
        self.baseline = baseline
        self.weighted = bool(weighted)
        if weighting not in WPL_WEIGHTINGS:
            raise ValueError(
                f"weighting must be 'paper' (Algorithm 3) or 'abdallah-lesser' (appendix 7.4), got {weighting!r}"
            )
        self.weighting = weighting
        self.min_prob = check_probability("min_prob", min_prob)
        if self.min_prob * self.num_actions > 1.0:
            raise ValueError(
                f"min_prob must be <= 1/{self.num_actions} (the number of actions), got {min_prob}"
            )
        n, A = self.num_depths, self.num_actions
        self.policy_nA = np.zeros((n, A), dtype=np.float64)
        self.allowed_nA = np.zeros((n, A), dtype=bool)
        self.average_return = np.zeros((n, A) if baseline == "action" else (n,), dtype=np.float64)

    # ------------------------------------------------------------------ acting
    def _row(self, depth: int, mask: np.ndarray) -> np.ndarray:
        """The policy row of ``depth``, first learning the actions ``mask`` allows."""
        known = self.allowed_nA[depth]
        new = mask & ~known
        if new.any():
            union = known | mask
            size = int(union.sum())
            row = self.policy_nA[depth]
            # newcomers get 1/size each; the old entries share the rest in their old ratios
            old_total = row[known].sum()
            scale = (size - int(new.sum())) / size
            if old_total > 0:
                row[known] *= scale / old_total
            row[new] = 1.0 / size
            self.allowed_nA[depth] = union
            self.policy_nA[depth] = self._project(row, union)
        return self.policy_nA[depth]

    def _project(self, pi: np.ndarray, allowed: np.ndarray) -> np.ndarray:
        out = simplex_projection(pi, allowed)
        if self.min_prob > 0:
            out = floor_projection(out, self.min_prob, allowed)
        return out

    def action_probs(self, obs: Observation) -> np.ndarray:
        depth, mask = self.check_observation(obs)
        probs = np.where(mask, self._row(depth, mask), 0.0)
        total = probs.sum()
        if total <= 0.0:  # the row puts no mass on what is allowed now: act uniformly
            return mask / mask.sum()
        return probs / total

    # ----------------------------------------------------------------- learning
    def learn(self, trace: Trace) -> dict[str, float]:
        """One WPL update per decision of ``trace`` (Algorithm 3).

        Returns:
            ``{"mean_gradient": mean weighted Delta over the trace}``.
        """
        returns = self.returns(trace)
        deltas = []
        for obs, action, ret in zip(trace.observations, trace.actions, returns, strict=True):
            depth, mask = self.check_observation(obs)
            if not mask[action]:
                raise ValueError(f"the trace holds action {action}, which its observation masks")
            deltas.append(self._update(depth, mask, action, float(ret)))
        return {"mean_gradient": float(np.mean(deltas)) if deltas else 0.0}

    def _update(self, depth: int, mask: np.ndarray | None, action: int, ret: float) -> float:
        """One WPL update of ``pi[depth]`` for ``action`` with return ``ret``; the weighted Delta.

        ``mask`` None: the caller knows the mask allows no action the row does not know.
        """
        beta = self.return_average_rate
        row = self.policy_nA[depth] if mask is None else self._row(depth, mask)
        average = self.average_return
        if self.baseline == "action":
            average[depth, action] = avg = (1.0 - beta) * float(average[depth, action]) + beta * ret
        else:
            average[depth] = avg = (1.0 - beta) * float(average[depth]) + beta * ret
        delta = ret - avg
        p = float(row[action])
        # the weighting (see the module docstring for the sign)
        if self.weighted:
            if self.weighting == "paper":  # section 3.1.2, Algorithm 3
                delta *= 1.0 - p if delta < 0 else p
            else:  # appendix 7.4, Abdallah & Lesser
                delta *= p if delta < 0 else 1.0 - p
        moved = p + self.lr * delta
        row[action] = moved  # row is a view of the table: changed in place
        if self.min_prob == 0.0 and 0.0 <= moved <= 1.0:
            # simplex_projection of a row whose other entries are probabilities already (0
            # where not allowed) when the moved one needs no clipping: the same numbers
            total = row.sum()
            if total > 0.0:
                row /= total
                return float(delta)
        self.policy_nA[depth] = self._project(row, self.allowed_nA[depth])
        return float(delta)

    # ------------------------------------------------------------- batched path
    def _batch_inputs(self, obs: Observation) -> tuple[np.ndarray, np.ndarray]:
        """Depths and boolean masks of a batched observation, checked as a whole."""
        return batch_inputs(obs, num_actions=self.num_actions, num_depths=self.num_depths)

    def act_batch(self, obs: Observation, *, greedy: bool = False) -> np.ndarray:
        """:meth:`act` on every row at once (same actions, same generator draws, row order).

        Never reads ``obs["observation"]``: WPL's state is the depth.
        """
        depth_B, mask_BA = self._batch_inputs(obs)
        B = len(depth_B)
        if B == 0:
            return np.zeros(0, dtype=np.int64)
        if (mask_BA & ~self.allowed_nA[depth_B]).any():  # a row learns new actions: exactly row by row
            return np.array(
                [self.act({"depth": depth_B[i], "action_mask": mask_BA[i]}, greedy=greedy) for i in range(B)],
                dtype=np.int64,
            )
        if (depth_B == depth_B[0]).all() and (mask_BA == mask_BA[0]).all():  # the usual case
            groups: list[tuple[Any, int, np.ndarray]] = [(slice(None), int(depth_B[0]), mask_BA[0])]
        else:
            keys, inverse = np.unique(
                np.concatenate([depth_B[:, None], mask_BA], axis=1), axis=0, return_inverse=True
            )
            inverse = inverse.reshape(-1)
            groups = [(np.flatnonzero(inverse == k), int(key[0]), key[1:] != 0) for k, key in enumerate(keys)]
        actions = np.empty(B, dtype=np.int64)
        u_B = None if greedy else self.rng.random(B)
        for rows, depth, mask in groups:
            if not mask.any():
                raise ValueError("the action mask of a row allows no action")
            probs = np.where(mask, self.policy_nA[depth], 0.0)
            total = probs.sum()
            probs = mask / mask.sum() if total <= 0.0 else probs / total
            if greedy:
                actions[rows] = masked_argmax(probs, mask)
                continue
            assert u_B is not None
            cdf = np.cumsum(probs)
            picked = np.searchsorted(cdf, u_B[rows] * cdf[-1], side="right")
            bad = (picked >= len(probs)) | (probs[np.minimum(picked, len(probs) - 1)] <= 0)
            if bad.any():
                picked[bad] = int(np.flatnonzero(probs > 0)[-1])  # float round-off at the top end
            actions[rows] = picked
        return actions

    def learn_batch(self, traces: TraceBatch) -> dict[str, float]:
        """:meth:`learn` on each trace in row order (the same updates), without building
        per-sample traces."""
        if len(traces) == 0:
            return {}
        returns_bn = traces.returns(self.gamma)
        depth_bn, mask_bnA, actions_bn = trace_inputs(
            traces, num_actions=self.num_actions, num_depths=self.num_depths
        )
        b, n = actions_bn.shape
        deltas = np.empty((b, n))
        actions = actions_bn.tolist()
        returns = returns_bn.tolist()
        depths = depth_bn.T.tolist()
        # masks are passed only where they could teach the row a new action
        masks: list[Any] = [
            None if not (mask_bnA[:, j] & ~self.allowed_nA[depth_bn[:, j]]).any() else mask_bnA[:, j]
            for j in range(n)
        ]
        for i in range(b):
            for j in range(n):
                mask = None if masks[j] is None else masks[j][i]
                deltas[i, j] = self._update(depths[j][i], mask, actions[i][j], returns[i][j])
        # the mean over the traces of learn()'s per-trace means, to the last bit
        per_trace = deltas.mean(axis=1) if n else np.zeros(b)
        return {"mean_gradient": float(np.mean(per_trace))}

    # ------------------------------------------- several agents at once (batched path)
    def _hyper(self) -> tuple[Any, ...]:
        return (
            self.lr,
            self.return_average_rate,
            self.baseline,
            self.weighted,
            self.weighting,
            self.min_prob,
            self.gamma,
            self.num_actions,
            self.num_depths,
        )

    @classmethod
    def _vectorizable(cls, learners: Sequence[RouterAgent]) -> bool:
        """Plain WPL learners with the same settings (their tables stack)."""
        if not all(type(x) is WPL for x in learners):
            return False
        hypers = {x._hyper() for x in learners if isinstance(x, WPL)}
        return len(hypers) == 1

    @classmethod
    def act_group(
        cls, learners: Sequence[RouterAgent], obs: Observation, owner_B: np.ndarray, *, greedy: bool = False
    ) -> np.ndarray:
        """:meth:`act_batch` of every learner on its rows, computed for all rows at once.

        The same actions and the same draws from each learner's generator (its rows in
        row order) as the learners acting one by one.
        """
        if len(learners) == 1 or not cls._vectorizable(learners):
            return super().act_group(learners, obs, owner_B, greedy=greedy)
        wpl: list[WPL] = list(learners)  # type: ignore[arg-type]
        depth_B, mask_BA = wpl[0]._batch_inputs(obs)
        B = len(depth_B)
        policy_KnA = np.stack([x.policy_nA for x in wpl])
        allowed_KnA = np.stack([x.allowed_nA for x in wpl])
        if (mask_BA & ~allowed_KnA[owner_B, depth_B]).any():  # a row learns new actions
            return super().act_group(learners, obs, owner_B, greedy=greedy)
        if not mask_BA.any(axis=1).all():
            raise ValueError("the action mask of a row allows no action")
        probs_BA = np.where(mask_BA, policy_KnA[owner_B, depth_B], 0.0)
        total_B = probs_BA.sum(axis=1)
        empty = total_B <= 0.0
        if empty.any():  # the row puts no mass on what is allowed now: act uniformly
            probs_BA[empty] = mask_BA[empty]
            total_B[empty] = mask_BA[empty].sum(axis=1)
        probs_BA /= total_B[:, None]
        if greedy:
            return np.where(mask_BA, probs_BA, -np.inf).argmax(axis=1).astype(np.int64)
        u_B = np.empty(B)
        for k, learner in enumerate(wpl):
            rows = np.flatnonzero(owner_B == k)
            if len(rows):
                u_B[rows] = learner.rng.random(len(rows))
        cdf_BA = np.cumsum(probs_BA, axis=1)
        picked = (cdf_BA <= (u_B * cdf_BA[:, -1])[:, None]).sum(axis=1)  # searchsorted(side="right")
        A = probs_BA.shape[1]
        bad = (picked >= A) | (probs_BA[np.arange(B), np.minimum(picked, A - 1)] <= 0)
        for b in np.flatnonzero(bad):  # float round-off at the top end
            picked[b] = int(np.flatnonzero(probs_BA[b] > 0)[-1])
        return picked.astype(np.int64)

    @classmethod
    def learn_group(cls, learners: Sequence[RouterAgent], traces: TraceBatch, owner_B: np.ndarray) -> None:
        """:meth:`learn_batch` of every learner on its rows, vectorized over the learners.

        Each learner's updates run in its own row order, as one by one; updates of
        different learners touch different tables, so the k-th update of every learner
        is done at once. The numbers are the ones :meth:`learn_batch` gives.
        """
        if len(learners) == 1 or not cls._vectorizable(learners):
            super().learn_group(learners, traces, owner_B)
            return
        wpl: list[WPL] = list(learners)  # type: ignore[arg-type]
        first = wpl[0]
        depth_bn, mask_bnA, actions_bn = trace_inputs(
            traces, num_actions=first.num_actions, num_depths=first.num_depths
        )
        b, n = actions_bn.shape
        allowed_KnA = np.stack([x.allowed_nA for x in wpl])
        for j in range(n):
            if (mask_bnA[:, j] & ~allowed_KnA[owner_B, depth_bn[:, j]]).any():
                # a row would learn new actions: exactly one by one
                super().learn_group(learners, traces, owner_B)
                return
        policy_KnA = np.stack([x.policy_nA for x in wpl])
        average = np.stack([x.average_return for x in wpl])
        returns_bn = traces.returns(first.gamma)
        beta, lr = first.return_average_rate, first.lr
        # rank of each row among its learner's rows: the rows of rank r are updated together
        order = np.argsort(owner_B, kind="stable")
        rank_B = np.empty(b, dtype=np.int64)
        counts = np.bincount(owner_B, minlength=len(wpl))
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        rank_B[order] = np.arange(b) - np.repeat(starts, counts)
        by_rank = [np.flatnonzero(rank_B == r) for r in range(int(rank_B.max()) + 1)]
        # a row's decisions touch different table rows when its depths differ (always in the
        # routing env: decision j is at depth j), so all of them go in one vectorized update
        distinct = n == 1 or bool((np.diff(np.sort(depth_bn, axis=1), axis=1) != 0).all())
        steps: list[tuple[np.ndarray, np.ndarray]] = []
        for r_rows in by_rank:
            if distinct:
                steps.append((np.repeat(r_rows, n), np.tile(np.arange(n), len(r_rows))))
            else:
                steps.extend((r_rows, np.full(len(r_rows), j)) for j in range(n))
        for rows_m, cols_m in steps:
            K = owner_B[rows_m]
            d = depth_bn[rows_m, cols_m]
            a = actions_bn[rows_m, cols_m]
            ret = returns_bn[rows_m, cols_m]
            if first.baseline == "action":
                avg = (1.0 - beta) * average[K, d, a] + beta * ret
                average[K, d, a] = avg
            else:
                avg = (1.0 - beta) * average[K, d] + beta * ret
                average[K, d] = avg
            delta = ret - avg
            row_mA = policy_KnA[K, d]
            m_index = np.arange(len(K))
            p = row_mA[m_index, a]
            if first.weighted and first.weighting == "paper":  # section 3.1.2, Algorithm 3
                delta = delta * np.where(delta < 0, 1.0 - p, p)
            elif first.weighted:  # appendix 7.4, Abdallah & Lesser
                delta = delta * np.where(delta < 0, p, 1.0 - p)
            moved = p + lr * delta
            row_mA[m_index, a] = moved
            total = row_mA.sum(axis=1)
            fast = (moved >= 0.0) & (moved <= 1.0) & (total > 0.0) & (first.min_prob == 0.0)
            row_mA[fast] /= total[fast, None]
            for m in np.flatnonzero(~fast):
                k, dd = int(K[m]), int(d[m])
                row_mA[m] = wpl[k]._project(row_mA[m], wpl[k].allowed_nA[dd])
            policy_KnA[K, d] = row_mA
        for k, learner in enumerate(wpl):
            learner.policy_nA = policy_KnA[k].copy()
            learner.average_return = average[k].copy()

    # -------------------------------------------------------------------- state
    def is_pure(self, threshold: float = 0.99) -> bool:
        """Whether the policy is (near) pure: largest action probability >= ``threshold``
        at every depth the agent has seen (False before it has seen any)."""
        seen = self.allowed_nA.any(axis=1)
        return bool(seen.any() and (self.policy_nA[seen].max(axis=1) >= threshold).all())

    @property
    def policy(self) -> np.ndarray:
        """A copy of the policy table ``[depth, action]`` (rows of unseen depths are 0)."""
        return self.policy_nA.copy()

    def state_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy_nA.copy(),
            "allowed": self.allowed_nA.copy(),
            "average_return": self.average_return.copy(),
            "rng": self._rng_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        shape = self.policy_nA.shape
        policy = check_state_array("policy", state["policy"], shape)
        allowed = check_state_array("allowed", state["allowed"], shape).astype(bool)
        average = check_state_array("average_return", state["average_return"], self.average_return.shape)
        self.policy_nA, self.allowed_nA, self.average_return = policy, allowed, average
        self._load_rng_state(state.get("rng"))
