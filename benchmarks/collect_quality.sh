#!/usr/bin/env bash
# Copy the small outputs of benchmarks/quality.sh (JSON, tables, plots; no run files or
# per-query dumps) from runs/eval/<name>/ to benchmarks/results/<name>/.
set -euo pipefail
OUT=${OUT:-runs/eval}
for dir in "$OUT"/*/; do
  name=$(basename "$dir")
  dst=benchmarks/results/$name
  mkdir -p "$dst"
  for f in metrics.json meta.json significance.json sweeps.json table.md per_query_delta.png tau_sweep.png alpha_sweep.png; do
    [ -f "$dir/$f" ] && cp "$dir/$f" "$dst/"
  done
  [ -f "$dir/command.txt" ] && cp "$dir/command.txt" "$dst/"
done
du -sh benchmarks/results/* 2>/dev/null
