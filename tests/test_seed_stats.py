"""Statistics over seeds: the seed is the unit of replication (issue 17)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from debiaskd.core import metrics as M


def _synthetic(rng: np.random.Generator, n_seeds: int, n_examples: int, mu: float, tau: float):
    """Paired correctness of a and b: each seed has its own true difference δ_s ~ N(mu, tau),
    and a is right wherever b is plus on a δ_s share of the examples (positively correlated pairs)."""
    deltas = rng.normal(mu, tau, n_seeds)
    u = rng.random((n_seeds, n_examples))
    return u < 0.6 + deltas[:, None], u < 0.6


@pytest.mark.parametrize("diffs", [[0.044, 0.061, 0.053, 0.020], [-0.068, 0.01], [0.012, -0.004, 0.031]])
def test_t_interval_over_seeds_is_scipys(diffs: list[float]) -> None:
    out = M.seed_t_interval(diffs, 0.95)
    res = stats.ttest_1samp(diffs, 0.0)
    ci = res.confidence_interval(0.95)
    assert out["n"] == len(diffs) and out["mean"] == pytest.approx(np.mean(diffs))
    assert (out["ci_low"], out["ci_high"]) == pytest.approx((ci.low, ci.high))
    assert out["p_value"] == pytest.approx(res.pvalue)
    assert out["std"] == pytest.approx(np.std(diffs, ddof=1))
    narrow = M.seed_t_interval(diffs, 0.5)
    assert out["ci_low"] < narrow["ci_low"] < narrow["ci_high"] < out["ci_high"]


def test_one_seed_has_no_interval_and_zero_spread_a_point_interval() -> None:
    one = M.seed_t_interval([0.05])
    assert one["mean"] == pytest.approx(0.05) and one["n"] == 1
    assert one["ci_low"] is None and one["ci_high"] is None and one["p_value"] is None
    assert M.seed_t_interval([None, float("nan")])["mean"] is None
    flat = M.seed_t_interval([0.0, 0.0, 0.0])
    assert (flat["ci_low"], flat["ci_high"], flat["p_value"]) == (0.0, 0.0, 1.0)


@pytest.mark.parametrize(("b01", "b10"), [(5, 1), (0, 7), (3, 3), (11, 2), (0, 1), (12, 12)])
def test_mcnemar_exact_branch_is_the_exact_binomial_test(b01: int, b10: int) -> None:
    # statsmodels is not installed here: the exact branch is checked against scipy's binomial test
    same = 9
    a = np.r_[np.zeros(b01), np.ones(b10), np.ones(same)].astype(bool)
    b = np.r_[np.ones(b01), np.zeros(b10), np.ones(same)].astype(bool)
    out = M.mcnemar(a, b)
    assert (out["b01"], out["b10"], out["exact"]) == (b01, b10, True)
    assert out["p_value"] == pytest.approx(stats.binomtest(b01, b01 + b10, 0.5).pvalue)


def test_hierarchical_bootstrap_is_deterministic_for_a_seed() -> None:
    a, b = _synthetic(np.random.default_rng(0), 5, 400, 0.05, 0.02)
    first = M.hierarchical_bootstrap_ci(a, b, 500, 0.95, seed=11)
    assert first == M.hierarchical_bootstrap_ci(a, b, 500, 0.95, seed=11)
    assert first != M.hierarchical_bootstrap_ci(a, b, 500, 0.95, seed=12)
    assert first["mean"] == pytest.approx((a.astype(float) - b).mean())
    assert first["ci_low"] < first["mean"] < first["ci_high"] and first["n_seeds"] == 5


def test_hierarchical_bootstrap_pairs_examples_within_seeds() -> None:
    a = np.ones((3, 50), dtype=bool)
    out = M.hierarchical_bootstrap_ci(a, a, 200, seed=0)  # identical models: every paired draw is 0
    assert (out["ci_low"], out["ci_high"]) == (0.0, 0.0)
    with pytest.raises(ValueError):
        M.hierarchical_bootstrap_ci(np.ones((2, 5)), np.ones((2, 6)))


def test_hierarchical_bootstrap_covers_the_true_difference() -> None:
    # Seed and example noise of similar size (6 seeds × 300 examples). With 5 seeds and the seed
    # spread dominating, a percentile interval covers less (about 0.83-0.90 in our simulations),
    # which is why the report puts it beside the t-interval.
    rng = np.random.default_rng(7)
    mu, hits, reps = 0.05, 0, 40
    for r in range(reps):
        a, b = _synthetic(rng, 6, 300, mu, 0.01)
        out = M.hierarchical_bootstrap_ci(a, b, 400, 0.95, seed=r)
        hits += out["ci_low"] <= mu <= out["ci_high"]
    assert hits / reps >= 0.85


def test_hierarchical_bootstrap_is_wider_than_one_that_ignores_seed_variance() -> None:
    a, b = _synthetic(np.random.default_rng(3), 5, 500, 0.02, 0.08)  # seeds differ a lot
    nested = M.hierarchical_bootstrap_ci(a, b, 1000, 0.95, seed=0)
    within = M.hierarchical_bootstrap_ci(a, b, 1000, 0.95, seed=0, resample_seeds=False)
    assert nested["mean"] == within["mean"]
    assert nested["ci_high"] - nested["ci_low"] > 2 * (within["ci_high"] - within["ci_low"])


def test_ragged_bootstrap_for_seeds_with_their_own_number_of_examples() -> None:
    """Each seed draws its own data, so seeds may hold different numbers of challenge examples."""
    rng = np.random.default_rng(5)
    a, b = _synthetic(rng, 5, 400, 0.04, 0.02)
    # equal lengths: the same estimate, an interval of about the same place and width as the rectangular one
    rect = M.hierarchical_bootstrap_ci(a, b, 2000, 0.95, seed=0)
    ragged = M.hierarchical_bootstrap_ci_ragged(list(a), list(b), 2000, 0.95, seed=0)
    assert ragged["mean"] == pytest.approx(rect["mean"])
    assert ragged["ci_low"] == pytest.approx(rect["ci_low"], abs=0.006)
    assert ragged["ci_high"] == pytest.approx(rect["ci_high"], abs=0.006)
    # different lengths: the statistic is the mean of the seeds' means, not the pooled mean
    rows_a = [np.ones(10), np.zeros(90)]
    rows_b = [np.zeros(10), np.zeros(90)]
    out = M.hierarchical_bootstrap_ci_ragged(rows_a, rows_b, 500, seed=0)
    assert out["mean"] == pytest.approx(0.5) and out["n_seeds"] == 2
    assert out["ci_low"] == 0.0 and out["ci_high"] == 1.0  # two seeds of constant difference 1 and 0
    same = [np.ones(7), np.ones(3)]
    assert M.hierarchical_bootstrap_ci_ragged(same, same, 100)["ci_high"] == 0.0
    with pytest.raises(ValueError):
        M.hierarchical_bootstrap_ci_ragged([np.ones(5)], [np.ones(6)])


def test_ragged_bootstrap_covers_the_true_difference() -> None:
    rng = np.random.default_rng(9)
    mu, hits, reps = 0.05, 0, 40
    for r in range(reps):
        a, b = _synthetic(rng, 6, 300, mu, 0.01)
        sizes = rng.integers(150, 300, size=6)
        out = M.hierarchical_bootstrap_ci_ragged([x[:n] for x, n in zip(a, sizes, strict=True)],
                                                 [x[:n] for x, n in zip(b, sizes, strict=True)], 400, 0.95, seed=r)
        hits += out["ci_low"] <= mu <= out["ci_high"]
    assert hits / reps >= 0.85
