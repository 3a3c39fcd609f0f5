"""STS Benchmark: do fidelity scores track graded human similarity as well as cosine?

The paper (arXiv 2501.04591) leaves open whether Bloch-state fidelity generalises beyond
retrieval. Here each sentence pair of ``sts-<split>.tsv`` (columns genre, file, year, sid,
score, sentence1, sentence2; gold score 0-5) is scored by

- cosine of the two embeddings;
- fidelity: log F of their Bloch states at temperature tau (Spearman is rank based, so log F
  and F give the same correlation);
- hybrid: alpha * minmax(cos) + (1 - alpha) * minmax(log F), min-max over all pairs of the split;

and the Spearman (primary, as in SentEval / MTEB) and Pearson correlations with the gold scores
are reported. tau and alpha are chosen on ``tune_split`` (dev by default), never on test. The
difference in Spearman against cosine gets a paired bootstrap 95% CI (pairs resampled).
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qrerank._optional import require
from qrerank.core.encoding import bloch_angles, default_tau
from qrerank.core.fidelity import log_fidelity_angles
from qrerank.core.fusion import hybrid_scores
from qrerank.embed.base import Encoder
from qrerank.errors import InputError
from qrerank.eval.meta import environment
from qrerank.eval.plots import plot_sweep
from qrerank.eval.sweep import ALPHAS, Tuned, tau_grid, tune_tau_alpha
from qrerank.judgments import read_sts
from qrerank.rerank.methods import Method

STS_METRIC = "spearman"


class _Pairs:
    """Embeddings of one split and the pair scores of each method."""

    def __init__(self, path: Path, encoder: Encoder, batch_size: int, show_progress: bool) -> None:
        self.path = path
        s1, s2, self.gold = read_sts(path)
        # float64 keeps log F finite for saturated qubits (see eval.methods.CandidateScorer).
        self.a, self.b = (
            torch.from_numpy(encoder.encode(s, batch_size=batch_size, show_progress=show_progress)).double()
            for s in (s1, s2)
        )
        self.cos = torch.nn.functional.cosine_similarity(self.a, self.b, dim=-1)

    @property
    def dim(self) -> int:
        return int(self.a.shape[1])

    def log_f(self, tau: float) -> torch.Tensor:
        return log_fidelity_angles(bloch_angles(self.a, tau), bloch_angles(self.b, tau))

    def hybrid(self, tau: float, alpha: float) -> torch.Tensor:
        return hybrid_scores(self.cos, self.log_f(tau), alpha, self.a.shape[1])

    def correlations(self, method: Method, tau: float, alpha: float | None) -> dict[str, float]:
        """Correlations with the gold scores of ``method``: fidelity at ``tau``, or hybrid at ``tau, alpha``."""
        pred = self.log_f(tau) if method is Method.FIDELITY or alpha is None else self.hybrid(tau, alpha)
        return correlations(pred, self.gold)


def correlations(pred: torch.Tensor | np.ndarray, gold: np.ndarray) -> dict[str, float]:
    """Spearman and Pearson correlation of predicted scores with gold scores (scipy)."""
    stats = require("scipy.stats", "eval")
    x = np.asarray(pred, dtype=np.float64)
    return {
        "spearman": float(stats.spearmanr(x, gold).statistic),
        "pearson": float(stats.pearsonr(x, gold).statistic),
    }


def spearman_diff_ci(
    a: np.ndarray, b: np.ndarray, gold: np.ndarray, *, n_resamples: int = 2000, seed: int = 0
) -> dict[str, float]:
    """Paired bootstrap 95% CI of spearman(a, gold) - spearman(b, gold), pairs resampled."""
    stats = require("scipy.stats", "eval")

    def diff(g: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
        return float(stats.spearmanr(x, g).statistic - stats.spearmanr(y, g).statistic)

    with warnings.catch_warnings():
        # Tiny splits can draw a resample with constant scores (undefined correlation): NaN, no warning.
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        res = stats.bootstrap(
            (gold, a, b), diff, paired=True, vectorized=False, n_resamples=n_resamples,
            method="percentile", rng=np.random.default_rng(seed),
        )  # fmt: skip
    return {
        "diff": diff(gold, a, b),
        "ci_low": float(res.confidence_interval.low),
        "ci_high": float(res.confidence_interval.high),
    }


@torch.no_grad()
def _head_scores(
    path: Path, test: _Pairs, encoder: Encoder, batch_size: int, show_progress: bool
) -> torch.Tensor:
    """``[pairs]`` similarity of a saved head's outputs for the two sentences of each pair."""
    from qrerank.heads.bundle import load_head_bundle

    bundle = load_head_bundle(path, in_dim=encoder.dim)
    head = bundle.head.double().eval()  # float64, as the pairs
    pairs = test if bundle.encoder is None else _Pairs(test.path, bundle.encoder, batch_size, show_progress)
    return head.similarity(pairs.a, pairs.b)


