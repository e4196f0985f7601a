"""The batched conditional-logit fit of cape.analysis.flip (issue 18: the replication's
flip test fits every bootstrap resample at once).

The fit of all resamples at once must equal (1) the implementation it replaced (kept here:
every family's sums by ``np.add.reduceat`` over a flat row table), run on the same weights,
to rounding, and (2) a per-resample reference, one fit at a time by scipy.optimize, to the
optimiser's tolerance. The constructed cases cover what the dense layout treats apart:
families with one statistic (no information), small families (padded block), families with
more than 8 and more than 129 distinct statistics (the pairwise sums), zero weights, and
one, two and three coefficients.
"""

from __future__ import annotations

import numpy as np
import pytest

from cape.analysis import flip
from cape.analysis.flip import _strata, conditional_logit


def _old_loglik_parts(S, theta):
    """The implementation before issue 18 (reduceat over the flat (R, M) row table)."""
    eta = theta @ S.T.T + S.logmult
    mx = np.maximum.reduceat(eta, S.starts, axis=1)
    e = np.exp(eta - mx[:, S.owner])
    tot = np.add.reduceat(e, S.starts, axis=1)
    lse = mx + np.log(tot)
    prob = e / tot[:, S.owner]
    ET = np.add.reduceat(prob[:, :, None] * S.T[None], S.starts, axis=1)
    outer = S.T[:, :, None] * S.T[:, None, :]
    ETT = np.add.reduceat(prob[:, :, None, None] * outer[None], S.starts, axis=1)
    ll = theta @ S.t_obs.T - lse
    return ll, ET, ETT - ET[..., :, None] * ET[..., None, :]


def _old_conditional_logit(S, W, penalty_sd=flip.PENALTY_SD, iterations=50):
    R, p = W.shape[0], S.T.shape[1]
    theta = np.zeros((R, p))
    ridge = np.eye(p) / penalty_sd ** 2
    for _ in range(iterations):
        ll, ET, cov = _old_loglik_parts(S, theta)
        grad = np.einsum("rf,rfp->rp", W, S.t_obs[None] - ET) - theta / penalty_sd ** 2
        H = -np.einsum("rf,rfpq->rpq", W, cov) - ridge
        step = np.clip(np.linalg.solve(H, grad[..., None])[..., 0], -5.0, 5.0)
        theta = theta - step
        if np.abs(step).max() < 1e-9:
            break
    ll, _, _ = _old_loglik_parts(S, theta)
    return theta, (W * ll).sum(axis=1) - 0.5 * (theta ** 2).sum(axis=1) / penalty_sd ** 2


def _case(p, sizes, seed=0):
    """Families of the given sizes; covariates: a step (p=1) or continuous (p>1)."""
    rng = np.random.default_rng(seed)
    codes = np.repeat(np.arange(len(sizes)), sizes)
    n = len(codes)
    Z = (rng.random((n, 1)) < 0.5).astype(float) if p == 1 else rng.normal(size=(n, p))
    y = (rng.random(n) < 0.45).astype(float)
    y[codes == 0] = 1.0                                   # a family with one statistic
    big = np.flatnonzero(codes == int(np.argmax(sizes)))
    if p == 1 and big.size >= 16:                         # half above, half tax-signed: n/2 + 1 statistics
        Z[big, 0] = np.arange(big.size) % 2
        y[big] = (np.arange(big.size) // 2) % 2
    S = _strata(y, Z, codes, len(sizes))
    W = rng.poisson(1.0, (60, len(sizes))).astype(float) * rng.uniform(0.5, 2, len(sizes))
    W[0] = 1.0
    return S, W


CASES = {
    "step, small families": (1, [3, 2, 4, 5, 3, 6, 4, 7]),
    "step, a family of 18 (9+ statistics)": (1, [3, 4, 18, 5, 6]),
    "two coefficients": (2, [3, 4, 5, 6, 7, 4]),
    "three coefficients, 9 and 200+ statistics": (3, [3, 5, 6, 10, 4]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_batched_fit_equals_the_replaced_implementation(name):
    p, sizes = CASES[name]
    S, W = _case(p, sizes)
    counts = np.diff(np.r_[S.starts, len(S.owner)])
    assert not S.informative.all() and S.informative.any()
    theta, pen = conditional_logit(S, W)
    old_theta, old_pen = _old_conditional_logit(S, W)
    np.testing.assert_allclose(theta, old_theta, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(pen, old_pen, rtol=1e-12, atol=1e-13)
    ll, ET, cov = flip._loglik_parts(S, theta)
    old = _old_loglik_parts(S, theta)
    for a, b in zip((ll, ET, cov), old):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)
    if "family of 18" in name:
        assert counts.max() > flip._SEQUENTIAL_ROWS          # a block of its own (pairwise sums)
    if name.startswith("three"):
        assert counts.max() > 129                         # the recursive pairwise sum ran


@pytest.mark.parametrize("name", list(CASES))
def test_batched_fit_equals_one_fit_at_a_time(name):
    """Each row of the batched fit is the optimum of its own resample's objective (scipy,
    one resample at a time), whichever rows it shares the batch with."""
    from scipy.optimize import minimize

    p, sizes = CASES[name]
    S, W = _case(p, sizes, seed=1)
    theta, pen = conditional_logit(S, W)
    sd2 = flip.PENALTY_SD ** 2
    for r in range(0, W.shape[0], 7):                     # the reference loop, on purpose
        w = W[r]

        def f(b):
            ll, ET, _ = _old_loglik_parts(S, b[None, :])
            val = (w * ll[0]).sum() - 0.5 * (b ** 2).sum() / sd2
            grad = w @ (S.t_obs - ET[0]) - b / sd2
            return -val, -grad

        ref = minimize(f, np.zeros(p), jac=True, method="BFGS", options={"gtol": 1e-11})
        np.testing.assert_allclose(theta[r], ref.x, atol=1e-6)
        assert pen[r] >= -ref.fun - 1e-12
        alone, alone_pen = conditional_logit(S, W[r:r + 1])
        np.testing.assert_allclose(alone[0], theta[r], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(alone_pen[0], pen[r], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("n", [2, 3, 8, 9, 10, 16, 17, 129, 130, 300])
def test_segment_sum_is_reduceat_of_one_family(n):
    """A family's sum in the dense layout rounds as np.add.reduceat summed it in the flat one."""
    rng = np.random.default_rng(n)
    x = rng.random((n, 4, 50)) * 10.0 ** rng.uniform(-6, 6, (n, 4, 50))
    ref = np.add.reduceat(np.moveaxis(x, 0, -1).reshape(-1, n), [0], axis=1)[:, 0].reshape(4, 50)
    np.testing.assert_allclose(flip._segment_sum(x), ref, rtol=1e-15, atol=0)
