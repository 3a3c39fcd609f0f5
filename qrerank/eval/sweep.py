"""Choosing tau, alpha and fusion weights on a tuning split: the grids and the one tuning loop.

tau is chosen first, by fidelity alone (the quantum signal's own best temperature); alpha then
blends cosine with log F at that tau. Each value is the first of the grid with the best score
(ties keep the grid's order). ``qrerank eval`` (nDCG@10 on a tuning split of queries) and
STS-B (Spearman on the dev pairs) both tune with :func:`tune_tau_alpha`; the evaluated split
only ever gets the chosen values.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from qrerank.core.encoding import default_tau
from qrerank.rerank.methods import Method

TAU_MULTIPLIERS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)  # the tau grid, in units of 1/sqrt(d)
ALPHAS = tuple(round(i / 10, 1) for i in range(11))
Metrics = Mapping[str, float]
Curve = dict[float, Metrics]
# (method, tau, alpha) -> metrics on the tuning split; alpha is None for fidelity.
Evaluate = Callable[[Method, float, "float | None"], Metrics]


def tau_grid(dim: int, taus: Sequence[float] | None = None) -> list[float]:
    """``taus`` sorted, or ``TAU_MULTIPLIERS / sqrt(dim)``."""
    return sorted(taus) if taus else [m * default_tau(dim) for m in TAU_MULTIPLIERS]


def best(curve: Mapping[float, Metrics], metric: str) -> float:
    """The first value of ``curve`` (in its order) with the highest ``metric``."""
    return max(curve, key=lambda x: curve[x][metric])


@dataclass(frozen=True)
class Tuned:
    """The chosen tau and alpha, and each one's curve on the tuning split."""

    tau: float
    alpha: float
    tau_curve: Curve
    alpha_curve: Curve


def tune_tau_alpha(evaluate: Evaluate, taus: Sequence[float], alphas: Sequence[float], metric: str) -> Tuned:
    """tau maximising fidelity's ``metric``, then alpha maximising hybrid's at that tau."""
    tau_curve = {t: evaluate(Method.FIDELITY, t, None) for t in taus}
    tau = best(tau_curve, metric)
    alpha_curve = {a: evaluate(Method.HYBRID, tau, a) for a in alphas}
    return Tuned(tau, best(alpha_curve, metric), tau_curve, alpha_curve)
