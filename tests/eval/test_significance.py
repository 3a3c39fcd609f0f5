"""Paired t-test and bootstrap CI of per-query differences."""

from __future__ import annotations

import math

import pytest

from qrerank.eval.significance import paired_comparison


def test_clear_improvement_is_significant() -> None:
    # d = [0.1, 0.2, 0.2, 0.3]: mean 0.2, sd = sqrt(0.02 / 3) = 0.08165,
    # t = 0.2 / (0.08165 / 2) = 4.899 with 3 df -> two-sided p = 0.0163
    method = {"a": 0.5, "b": 0.6, "c": 0.7, "d": 0.8}
    base = {"a": 0.4, "b": 0.4, "c": 0.5, "d": 0.5}
    c = paired_comparison(method, base, n_resamples=2000)
    assert c.n == 4 and c.mean_diff == pytest.approx(0.2)
    assert c.p_value == pytest.approx(0.0163, abs=5e-4)
    assert 0.1 <= c.ci_low < 0.2 < c.ci_high <= 0.3
    assert c.significant and c.mark == "▲"
    worse = paired_comparison(base, method, n_resamples=2000)
    assert worse.significant and worse.mark == "▼" and worse.mean_diff == pytest.approx(-0.2)


def test_identical_scores_are_no_difference() -> None:
    c = paired_comparison({"a": 0.3, "b": 0.9}, {"a": 0.3, "b": 0.9})
    assert (c.mean_diff, c.ci_low, c.ci_high, c.p_value, c.significant) == (0.0, 0.0, 0.0, 1.0, False)


def test_noisy_difference_is_not_significant() -> None:
    c = paired_comparison({"a": 1.0, "b": 0.0, "c": 1.0, "d": 0.0}, {"a": 0.0, "b": 1.0, "c": 0.5, "d": 0.5})
    assert not c.significant and c.ci_low < 0 < c.ci_high and not math.isnan(c.p_value)


def test_only_shared_queries_are_paired() -> None:
    c = paired_comparison({"a": 1.0, "b": 1.0, "x": 5.0}, {"a": 0.0, "b": 0.5})
    assert c.n == 2 and c.mean_diff == pytest.approx(0.75)
