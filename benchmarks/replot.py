"""Re-draw the PNG plots of finished evaluations from their JSON files (no re-scoring).

python benchmarks/replot.py runs/eval/scifact-full [runs/eval/dl2019-rerank ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from qrerank.eval.report import write_plots


def main(dirs: list[str]) -> None:
    for d in map(Path, dirs):
        result = {
            k: json.loads((d / f"{k}.json").read_text()) for k in ("metrics", "meta", "sweeps", "per_query")
        }
        for name, path in write_plots(result, d).items():
            print(f"{d.name}: {name} -> {path}")


if __name__ == "__main__":
    main(sys.argv[1:])
