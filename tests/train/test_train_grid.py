"""The training grid's bookkeeping: finished runs survive an interruption and resume by settings."""

from __future__ import annotations

from pathlib import Path

from benchmarks import train_grid as grid


def test_run_log_resumes_only_matching_runs(tmp_path: Path) -> None:
    path = tmp_path / "methods-x.runs.jsonl"
    log = grid.RunLog(path, resume=False)
    run = {"method": "BEC", "seed": 0, "frac": 0.1, "out_dim": 128, "epochs": 10, "steps": None, "lr": 1e-3,
           "similarity": "log", "ndcg@10": 0.6, "per_query": {"q1": 0.5}}  # fmt: skip
    log.add(run)
    settings = {
        k: run[k] for k in ("method", "seed", "frac", "out_dim", "epochs", "steps", "lr", "similarity")
    }

    again = grid.RunLog(path, resume=True)  # a new process after an interruption
    assert again.find(**settings) == run
    assert again.find(**{**settings, "seed": 1}) is None
    assert again.find(**{**settings, "lr": 1e-2}) is None  # other settings: run again, not reused
    assert grid.RunLog(path, resume=False).find(**settings) is None  # a fresh grid starts empty
    assert path.read_text() == ""
