#!/usr/bin/env bash
# Quality benchmarks of benchmarks/quality.md: run from the repository root, one job at a time.
# Outputs (with run files) go to runs/eval/ (gitignored); the small files are copied to
# benchmarks/results/<name>/ by benchmarks/collect_quality.sh.
set -euo pipefail
DATA=${DATA:-../shared/data}
OUT=${OUT:-runs/eval}
DL_RUNS=run:bm25,run:bm25_rm3,run:d_bert_kd_tasb,run:open_ai_ada2,run:splade_p_p_ensemble_distil,run:rep_llama
only=${1:-all}

want() { [ "$only" = all ] || [ "$only" = "$1" ]; }

want scifact-full && qrerank eval "$DATA/scifact" --protocol full --k 100 \
  --methods bm25,cosine,fidelity,hybrid,rrf --tune-split train --out "$OUT/scifact-full"
# The held-out subset: test claims none of whose relevant documents is relevant to a train claim.
want scifact-unseen && qrerank eval "$DATA/scifact" --protocol full --k 100 \
  --methods bm25,cosine,fidelity,hybrid,rrf --tune-split train --unseen-from train --out "$OUT/scifact-unseen"

for y in 2019 2020; do
  other=$([ $y = 2019 ] && echo 2020 || echo 2019)
  for p in rerank judged; do
    want "dl$y-$p" && qrerank eval "$DATA/trec-dl-$y-passage" --protocol $p --run bm25 --k 100 \
      --methods "bm25,cosine,fidelity,hybrid,rrf,$DL_RUNS" \
      --tune-data "$DATA/trec-dl-$other-passage" --tune-split test --out "$OUT/dl$y-$p"
  done
done

want stsb && qrerank eval "$DATA/stsb" --protocol sts --split test --tune-split dev --out "$OUT/stsb"

# all-mpnet-base-v2 (768-d; needs its five PyPI parts), int8 on ONNX Runtime: the same runs,
# only when asked for (`quality.sh mpnet`, or one name such as `quality.sh dl2019-rerank-mpnet`).
MPNET=(--model all-mpnet-base-v2 --runtime onnx-int8)
wantm() { [ "$only" = mpnet ] || [ "$only" = "$1" ]; }
for y in 2019 2020; do
  other=$([ $y = 2019 ] && echo 2020 || echo 2019)
  wantm "dl$y-rerank-mpnet" && qrerank eval "$DATA/trec-dl-$y-passage" --protocol rerank --run bm25 --k 100 \
    --methods bm25,cosine,fidelity,hybrid,rrf,first,fused-run "${MPNET[@]}" \
    --tune-data "$DATA/trec-dl-$other-passage" --tune-split test --out "$OUT/dl$y-rerank-mpnet"
done
wantm stsb-mpnet && qrerank eval "$DATA/stsb" --protocol sts --split test --tune-split dev "${MPNET[@]}" --out "$OUT/stsb-mpnet"
wantm scifact-full-mpnet && qrerank eval "$DATA/scifact" --protocol full --k 100 \
  --methods bm25,cosine,fidelity,hybrid,rrf --tune-split train "${MPNET[@]}" --out "$OUT/scifact-full-mpnet"
wantm scifact-unseen-mpnet && qrerank eval "$DATA/scifact" --protocol full --k 100 \
  --methods bm25,cosine,fidelity,hybrid,rrf --tune-split train --unseen-from train "${MPNET[@]}" \
  --out "$OUT/scifact-unseen-mpnet"
true
