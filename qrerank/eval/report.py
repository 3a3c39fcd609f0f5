"""Writing an evaluation to disk: metrics.json, meta.json, table.md, TREC runs, plots.

Layout of ``OUT_DIR``::

    metrics.json        {"METHOD": {"nDCG@10": .., "RR@10": .., "R@100": .., "AP": ..}} (fractions)
    meta.json           dataset, protocol, rel level, ir-measures names, chosen tau/alpha,
                        model, hardware, versions, timings
    significance.json   {"METHOD": {"METRIC": {mean_diff, ci_low, ci_high, p_value, ...}}} vs cosine
    sweeps.json         tau and alpha sweep curves (evaluated and tuning split)
    per_query.json      {"METHOD": {"METRIC": {qid: value}}} (main methods)
    table.md            the tables below, percentages
    runs/METHOD.trec    one TREC run per method (not for runs/ anchors, which exist already)
    *.png               per_query_delta, tau_sweep, alpha_sweep
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from qrerank.eval.plots import plot_per_query_delta, plot_sweep
from qrerank.metrics import METRICS, PRIMARY_METRIC


def run_filename(method: str) -> str:
    """A file-system safe stem for a method name: ``fidelity[tau=0.05]`` -> ``fidelity_tau-0.05``."""
    stem = re.sub(r"[^A-Za-z0-9.+-]+", "_", method.replace("=", "-")).strip("_")
    return f"{stem}.trec"


def write_trec_run(run: Mapping[str, Mapping[str, float]], path: Path, tag: str) -> Path:
    """``qid Q0 docid rank score tag`` lines, each query's docs by descending score."""
    tag = re.sub(r"\s+", "_", tag) or "qrerank"
    with path.open("w", encoding="utf-8") as f:
        for qid, docs in run.items():
            ranked = sorted(docs.items(), key=lambda x: -x[1])
            for rank, (doc, score) in enumerate(ranked, start=1):
                f.write(f"{qid} Q0 {doc} {rank} {score:.8g} {tag}\n")
    return path


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


def _table_header(meta: Mapping[str, Any]) -> list[str]:
    """Title, scope line and the column header of the main table."""
    subset = meta.get("subset")
    scope = f"{meta['n_queries']} queries"
    if subset:
        scope += f" of {subset['of']}, unseen from {subset['unseen_from']} ({subset['rule']})"
    return [
        f"### {meta['dataset']} ({meta['split']}{', unseen' if subset else ''}, protocol `{meta['protocol']}`)",
        "",
        f"{scope}; candidates: {meta['candidates']}; model `{meta.get('model') or '-'}`; "
        f"binary relevance: grade >= {meta['rel_level']}. Metrics x100.",
        "",
        f"| method | {PRIMARY_METRIC} | Δ vs cosine [95% CI] | p | " + " | ".join(METRICS[1:]) + " |",
        "|---|---:|---|---:|" + "---:|" * (len(METRICS) - 1),
    ]


def _method_row(label: str, m: Mapping[str, float], c: Mapping[str, Any] | None) -> str:
    """One main-table row: metrics ``m``, and ``c``, the significance vs cosine (if any) of the primary metric."""
    if c:
        mark = " ▲" if c["significant"] and c["mean_diff"] > 0 else " ▼" if c["significant"] else ""
        delta = f"{100 * c['mean_diff']:+.2f} [{100 * c['ci_low']:+.2f}, {100 * c['ci_high']:+.2f}]"
        p = f"{c['p_value']:.3g}"
    else:
        mark, delta, p = "", "—", "—"
    return (
        f"| {label} | {_pct(m[PRIMARY_METRIC])}{mark} | {delta} | {p} | "
        + " | ".join(_pct(m[k]) for k in METRICS[1:])
        + " |"
    )


