"""Independent reference implementations the tests compare the package against."""

import itertools

import torch


def brute_force_lambda_return(reward, next_value, gamma, lmbda, terminated=None, value=None):
    """Eq. 8 by a double loop over the n-step returns G_{t:t+i} of each step t."""
    batch, horizon, _ = reward.shape
    if terminated is None:
        terminated = torch.zeros_like(reward, dtype=torch.bool)
    out = torch.zeros_like(reward)
    for b, t in itertools.product(range(batch), range(horizon)):
        steps_left = horizon - t

        def n_step(i, b=b, t=t):
            if i == 0:
                return value[b, t, 0]
            ret, alive = 0.0, 1.0
            for k in range(i):
                ret = ret + gamma**k * alive * reward[b, t + k, 0]
                alive = alive * (1.0 - float(terminated[b, t + k, 0]))
            return ret + gamma**i * alive * next_value[b, t + i - 1, 0]

        if value is None:
            if lmbda == 1.0:
                weights = [1.0 / steps_left] * steps_left
            else:
                norm = (1 - lmbda) / (1 - lmbda**steps_left)
                weights = [norm * lmbda ** (i - 1) for i in range(1, steps_left + 1)]
            terms = [n_step(i) for i in range(1, steps_left + 1)]
        else:
            raw = [lmbda**i for i in range(steps_left + 1)]
            weights = [w / sum(raw) for w in raw]
            terms = [n_step(i) for i in range(steps_left + 1)]
        assert abs(sum(weights) - 1.0) < 1e-9
        out[b, t, 0] = sum(w * g for w, g in zip(weights, terms))
    return out
