"""STS-B correlations of cosine, fidelity and hybrid."""

from __future__ import annotations

from pathlib import Path

import pytest

from qrerank.errors import InputError
from qrerank.eval.sts import evaluate_sts, write_sts_outputs
from qrerank.judgments import read_sts
from tests.eval.conftest import TINY_STS


def test_read_sts(tmp_path: Path) -> None:
    s1, s2, gold = read_sts(TINY_STS / "sts-test.tsv")
    assert len(s1) == len(s2) == 5 and gold.tolist() == [5.0, 3.8, 2.5, 1.0, 0.0]
    bad = tmp_path / "sts-test.tsv"
    bad.write_text("genre\tfile\tyear\tsid\tscore\tsentence1\tsentence2\nx\ty\tz\t1\t2.0\tonly one\n")
    with pytest.raises(InputError, match=r"sts-test.tsv:2: expected 7"):
        read_sts(bad)


def test_monotone_scores_correlate_perfectly(sts_encoder, tmp_path: Path) -> None:
    # Pair i: a_i at angle 0, b_i at an angle growing as gold falls. Cosine falls with the angle,
    # and so does log F (both qubits' angle differences grow), so every Spearman is exactly 1.
    res = evaluate_sts(TINY_STS, encoder=sts_encoder, tune_split="dev", n_resamples=200, show_progress=False)
    for name in ("cosine", "fidelity", "hybrid"):
        assert res["metrics"][name]["spearman"] == pytest.approx(1.0)
    assert res["spearman_diff_vs_cosine"]["fidelity"]["diff"] == pytest.approx(0.0)
    assert res["meta"]["tuning"]["source"] == "tiny_sts dev"
    files = write_sts_outputs(res, tmp_path / "out")
    assert "| cosine | 100.00 |" in files["table"].read_text()


def test_sts_refuses_to_tune_on_test(sts_encoder) -> None:
    with pytest.raises(InputError, match="refusing to tune"):
        evaluate_sts(TINY_STS, encoder=sts_encoder, split="test", tune_split="test")
    with pytest.raises(InputError, match="no STS file"):
        evaluate_sts(TINY_STS, encoder=sts_encoder, split="train", tune_split=None)


def test_head_on_sts_matches_fidelity_at_its_tau(sts_encoder, tmp_path: Path) -> None:
    # A Bloch head with a fixed tau is fidelity at that tau (the tau sweep's entry).
    from qrerank.core.head import BlochHead
    from qrerank.heads.io import save_head

    head_dir = save_head(BlochHead(2, tau=0.3, learn_tau=False), tmp_path / "bloch")
    res = evaluate_sts(
        TINY_STS, encoder=sts_encoder, tune_split=None, taus=(0.3,), n_resamples=200,
        show_progress=False, heads=[head_dir],
    )  # fmt: skip
    assert res["metrics"]["head:bloch"] == pytest.approx(res["metrics"]["fidelity[tau=0.3]"])
    assert "head:bloch" in res["spearman_diff_vs_cosine"]
    files = write_sts_outputs(res, tmp_path / "out")
    assert "`head:bloch` (trained)" in files["table"].read_text()
