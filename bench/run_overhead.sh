#!/usr/bin/env bash
# gRPC streaming overhead: kilnd_null (KilnServer + NullEngine) driven by kiln_loadgen, token
# coalescing on and off. Writes bench/results/<stamp>-overhead.{json,md}.
#   bench/run_overhead.sh [--concurrency=64 --output_len=2000 --duration_s=20]
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
kiln_bench_build kilnd_null kiln_loadgen
exec python3 "$KILN_REPO/bench/sweeps.py" overhead --kilnd_null="$KILND_NULL" \
  --loadgen="$LOADGEN" --results="$RESULTS" --command="bench/run_overhead.sh $*" "$@"
