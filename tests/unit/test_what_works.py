"""benchmarks/what_works.py on a tiny results folder: cells land where they belong, gaps say "not run"."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks import what_works as ww


def _write(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def _eval_folder(root: Path, name: str, cosine: dict[str, float], fidelity: dict[str, float]) -> None:
    """A ``qrerank eval`` output: cosine and fidelity (per-query values and a significance file)."""
    mean = {m: sum(pq.values()) / len(pq) for m, pq in (("cosine", cosine), ("fidelity", fidelity))}
    _write(root / name / "metrics.json", {m: {"nDCG@10": v} for m, v in mean.items()})
    _write(root / name / "per_query.json", {"cosine": {"nDCG@10": cosine}, "fidelity": {"nDCG@10": fidelity}})
    _write(root / name / "meta.json", {"primary_metric": "nDCG@10", "tuning": {"tau": 0.1}})
    diff = mean["fidelity"] - mean["cosine"]
    sig = {"n": 3, "mean_diff": diff, "ci_low": diff, "ci_high": diff, "p_value": 0.01, "significant": True}
    _write(root / name / "significance.json", {"fidelity": {"nDCG@10": sig}})


def _grid_row(method: str, ndcg: float, diff: float, significant: bool, params: int) -> dict[str, Any]:
    vs = {
        "n": 3,
        "mean_diff": diff,
        "ci_low": diff,
        "ci_high": diff,
        "p_value": 0.01,
        "significant": significant,
    }
    stats = {"ndcg@10": ndcg, "se": 0.01, "vs_cosine": vs}
    return {"method": method, "frac": 1.0, "out_dim": 128, "seeds": 5, **stats, "parameters": params,
            "head_parameters": params, "unseen": stats}  # fmt: skip


@pytest.fixture
def results(tmp_path: Path) -> Path:
    _eval_folder(tmp_path, "scifact-full", {"1": 0.5, "2": 0.6, "3": 0.7}, {"1": 0.6, "2": 0.7, "3": 0.8})
    _eval_folder(
        tmp_path, "scifact-full-mpnet", {"1": 0.7, "2": 0.8, "3": 0.95}, {"1": 0.8, "2": 0.9, "3": 0.95}
    )
    _write(
        tmp_path / "train" / "methods-scifact-repro.json",
        {
            "summary": [
                _grid_row("BFEC", 0.70, 0.10, True, 49280),
                _grid_row("QBFEC", 0.50, -0.10, True, 3073),  # loses, significantly
            ],
            "runs": [{"method": "BFEC", "head": "linear"}, {"method": "QBFEC", "head": "qbec"}],
        },
    )
    return tmp_path


def _row(payload: dict[str, Any], section: str, method: str) -> dict[str, Any]:
    return next(r for r in payload["rows"] if r["section"] == section and r["method"] == method)


def test_numbers_land_in_their_cells_and_gaps_say_not_run(results: Path) -> None:
    payload = ww.build(results)
    fid = _row(payload, "untrained", ww.EVAL_LABELS["fidelity"])
    cell = fid["cells"]["scifact"]
    assert cell["value"] == pytest.approx(70.0) and cell["delta"] == pytest.approx(10.0)
    assert cell["mark"] == "▲" and cell["source"] == "scifact-full" and cell["setting"] == {"tau": 0.1}
    assert fid["params"] == 0 and fid["sources"] == ["scifact-full"]
    for ds in ("scifact-unseen", "dl2019", "dl2020", "stsb"):  # no file holds these
        assert fid["cells"][ds] == {"status": "not run"}
    assert _row(payload, "untrained", ww.EVAL_LABELS["cosine"])["cells"]["scifact"]["value"] == pytest.approx(
        60.0
    )
    bfec = _row(payload, "trained", ww.TRAINED_LABELS["BFEC"])
    assert bfec["cells"]["scifact-unseen"]["value"] == pytest.approx(70.0)
    assert bfec["cells"]["dl2020"] == {"status": "not run"} and bfec["params"] == [49280]
    assert bfec["cost"] is None  # head_latency.json is absent: not measured, nothing made up
    assert "train/methods-scifact-repro.json" in bfec["sources"]
    assert {"stsb", "train/methods-dl.json", "head_latency.json"} <= set(payload["missing_sources"])


def test_a_losing_method_keeps_its_row_with_its_mark(results: Path) -> None:
    payload = ww.build(results)
    qbfec = _row(payload, "trained", ww.TRAINED_LABELS["QBFEC"])
    assert qbfec["cells"]["scifact"]["delta"] == pytest.approx(-10.0)
    md = ww.render(payload)
    line = next(x for x in md.splitlines() if x.startswith(f"| {ww.TRAINED_LABELS['QBFEC']} |"))
    assert "50.00 ± 1.00 (-10.00▼)" in line and "| 3,073 |" in line and "not measured" in line
    # rows whose files do not exist stay, saying so in every cell
    pseudo = next(x for x in md.splitlines() if x.startswith("| QB-tau") and "pseudo-queries" in x)
    assert pseudo.count("not run") == 6  # five datasets and the parameters


def test_mpnet_is_compared_with_its_own_cosine_and_paired_with_minilm(results: Path) -> None:
    payload = ww.build(results)
    cos = _row(payload, "mpnet", ww.EVAL_LABELS["cosine"])["cells"]["scifact"]
    assert cos["value"] == pytest.approx(81.667, abs=1e-3)
    vs = cos["vs_minilm"]
    assert vs["tested"] and vs["n"] == 3 and vs["delta"] == pytest.approx(21.667, abs=1e-3)
    assert vs["mark"] == "▲" and vs["source"] == "scifact-full"
    fid = _row(payload, "mpnet", ww.EVAL_LABELS["fidelity"])["cells"]["scifact"]
    assert fid["delta"] == pytest.approx(6.667, abs=1e-3) and fid["mark"] == "▲"  # vs mpnet's cosine
    assert ww.cell_text(fid, baseline=False) == "88.33 (+6.67▲; vs MiniLM +28.33▲)"


def _vs(diff: float, significant: bool) -> dict[str, Any]:
    return {
        "n": 2,
        "mean_diff": diff,
        "ci_low": diff,
        "ci_high": diff,
        "p_value": 0.01,
        "significant": significant,
    }


def _two_encoder_method(
    weights: dict[str, float], ndcg: float, vs_minilm: dict[str, Any] | None
) -> dict[str, Any]:
    test = {"ndcg@10": ndcg, "vs mpnet cosine": _vs(ndcg - 0.7, False)}
    if vs_minilm is not None:
        test["vs MiniLM cosine"] = vs_minilm
    return {"weights": weights, "tune_ndcg@10": ndcg - 0.01, "test": {"all": test}}


def test_two_encoder_fills_its_section_and_a_missing_set_says_not_run(tmp_path: Path) -> None:
    methods = {
        "MiniLM cosine": _two_encoder_method({"minilm": 1.0}, 0.60, None),
        "mpnet cosine": _two_encoder_method({"mpnet": 1.0}, 0.70, _vs(0.10, False)),
        "MiniLM + mpnet": _two_encoder_method({"minilm": 0.2, "mpnet": 0.8}, 0.75, _vs(0.15, True)),
        "BM25 + MiniLM": _two_encoder_method({"bm25": 0.3, "minilm": 0.7}, 0.55, _vs(-0.05, True)),
    }
    _write(
        tmp_path / "two_encoder.json",  # DL 2019 only: no DL 2020 block, no SciFact block
        {
            "results": {
                "TREC DL 2019, rerank BM25 top-100": {"tuned_on": "TREC DL 2020", "methods": methods}
            },
            "query_encode_ms": {"minilm": 30.0, "mpnet": 12.5},
        },
    )
    payload = ww.build(tmp_path)
    rows = [r for r in payload["rows"] if r["section"] == "two_encoder"]
    assert [r["method"] for r in rows] == list(ww.TWO_ENCODER_METHODS)
    fused = _row(payload, "two_encoder", "MiniLM + mpnet")
    cell = fused["cells"]["dl2019"]
    assert (
        cell["value"] == pytest.approx(75.0) and cell["delta"] == pytest.approx(15.0) and cell["mark"] == "▲"
    )
    assert cell["source"] == "two_encoder.json" and cell["setting"] == {"w_minilm": 0.2, "w_mpnet": 0.8}
    for ds in ("scifact", "scifact-unseen", "dl2020", "stsb"):
        assert fused["cells"][ds] == {"status": "not run"}
    assert fused["params"] == 0 and fused["sources"] == ["two_encoder.json"]
    assert fused["cost"]["ms"] == pytest.approx(12.5) and "2nd encoder" in fused["cost"]["text"]
    lex = _row(payload, "two_encoder", "BM25 + MiniLM")
    assert lex["cells"]["dl2019"]["mark"] == "▼" and lex["cost"] is None  # search_fusion.json is absent
    assert "mark" not in _row(payload, "two_encoder", "mpnet cosine")["cells"]["dl2019"]  # not significant
    base = _row(payload, "two_encoder", "MiniLM cosine")
    assert base["baseline"] and base["cells"]["dl2019"]["value"] == pytest.approx(60.0)
    # the rows the file does not hold stay, saying so
    assert all(
        c == {"status": "not run"} for c in _row(payload, "two_encoder", "BM25 + mpnet")["cells"].values()
    )
    assert payload["cosine_by_source"]["dl2019"]["two_encoder.json"] == pytest.approx(60.0)
    md = ww.render(payload)
    assert f"| **{ww.SECTIONS['two_encoder']}** |" in md
    line = next(x for x in md.splitlines() if x.startswith("| MiniLM + mpnet |"))
    assert line == (
        "| MiniLM + mpnet | not run | not run | 75.00 (+15.00▲) | not run | not run | 0 "
        "| +12.50 (2nd encoder query encode) | two_encoder.json |"
    )
    assert "- MiniLM + mpnet (two_encoder): DL 2019 (43): w_minilm=0.2, w_mpnet=0.8" in md
