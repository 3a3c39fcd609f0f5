"""PNG plots of an evaluation (matplotlib, Agg backend: no display needed).

- ``per_query_delta.png``: per-query nDCG@10 of each method minus cosine, sorted;
- ``tau_sweep.png``: nDCG@10 of fidelity against the Bloch temperature tau;
- ``alpha_sweep.png``: nDCG@10 of hybrid against alpha (alpha = 1 is cosine, 0 is fidelity).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from qrerank._optional import require
from qrerank.metrics import PRIMARY_METRIC


def _pyplot() -> Any:
    mpl = require("matplotlib", "eval")
    mpl.use("Agg")
    return require("matplotlib.pyplot", "eval")


def plot_per_query_delta(
    per_query: Mapping[str, Mapping[str, Mapping[str, float]]],
    methods: Sequence[str],
    path: Path,
    *,
    baseline: str = "cosine",
    metric: str = PRIMARY_METRIC,
    title: str = "",
) -> Path | None:
    """Sorted bars of ``metric(method) - metric(baseline)`` per query, one panel per method."""
    others = [m for m in methods if m != baseline and m in per_query]
    if baseline not in per_query or not others:
        return None
    plt = _pyplot()
    cols = min(3, len(others))
    rows = math.ceil(len(others) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.8 * rows), squeeze=False, sharey=True)
    base = per_query[baseline][metric]
    for ax, name in zip(axes.flat, others, strict=False):
        vals = per_query[name][metric]
        diffs = sorted((vals[q] - base[q] for q in base), reverse=True)
        colors = ["tab:green" if d > 0 else "tab:red" if d < 0 else "tab:gray" for d in diffs]
        ax.bar(range(len(diffs)), diffs, width=1.0, color=colors)
        ax.axhline(0, color="black", linewidth=0.6)
        wins, losses = sum(d > 0 for d in diffs), sum(d < 0 for d in diffs)
        mean = sum(diffs) / len(diffs) if diffs else 0.0
        ax.set_title(f"{name}\nmean {mean:+.4f}, {wins} up / {losses} down", fontsize=8)
        ax.set_xticks([])
    for ax in list(axes.flat)[len(others) :]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel(f"Δ {metric} vs {baseline}", fontsize=8)
    fig.suptitle(title or f"per-query {metric} difference vs {baseline} (queries sorted)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_sweep(
    sweep: Sequence[Mapping[str, Any]],
    param: str,
    path: Path,
    *,
    chosen: float | None = None,
    baselines: Mapping[str, float] | None = None,
    metric: str = PRIMARY_METRIC,
    log_x: bool = False,
    title: str = "",
) -> Path | None:
    """``metric`` against ``param`` for the evaluated split and, when tuned, the tuning split.

    ``sweep`` rows hold ``param``, ``"test"`` (metrics dict) and optionally ``"tune"``.
    """
    if not sweep:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    xs = [row[param] for row in sweep]
    ax.plot(xs, [row["test"][metric] for row in sweep], marker="o", label="evaluated split")
    if all(row.get("tune") for row in sweep):
        ax.plot(xs, [row["tune"][metric] for row in sweep], marker="s", linestyle="--", label="tuning split")
    for label, value in (baselines or {}).items():
        ax.axhline(value, color="gray", linestyle=":", linewidth=1)
        ax.annotate(label, (xs[0], value), fontsize=7, color="gray", va="bottom")
    if chosen is not None:
        ax.axvline(chosen, color="tab:red", linewidth=0.8, label=f"chosen {param} = {chosen:.4g}")
    if log_x:
        ax.set_xscale("log")
        ax.minorticks_off()
    ax.set_xticks(xs)
    ax.set_xticklabels([f"{x:.3g}" for x in xs], fontsize=7, rotation=30 if log_x else 0)
    ax.set_xlabel(param)
    ax.set_ylabel(metric)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