def _sweep_table(
    param: str, label: str, rows: list[Mapping[str, Any]], tuned: Mapping[str, Any]
) -> list[str]:
    """The ``param`` sweep (tau or alpha) of method ``label``, the tuned value marked ←."""
    has_tune = all(r.get("tune") for r in rows)
    extra = f" at tau = {tuned.get('tau', 0):.4g}" if param == "alpha" else ""
    lines = [
        "",
        f"#### {param} sweep: {label}{extra}, {PRIMARY_METRIC} x100",
        "",
        f"| {param} | "
        + ("x 1/sqrt(d) | " if param == "tau" else "")
        + "evaluated split |"
        + (f" tuning split ({tuned.get('split')}) |" if has_tune else ""),
        "|---:|" + ("---:|" if param == "tau" else "") + "---:|" + ("---:|" if has_tune else ""),
    ]
    for r in rows:
        chosen = " ←" if abs(r[param] - tuned.get(param, float("nan"))) < 1e-12 else ""
        cells = [f"{r[param]:.4g}{chosen}"]
        if param == "tau":
            cells.append(f"{r['multiplier']:.4g}")
        cells.append(_pct(r["test"][PRIMARY_METRIC]))
        if has_tune:
            cells.append(_pct(r["tune"][PRIMARY_METRIC]))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def format_table(result: Mapping[str, Any]) -> str:
    """Markdown: the main methods (with significance vs cosine), then the tau and alpha sweeps."""
    meta = result["meta"]
    sig = result.get("significance", {})
    labels = result.get("labels", {})
    lines = _table_header(meta)
    for name in result["main"]:
        significance = sig.get(name, {}).get(PRIMARY_METRIC)
        lines.append(_method_row(labels.get(name, name), result["metrics"][name], significance))
    lines += [
        "",
        "▲/▼: better/worse than cosine on the same queries with paired t-test p < 0.05 and a "
        "bootstrap 95% CI of the mean difference (10,000 resamples) that excludes 0. `run:` rows "
        "are external runs evaluated as they are (their own candidates).",
    ]
    sweeps = result.get("sweeps") or {}
    tuned = meta.get("tuning") or {}
    for param, label in (("tau", "fidelity"), ("alpha", "hybrid")):
        rows = sweeps.get(param) or []
        if rows:
            lines += _sweep_table(param, label, rows, tuned)
    if tuned:
        lines += [
            "",
            f"Chosen on {tuned.get('source')}: tau = {tuned.get('tau', 0):.4g}, alpha = {tuned.get('alpha', 0):.4g} (←).",
        ]
    return "\n".join(lines) + "\n"


def _dump(obj: Any, path: Path) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_outputs(
    result: Mapping[str, Any], out_dir: str | Path, runs: Mapping[str, Mapping[str, Mapping[str, float]]]
) -> dict[str, Path]:
    """Write every output file of ``result`` (from ``evaluate``) and the method runs."""
    out = Path(out_dir)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    for key in ("metrics", "meta", "significance", "sweeps", "per_query"):
        if key in result:
            files[key] = out / f"{key}.json"
            _dump(result[key], files[key])
    files["table"] = out / "table.md"
    files["table"].write_text(format_table(result), encoding="utf-8")
    for name, run in runs.items():
        write_trec_run(run, out / "runs" / run_filename(name), name)
    files.update(write_plots(result, out))
    return files


def write_plots(result: Mapping[str, Any], out: Path) -> dict[str, Path]:
    """The PNG plots of ``result``; ``result`` may also be re-read from the JSON files of a run."""
    files: dict[str, Path] = {}
    meta = result["meta"]
    title = f"{meta['dataset']} {meta['split']} ({meta['protocol']})"
    delta = plot_per_query_delta(
        result.get("per_query", {}),
        result.get("main") or list(result.get("per_query", {})),
        out / "per_query_delta.png",
        title=f"{title}: per-query nDCG@10 − cosine",
    )
    tuned = meta.get("tuning") or {}
    cos = result["metrics"].get("cosine", {}).get(PRIMARY_METRIC)
    base = {"cosine": cos} if cos is not None else {}
    tau = plot_sweep(
        (result.get("sweeps") or {}).get("tau", []),
        "tau",
        out / "tau_sweep.png",
        chosen=tuned.get("tau"),
        baselines=base,
        log_x=True,
        title=f"{title}: fidelity vs tau",
    )
    alpha = plot_sweep(
        (result.get("sweeps") or {}).get("alpha", []),
        "alpha",
        out / "alpha_sweep.png",
        chosen=tuned.get("alpha"),
        baselines=base,
        title=f"{title}: hybrid vs alpha (tau = {tuned.get('tau', 0):.4g})",
    )
    for key, p in (("per_query_delta", delta), ("tau_sweep", tau), ("alpha_sweep", alpha)):
        if p is not None:
            files[key] = p
    return files
