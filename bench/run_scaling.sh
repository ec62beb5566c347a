#!/usr/bin/env bash
# CPU decode throughput and TTFT vs prompt length (128 → 4096) and concurrency (1 → 128) on
# the 100M random Llama; PNG plots via gnuplot (apt-get install gnuplot-nox). Writes
# bench/results/<stamp>-scaling.{json,md,-prompt.png,-concurrency.png}.
#   bench/run_scaling.sh [--prompts=128,512,4096 --concurrencies=1,8,32,128 --output_len=16]
# Needs a Python with torch + transformers to create the model: $KILN_BENCH_PYTHON.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
kiln_bench_build kilnd kiln_loadgen
exec python3 "$KILN_REPO/bench/sweeps.py" scaling --kilnd="$KILND" --loadgen="$LOADGEN" \
  --python="${KILN_BENCH_PYTHON:-python3}" --results="$RESULTS" \
  --command="bench/run_scaling.sh $*" "$@"