def evaluate_sts(
    data_dir: str | os.PathLike[str],
    *,
    encoder: Encoder,
    split: str = "test",
    tune_split: str | None = "dev",
    taus: tuple[float, ...] | None = None,
    alphas: tuple[float, ...] = ALPHAS,
    batch_size: int = 64,
    n_resamples: int = 2000,
    show_progress: bool = True,
    heads: Sequence[str | os.PathLike[str]] = (),
) -> dict[str, Any]:
    """Spearman/Pearson of cosine, fidelity and hybrid on ``split``; tau, alpha tuned on ``tune_split``.

    Each of ``heads`` (saved by ``qrerank train``) adds ``head:NAME``: its similarity of the two
    sentences' head outputs (cosine for vector heads, log F for state heads), computed on the
    head's fine-tuned encoder when it has one.
    """
    t0 = time.perf_counter()
    root = Path(data_dir)
    _check_inputs(root, split, tune_split, heads)
    test = _Pairs(root / f"sts-{split}.tsv", encoder, batch_size, show_progress)
    grid = tau_grid(encoder.dim, taus)
    tune = _Pairs(root / f"sts-{tune_split}.tsv", encoder, batch_size, show_progress) if tune_split else None
    tuned = tune_tau_alpha(tune.correlations, grid, alphas, STS_METRIC) if tune is not None else None
    tau, alpha = (tuned.tau, tuned.alpha) if tuned is not None else (default_tau(encoder.dim), 0.5)
    metrics, ci = _main_methods(test, tau, alpha, n_resamples)
    for path in heads:
        name = f"head:{Path(path).name}"
        scores = _head_scores(Path(path), test, encoder, batch_size, show_progress)
        metrics[name] = correlations(scores, test.gold)
        ci[name] = _diff_ci(scores.numpy(), test, n_resamples)
    sweeps = _sweeps(test, metrics, grid, alphas, tau, tuned)
    meta = {
        "dataset": root.name,
        "split": split,
        "protocol": "sts",
        "n_pairs": len(test.gold),
        "primary_metric": STS_METRIC,
        "model": encoder.name,
        "dim": encoder.dim,
        "tuning": {
            "source": f"{root.name} {tune_split}" if tune_split else "defaults",
            "tau": tau,
            "alpha": alpha,
        },
        "seconds": {"total": round(time.perf_counter() - t0, 2)},
        "environment": environment(),
    }
    return {
        "primary_metric": STS_METRIC,
        "metrics": metrics,
        "spearman_diff_vs_cosine": ci,
        "sweeps": sweeps,
        "meta": meta,
    }


def _check_inputs(
    root: Path, split: str, tune_split: str | None, heads: Sequence[str | os.PathLike[str]]
) -> None:
    """Refuse a missing folder or head, and tuning on the evaluated split, before any encoding."""
    if not root.is_dir():
        raise InputError(f"no such dataset folder: {root}")
    if tune_split == split:
        raise InputError(f"refusing to tune on the evaluated split {split!r}")
    for path in heads:
        if not Path(path).exists():
            raise InputError(f"no head at {path}")


def _diff_ci(scores: np.ndarray, test: _Pairs, n_resamples: int) -> dict[str, float]:
    """Spearman of ``scores`` minus cosine's on the same pairs, with its bootstrap CI."""
    cos = test.cos.numpy().astype(np.float64)
    return spearman_diff_ci(scores, cos, test.gold, n_resamples=n_resamples)


