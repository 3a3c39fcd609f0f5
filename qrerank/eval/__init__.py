"""Evaluation on BEIR-layout folders [eval]: protocols, methods, ir-measures metrics, significance.

>>> from qrerank.eval import EvalConfig, evaluate                                   # doctest: +SKIP
>>> res = evaluate(EvalConfig(data_dir="scifact", protocol="full"))                 # doctest: +SKIP
>>> res["metrics"]["cosine"]["nDCG@10"]                                              # doctest: +SKIP

Modules: ``datasets`` (files on disk), ``methods`` (scoring on candidates), ``sweep`` (tuning
tau and alpha), ``significance`` (scipy), ``evaluator`` (orchestration), ``report`` and ``plots``
(outputs), ``sts`` (STS-B correlations), ``meta`` (hardware and versions); metrics come from
``qrerank.metrics`` (ir-measures).
"""

from qrerank.eval.datasets import Dataset, load_dataset, read_run
from qrerank.eval.evaluator import EvalConfig, Protocol, evaluate
from qrerank.eval.report import write_outputs
from qrerank.eval.sts import evaluate_sts, write_sts_outputs
from qrerank.judgments import read_qrels

__all__ = [
    "Dataset",
    "EvalConfig",
    "Protocol",
    "evaluate",
    "evaluate_sts",
    "load_dataset",
    "read_qrels",
    "read_run",
    "write_outputs",
    "write_sts_outputs",
]
