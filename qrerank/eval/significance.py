"""Paired significance of a method against a baseline over the same queries (scipy).

Two views of the per-query differences d_q = method_q - baseline_q:

- paired two-sided t-test (``scipy.stats.ttest_rel``), the usual test in IR papers;
- a percentile bootstrap 95% confidence interval of mean(d) (``scipy.stats.bootstrap``,
  queries resampled with replacement, fixed seed), which makes no normality assumption.

A method is marked significant when p < ``alpha`` *and* the CI excludes 0. With identical scores
on every query (e.g. hybrid at alpha = 1 vs cosine) the difference is 0 with p = 1.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from qrerank._optional import require


@dataclass(frozen=True, kw_only=True)
class Comparison:
    """Method minus baseline over ``n`` paired queries."""

    n: int
    mean_diff: float
    ci_low: float
    ci_high: float
    p_value: float
    significant: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def mark(self) -> str:
        """A mark: "▲" significantly better, "▼" significantly worse, "" otherwise."""
        if not self.significant:
            return ""
        return "▲" if self.mean_diff > 0 else "▼"


def paired_comparison(
    method: Mapping[str, float],
    baseline: Mapping[str, float],
    *,
    n_resamples: int = 10_000,
    confidence: float = 0.95,
    alpha: float = 0.05,
    seed: int = 0,
) -> Comparison:
    """Compare per-query values ``{qid: value}`` of a method and a baseline on their shared queries."""
    stats = require("scipy.stats", "eval")
    qids = sorted(set(method) & set(baseline))
    if not qids:
        raise ValueError("no shared queries to compare")
    a = np.array([method[q] for q in qids], dtype=np.float64)
    b = np.array([baseline[q] for q in qids], dtype=np.float64)
    diff = a - b
    mean = float(diff.mean())
    if len(qids) < 2 or np.allclose(diff, diff[0], rtol=0.0, atol=1e-12):
        # Zero variance: no test is defined; equal scores are "no difference" (p = 1).
        p = 1.0 if abs(mean) < 1e-12 else 0.0
        return Comparison(
            n=len(qids), mean_diff=mean, ci_low=mean, ci_high=mean, p_value=p, significant=p < alpha
        )
    p = float(stats.ttest_rel(a, b).pvalue)
    if math.isnan(p):
        p = 1.0
    res = stats.bootstrap(
        (diff,),
        np.mean,
        n_resamples=n_resamples,
        confidence_level=confidence,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    significant = p < alpha and (lo > 0 or hi < 0)
    return Comparison(n=len(qids), mean_diff=mean, ci_low=lo, ci_high=hi, p_value=p, significant=significant)