def _main_methods(
    test: _Pairs, tau: float, alpha: float, n_resamples: int
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """Correlations of cosine, fidelity and hybrid at the tuned point, and CIs against cosine."""
    metrics = {
        "cosine": correlations(test.cos, test.gold),
        "fidelity": correlations(test.log_f(tau), test.gold),
        "hybrid": correlations(test.hybrid(tau, alpha), test.gold),
    }
    ci = {
        name: _diff_ci(np.asarray(scores, dtype=np.float64), test, n_resamples)
        for name, scores in (("fidelity", test.log_f(tau)), ("hybrid", test.hybrid(tau, alpha)))
    }
    return metrics, ci


def _sweeps(
    test: _Pairs,
    metrics: dict[str, dict[str, float]],
    grid: Sequence[float],
    alphas: Sequence[float],
    tau: float,
    tuned: Tuned | None,
) -> dict[str, list[dict[str, Any]]]:
    """The tau sweep (fidelity) and alpha sweep (hybrid at ``tau``); each point also in ``metrics``."""
    tune_tau = tuned.tau_curve if tuned is not None else {}
    tune_alpha = tuned.alpha_curve if tuned is not None else {}
    dim = test.dim
    sweeps: dict[str, list[dict[str, Any]]] = {"tau": [], "alpha": []}
    for t in grid:
        m = metrics[f"fidelity[tau={t:.4g}]"] = correlations(test.log_f(t), test.gold)
        sweeps["tau"].append(
            {"tau": t, "multiplier": t / default_tau(dim), "test": m, "tune": tune_tau.get(t)}
        )
    for a in alphas:
        m = metrics[f"hybrid[tau={tau:.4g},alpha={a:.2g}]"] = correlations(test.hybrid(tau, a), test.gold)
        sweeps["alpha"].append({"alpha": a, "test": m, "tune": tune_alpha.get(a)})
    return sweeps


def format_sts_table(result: dict[str, Any]) -> str:
    """A Markdown table of an :func:`evaluate_sts` result: Spearman, its CI against cosine, Pearson."""
    meta, m, ci = result["meta"], result["metrics"], result["spearman_diff_vs_cosine"]
    tuned = meta["tuning"]
    lines = [
        f"### {meta['dataset']} {meta['split']} ({meta['n_pairs']} pairs), model `{meta['model']}`",
        "",
        "| method | Spearman x100 | Δ vs cosine [95% CI] | Pearson x100 |",
        "|---|---:|---|---:|",
    ]
    labels = {
        "cosine": "cosine",
        "fidelity": f"fidelity (τ={tuned['tau']:.4g})",
        "hybrid": f"hybrid (τ={tuned['tau']:.4g}, α={tuned['alpha']:.2g})",
    }
    labels.update({name: f"`{name}` (trained)" for name in m if name.startswith("head:")})
    for name, label in labels.items():
        c = ci.get(name)
        delta = f"{100 * c['diff']:+.2f} [{100 * c['ci_low']:+.2f}, {100 * c['ci_high']:+.2f}]" if c else "—"
        lines.append(
            f"| {label} | {100 * m[name]['spearman']:.2f} | {delta} | {100 * m[name]['pearson']:.2f} |"
        )
    lines += [
        "",
        f"tau, alpha chosen on {tuned['source']}.",
        "",
        "#### tau sweep (fidelity), Spearman x100",
        "",
    ]
    lines += ["| tau | x 1/sqrt(d) | evaluated split | tuning split |", "|---:|---:|---:|---:|"]
    for r in result["sweeps"]["tau"]:
        tune = f"{100 * r['tune']['spearman']:.2f}" if r["tune"] else "—"
        lines.append(
            f"| {r['tau']:.4g} | {r['multiplier']:.4g} | {100 * r['test']['spearman']:.2f} | {tune} |"
        )
    lines += ["", f"#### alpha sweep (hybrid, τ={tuned['tau']:.4g}), Spearman x100", ""]
    lines += ["| alpha | evaluated split | tuning split |", "|---:|---:|---:|"]
    for r in result["sweeps"]["alpha"]:
        tune = f"{100 * r['tune']['spearman']:.2f}" if r["tune"] else "—"
        lines.append(f"| {r['alpha']:.2g} | {100 * r['test']['spearman']:.2f} | {tune} |")
    return "\n".join(lines) + "\n"


def write_sts_outputs(result: dict[str, Any], out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Write metrics.json, meta.json, table.md and the sweep plots that could be drawn; returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"metrics": out / "metrics.json", "meta": out / "meta.json", "table": out / "table.md"}
    files["metrics"].write_text(json.dumps(result["metrics"], indent=2) + "\n")
    meta = {
        **result["meta"],
        "spearman_diff_vs_cosine": result["spearman_diff_vs_cosine"],
        "sweeps": result["sweeps"],
    }
    files["meta"].write_text(json.dumps(meta, indent=2) + "\n")
    files["table"].write_text(format_sts_table(result))
    tuned = result["meta"]["tuning"]
    base = {"cosine": result["metrics"]["cosine"][STS_METRIC]}
    for param, log_x in (("tau", True), ("alpha", False)):
        p = plot_sweep(
            result["sweeps"][param], param, out / f"{param}_sweep.png", chosen=tuned[param], baselines=base,
            metric=STS_METRIC, log_x=log_x, title=f"STS-B {result['meta']['split']}: Spearman vs {param}",
        )  # fmt: skip
        if p is not None:
            files[f"{param}_sweep"] = p
    return files
